"""HF importers for the families of issue 16: gemma3 (sliding-window layers), deepseek_vl_v2 and kimi_vl (MLA + MoE),
llama4 (chunked attention + MoE) and glm4v_moe (MoE), with the DeepSeek-V2/V3 text-config reader (``deepseek_v2`` /
``deepseek_v3``: MLA and DeepSeekMoE) that DeepSeek-VL2 and Kimi-VL use.

Each reader fills what a hub config.json leaves to its transformers / remote-code class defaults and lists every
defaulted value, as lvlmsim.importers.hf does for the older families.
"""

from __future__ import annotations

import math
from typing import Any

from lvlmsim.errors import SpecError
from lvlmsim.importers.hf import _pairs, _Reader, _shuffle_merge, _side, _size, _sub

# configuration_gemma3.py Gemma3TextConfig / SiglipVisionConfig defaults a hub file may omit
_GEMMA3_TEXT = {"vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window": 4096,
                "sliding_window_pattern": 6, "tie_word_embeddings": True, "num_key_value_heads": 4}
_GEMMA3_MM = {"mm_tokens_per_image": 256}
# DeepseekV2Config / DeepseekV3Config class defaults (configuration_deepseek.py)
_DEEPSEEK_TEXT = {
    "deepseek_v2": {"vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 11008,
                    "moe_intermediate_size": 1407, "num_hidden_layers": 30, "num_attention_heads": 32,
                    "n_shared_experts": None, "n_routed_experts": None, "num_experts_per_tok": None,
                    "first_k_dense_replace": 0, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 2048,
                    "tie_word_embeddings": False},
    "deepseek_v3": {"vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
                    "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
                    "n_shared_experts": 1, "n_routed_experts": 256, "num_experts_per_tok": 8,
                    "first_k_dense_replace": 3, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 4096,
                    "tie_word_embeddings": False},
}
# deepseek_vl_v2 remote code (modeling_deepseek_vl_v2.py) defaults
_DSVL2_DEFAULTS = {"tile": 384, "patch": 14, "downsample_ratio": 2, "depth": 2, "mlp_ratio": 1}


def deepseek_llm(sub: dict[str, Any], where: str, defaulted: list[str]) -> dict[str, Any]:
    """A LanguageModelSpec dict from a DeepSeek-V2/V3 text config: MLA attention and DeepSeekMoE MLPs."""
    kind = str(sub.get("model_type") or "deepseek_v2")
    if kind not in _DEEPSEEK_TEXT:
        raise SpecError(f"{where}.model_type: '{kind}' is not a DeepSeek text config; allowed: "
                        f"{', '.join(_DEEPSEEK_TEXT)}")
    cls = "DeepseekV2Config" if kind == "deepseek_v2" else "DeepseekV3Config"
    r = _Reader(sub, where, _DEEPSEEK_TEXT[kind], defaulted, cls)
    heads = r.whole("num_attention_heads")
    layers = r.whole("num_hidden_layers")
    q_lora = sub["q_lora_rank"] if "q_lora_rank" in sub else r.get("q_lora_rank")
    if q_lora is not None:  # null: no q LoRA (DeepSeek-V2-Lite); a rank is a whole number >= 1
        q_lora = _size(q_lora, f"{where}.q_lora_rank")
    mla = {"kv_lora_rank": r.whole("kv_lora_rank"), "q_lora_rank": q_lora,
           "qk_nope_head_dim": r.whole("qk_nope_head_dim"), "qk_rope_head_dim": r.whole("qk_rope_head_dim"),
           "v_head_dim": r.whole("v_head_dim")}
    llm: dict[str, Any] = {
        "name": str(sub.get("_name_or_path") or (sub.get("architectures") or [kind])[0]),
        "num_layers": layers, "hidden_size": r.whole("hidden_size"), "num_heads": heads, "num_kv_heads": heads,
        "head_dim": mla["v_head_dim"], "intermediate_size": r.whole("intermediate_size"), "mlp_kind": "gated",
        "vocab_size": r.whole("vocab_size"),
        "tie_word_embeddings": r.flag("tie_word_embeddings", False),
        "max_position_embeddings": r.whole("max_position_embeddings"), "mla": mla,
    }
    experts = r.get("n_routed_experts", required=False)
    if experts:
        shared = r.whole("n_shared_experts", 0, lo=0)
        width = r.whole("moe_intermediate_size")
        dense = min(r.whole("first_k_dense_replace", 0, lo=0), layers)
        llm["moe"] = {"num_experts": r.whole("n_routed_experts"), "experts_per_token": r.whole("num_experts_per_tok"),
                      "expert_intermediate_size": width, "shared_experts": shared,
                      "shared_expert_intermediate_size": width if shared else None,
                      "dense_layers": list(range(dense))}
    return llm


