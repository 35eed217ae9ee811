"""Per-layer norms of 2025 decoder blocks: Gemma 3's sandwich norms, per-head q/k norms (Qwen3, Gemma 3, Llama 4,
Mllama cross-attention) and the residual adds vLLM fuses into its RMSNorms. Element counts derived by hand."""

from __future__ import annotations

import pytest

from lvlmsim.errors import SpecError
from lvlmsim.importers.hf import import_hf_config
from lvlmsim.ops.graph import encode_ops, llm_ops, llm_params, param_counts
from lvlmsim.ops.op import GraphConfig, SeqWork
from lvlmsim.specs import LanguageModelSpec, ModelSpec, load_model
from lvlmsim.specs.base import validate_as

M_TOKENS = 1000
BF16_BYTES = 2


def _by_name(model: ModelSpec, tp: int = 1, m: int = M_TOKENS) -> dict[str, tuple[float, int]]:
    """(elements per instance, instances) of each elementwise norm op of one prefill chunk of m tokens."""
    ops = llm_ops(model, (SeqWork(new_tokens=m, emits_token=False),), "prefill", GraphConfig(tp=tp))
    return {op.name: (op.shape[0], op.count) for op in ops if op.name.endswith("norm") or "residual" in op.name}


def test_gemma3_27b_norm_elements_per_layer():
    """Gemma 3 27B (hidden 5376, 32 heads, 16 KV heads, head_dim 128, 62 layers), 1000 tokens:
    2 add-norms + 2 sandwich norms of 1000 x 5376 = 5,376,000 elements each; q_norm 1000 x 32 x 128 = 4,096,000 and
    k_norm 1000 x 16 x 128 = 2,048,000, i.e. 1000 x (32 + 16) x 128 = 6,144,000 per layer; no separate residual add."""
    ops = _by_name(load_model("gemma-3-27b"))
    assert ops["llm.add_norm"] == (5_376_000, 2 * 62)
    assert ops["llm.sandwich_norm"] == (5_376_000, 2 * 62)
    assert ops["llm.q_norm"] == (4_096_000, 62) and ops["llm.k_norm"] == (2_048_000, 62)
    assert "llm.residual_add" not in ops


def test_gemma3_27b_qk_norms_are_sharded_as_the_heads_under_tp2():
    """TP 2 holds 16 query and 8 KV heads per GPU: q_norm 1000 x 16 x 128, k_norm 1000 x 8 x 128; the hidden-size
    norms run on the whole (all-reduced) hidden state on every GPU."""
    ops = _by_name(load_model("gemma-3-27b"), tp=2)
    assert ops["llm.q_norm"] == (2_048_000, 62) and ops["llm.k_norm"] == (1_024_000, 62)
    assert ops["llm.add_norm"] == (5_376_000, 124) and ops["llm.sandwich_norm"] == (5_376_000, 124)


def test_qwen3_vl_8b_norm_elements_per_layer():
    """Qwen3-VL-8B text (hidden 4096, 32 heads, 8 KV heads, head_dim 128, 36 layers): 2 add-norms of 4,096,000;
    q_norm 1000 x 32 x 128 = 4,096,000, k_norm 1000 x 8 x 128 = 1,024,000 (1000 x 40 x 128 = 5,120,000 a layer);
    no sandwich norms."""
    ops = _by_name(load_model("qwen3-vl-8b"))
    assert ops["llm.add_norm"] == (4_096_000, 72)
    assert ops["llm.q_norm"] == (4_096_000, 36) and ops["llm.k_norm"] == (1_024_000, 36)
    assert "llm.sandwich_norm" not in ops and "llm.residual_add" not in ops


def test_fused_add_norm_reads_two_and_writes_two_streams():
    """vLLM's fused_add_rms_norm reads x and the residual and writes both back: 4 x m x h x 2 bytes per kernel.
    Llama-style layer: 2 kernels = 8 m h elements of traffic where a separate norm (2 m h) + add (3 m h), twice, moved
    10 m h."""
    model = load_model("llava-1.5-7b")
    ops = llm_ops(model, (SeqWork(new_tokens=M_TOKENS, emits_token=False),), "prefill", GraphConfig())
    (add_norm,) = [op for op in ops if op.name == "llm.add_norm"]
    elems = M_TOKENS * 4096
    assert add_norm.bytes_read == 2 * elems * BF16_BYTES and add_norm.bytes_written == 2 * elems * BF16_BYTES
    assert add_norm.count == 2 * 32
    assert not [op for op in ops if op.name in ("llm.q_norm", "llm.k_norm", "llm.sandwich_norm")]


def test_mllama_keeps_vllms_unchained_residual_layout():
    """vLLM's MllamaTextModel calls each LlamaDecoderLayer with residual=None and adds the residual after it, and its
    cross-attention layers add their (gated) outputs unfused. Llama-3.2-11B-Vision, 32 self + 8 cross layers, with an
    image: fused add-norms 32 (post_attention_layernorm), plain norms 32 + 2 x 8 = 48, separate adds 32 + 2 x 8 = 48."""
    model = load_model("llama-3.2-11b-vision")
    seq = SeqWork(new_tokens=M_TOKENS, cross_kv_tokens=6404, emits_token=False)
    ops = {op.name: op.count for op in llm_ops(model, (seq,), "prefill", GraphConfig())}
    assert (ops["llm.add_norm"], ops["llm.norm"], ops["llm.residual_add"]) == (32, 48, 48)


