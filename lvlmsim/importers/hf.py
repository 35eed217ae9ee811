"""Import a Hugging Face ``config.json`` as a ModelSpec dict, offline (json only, no transformers import).

Supported families (``model_type``): llava, llava_next, qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe (dense and
mixture-of-experts Qwen3-VL, with DeepStack), mllama (Llama-3.2-Vision, cross-attention), internvl_chat (OpenGVLab
remote code) and internvl (the transformers-native port). The config's own fields give the shapes (``text_config`` /
``llm_config`` / top level for the LLM, ``vision_config`` for the ViT); what a config.json does not carry (the
tokenization policy's pixel limits, fields the hub file leaves to the sub-model's class defaults, video sampling) is
filled with that family's defaults, and every defaulted value is listed in the result's ``notes``.

Hub quirks handled here:
* llava-hf configs give only a partial ``text_config`` (no hidden_size, layers, ...): LlamaConfig / MistralConfig
  class defaults fill the rest, as transformers itself does.
* Qwen2-VL's ``vision_config.hidden_size`` is the LLM width (3584); the ViT width is ``embed_dim``. Qwen2.5-VL uses
  ``hidden_size`` for the ViT and ``out_hidden_size`` for the LLM.
* Newer transformers releases nest the Qwen text fields under ``text_config``; older ones keep them at the top.
* Qwen pixel limits live in ``preprocessor_config.json``; when it sits next to the config it is read, else the hub
  values (3136 .. 12845056) are used, not the transformers class default (1003520).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from lvlmsim.errors import SpecError
from lvlmsim.specs.base import validate_as
from lvlmsim.specs.model import SIZE_CAPS, ModelSpec

_MAX_SIZE = max(SIZE_CAPS.values())

SUPPORTED_MODEL_TYPES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "mllama",
                         "internvl_chat", "internvl", "gemma3", "deepseek_vl_v2", "kimi_vl", "llama4",
                         "glm4v_moe",  # from gemma3 on: importers.hf_families
                         *("llama", "mistral", "qwen2", "qwen3", "qwen3_moe"))  # text-only LLMs (no vision encoder)
TEXT_ONLY_TYPES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe")

_ARCH_TO_TYPE = {
    "LlavaForConditionalGeneration": "llava",
    "LlavaNextForConditionalGeneration": "llava_next",
    "Qwen2VLForConditionalGeneration": "qwen2_vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl",
    "Qwen3VLForConditionalGeneration": "qwen3_vl",
    "Qwen3VLMoeForConditionalGeneration": "qwen3_vl_moe",
    "MllamaForConditionalGeneration": "mllama",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "InternVLChatModel": "internvl_chat",
    "InternVLForConditionalGeneration": "internvl",
    "Gemma3ForConditionalGeneration": "gemma3",
    "DeepseekVLV2ForCausalLM": "deepseek_vl_v2",
    "KimiVLForConditionalGeneration": "kimi_vl",
    "Llama4ForConditionalGeneration": "llama4",
    "Glm4vMoeForConditionalGeneration": "glm4v_moe",
}

# transformers class defaults for the sub-configs a hub file may leave partial (configuration_<type>.py __init__)
_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "tie_word_embeddings": False},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 32768,
              "tie_word_embeddings": False},
    "internlm2": {"vocab_size": 103168, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "max_position_embeddings": 2048, "tie_word_embeddings": False},
}
_VISION_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
    "siglip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
}
_CLASS_NAMES = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config",
                "internlm2": "InternLM2Config"}
_VISION_HAS_CLS = {"clip_vision_model": True, "siglip_vision_model": False}

_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "half": "fp16", "float": "fp32",
           "float8_e4m3fn": "fp8", "float8_e5m2": "fp8"}

# family defaults for what config.json does not carry
_QWEN_MIN_PIXELS, _QWEN_MAX_PIXELS = 3136, 12845056  # hub preprocessor_config.json (56*56 .. 16384*28*28)
_QWEN_VIDEO = {"fps": 2.0, "max_frames": 768, "min_frames": 4, "min_pixels": 128 * 28 * 28,
               "max_pixels": 768 * 28 * 28, "total_pixels": 24576 * 28 * 28}  # qwen-vl-utils
_INTERNVL_VIDEO = {"fps": 1.0, "max_frames": 32, "frame_width": 448, "frame_height": 448, "max_tiles_per_frame": 1}
_LLAVA_NEXT_VIDEO = {"fps": 1.0, "max_frames": 3, "frame_width": 336, "frame_height": 336}


class _Reader:
    """Reads fields from one (sub-)config, filling class defaults and remembering which ones were defaulted."""

    def __init__(self, cfg: dict[str, Any], where: str, defaults: dict[str, Any], defaulted: list[str],
                 default_label: str):
        self.cfg, self.where, self.defaults, self.defaulted, self.label = cfg, where, defaults, defaulted, default_label

    def whole(self, key: str, fallback: Any = None, *, required: bool = True, lo: int = 1) -> int | None:
        """get() of a field that must be a whole number (a size, a count): '4096', 1.5, true or a count below `lo`
        are refused by name."""
        value = self.get(key, fallback, required=required)
        if value is None:
            return None
        return _size(value, _at(self.where, key), lo=lo, layers="layers" in key or key == "depth")

    def flag(self, key: str, fallback: Any = None) -> bool:
        """get() of a field that must be a JSON boolean."""
        return _flag(self.get(key, fallback), _at(self.where, key))

    def ratio(self, key: str, fallback: Any = None) -> float:
        """get() of a field that must be a finite number > 0 (an MLP ratio, a shuffle ratio)."""
        return _positive(self.get(key, fallback), _at(self.where, key))

    def get(self, key: str, fallback: Any = None, *, required: bool = True) -> Any:
        if key in self.cfg and self.cfg[key] is not None:
            return self.cfg[key]
        if key in self.defaults:
            self.defaulted.append(f"{_at(self.where, key)}={self.defaults[key]} ({self.label} default)")
            return self.defaults[key]
        if fallback is not None:
            return fallback
        if required:
            raise SpecError(f"{_at(self.where, key)}: missing from the config and no default is known")
        return None


def _whole(value: Any, where: str, lo: int = 1, hi: int | None = None) -> int:
    """`value` as an int when it is one in lo..hi (4096, or 4096.0 as some configs write it); else a SpecError
    naming `where` and the allowed range ('4096', 1.5, true, NaN and -1 are refused, never truncated)."""
    allowed = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        n = int(value)
    else:
        raise SpecError(f"{where}: expected a whole number {allowed}, got {value!r}")
    if n < lo or (hi is not None and n > hi):
        raise SpecError(f"{where}: expected a whole number {allowed}, got {n}")
    return n


def _size(value: Any, where: str, *, lo: int = 1, layers: bool = False) -> int:
    """A size or count: a whole number >= `lo` and no larger than any real model's (SIZE_CAPS), checked before any
    list is built from it (range(10**15) layers hung the importer)."""
    n = _whole(value, where, lo)
    cap = SIZE_CAPS["num_layers"] if layers else _MAX_SIZE
    if n > cap:
        raise SpecError(f"{where}: {value!r} is beyond any real model (at most {cap})")
    return n


def _at(where: str, key: str) -> str:
    """A config field's path: 'text_config.hidden_size', or 'hidden_size' at the top level (where == '')."""
    return f"{where}.{key}" if where else key