def gemma3(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """Gemma 3: SigLIP at 896 px pooled to mm_tokens_per_image tokens; 5 sliding-window layers per global one."""
    txt = _sub(cfg, "text_config", mt)
    vis = _sub(cfg, "vision_config", mt)
    tr = _Reader(txt, "text_config", _GEMMA3_TEXT, defaulted, "Gemma3TextConfig")
    vr = _Reader(vis, "vision_config", {}, defaulted, "SiglipVisionConfig")
    hidden, heads = tr.whole("hidden_size"), tr.whole("num_attention_heads")
    layers = tr.whole("num_hidden_layers")
    types = txt.get("layer_types")
    if types:  # newer configs list every layer
        global_layers = [i for i, t in enumerate(types) if t == "full_attention"]
    else:
        pattern = tr.whole("sliding_window_pattern")
        global_layers = [i for i in range(layers) if (i + 1) % pattern == 0]
    image, patch = _side(vr.get("image_size"), "vision_config.image_size"), _side(vr.get("patch_size"),
                                                                                  "vision_config.patch_size")
    vh = vr.whole("hidden_size")
    tokens = _size(cfg.get("mm_tokens_per_image", _GEMMA3_MM["mm_tokens_per_image"]), "mm_tokens_per_image")
    if "mm_tokens_per_image" not in cfg:
        defaulted.append("mm_tokens_per_image=256 (Gemma3Config default)")
    merge = _pool_merge(image // patch, tokens)
    defaulted.append("4 special tokens per image (\\n\\n <start_of_image> ... <end_of_image> \\n\\n: Gemma3Processor)")
    return {
        "vision": {"name": "SigLIP (Gemma 3)", "num_layers": vr.whole("num_hidden_layers"), "hidden_size": vh,
                   "num_heads": vr.whole("num_attention_heads"),
                   "intermediate_size": vr.whole("intermediate_size"),
                   "mlp_kind": "plain", "patch_size": patch, "image_size": image, "cls_token": False},
        "projector": {"kind": "pool_linear", "layer_dims": [vh, hidden], "merge_factor": merge},
        "llm": {"name": str(txt.get("model_type") or "gemma3_text"), "num_layers": layers, "hidden_size": hidden,
                "num_heads": heads, "num_kv_heads": tr.whole("num_key_value_heads"),
                "head_dim": tr.whole("head_dim", hidden // heads),
                "intermediate_size": tr.whole("intermediate_size"), "mlp_kind": "gated",
                "vocab_size": tr.whole("vocab_size"), "tie_word_embeddings": tr.flag("tie_word_embeddings"),
                "max_position_embeddings": tr.whole("max_position_embeddings"),
                "local_attention": {"kind": "sliding", "window_tokens": tr.whole("sliding_window"),
                                    "global_layers": global_layers},
                # Gemma3DecoderLayer's sandwich norms and Gemma3Attention's per-head q_norm / k_norm
                "norms_per_layer": 4, "qk_norm": "self"},
        "tokenization": {"kind": "fixed", "image_size": image, "special_tokens": 4},
    }


def _pool_merge(side_patches: int, tokens: int) -> int:
    """Patches pooled into one token when a side x side patch grid is pooled to `tokens` tokens (Gemma 3: 64^2 ->
    256, 16 each): `tokens` must be a square number dividing the grid evenly, or the pooled count was truncated."""
    per_side = math.isqrt(tokens)
    if per_side * per_side != tokens or side_patches % per_side:
        raise SpecError(f"mm_tokens_per_image: {tokens} does not pool the {side_patches} x {side_patches} patch grid "
                        f"evenly; allowed: a square whose side divides {side_patches} (such as 256 = 16^2)")
    return (side_patches // per_side) ** 2


def deepseek_vl_v2(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """DeepSeek-VL2: SigLIP-SO400M tiles (global + local grid), 2x2 unshuffle MLP, DeepSeekMoE with MLA."""
    txt = _sub(cfg, "language_config", mt)
    vis = _sub(cfg, "vision_config", mt)
    proj = cfg.get("projector_config") or {}
    llm = deepseek_llm({**txt, "model_type": txt.get("model_type") or "deepseek_v2"}, "language_config", defaulted)
    vr = _Reader(vis, "vision_config", {"image_size": _DSVL2_DEFAULTS["tile"], "patch_size": _DSVL2_DEFAULTS["patch"],
                                        "heads": 16}, defaulted, "siglip_so400m_patch14_384 (timm)")
    proj_defaults = {k: _DSVL2_DEFAULTS[k] for k in ("downsample_ratio", "depth", "mlp_ratio")}
    pr = _Reader(proj, "projector_config", proj_defaults, defaulted, "MlpProjectorConfig")
    width = vr.whole("width")
    tile = vr.whole("image_size")
    ratio = pr.whole("downsample_ratio")
    hidden = llm["hidden_size"]
    inner = hidden * pr.whole("mlp_ratio")
    dims = [width * ratio * ratio] + [inner] * (pr.whole("depth") - 1) + [hidden]
    cands = cfg.get("candidate_resolutions")
    if not cands:
        raise SpecError("candidate_resolutions: missing from the config (needed for model_type 'deepseek_vl_v2')")
    return {
        "vision": {"name": str(vis.get("model_name") or "siglip_so400m_patch14_384"),
                   "num_layers": vr.whole("layers"), "hidden_size": width,
                   "num_heads": vr.whole("heads"), "intermediate_size": round(width * vr.ratio("mlp_ratio")),
                   "mlp_kind": "plain", "patch_size": vr.whole("patch_size"), "image_size": tile,
                   "cls_token": False},
        "projector": {"kind": "pixel_shuffle_mlp", "layer_dims": dims, "merge_factor": ratio * ratio},
        "llm": llm,
        "tokenization": {"kind": "global_local_tiles", "tile_size": tile,
                         "candidate_resolutions": _pairs(cands, "candidate_resolutions")},
    }


def kimi_vl(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """Kimi-VL: MoonViT at native resolution (patch limit, 2x2 merge) + a DeepSeek-V3-style MLA/MoE decoder."""
    txt = _sub(cfg, "text_config", mt)
    vis = _sub(cfg, "vision_config", mt)
    llm = deepseek_llm({**txt, "model_type": txt.get("model_type") or "deepseek_v3"}, "text_config", defaulted)
    vr = _Reader(vis, "vision_config", {"patch_size": 14, "init_pos_emb_height": 64, "merge_kernel_size": [2, 2]},
                 defaulted, "MoonViTConfig")
    width, patch = vr.whole("hidden_size"), vr.whole("patch_size")
    kernel = vr.get("merge_kernel_size")
    if not isinstance(kernel, list | tuple) or len(kernel) != 2:
        raise SpecError(f"vision_config.merge_kernel_size: expected [k, k] (whole numbers >= 1), got {kernel!r}")
    kh, kw = (_size(x, f"vision_config.merge_kernel_size[{i}]") for i, x in enumerate(kernel))
    if kh != kw:
        raise SpecError(f"vision_config.merge_kernel_size: [{kh}, {kw}] is not square; lvlmsim merges k x k patches")
    merge = kh * kw
    defaulted.append("in_token_limit=4096 and 4 tags per image (KimiVLImageProcessor / chat template defaults)")
    return {
        "vision": {"name": "MoonViT", "num_layers": vr.whole("num_hidden_layers"), "hidden_size": width,
                   "num_heads": vr.whole("num_attention_heads"),
                   "intermediate_size": vr.whole("intermediate_size"), "mlp_kind": "plain", "patch_size": patch,
                   "image_size": vr.whole("init_pos_emb_height") * patch, "cls_token": False},
        "projector": {"kind": "pixel_shuffle_mlp", "layer_dims": [width * merge, width * merge, llm["hidden_size"]],
                      "merge_factor": merge},
        "llm": llm,
        "tokenization": {"kind": "native_patch_limit", "in_token_limit": 4096, "special_tokens": 4},
    }


def llama4(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """Llama 4: 336 px tiles, pixel-shuffle adapter, MoE every `interleave_moe_layer_step` layers, chunked attention
    in the RoPE layers (`no_rope_layers` 0 marks the NoPE, globally attending ones)."""
    txt = _sub(cfg, "text_config", mt)
    vis = _sub(cfg, "vision_config", mt)
    tr = _Reader(txt, "text_config", {"interleave_moe_layer_step": 1, "attention_chunk_size": 8192,
                                      "num_experts_per_tok": 1, "tie_word_embeddings": False, "use_qk_norm": True},
                 defaulted, "Llama4TextConfig")
    layers, hidden = tr.whole("num_hidden_layers"), tr.whole("hidden_size")
    heads = tr.whole("num_attention_heads")
    step = tr.whole("interleave_moe_layer_step")
    moe_layers = set(range(step - 1, layers, step))
    nope = txt.get("no_rope_layers")
    if nope:
        global_layers = [i for i, use_rope in enumerate(nope) if not use_rope]
    else:
        global_layers = [i for i in range(layers) if (i + 1) % 4 == 0]
        defaulted.append("no_rope_layers: every 4th layer NoPE (Llama4TextConfig default interval 4)")
    width = tr.whole("intermediate_size")
    vr = _Reader(vis, "vision_config", {"pixel_shuffle_ratio": 0.5}, defaulted, "Llama4VisionConfig")
    vh = vr.whole("hidden_size")
    merge = _shuffle_merge(vr.get("pixel_shuffle_ratio"), "vision_config.pixel_shuffle_ratio")
    defaulted.append("max_patches=16 (Llama4ImageProcessor default)")
    return {
        "vision": {"name": "Llama 4 ViT", "num_layers": vr.whole("num_hidden_layers"), "hidden_size": vh,
                   "num_heads": vr.whole("num_attention_heads"),
                   "intermediate_size": vr.whole("intermediate_size"), "mlp_kind": "plain",
                   "patch_size": _side(vr.get("patch_size"), "vision_config.patch_size"),
                   "image_size": _side(vr.get("image_size"), "vision_config.image_size"),
                   "cls_token": True},
        "projector": {"kind": "pixel_shuffle_mlp", "merge_factor": merge,
                      "layer_dims": [vh * merge, vr.whole("projector_input_dim"),
                                     vr.whole("projector_output_dim"), hidden]},
        "llm": {"name": str(txt.get("model_type") or "llama4_text"), "num_layers": layers, "hidden_size": hidden,
                "num_heads": heads, "num_kv_heads": tr.whole("num_key_value_heads"),
                "head_dim": tr.whole("head_dim", hidden // heads),
                "intermediate_size": tr.whole("intermediate_size_mlp"), "mlp_kind": "gated",
                "vocab_size": tr.whole("vocab_size"), "tie_word_embeddings": tr.flag("tie_word_embeddings"),
                "max_position_embeddings": tr.whole("max_position_embeddings"),
                "local_attention": {"kind": "chunked", "window_tokens": tr.whole("attention_chunk_size"),
                                    "global_layers": global_layers},
                # use_qk_norm: an L2 norm of q and k in the RoPE (chunked) layers only (Llama4Attention)
                "qk_norm": "local" if tr.get("use_qk_norm") else "none",
                "moe": {"num_experts": tr.whole("num_local_experts"),
                        "experts_per_token": tr.whole("num_experts_per_tok"), "expert_intermediate_size": width,
                        "shared_experts": 1, "shared_expert_intermediate_size": width,
                        "dense_layers": [i for i in range(layers) if i not in moe_layers]}},
        "tokenization": {"kind": "llama4_tiles", "tile_size": _side(vr.get("image_size"), "vision_config.image_size"),
                         "max_patches": 16},
    }


def glm4v_moe(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """GLM-4.5V: a Qwen2-VL-style native-resolution ViT (3D patches, 2x2 merge) on the GLM-4.5-Air MoE decoder."""
    txt = _sub(cfg, "text_config", mt)
    vis = _sub(cfg, "vision_config", mt)
    tr = _Reader(txt, "text_config", {"tie_word_embeddings": False}, defaulted, "Glm4vMoeTextConfig")
    vr = _Reader(vis, "vision_config", {"temporal_patch_size": 2, "spatial_merge_size": 2}, defaulted,
                 "Glm4vMoeVisionConfig")
    hidden, heads = tr.whole("hidden_size"), tr.whole("num_attention_heads")
    layers = tr.whole("num_hidden_layers")
    vh, out = vr.whole("hidden_size"), vr.whole("out_hidden_size")
    k = vr.whole("spatial_merge_size")
    dense = min(tr.whole("first_k_dense_replace", 0, lo=0), layers)
    expert = tr.whole("moe_intermediate_size")
    defaulted.append("pixels 6272..23520000 per frame (Glm4vImageProcessor size 12544..47040000 over 2 frames)")
    return {
        "vision": {"name": "GLM-4.5V ViT", "num_layers": vr.whole("depth"), "hidden_size": vh,
                   "num_heads": vr.whole("num_heads"), "intermediate_size": out, "mlp_kind": "gated",
                   "patch_size": vr.whole("patch_size"), "temporal_patch_size": vr.whole("temporal_patch_size"),
                   "image_size": vr.whole("image_size"), "cls_token": False},
        "projector": {"kind": "patch_merger", "merge_factor": k * k,
                      "layer_dims": [vh * k * k, out, out, vr.whole("intermediate_size"), out]},
        "llm": {"name": str(txt.get("model_type") or "glm4v_moe_text"), "num_layers": layers, "hidden_size": hidden,
                "num_heads": heads, "num_kv_heads": tr.whole("num_key_value_heads"),
                "head_dim": tr.whole("head_dim", hidden // heads),
                "intermediate_size": tr.whole("intermediate_size"), "mlp_kind": "gated",
                "vocab_size": tr.whole("vocab_size"), "tie_word_embeddings": tr.flag("tie_word_embeddings"),
                "max_position_embeddings": tr.whole("max_position_embeddings"),
                "qk_norm": "self" if tr.get("use_qk_norm", False, required=False) else "none",
                "moe": {"num_experts": tr.whole("n_routed_experts"),
                        "experts_per_token": tr.whole("num_experts_per_tok"), "expert_intermediate_size": expert,
                        "shared_experts": tr.whole("n_shared_experts"), "shared_expert_intermediate_size": expert,
                        "dense_layers": list(range(dense))}},
        "tokenization": {"kind": "dynamic", "min_pixels": 6272, "max_pixels": 23520000, "special_tokens": 2},
    }


IMPORTERS = {"gemma3": gemma3, "deepseek_vl_v2": deepseek_vl_v2, "kimi_vl": kimi_vl, "llama4": llama4,
             "glm4v_moe": glm4v_moe}
ARCHITECTURES = {"Gemma3ForConditionalGeneration": "gemma3", "DeepseekVLV2ForCausalLM": "deepseek_vl_v2",
                 "KimiVLForConditionalGeneration": "kimi_vl", "Llama4ForConditionalGeneration": "llama4",
                 "Glm4vMoeForConditionalGeneration": "glm4v_moe"}
FAMILIES = {"gemma3": "gemma3", "deepseek_vl_v2": "deepseek-vl2", "kimi_vl": "kimi-vl", "llama4": "llama4",
            "glm4v_moe": "glm4v-moe"}

__all__ = ["ARCHITECTURES", "FAMILIES", "IMPORTERS", "deepseek_llm", "deepseek_vl_v2", "gemma3"]