def test_llama4_scout_normalises_q_and_k_in_its_rope_layers_only():
    """Scout: use_qk_norm true, applied in the 36 RoPE (chunked) layers of 48, not the 12 NoPE layers; the L2 norm
    has no weight, so the parameter count is that of a model without qk_norm. Maverick sets use_qk_norm false."""
    scout = load_model("llama-4-scout")
    ops = _by_name(scout)
    assert ops["llm.q_norm"] == (M_TOKENS * 40 * 128, 36) and ops["llm.k_norm"] == (M_TOKENS * 8 * 128, 36)
    plain = scout.llm.model_copy(update={"qk_norm": "none"})
    assert llm_params(scout.llm) == llm_params(plain)
    assert "llm.q_norm" not in _by_name(load_model("llama-4-maverick"))


def test_mllama_normalises_q_in_cross_layers_and_image_keys_once_per_image():
    """Llama-3.2-11B-Vision: q_norm over 1000 x 32 x 128 in its 8 cross-attention layers; k_norm over the image's
    cross K (tokens x 8 KV heads x 128) once per image with the K/V projection, in those 8 layers."""
    model = load_model("llama-3.2-11b-vision")
    seq = SeqWork(new_tokens=M_TOKENS, cross_kv_tokens=6404, emits_token=False)
    ops = llm_ops(model, (seq,), "prefill", GraphConfig())
    q = [op for op in ops if op.name == "llm.q_norm"]
    assert [(op.shape[0], op.count) for op in q] == [(M_TOKENS * 32 * 128, 8)]
    assert not [op for op in ops if op.name == "llm.k_norm"]
    enc = encode_ops(model, (1601,) * 4, 6404, 6404, GraphConfig())
    (k,) = [op for op in enc if op.name == "llm.k_norm"]
    assert (k.shape[0], k.count) == (6404 * 8 * 128, 8)


def test_norm_weights_counted_in_params():
    """Gemma 3 27B: 4 x 5376 norm weights a layer and 2 x 128 of q/k norm (was 2 x 5376): +62 x (2 x 5376 + 256)
    = 682,496 parameters; the published 27.4B total still holds to 1%."""
    model = load_model("gemma-3-27b")
    lm = model.llm
    two = lm.model_copy(update={"norms_per_layer": 2, "qk_norm": "none"})
    assert llm_params(lm) - llm_params(two) == 62 * (2 * 5376 + 2 * 128) == 682_496
    assert abs(sum(param_counts(model).values()) / 27.4e9 - 1) < 0.01


def _lm(**extra) -> dict:
    return dict(name="x", num_layers=4, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16,
                intermediate_size=128, vocab_size=100, **extra)


@pytest.mark.parametrize("extra, needle", [
    ({"norms_per_layer": 3}, "norms_per_layer"),
    ({"qk_norm": "yes"}, "qk_norm"),
    ({"qk_norm": "local"}, "qk_norm 'local' needs local_attention"),
    ({"qk_norm": "cross"}, "qk_norm 'cross' needs cross_attention_layers"),
])
def test_bad_norm_fields_name_the_field(extra, needle):
    with pytest.raises(SpecError, match=needle):
        validate_as(LanguageModelSpec, _lm(**extra), "llm")


def test_defaults_keep_the_llama_layout():
    lm = LanguageModelSpec(**_lm())
    assert lm.norms_per_layer == 2 and lm.qk_norm == "none" and not lm.has_qk_norm(0)


def test_import_maps_qk_norm_and_sandwich_norms():
    """The importer sets the facts from model_type: Gemma 3 sandwich + q/k norms, Qwen3 q/k norms, Llama 4's
    use_qk_norm, Mllama's cross-layer norms; a Llama config keeps the defaults."""
    from pathlib import Path

    hf = Path(__file__).parent / "fixtures" / "hf"
    gemma = import_hf_config(hf / "gemma-3-27b-it")["llm"]
    assert (gemma["norms_per_layer"], gemma["qk_norm"]) == (4, "self")
    assert import_hf_config(hf / "qwen3-vl-8b-instruct")["llm"]["qk_norm"] == "self"
    assert import_hf_config(hf / "internvl3_5-8b")["llm"]["qk_norm"] == "self"
    assert import_hf_config(hf / "llama-4-scout-17b-16e")["llm"]["qk_norm"] == "local"
    assert import_hf_config(hf / "llama-4-maverick-17b-128e")["llm"]["qk_norm"] == "none"
    assert import_hf_config(hf / "llama-3.2-11b-vision-instruct")["llm"]["qk_norm"] == "cross"
    assert "qk_norm" not in import_hf_config(hf / "llava-1.5-7b-hf")["llm"]