def _positive(value: Any, where: str) -> float:
    """A finite number > 0 (a ratio); strings, booleans, NaN, 0 and negatives are refused by name."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise SpecError(f"{where}: expected a finite number > 0, got {value!r}")


def _flag(value: Any, where: str) -> bool:
    """A JSON boolean: "false" (a string) read as true before."""
    if isinstance(value, bool):
        return value
    raise SpecError(f"{where}: expected true or false, got {value!r}")


def _indexes(value: Any, where: str) -> list[int]:
    """A list of layer indexes (whole numbers >= 0); the spec checks them against the layer count."""
    if not isinstance(value, list | tuple):
        raise SpecError(f"{where}: expected a list of layer indexes (whole numbers >= 0), got {value!r}")
    return [_whole(v, f"{where}[{i}]", 0) for i, v in enumerate(value)]


def _pairs(value: Any, where: str) -> list[list[int]]:
    """A list of [height, width] pairs in pixels (LLaVA-NeXT grid pinpoints, DeepSeek-VL2 candidate resolutions)."""
    if not isinstance(value, list | tuple) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        raise SpecError(f"{where}: expected a list of [height, width] pairs in pixels, got {value!r}")
    return [[_size(a, f"{where}[{i}][0]"), _size(b, f"{where}[{i}][1]")] for i, (a, b) in enumerate(value)]


def _shuffle_merge(value: Any, where: str) -> int:
    """Tokens merged into one by a pixel shuffle of ratio 1/k (0.5: 2x2 -> 4). A ratio whose inverse is not whole
    (0.3 was rounded to a merge of 11) is refused."""
    r = _positive(value, where)
    k = round(1 / r)
    if r > 1 or k < 1 or abs(1 / r - k) > 1e-6 * k:
        raise SpecError(f"{where}: expected 1/k for a whole k >= 1 (0.5 merges 2 x 2 patches into one token), got "
                        f"{value!r}")
    return k * k


def _non_finite(doc: Any, where: str = "") -> str | None:
    """The key path of the first NaN or Infinity in a parsed config (Python's json accepts them), or None."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return where or "(top level)"
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}.{k}" if where else str(k))
        if found:
            return found
    return None


