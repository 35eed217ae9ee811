"""Multi-head latent attention (issue 16): weights, latent KV bytes, the absorbed decode and MHA prefill forms, the
engine's step cost against the graph, and the `mla` validate family."""

from __future__ import annotations

import pytest

from lvlmsim.calibrate.mla import load_mla_modules, mla_module_ops
from lvlmsim.cost.memory import kv_bytes_per_layer, kv_bytes_per_token
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.stepcost import DECODE_REL_TOL, StepCost, reference_step_s
from lvlmsim.estimate import default_graph_config
from lvlmsim.ops.graph import llm_ops, mla_layer_params
from lvlmsim.ops.op import ATTN_MLA_DECODE, ATTN_MLA_PREFILL, SeqWork
from lvlmsim.specs.model import LanguageModelSpec, MlaSpec
from lvlmsim.specs.registry import load_hardware, load_model

V3_MLA = MlaSpec(kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)


def v3_attention_lm(heads: int = 128) -> LanguageModelSpec:
    return LanguageModelSpec(name="dsv3", num_layers=61, hidden_size=7168, num_heads=heads, num_kv_heads=heads,
                             head_dim=128, intermediate_size=18432, vocab_size=129280, mla=V3_MLA)


def mla_model():
    """Qwen2-VL-7B with its attention swapped for a DeepSeek-V2-style MLA (no query bottleneck), for engine tests."""
    m = load_model("qwen2-vl-7b")
    mla = MlaSpec(kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    lm = m.llm.model_copy(update={"mla": mla, "num_kv_heads": m.llm.num_heads})
    return m.model_copy(update={"llm": lm})


def test_deepseek_v3_mla_layer_weights_by_hand():
    """q_a+kv_a 7168x(1536+576) = 15,138,816; q_b 1536x128x192 = 37,748,736; kv_b 512x128x256 = 16,777,216;
    o 128x128x7168 = 117,440,512; latent norms 1536 + 512: 187,107,328 per layer."""
    assert mla_layer_params(v3_attention_lm()) == 187_107_328


def test_latent_kv_bytes_are_kv_lora_plus_rope_and_do_not_shrink_with_tp():
    """DeepSeek-V3 bf16: (512 + 64) x 2 B = 1152 B per layer and token, x 61 layers = 70,272 B/token; a GQA cache of
    the same heads (128 x (128 K + 128 V) x 2 B = 65,536 B per layer) is 56.9x larger. TP ranks each hold it whole."""
    m = mla_model()
    for tp in (1, 2, 4):
        cfg = default_graph_config(m, tp)
        assert kv_bytes_per_layer(m, cfg) == 1152
        assert kv_bytes_per_token(m, cfg) == 28 * 1152


def test_decode_runs_the_absorbed_form_over_the_latent():
    """One sequence, 4095 cached + 1 new, 128 heads: scores over 576 values, PV over 512:
    flops = 2 x 128 x 4096 x 576 + 2 x 128 x 4096 x 512; the cache read is 4096 x 576 x 2 B once, not per head."""
    ops = mla_module_ops("deepseek-ai/DeepSeek-V3", 128, 1, 4096, "decode")
    core = next(op for op in ops if op.kind == ATTN_MLA_DECODE)
    assert core.flops == 2 * 128 * 4096 * 576 + 2 * 128 * 4096 * 512
    assert core.bytes_read == 1 * 128 * 576 * 2 + 4096 * 576 * 2
    names = {op.name for op in ops}
    assert {"llm.mla.absorb_uk", "llm.mla.absorb_uv"} <= names and "llm.mla.kv_b_proj" not in names


def test_prefill_runs_the_mha_form_with_the_latent_up_projected():
    """2 sequences x 1000 new tokens: kv_b_proj up-projects 2000 latents to 128 x (128 + 128); attention pairs
    2 x 1000 x 1001 / 2 at qk 192 + v 128: flops 2 x 128 x 1,001,000 x 320."""
    ops = mla_module_ops("deepseek-ai/DeepSeek-V3", 128, 2, 1000, "prefill")
    core = next(op for op in ops if op.kind == ATTN_MLA_PREFILL)
    assert core.flops == 2 * 128 * 1_001_000 * 320
    up = next(op for op in ops if op.name == "llm.mla.kv_b_proj")
    assert up.shape == (2000, 128 * 256, 512)


def _coster():
    m = mla_model()
    cfg = default_graph_config(m, 2)
    cm = CostModel(load_hardware("h100-sxm"))
    return m, cfg, cm, StepCost(m, cfg, cm)


@pytest.mark.parametrize("chunks", [[(2048, 0, 0, 0, 0, True)], [(512, 3000, 0, 0, 0, False), (64, 0, 0, 0, 0, True)]])
def test_engine_prefill_steps_match_the_graph(chunks):
    m, cfg, cm, sc = _coster()
    decs = [(900, 0, 0), (5000, 0, 0)]
    got = sc.step_s(len(decs), sum(p for p, _, _ in decs), chunks)
    assert got == pytest.approx(reference_step_s(m, cfg, cm, decs, chunks), rel=1e-12)


@pytest.mark.parametrize("n,past", [(1, 10), (16, 3000), (256, 20000)])
def test_engine_decode_matches_the_graph(n, past):
    m, cfg, cm, sc = _coster()
    decs = [(past + i, 0, 0) for i in range(n)]
    assert sc.decode_s(n, sum(p for p, _, _ in decs)) == pytest.approx(reference_step_s(m, cfg, cm, decs),
                                                                       rel=DECODE_REL_TOL)


def test_mla_decode_reads_far_less_than_gqa_of_the_same_width():
    """Same model as MHA (28 KV heads: K and V of 128 each, 2 B) = 14,336 B per token and layer vs the 1152 B latent:
    the decode step's attention reads 12.4x less (the query bytes are negligible at 30,000 cached tokens)."""
    m = mla_model()
    gqa = load_model("qwen2-vl-7b")
    gqa = gqa.model_copy(update={"llm": gqa.llm.model_copy(update={"num_kv_heads": 28})})
    seq = (SeqWork(new_tokens=1, past_tokens=30000, emits_token=True),)
    cfg = default_graph_config(m, 1)
    mla_attn = next(op for op in llm_ops(m, seq, "decode", cfg) if op.kind == ATTN_MLA_DECODE)
    gqa_attn = next(op for op in llm_ops(gqa, seq, "decode", cfg) if op.name == "llm.attention")
    assert gqa_attn.bytes_read / mla_attn.bytes_read == pytest.approx(14_336 / 1152, rel=0.01)


def test_mla_module_table_rows_become_whole_modules(tmp_path):
    root = tmp_path / "h100_sxm" / "mla" / "vllm" / "0.1"
    root.mkdir(parents=True)
    head = ("kernel_source,model,architecture,mla_dtype,kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,"
            "step,latency\n")
    (root / "mla_generation_module_perf.csv").write_text(
        head + "FLASHMLA,deepseek-ai/DeepSeek-V3,DeepseekV3ForCausalLM,bfloat16,bfloat16,bfloat16,128,4,1,1,511,0.25\n"
        "FLASHMLA,deepseek-ai/DeepSeek-V3,DeepseekV3ForCausalLM,bfloat16,fp8,fp8_block,128,4,1,1,511,0.20\n")
    (root / "mla_context_module_perf.csv").write_text(
        head + "FLASH_ATTN,deepseek-ai/DeepSeek-V3,DeepseekV3ForCausalLM,bfloat16,bfloat16,bfloat16,64,1,256,1,0,0.3\n"
        "FLASH_ATTN,some/other-model,X,bfloat16,bfloat16,bfloat16,64,1,256,1,0,0.3\n")
    got = load_mla_modules(tmp_path / "h100_sxm")
    assert sorted(r.family for r in got.rows) == ["mla_context", "mla_generation"]
    gen = next(r for r in got.rows if r.family == "mla_generation")
    assert gen.tokens == 512 and gen.measured_s == pytest.approx(0.25e-3)
    assert sum(got.skipped.values()) == 2  # the fp8-GEMM row and the unknown model
    from lvlmsim.calibrate.validate import validate
    from lvlmsim.cost.profile import DEFAULT_PROFILE

    report, _ = validate(load_hardware("h100-sxm"), tmp_path / "h100_sxm", DEFAULT_PROFILE)
    assert report["mla"]["n"] == 2 and set(report["mla"]["regimes"]) >= {"context", "generation"}
