"""The model zoo: every YAML loads, the required ids exist, shapes match the verified configs, typos are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lvlmsim.errors import SpecError
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.registry import load_model, model_ids, models_dir

REQUIRED = [
    "llava-1.5-7b", "llava-1.5-13b", "llava-next-7b", "qwen2-vl-7b", "qwen2.5-vl-7b", "internvl2.5-8b",
    "llama-3.2-11b-vision", "phi-3.5-vision", "minicpm-v-2.6",
    "qwen3-vl-2b", "qwen3-vl-8b", "qwen3-vl-32b", "qwen3-vl-30b-a3b", "qwen3-vl-235b-a22b", "qwen2.5-vl-72b",
]


# Models whose config sets head_dim explicitly so that heads x head_dim != hidden_size (checked against config.json).
QUERY_NARROWER_THAN_HIDDEN = {"gemma-3-27b": "32 heads x head_dim 128 = 4096 < hidden_size 5376",
                              "gemma-3-4b": "8 heads x head_dim 256 = 2048 < hidden_size 2560",
                              "glm-4.5v": "96 heads x head_dim 128 = 12288 > hidden_size 4096 (GLM-4.5-Air)"}


def test_required_ids_present():
    ids = model_ids()
    missing = [m for m in REQUIRED if m not in ids]
    assert not missing, f"missing model YAMLs: {missing}"


@pytest.mark.parametrize("mid", sorted(p.stem for p in models_dir().glob("*.yaml")))
def test_every_yaml_loads(mid):
    m = load_model(mid)
    assert isinstance(m, ModelSpec)
    assert m.id == mid, "file stem must equal id"
    assert m.source.strip() and m.notes.strip()
    # attention width heads x head_dim equals hidden for most LLMs but not for Qwen3 (30B-A3B: 32 x 128 heads over a
    # 2048-wide stream; 32B: 64 x 128 over 5120), so only the dense pre-Qwen3 zoo is held to it
    if m.family != "qwen3-vl" and mid not in QUERY_NARROWER_THAN_HIDDEN and m.llm.mla is None:  # MLA: own dims
        assert m.llm.hidden_size == m.llm.num_heads * m.llm.head_dim
    assert m.projector.layer_dims[-1] == m.llm.hidden_size, "projector must end at the LLM width"
    hash(m)  # specs key lru caches


def test_llava_shapes():
    m7, m13 = load_model("llava-1.5-7b"), load_model("llava-1.5-13b")
    assert m7.vision.layers_used == 23 and m7.vision.num_layers == 24 and m7.vision.cls_token
    assert m7.projector.layer_dims == [1024, 4096, 4096]
    assert m13.projector.layer_dims == [1024, 5120, 5120]
    assert (m13.llm.num_layers, m13.llm.hidden_size, m13.llm.num_heads, m13.llm.intermediate_size) == (
        40, 5120, 40, 13824)
    nxt = load_model("llava-next-7b")
    assert nxt.tokenization.kind == "anyres"
    assert [tuple(p) for p in nxt.tokenization.grid_pinpoints] == [
        (336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]
    assert nxt.video is not None


def test_qwen_shapes():
    q2, q25 = load_model("qwen2-vl-7b"), load_model("qwen2.5-vl-7b")
    for m in (q2, q25):
        assert m.projector.kind == "patch_merger" and m.projector.merge_factor == 4
        assert m.projector.layer_dims == [5120, 5120, 3584]
        assert m.vision.patch_size == 14 and m.vision.temporal_patch_size == 2
        assert (m.tokenization.min_pixels, m.tokenization.max_pixels) == (3136, 12845056)
        assert m.video is not None and m.video.temporal_patch_size == 2
        assert (m.llm.num_layers, m.llm.num_kv_heads, m.llm.head_dim) == (28, 4, 128)
    assert q2.vision.window is None and q2.vision.mlp_kind == "plain" and q2.vision.intermediate_size == 5120
    assert q25.vision.mlp_kind == "gated" and q25.vision.intermediate_size == 3420
    assert q25.vision.window.window_size_px == 112
    assert q25.vision.window.full_attention_layers == [7, 15, 23, 31]


def test_internvl_and_mllama_shapes():
    iv = load_model("internvl2.5-8b")
    assert iv.projector.kind == "pixel_shuffle_mlp" and iv.projector.layer_dims == [4096, 4096, 4096]
    assert iv.projector.merge_factor == 4
    assert (iv.tokenization.tile_size, iv.tokenization.max_num, iv.tokenization.use_thumbnail) == (448, 12, True)
    assert (iv.llm.num_kv_heads, iv.llm.vocab_size) == (8, 92553)
    ml = load_model("llama-3.2-11b-vision")
    assert ml.llm.cross_attention_layers == [3, 8, 13, 18, 23, 28, 33, 38]
    assert ml.llm.num_layers == 40 and ml.llm.self_attention_layers == 32
    assert ml.image_tokens_in_kv_of_cross_attention
    assert ml.vision.num_layers == 40 and ml.vision.image_size == 560
    assert ml.projector.layer_dims == [7680, 4096]
    assert ml.video is None


def test_phi_minicpm_shapes():
    phi = load_model("phi-3.5-vision")
    assert phi.tokenization.num_crops == 4 and phi.projector.layer_dims == [4096, 3072, 3072]
    assert phi.llm.head_dim == 96 and phi.vision.layers_used == 23
    mc = load_model("minicpm-v-2.6")
    assert mc.projector.kind == "resampler" and mc.projector.num_queries == 64
    assert mc.tokenization.tokens_per_slice == 64 and mc.tokenization.max_slice_nums == 9
    assert (mc.vision.num_layers, mc.vision.hidden_size, mc.llm.vocab_size) == (27, 1152, 151666)


def _write_variant(tmp_path: Path, mid: str, edit) -> Path:
    data = yaml.safe_load((models_dir() / f"{mid}.yaml").read_text())
    edit(data)
    path = tmp_path / f"{mid}-variant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d.update(bogus_top_field=1), "bogus_top_field"),
        (lambda d: d["vision"].update(num_layer=24), "vision.num_layer"),
        (lambda d: d["llm"].update(kv_heads=8), "llm.kv_heads"),
        (lambda d: d["tokenization"].update(max_tiles=4), "max_tiles"),
    ],
)
def test_unknown_field_is_an_error(tmp_path, edit, field):
    path = _write_variant(tmp_path, "llava-1.5-7b" if "max_tiles" not in field else "internvl2.5-8b", edit)
    with pytest.raises(SpecError) as err:
        load_model(str(path))
    assert field in str(err.value)
    assert str(path) in str(err.value)


def test_bad_value_names_the_field(tmp_path):
    path = _write_variant(tmp_path, "qwen2-vl-7b", lambda d: d["llm"].update(num_kv_heads=5))
    with pytest.raises(SpecError, match="num_kv_heads"):
        load_model(str(path))


# Published parameter totals (the model card / hub page of each checkpoint); the graph's count must be within 1%.
PUBLISHED_PARAMS = {
    "gemma-3-27b": 27.4e9,  # Gemma 3 tech report (arXiv 2503.19786) Table 1: 417M vision + 1,416M emb + 25,600M
    "gemma-3-4b": 4.3e9,  # Gemma 3 tech report (arXiv 2503.19786) Table 1: 417M vision + 675M emb + 3,209M
    "deepseek-vl2": 27.5e9,  # DeepSeek-VL2 paper (arXiv 2412.10302) Table 1: 27.5B total, 4.5B activated
    "internvl3.5-8b": 8.5e9,  # OpenGVLab InternVL3.5 model card: InternVL3.5-8B 8.5B (0.3B vision + 8.2B Qwen3-8B)
    "llama-3.2-90b-vision": 88.6e9,  # Meta Llama 3.2 Vision model card: 90B model, 88.6B parameters
    "llama-4-scout": 109e9,  # Meta Llama 4 model card: Scout 17B active / 109B total
    "llama-4-maverick": 400e9,  # Meta Llama 4 model card: Maverick 17B active / 400B total
    "glm-4.5v": 108e9,  # [U] Hugging Face's safetensors count for zai-org/GLM-4.5V (not retrievable to re-check)
    "kimi-vl-a3b": 16.4e9,  # huggingface.co/moonshotai/Kimi-VL-A3B-Instruct: 16.4B params (card: 16B, A3B)
}

# Published totals of the language model alone, where the model card gives only that (verified in primary sources).
PUBLISHED_LLM_PARAMS = {
    "glm-4.5v": 106e9,  # Z.ai / NVIDIA Megatron-Bridge GLM-4.5V page: GLM-4.5-Air decoder, 106B total, 12B active
}


@pytest.mark.parametrize("mid", sorted(PUBLISHED_PARAMS))
def test_parameter_totals_within_one_percent_of_published(mid):
    from lvlmsim.ops.graph import param_counts

    total = sum(param_counts(load_model(mid)).values())
    assert total == pytest.approx(PUBLISHED_PARAMS[mid], rel=0.01)


@pytest.mark.parametrize("mid", sorted(PUBLISHED_LLM_PARAMS))
def test_language_model_parameters_within_one_percent_of_published(mid):
    from lvlmsim.ops.graph import param_counts

    assert param_counts(load_model(mid))["llm"] == pytest.approx(PUBLISHED_LLM_PARAMS[mid], rel=0.01)


def test_gemma3_is_siglip_896_pooled_to_256_tokens_with_sliding_layers():
    from lvlmsim.ops.tokenization import tokenize_image

    g = load_model("gemma-3-27b")
    assert g.llm.local_attention.kind == "sliding" and g.llm.local_attention.window_tokens == 1024
    assert (g.llm.num_layers, g.llm.hidden_size, g.llm.num_kv_heads, g.llm.head_dim) == (62, 5376, 16, 128)
    # Gemma3Processor: every image is one 896 px view -> 4096 patches -> 256 soft tokens + \n\n <boi> <eoi> \n\n
    for w, h in ((640, 480), (1920, 1080), (300, 1200)):
        t = tokenize_image(g, w, h)
        assert t.vit_seq_lens == (4096,) and t.llm_tokens == 260


def test_deepseek_vl2_tokens_follow_the_global_local_tiling_by_hand():
    """h = w = ceil((384 // 14) / 2) = 14 tokens a side; global 14 x 15 + 1 separator + (rows x 14)(cols x 14 + 1).
    384x384 -> 1x1 grid: 210 + 1 + 14 x 15 = 421; 640x480 -> 2x2 (768 px, the smallest full-resolution fit):
    211 + 28 x 29 = 1023; 1920x1080 -> 2 rows x 4 cols (1536x768 keeps the most pixels): 211 + 28 x 57 = 1807."""
    from lvlmsim.ops.tokenization import tokenize_image

    m = load_model("deepseek-vl2")
    expected = {(384, 384): (421, 2), (640, 480): (1023, 5), (1920, 1080): (1807, 9)}
    for (w, h), (tokens, views) in expected.items():
        t = tokenize_image(m, w, h)
        assert (t.llm_tokens, len(t.vit_seq_lens)) == (tokens, views)
        assert t.vit_seq_lens[0] == 27 * 27  # SigLIP-384/14 patches per view


def test_deepseek_vl2_caches_the_mla_latent():
    """30 layers x (512 + 64) x 2 B = 34,560 B of KV per token (bf16), on every TP rank."""
    from lvlmsim.cost.memory import kv_bytes_per_token
    from lvlmsim.estimate import default_graph_config

    m = load_model("deepseek-vl2")
    for tp in (1, 2):
        assert kv_bytes_per_token(m, default_graph_config(m, tp)) == 30 * (512 + 64) * 2


@pytest.mark.parametrize("new,sibling", [("internvl3.5-8b", "internvl2.5-8b"),
                                         ("llama-3.2-90b-vision", "llama-3.2-11b-vision"),
                                         ("gemma-3-4b", "gemma-3-27b"), ("qwen3-vl-4b", "qwen3-vl-2b")])
def test_new_dense_entries_tokenize_like_the_processor_family_they_share(new, sibling):
    """InternVL3.5 keeps InternVL2.5's InternViT tiling; Llama-3.2-90B-Vision keeps the 11B's 560 px tiles; Gemma 3
    4B keeps the 27B's 896 px SigLIP view; Qwen3-VL-4B keeps the 2B's 16 px / 2x2-merge tower: the same ViT
    sequences and LLM tokens on three image sizes (the processors are the same code and config values)."""
    from lvlmsim.ops.tokenization import tokenize_image

    a, b = load_model(new), load_model(sibling)
    for w, h in ((448, 448), (1280, 720), (640, 1600)):
        ta, tb = tokenize_image(a, w, h), tokenize_image(b, w, h)
        assert (ta.vit_seq_lens, ta.llm_tokens) == (tb.vit_seq_lens, tb.llm_tokens)


def test_llama_3_2_90b_has_20_cross_attention_layers_every_fifth():
    m = load_model("llama-3.2-90b-vision")
    assert m.llm.cross_attention_layers == list(range(3, 100, 5)) and m.llm.self_attention_layers == 80


def test_llama4_tokens_follow_the_processor_by_hand():
    """144 tokens per 336 px view (24 x 24 patches, pixel shuffle 0.5). 336x336: one tile, 144 + 3 tags = 147.
    640x480: the least upscale is a 2x2 canvas (x1.05): 4 tiles x (144 + 1 separator) + global 144 + 3 = 727.
    1920x1080: nothing of <= 16 tiles holds it, the mildest downscale is 3 rows x 5 cols (x0.875): 15 x 145 + 147 =
    2322; ViT sequences are 577 long (CLS included) for every tile and the global view."""
    from lvlmsim.ops.tokenization import tokenize_image

    m = load_model("llama-4-scout")
    for (w, h), (tokens, views) in {(336, 336): (147, 1), (640, 480): (727, 5), (1920, 1080): (2322, 16)}.items():
        t = tokenize_image(m, w, h)
        assert (t.llm_tokens, len(t.vit_seq_lens), t.vit_seq_lens[0]) == (tokens, views, 577)


def test_llama4_chunked_attention_and_moe_layout():
    """iRoPE: 36 of 48 layers attend within 8192-token chunks; past a chunk only the 12 NoPE layers grow the cache:
    12 x 2 x 8 x 128 x 2 B = 49,152 B/token (196,608 with all 48). Maverick alternates dense and 128-expert layers."""
    from lvlmsim.cost.memory import kv_bytes_per_token, kv_bytes_per_token_beyond_window
    from lvlmsim.estimate import default_graph_config

    scout, mav = load_model("llama-4-scout"), load_model("llama-4-maverick")
    cfg = default_graph_config(scout, 1)
    assert scout.llm.local_attention.kind == "chunked" and scout.llm.local_attention_layers == 36
    assert (kv_bytes_per_token(scout, cfg), kv_bytes_per_token_beyond_window(scout, cfg)) == (196_608, 49_152)
    assert scout.llm.moe_layers == 48 and mav.llm.moe_layers == 24 and mav.llm.moe.num_experts == 128


def test_glm45v_tokens_follow_the_28px_grid_by_hand():
    """Round each side to a multiple of 28 (patch 14 x merge 2): 336x336 -> 12 x 12 + 2 = 146; 640x480 -> 644 x 476
    = 23 x 17 + 2 = 393; 1920x1080 -> 1932 x 1092 = 69 x 39 + 2 = 2693."""
    from lvlmsim.ops.tokenization import tokenize_image

    m = load_model("glm-4.5v")
    got = [tokenize_image(m, w, h).llm_tokens for w, h in ((336, 336), (640, 480), (1920, 1080))]
    assert got == [146, 393, 2693]
    assert m.llm.moe.num_experts == 128 and m.llm.moe.dense_layers == [0]


def test_kimi_vl_tokens_follow_the_patch_limit_by_hand():
    """448x448: 32 x 32 = 1024 patches <= 4096, 16 x 16 + 4 = 260. 1280x720: 91 x 51 = 4641 patches > 4096, so x
    sqrt(4096 / 4641) -> 1202 x 676, padded to 1204 x 700: 43 x 25 + 4 = 1079. 1920x1080: 137 x 77 = 10549 ->
    1196 x 672 -> 1204 x 672: 43 x 24 + 4 = 1036. KV: MLA latent, 27 x 576 x 2 B = 31,104 B/token."""
    from lvlmsim.cost.memory import kv_bytes_per_token
    from lvlmsim.estimate import default_graph_config
    from lvlmsim.ops.tokenization import tokenize_image

    m = load_model("kimi-vl-a3b")
    got = [tokenize_image(m, w, h).llm_tokens for w, h in ((448, 448), (1280, 720), (1920, 1080))]
    assert got == [260, 1079, 1036]
    assert kv_bytes_per_token(m, default_graph_config(m, 1)) == 31_104


ISSUE16_IDS = ["llama-3.2-90b-vision", "llama-4-scout", "llama-4-maverick", "gemma-3-27b", "internvl3.5-8b",
               "kimi-vl-a3b", "deepseek-vl2", "glm-4.5v"]


def test_every_issue16_id_is_in_the_zoo_and_estimates():
    import lvlmsim

    assert set(ISSUE16_IDS) <= set(model_ids())
    for mid in ISSUE16_IDS:
        est = lvlmsim.estimate(mid, "b200", images=1, image_size=(1280, 720), tp=8)
        assert est.ttft_s > 0 and est.memory.kv_bytes_per_token > 0


def test_gemma3_pan_and_scan_adds_crops_of_elongated_images_by_hand():
    """Gemma3ImageProcessor.pan_and_scan (max 4 crops, min crop 256 px, min ratio 1.2): 1920x1080 -> floor(1.78 +
    0.5) = 2 crops of 960 px: 3 views x 260 = 780 tokens; 3000x800 -> 4 crops: 1300; 400x300 -> 2 crops would be
    200 px wide (< 256): none, 260. Off by default, as in the processors."""
    from lvlmsim.ops.tokenization import tokenize_image

    g = load_model("gemma-3-27b")
    assert tokenize_image(g, 3000, 800).llm_tokens == 260
    pas = g.model_copy(update={"tokenization": g.tokenization.model_copy(update={"pan_and_scan_max_crops": 4})})
    got = {wh: tokenize_image(pas, *wh) for wh in ((1920, 1080), (3000, 800), (400, 300))}
    assert {wh: t.llm_tokens for wh, t in got.items()} == {(1920, 1080): 780, (3000, 800): 1300, (400, 300): 260}
    assert got[(3000, 800)].vit_seq_lens == (4096,) * 5