def _load(path_or_dict: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    if isinstance(path_or_dict, dict):
        return path_or_dict, None
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: file not found") from exc
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not text (not UTF-8); expected a transformers config.json") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a JSON object, got {type(data).__name__}")
    bad = _non_finite(data)
    if bad:
        raise SpecError(f"{path}: {bad}: expected a finite number, got NaN or Infinity")
    return data, path


def _check_architectures(cfg: dict[str, Any], path: Path | None) -> None:
    """`architectures` (top level, text_config, vision_config) is a list of class names where given: a number or a
    list of numbers was reported only as 'a field holds a value the importer cannot use'."""
    subs = (("", cfg), ("text_config.", cfg.get("text_config")), ("vision_config.", cfg.get("vision_config")))
    for where, sub in subs:
        archs = sub.get("architectures") if isinstance(sub, dict) else None
        if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
            raise SpecError(f"{path or 'config'}: {where}architectures: expected a list of class names such as "
                            f"[\"LlavaForConditionalGeneration\"], got {archs!r}")


def _model_type(cfg: dict[str, Any]) -> str:
    mt = cfg.get("model_type")
    if not mt:
        for arch in cfg.get("architectures") or []:
            if arch in _ARCH_TO_TYPE:
                return _ARCH_TO_TYPE[arch]
    if mt not in SUPPORTED_MODEL_TYPES:
        archs = ", ".join(cfg.get("architectures") or []) or "none"
        raise SpecError(
            f"model_type: '{mt}' (architectures: {archs}) is not supported by the HF importer; supported "
            f"model_type values: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return str(mt)


def _sub(cfg: dict[str, Any], key: str, mt: str) -> dict[str, Any]:
    sub = cfg.get(key)
    if not isinstance(sub, dict):
        raise SpecError(f"{key}: missing from the config (needed for model_type '{mt}')")
    return sub


def _dtype(cfg: dict[str, Any], defaulted: list[str]) -> str:
    raw = cfg.get("torch_dtype") or cfg.get("dtype")
    if raw is None:
        for key in ("text_config", "llm_config"):
            sub = cfg.get(key)
            if isinstance(sub, dict) and (sub.get("torch_dtype") or sub.get("dtype")):
                raw = sub.get("torch_dtype") or sub.get("dtype")
                break
    if raw is None:
        defaulted.append("dtype=bf16 (torch_dtype not given)")
        return "bf16"
    name = str(raw).replace("torch.", "")
    if name not in _DTYPES:  # a typo would otherwise size every weight as bf16 without a word
        raise SpecError(f"torch_dtype: {raw!r} is not a dtype the importer knows; allowed: {', '.join(_DTYPES)} "
                        "(with or without 'torch.'), or leave it out for bf16")
    return _DTYPES[name]


def _llm(sub: dict[str, Any], where: str, defaulted: list[str]) -> dict[str, Any]:
    """A LanguageModelSpec dict from a text/llm config (or the top level of a Qwen config)."""
    sub_type = str(sub.get("model_type") or "llama")
    base = sub_type.split("_")[0] if sub_type not in _TEXT_DEFAULTS else sub_type
    r = _Reader(sub, where, _TEXT_DEFAULTS.get(base, {}), defaulted, _CLASS_NAMES.get(base, f"{base} config"))
    hidden = r.whole("hidden_size")
    heads = r.whole("num_attention_heads")
    kv = sub.get("num_key_value_heads")
    if kv is None:
        kv = r.defaults.get("num_key_value_heads", heads)
        defaulted.append(f"{_at(where, 'num_key_value_heads')}={kv} (absent: the {base} default)")
    head_dim = r.whole("head_dim", hidden // heads)
    name = sub.get("_name_or_path") or (sub.get("architectures") or [sub_type])[0]
    out = {
        "name": str(name),
        "num_layers": r.whole("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": _size(kv, _at(where, "num_key_value_heads")),
        "head_dim": head_dim,
        "intermediate_size": r.whole("intermediate_size"),
        "mlp_kind": "gated",
        "vocab_size": r.whole("vocab_size"),
        "tie_word_embeddings": r.flag("tie_word_embeddings", False),
        "max_position_embeddings": r.whole("max_position_embeddings"),
    }
    if sub_type.startswith("qwen3"):  # Qwen3 / Qwen3-MoE / Qwen3-VL text: Qwen3Attention's per-head q_norm, k_norm
        out["qk_norm"] = "self"
    moe = _moe(sub, out["num_layers"], where)
    if moe:
        out["moe"] = moe
    return out


def _moe(sub: dict[str, Any], num_layers: int, where: str) -> dict[str, Any] | None:
    """MoESpec fields from Qwen-MoE style keys (num_experts, num_experts_per_tok, moe_intermediate_size,
    decoder_sparse_step, mlp_only_layers, shared_expert_intermediate_size); None for a dense config."""
    n_key = "num_experts" if sub.get("num_experts") is not None else "num_local_experts"
    if not sub.get(n_key):
        return None
    for key in ("num_experts_per_tok", "moe_intermediate_size"):
        if not sub.get(key):
            raise SpecError(f"{_at(where, key)}: missing from a mixture-of-experts config ({n_key} {sub[n_key]!r})")
    r = _Reader(sub, where, {}, [], "")
    step = r.whole("decoder_sparse_step", 1)
    only = set(_indexes(sub.get("mlp_only_layers") or [], _at(where, "mlp_only_layers")))
    dense = sorted(i for i in range(num_layers) if i in only or (i + 1) % step)
    out: dict[str, Any] = {"num_experts": r.whole(n_key), "experts_per_token": r.whole("num_experts_per_tok"),
                           "expert_intermediate_size": r.whole("moe_intermediate_size")}
    if sub.get("shared_expert_intermediate_size"):
        out.update(shared_experts=1, shared_expert_intermediate_size=r.whole("shared_expert_intermediate_size"))
    if dense:
        out["dense_layers"] = dense
    return out


def _layers_used(num_layers: int, feature_layer: Any, where: str) -> int | None:
    """Layers the ViT must run to produce the selected hidden state (hidden_states[0] is the embedding output;
    `where` names the config field: an index of hidden_states, -(num_layers + 1)..num_layers)."""
    if isinstance(feature_layer, list | tuple):
        if not feature_layer:
            return None
        used = [_layers_used(num_layers, f, where) or num_layers for f in feature_layer]
        top = max(used)
        return None if top >= num_layers else top
    if feature_layer is None:
        return None
    f = _whole(feature_layer, where, -(num_layers + 1), num_layers)
    used = num_layers + 1 + f if f < 0 else f
    return None if used >= num_layers or used <= 0 else used


def _side(value: Any, where: str) -> int:
    """image_size / patch_size given as an int, an [h, w] pair or a {height | shortest_edge} dict; `where` names
    the config field."""
    if isinstance(value, list | tuple):
        if not value:
            raise SpecError(f"{where}: expected a size in pixels or an [height, width] pair, got {value!r}")
        return _size(value[0], f"{where}[0]")
    if isinstance(value, dict):
        key = "height" if value.get("height") is not None else "shortest_edge"
        return _size(value.get(key), f"{where}.{key}")
    return _size(value, where)


def _llava(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    vis, txt = _sub(cfg, "vision_config", mt), _sub(cfg, "text_config", mt)
    vtype = str(vis.get("model_type") or "clip_vision_model")
    r = _Reader(vis, "vision_config", _VISION_DEFAULTS.get(vtype, {}), defaulted, vtype)
    n_layers = r.whole("num_hidden_layers")
    vh = r.whole("hidden_size")
    image = _side(r.get("image_size"), "vision_config.image_size")
    patch = _side(r.get("patch_size"), "vision_config.patch_size")
    feature_layer = cfg.get("vision_feature_layer", -2)
    if "vision_feature_layer" not in cfg:
        defaulted.append("vision_feature_layer=-2 (LlavaConfig default)")
    n_feat = len(feature_layer) if isinstance(feature_layer, list | tuple) else 1
    llm = _llm(txt, "text_config", defaulted)
    vision = {
        "name": str(vis.get("_name_or_path") or vtype),
        "num_layers": n_layers,
        "hidden_size": vh,
        "num_heads": r.whole("num_attention_heads"),
        "intermediate_size": r.whole("intermediate_size"),
        "mlp_kind": "plain",
        "patch_size": patch,
        "image_size": image,
        "cls_token": _VISION_HAS_CLS.get(vtype, True),
    }
    used = _layers_used(n_layers, feature_layer, "vision_feature_layer")
    if used is not None:
        vision["layers_used"] = used
    out: dict[str, Any] = {
        "vision": vision,
        "projector": {"kind": "mlp", "layer_dims": [vh * n_feat, llm["hidden_size"], llm["hidden_size"]]},
        "llm": llm,
    }
    if mt == "llava":
        out["tokenization"] = {"kind": "fixed", "image_size": image}
    else:
        pins = cfg.get("image_grid_pinpoints")
        if not pins:
            pins = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
            defaulted.append("image_grid_pinpoints (LlavaNextConfig default 336-px pinpoints)")
        newline = cfg.get("use_image_newline_parameter")
        if newline is None:
            newline = True
            defaulted.append("use_image_newline_parameter=true")
        out["tokenization"] = {"kind": "anyres", "crop_size": image,
                               "grid_pinpoints": _pairs(pins, "image_grid_pinpoints"),
                               "newline_token": _flag(newline, "use_image_newline_parameter")}
        out["video"] = dict(_LLAVA_NEXT_VIDEO, frame_width=image, frame_height=image)
        defaulted.append("video (frames as AnyRes images, 1 fps, at most 3 frames: lvlmsim's llava-next default)")
    return out


def _qwen(cfg: dict[str, Any], mt: str, defaulted: list[str],
          preprocessor: dict[str, Any] | None) -> dict[str, Any]:
    vis = _sub(cfg, "vision_config", mt)
    txt = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else None
    if txt is None or "hidden_size" not in txt:
        txt = {**cfg, "model_type": "qwen2"}  # older releases keep the text fields at the top level
        where = ""  # the top level: fields are named by their own key
    else:
        txt = {**txt, "model_type": "qwen2"}
        where = "text_config"
    llm = _llm(txt, where, defaulted)
    llm["name"] = "Qwen2 decoder"
    vr = _Reader(vis, "vision_config", {}, defaulted, mt)
    merge = vr.whole("spatial_merge_size", 2)
    if mt == "qwen2_vl":
        width = vr.whole("embed_dim")
        inter = int(width * vr.ratio("mlp_ratio", 4))  # Qwen2-VL's VisionBlock: int(dim * mlp_ratio)
        out_hidden = vr.whole("hidden_size", llm["hidden_size"])
        mlp_kind, window = "plain", None
    else:
        width = vr.whole("hidden_size")
        inter = vr.whole("intermediate_size")
        out_hidden = vr.whole("out_hidden_size", llm["hidden_size"])
        mlp_kind = "gated"
        window = {"window_size_px": vr.whole("window_size", 112),
                  "full_attention_layers": _indexes(vr.get("fullatt_block_indexes", [7, 15, 23, 31]),
                                                    "vision_config.fullatt_block_indexes")}
    tps = vr.whole("temporal_patch_size", 2)
    vision: dict[str, Any] = {
        "name": "Qwen2-VL ViT" if mt == "qwen2_vl" else "Qwen2.5-VL ViT (window attention)",
        "num_layers": vr.whole("depth"),
        "hidden_size": width,
        "num_heads": vr.whole("num_heads"),
        "intermediate_size": inter,
        "mlp_kind": mlp_kind,
        "patch_size": vr.whole("patch_size", 14),
        "temporal_patch_size": tps,
        "image_size": 448,
        "cls_token": False,
    }
    defaulted.append("vision.image_size=448 (nominal: the ViT has no fixed input size)")
    if window:
        vision["window"] = window
    min_px = _pixels(preprocessor, "min_pixels", "shortest_edge", "preprocessor_config.json")
    max_px = _pixels(preprocessor, "max_pixels", "longest_edge", "preprocessor_config.json")
    if min_px is None:
        min_px = _QWEN_MIN_PIXELS
        defaulted.append(f"tokenization.min_pixels={_QWEN_MIN_PIXELS} (hub preprocessor_config value)")
    if max_px is None:
        max_px = _QWEN_MAX_PIXELS
        defaulted.append(f"tokenization.max_pixels={_QWEN_MAX_PIXELS} (hub preprocessor_config value; the "
                         "transformers class default is 1003520)")
    d = width * merge * merge
    defaulted.append("video (qwen-vl-utils defaults: 2 fps, 4..768 frames, 128..768 x 28^2 px per frame, "
                     "24576 x 28^2 px per clip)")
    return {
        "vision": vision,
        "projector": {"kind": "patch_merger", "layer_dims": [d, d, out_hidden], "merge_factor": merge * merge},
        "llm": llm,
        "tokenization": {"kind": "dynamic", "min_pixels": min_px, "max_pixels": max_px,
                         "special_tokens": 2},
        "video": dict(_QWEN_VIDEO, temporal_patch_size=tps),
    }


def _pixel_limits(pp: dict[str, Any] | None, fallback: tuple[int, int], what: str,
                  defaulted: list[str]) -> tuple[int, int]:
    """(min, max) pixels from a (video_)preprocessor_config.json: min/max_pixels or size.shortest/longest_edge."""
    file = "preprocessor_config.json" if what == "image" else "video_preprocessor_config.json"
    lo = _pixels(pp, "min_pixels", "shortest_edge", file)
    hi = _pixels(pp, "max_pixels", "longest_edge", file)
    if lo is None or hi is None:
        defaulted.append(f"{what} pixel limits {fallback[0]}..{fallback[1]} (hub Qwen3-VL processor values)")
    return lo or fallback[0], hi or fallback[1]


def _pixels(pp: dict[str, Any] | None, key: str, size_key: str, file: str) -> int | None:
    """A processor's pixel bound: `key` (min_pixels / max_pixels) or size.`size_key`, a whole number of pixels >= 1
    (named by file and field when it is not), or None when the processor config gives neither."""
    pp = pp or {}
    size = pp.get("size") if isinstance(pp.get("size"), dict) else {}
    if pp.get(key) is not None:
        return _whole(pp[key], f"{file}: {key}")
    if size.get(size_key) is not None:
        return _whole(size[size_key], f"{file}: size.{size_key}")
    return None


_QWEN3_IMAGE_PX = (65536, 16777216)  # Qwen3-VL preprocessor_config.json size shortest_edge / longest_edge
_QWEN3_VIDEO_PX = (4096, 25165824)  # video_preprocessor_config.json: bounds on the whole clip


def _qwen3(cfg: dict[str, Any], mt: str, defaulted: list[str], preprocessor: dict[str, Any] | None,
           video_pp: dict[str, Any] | None) -> dict[str, Any]:
    """Qwen3-VL (dense) and Qwen3-VL-MoE: SigLIP-2-style ViT with learned positions, 2x2 merger, DeepStack."""
    vis, txt = _sub(cfg, "vision_config", mt), _sub(cfg, "text_config", mt)
    llm = _llm({**txt, "tie_word_embeddings": txt.get("tie_word_embeddings", cfg.get("tie_word_embeddings"))},
               "text_config", defaulted)
    llm["name"] = "Qwen3 decoder" + (" (MoE)" if "moe" in llm else "")
    vr = _Reader(vis, "vision_config", {}, defaulted, mt)
    width, patch = vr.whole("hidden_size"), vr.whole("patch_size")
    merge = vr.whole("spatial_merge_size", 2)
    grid = _grid_side(vr.whole("num_position_embeddings"), "vision_config.num_position_embeddings")
    tps = vr.whole("temporal_patch_size", 2)
    d = width * merge * merge
    min_px, max_px = _pixel_limits(preprocessor, _QWEN3_IMAGE_PX, "image", defaulted)
    vmin, vmax = _pixel_limits(video_pp, _QWEN3_VIDEO_PX, "video", defaulted)
    defaulted.append("video sampling (Qwen3VLVideoProcessor defaults: 2 fps, 4..768 frames)")
    return {
        "vision": {"name": f"Qwen3-VL ViT ({vr.whole('depth')} layers)", "num_layers": vr.whole("depth"),
                   "hidden_size": width, "num_heads": vr.whole("num_heads"),
                   "intermediate_size": vr.whole("intermediate_size"), "mlp_kind": "plain", "patch_size": patch,
                   "temporal_patch_size": tps, "image_size": grid * patch, "cls_token": False},
        "projector": {"kind": "patch_merger", "layer_dims": [d, d, vr.whole("out_hidden_size", llm["hidden_size"])],
                      "merge_factor": merge * merge,
                      "deepstack_mergers": len(_indexes(vis.get("deepstack_visual_indexes") or [],
                                                        "vision_config.deepstack_visual_indexes"))},
        "llm": llm,
        "tokenization": {"kind": "dynamic", "min_pixels": min_px, "max_pixels": max_px, "special_tokens": 2},
        "video": {"fps": 2.0, "max_frames": 768, "min_frames": 4, "frame_width": 448, "frame_height": 448,
                  "temporal_patch_size": tps, "min_pixels": vmin, "total_pixels": vmax, "sampling": "qwen3_vl"},
    }


def _grid_side(n: int, where: str) -> int:
    """The side of the square grid of `n` learned positions (Qwen3-VL: num_grid_per_side = n ** 0.5)."""
    side = math.isqrt(n)
    if side * side != n:
        raise SpecError(f"{where}: expected a square number of positions (a grid side squared, such as 2304 = 48^2), "
                        f"got {n}")
    return side


def _text_only(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """A plain decoder (the text backbone of a VLM, to compare side by side): only `llm`, no vision parts."""
    llm = _llm({**cfg, "model_type": mt}, "", defaulted)
    llm["name"] = str(cfg.get("_name_or_path") or (cfg.get("architectures") or [mt])[0])
    window = cfg.get("sliding_window")
    if window and cfg.get("use_sliding_window", mt == "mistral"):  # Mistral: every layer slides (no global layer)
        llm["local_attention"] = {"kind": "sliding", "window_tokens": _size(window, "sliding_window"),
                                  "global_layers": []}
    return {"llm": llm}


def _mllama(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    """Llama-3.2-Vision: local + global ViT over 560-px tiles; image states feed cross-attention layers."""
    vis, txt = _sub(cfg, "vision_config", mt), _sub(cfg, "text_config", mt)
    vdef = {"hidden_size": 1280, "attention_heads": 16, "intermediate_size": 5120, "num_hidden_layers": 32,
            "num_global_layers": 8, "image_size": 560, "patch_size": 14, "max_num_tiles": 4,
            "vision_output_dim": 7680}
    vr = _Reader(vis, "vision_config", vdef, defaulted, "MllamaVisionConfig")
    llm = _llm({**txt, "model_type": "llama"}, "text_config", defaulted)
    llm["name"] = "Llama 3.1 decoder with cross-attention layers"
    cross = txt.get("cross_attention_layers")
    if cross is None:
        raise SpecError("text_config.cross_attention_layers: missing from the mllama config")
    llm["cross_attention_layers"] = _indexes(cross, "text_config.cross_attention_layers")
    llm["qk_norm"] = "cross"  # MllamaTextCrossAttention's q_norm / k_norm; the self-attention layers have none
    tile = _side(vr.get("image_size"), "vision_config.image_size")
    return {
        "vision": {"name": "Mllama ViT (local + gated global)",
                   "num_layers": vr.whole("num_hidden_layers") + vr.whole("num_global_layers"),
                   "hidden_size": vr.whole("hidden_size"), "num_heads": vr.whole("attention_heads"),
                   "intermediate_size": vr.whole("intermediate_size"), "mlp_kind": "plain",
                   "patch_size": _side(vr.get("patch_size"), "vision_config.patch_size"), "image_size": tile,
                   "cls_token": True},
        "projector": {"kind": "linear", "layer_dims": [vr.whole("vision_output_dim"), llm["hidden_size"]]},
        "llm": llm,
        "tokenization": {"kind": "mllama_tiles", "tile_size": tile, "max_num_tiles": vr.whole("max_num_tiles"),
                         "pad_to_max_tiles": False},
    }


def _internvl(cfg: dict[str, Any], mt: str, defaulted: list[str]) -> dict[str, Any]:
    vis = _sub(cfg, "vision_config", mt)
    txt = _sub(cfg, "llm_config" if mt == "internvl_chat" else "text_config", mt)
    where = "llm_config" if mt == "internvl_chat" else "text_config"
    llm = _llm(txt, where, defaulted)
    vr = _Reader(vis, "vision_config", {}, defaulted, mt)
    n_layers = vr.whole("num_hidden_layers")
    vh = vr.whole("hidden_size")
    forced = cfg.get("force_image_size")
    tile = _side(forced or vr.get("image_size"), "force_image_size" if forced else "vision_config.image_size")
    merge = _shuffle_merge(cfg.get("downsample_ratio", 0.5), "downsample_ratio")
    layer_key = "select_layer" if "select_layer" in cfg else "vision_feature_layer"
    feature_layer = cfg.get(layer_key, -1)
    vision: dict[str, Any] = {
        "name": str(vis.get("_name_or_path") or (vis.get("architectures") or ["InternViT"])[0]),
        "num_layers": n_layers,
        "hidden_size": vh,
        "num_heads": vr.whole("num_attention_heads"),
        "intermediate_size": vr.whole("intermediate_size"),
        "mlp_kind": "plain",
        "patch_size": _side(vr.get("patch_size"), "vision_config.patch_size"),
        "image_size": tile,
        "cls_token": True,
    }
    used = _layers_used(n_layers, feature_layer, layer_key)
    if used is not None:
        vision["layers_used"] = used
    if mt == "internvl_chat":
        dynamic = _flag(cfg.get("dynamic_image_size", True), "dynamic_image_size")
        min_num = _size(cfg.get("min_dynamic_patch", 1), "min_dynamic_patch")
        max_num = _size(cfg.get("max_dynamic_patch", 12), "max_dynamic_patch") if dynamic else 1
        thumb = _flag(cfg.get("use_thumbnail", True), "use_thumbnail")
        for key, val in (("min_dynamic_patch", 1), ("max_dynamic_patch", 12), ("use_thumbnail", True)):
            if key not in cfg:
                defaulted.append(f"{key}={val} (InternVL 2.5 default)")
    else:
        min_num, max_num, thumb = 1, 12, True
        defaulted.append("tiles min 1 / max 12 / thumbnail (InternVL processor defaults; not in config.json)")
    defaulted.append("video (frames as single 448-px tiles, 1 fps up to 32 frames: lvlmsim's InternVL default)")
    return {
        "vision": vision,
        "projector": {"kind": "pixel_shuffle_mlp", "layer_dims": [vh * merge, llm["hidden_size"],
                                                                  llm["hidden_size"]], "merge_factor": merge},
        "llm": llm,
        "tokenization": {"kind": "tiles", "tile_size": tile, "min_num": min_num, "max_num": max_num,
                         "use_thumbnail": thumb, "special_tokens": 2},
        "video": dict(_INTERNVL_VIDEO, frame_width=tile, frame_height=tile),
    }


_FAMILY = {"llava": "llava", "llava_next": "llava-next", "qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl",
           "qwen3_vl": "qwen3-vl", "qwen3_vl_moe": "qwen3-vl", "mllama": "mllama", "internvl_chat": "internvl",
           "internvl": "internvl", "gemma3": "gemma3", "deepseek_vl_v2": "deepseek-vl2", "kimi_vl": "kimi-vl",
           "llama4": "llama4", "glm4v_moe": "glm4v-moe", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2",
           "qwen3": "qwen3", "qwen3_moe": "qwen3-moe"}


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")
    return s or "imported-model"


def _sibling(path: Path | None, name: str) -> dict[str, Any] | None:
    """A processor config next to config.json, parsed, or None."""
    if path is None or not (path.parent / name).is_file():
        return None
    try:
        return json.loads((path.parent / name).read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path.parent / name}: not valid JSON ({exc.msg})") from exc


def import_hf_config(path_or_dict: str | Path | dict[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
    """A dict that validates as ModelSpec, from a transformers config.json (a path, its folder, or the parsed dict).

    A `preprocessor_config.json` next to the config is read for the Qwen pixel limits. Unsupported families raise
    SpecError naming `model_type` and the supported ones.
    """
    if model_id is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", model_id):
        raise SpecError(f"--id: expected a lower-case id of letters, digits, '.' and '-' such as qwen3-vl-8b, got "
                        f"{model_id!r}")
    cfg, path = _load(path_or_dict)
    _check_architectures(cfg, path)
    try:
        return _import(cfg, path, model_id)
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:  # a field not read through whole()
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{path or 'config'}: a field holds a value the {_model_type(cfg)} importer cannot use: a "
                        f"zero, an empty list or a wrong type where a size is expected ({type(exc).__name__}: "
                        f"{exc})") from None


def _import(cfg: dict[str, Any], path: Path | None, model_id: str | None) -> dict[str, Any]:
    mt = _model_type(cfg)
    defaulted: list[str] = []
    preprocessor = _sibling(path, "preprocessor_config.json")
    if mt in ("llava", "llava_next"):
        body = _llava(cfg, mt, defaulted)
    elif mt in ("qwen2_vl", "qwen2_5_vl"):
        body = _qwen(cfg, mt, defaulted, preprocessor)
    elif mt in ("qwen3_vl", "qwen3_vl_moe"):
        body = _qwen3(cfg, mt, defaulted, preprocessor, _sibling(path, "video_preprocessor_config.json"))
    elif mt == "mllama":
        body = _mllama(cfg, mt, defaulted)
    elif mt in ("internvl_chat", "internvl"):
        body = _internvl(cfg, mt, defaulted)
    elif mt in TEXT_ONLY_TYPES:
        body = _text_only(cfg, mt, defaulted)
    else:
        from lvlmsim.importers.hf_families import IMPORTERS

        body = IMPORTERS[mt](cfg, mt, defaulted)

    dtype = _dtype(cfg, defaulted)
    raw_name = cfg.get("_name_or_path") or (path.parent.name if path is not None else None)
    name = str(raw_name or (cfg.get("architectures") or [mt])[0])
    name = name.rstrip("/").split("/")[-1]
    src = str(path) if path is not None else "a config dict"
    notes = f"Imported from {src} (model_type {mt}) by lvlmsim.importers.hf."
    if defaulted:
        notes += " Defaulted (not in the config): " + "; ".join(defaulted) + "."
    spec: dict[str, Any] = {
        "id": model_id or _slug(name),
        "name": name,
        "family": _FAMILY[mt],
        "source": f"{src}: Hugging Face config.json, model_type {mt}, architectures "
                  f"{', '.join(cfg.get('architectures') or ['?'])}",
        **body,
        "dtype": dtype,
        "notes": notes,
    }
    validate_as(ModelSpec, spec, src)  # fail here, naming the field, rather than at the caller
    return spec


def import_hf_to_yaml(path: str | Path | dict[str, Any], *, model_id: str | None = None) -> str:
    """The model YAML (as text, ready for workloads/models/<id>.yaml) for a transformers config.json."""
    spec = import_hf_config(path, model_id=model_id)
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True)


__all__ = ["SUPPORTED_MODEL_TYPES", "import_hf_config", "import_hf_to_yaml"]
