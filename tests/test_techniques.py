"""Techniques: hand-derived effects checked to the op, composition rules, engine hooks, the reuse cache.

Reference shapes (LLaVA-1.5-7B = CLIP ViT-L/14-336, 23 of 24 layers run, + Vicuna-7B, fp16):
LLM h=4096, 32 heads = 32 KV heads, head_dim 128, MLP 11008 (gated), vocab 32000, 32 layers.
One 336x336 image = 576 visual tokens (577 ViT tokens incl. CLS); with 64 prompt tokens prefill is S = 640 tokens.
"""

from __future__ import annotations

import random

import pytest

import lvlmsim
from lvlmsim.cost.memory import kv_bytes_per_token
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.estimate import default_graph_config, estimate_request
from lvlmsim.ops.graph import encode_ops, llm_ops, param_counts
from lvlmsim.ops.op import GEMM, SeqWork
from lvlmsim.ops.tokenization import tokenize_image
from lvlmsim.techniques import (
    KVBudgetPolicy,
    ReuseCache,
    apply_to_estimate,
    compose,
    expected_tokens,
    parse_technique,
)
from lvlmsim.techniques.tome import tome_encode_ops

LLAVA = lvlmsim.load_model("llava-1.5-7b")
H100 = lvlmsim.load_hardware("h100-sxm")
A100 = lvlmsim.load_hardware("a100-sxm-80gb")
KW = dict(images=1, image_size=(336, 336), prompt_tokens=64, output_tokens=128, profile=None)

# per token per LLM layer (no attention): GEMMs 2*h*(qkv 12288 + o 4096 + up 2*11008 + down 11008 as k*n sum)
GEMM_FLOPS_PER_TOKEN_LAYER = 2 * 4096 * (12288 + 4096 + 22016) + 2 * 11008 * 4096  # 404,750,336
# norms 2*5h, residual adds 2*h, rotary 3*(32+32)*128, SiLU+gate 8*11008
ELEMWISE_FLOPS_PER_TOKEN_LAYER = 2 * 5 * 4096 + 2 * 4096 + 3 * 64 * 128 + 8 * 11008  # 161,792
ATTN_FLOPS_PER_PAIR = 4 * 32 * 128  # QK^T and PV: 16,384


def est(techniques=(), **kw):
    args = {**KW, **kw}
    if techniques:
        return apply_to_estimate(LLAVA, H100, techniques, **args)
    return estimate_request(LLAVA, H100, **args)


def flops(e, stage):
    return e.stages[stage].flops


# ---------------------------------------------------------------------------------------------------------------
# FastV


def test_fastv_layer2_keep_half_removes_exactly_the_later_layers_work():
    assert GEMM_FLOPS_PER_TOKEN_LAYER == 404_750_336 and ELEMWISE_FLOPS_PER_TOKEN_LAYER == 161_792
    base, fv = est(), est(["fastv:layer=2,keep=0.5"])
    # K=2: 0-based layers 0-1 see all 640 tokens; layers 2..31 (30 layers) see 64 text + 288 visual = 352.
    removed_tokens = 30 * 288
    per_token = GEMM_FLOPS_PER_TOKEN_LAYER + ELEMWISE_FLOPS_PER_TOKEN_LAYER  # 404,912,128
    # causal pairs per layer: 640*641/2 = 205,120 before, 352*353/2 = 62,128 after
    attn = 30 * (205_120 - 62_128) * ATTN_FLOPS_PER_PAIR  # 70,283,427,840
    # FastV ranks by layer 1's attention scores, which FlashAttention does not expose: softmax 5 FLOPs per score
    score_pass = 32 * 205_120 * 5  # 32,819,200
    expected_drop = removed_tokens * per_token + attn - score_pass
    assert expected_drop == 3_568_691_394_560
    assert flops(base, "prefill") - flops(fv, "prefill") == pytest.approx(expected_drop, rel=1e-12)
    # encode is untouched; the LM head still runs on one token
    assert flops(fv, "encode") == flops(base, "encode")
    assert fv.graph_config.visual_keep == ((2, 0.5),)


def test_fastv_kv_bytes_and_every_decode_step_shrink():
    base, fv = est(), est(["fastv:layer=2,keep=0.5"])
    # one visual token: K+V x 32 heads x 128 x 2 bytes = 16,384 B per layer; kept in layers 0-1, half of them in 2..31
    assert base.memory.kv_bytes_per_visual_token == 32 * 16_384 == 524_288
    assert fv.memory.kv_bytes_per_visual_token == (2 + 30 * 0.5) * 16_384 == 278_528
    # request KV: 192 text tokens (64 prompt + 128 output) in full + 576 visual tokens
    assert fv.memory.request_kv_bytes == 192 * 524_288 + 576 * 278_528 == 261_095_424
    # one decode step at context 640: layers 2..31 read 288 fewer visual tokens' K and V
    comp0, comp1 = compose(LLAVA, H100, []), compose(LLAVA, H100, ["fastv"])
    step = (SeqWork(new_tokens=1, past_tokens=640),)
    b0 = sum(op.total_bytes * w for op, w in comp0.decode_step_ops(step, (576,)))
    b1 = sum(op.total_bytes * w for op, w in comp1.decode_step_ops(step, (576,)))
    assert b0 - b1 == 30 * 288 * 16_384
    assert flops(fv, "decode") < flops(base, "decode")
    assert fv.stages["decode"].bytes < base.stages["decode"].bytes


def test_fastv_with_naive_attention_adds_no_score_pass():
    fv_naive = est(["fastv", "attention:kernel=naive"])
    names = {r["op"] for r in fv_naive.op_rows()}
    assert "technique.fastv.attention_scores" not in names
    assert "technique.fastv.attention_scores" in {r["op"] for r in est(["fastv"]).op_rows()}


def test_pyramiddrop_default_stages_and_token_schedule_equivalence():
    pd = est(["pyramiddrop"])
    assert pd.graph_config.visual_keep == ((8, 0.5), (16, 0.25), (24, 0.125))
    ts = est(["token_schedule:schedule=8:0.5/16:0.25/24:0.125"])
    # same schedule; PyramidDrop adds its ranking ops (last instruction token vs the surviving visual keys)
    extra = sum(r["flops"] for r in pd.op_rows() if r["op"] == "technique.pyramiddrop.rank")
    # 32 heads x (576 + 288 + 144) visual keys x (2*128 + 5) FLOPs
    assert extra == 32 * (576 + 288 + 144) * (2 * 128 + 5)
    assert flops(pd, "prefill") == pytest.approx(flops(ts, "prefill") + extra, rel=1e-12)
    assert pd.memory.kv_bytes_per_visual_token == ts.memory.kv_bytes_per_visual_token


# ---------------------------------------------------------------------------------------------------------------
# quantization


def test_int4_kv_quarters_kv_bytes_per_token():
    cfg = default_graph_config(LLAVA, 1)
    bf = kv_bytes_per_token(LLAVA, cfg)
    assert bf == 2 * 32 * 32 * 128 * 2  # K+V x layers x heads x head_dim x 2 bytes
    for spec, ratio in (("kv_quant:bits=4", 0.25), ("kv_quant:bits=2", 0.125), ("kv_quant:bits=8", 0.5),
                        ("kv_quant:bits=8,format=int8", 0.5)):
        assert est([spec]).memory.kv_bytes_per_token == bf * ratio


def test_kv_quant_dequant_flops_fold_into_decode_attention():
    base, q = est(output_tokens=2), est(["kv_quant:bits=4"], output_tokens=2)
    # one decode step at past 640: 2 FLOPs per cached K/V element read = 2 * 640 * 2 * 32 * 128 per layer, 32 layers
    assert flops(q, "decode") - flops(base, "decode") == pytest.approx(2 * 640 * 2 * 32 * 128 * 32, rel=1e-9)
    assert flops(q, "prefill") == flops(base, "prefill")  # prefill attends to fresh K/V, nothing to dequantize


def test_w4a16_changes_weight_bytes_not_gemm_flops_beyond_dequant():
    base, q = est(), est(["weight_quant:scheme=w4a16"])
    llm_params = param_counts(LLAVA)["llm"]
    assert base.memory.weights_by_module["llm"] == llm_params * 2
    assert q.memory.weights_by_module["llm"] == llm_params * 0.5
    assert q.memory.weights_by_module["vision"] == base.memory.weights_by_module["vision"]
    # GEMM weights of one LLM forward pass: 32 x 4096 x (12288 + 4096 + 22016 + 11008) + LM head 4096 x 32000
    gemm_weights = 32 * 4096 * 49_408 + 4096 * 32_000
    assert gemm_weights == 6_607_077_376
    assert flops(q, "prefill") - flops(base, "prefill") == pytest.approx(2.0 * gemm_weights, rel=1e-12)
    # without the dequant overhead the GEMM FLOPs are identical
    q0 = est(["weight_quant:scheme=w4a16,dequant_flops_per_weight=0"])
    assert flops(q0, "prefill") == flops(base, "prefill")
    assert flops(q0, "decode") == flops(base, "decode")
    assert q.tpot_s < base.tpot_s / 2  # decode reads a quarter of the LLM weights


def test_w8a8_and_fp8_use_the_quantized_peak_and_fail_where_missing():
    q = est(["weight_quant:scheme=w8a8,module=all"])
    gemms = [r for r in q.op_rows() if r["kind"] == GEMM]
    assert gemms and all(r["dtype"] == "int8" for r in gemms)
    assert all(r["dtype"] == "fp16" for r in q.op_rows() if r["kind"].startswith("attn"))
    assert q.ttft_s < est().ttft_s
    with pytest.raises(InfeasibleError, match="no fp8 compute"):
        apply_to_estimate(LLAVA, A100, ["weight_quant:scheme=fp8"], **KW)
    assert apply_to_estimate(LLAVA, A100, ["weight_quant:scheme=w8a8"], **KW).ttft_s > 0


# ---------------------------------------------------------------------------------------------------------------
# token reduction and merging


def test_visionzip_keeps_64_tokens_and_adds_a_selection_step():
    vz = est(["visionzip:tokens=64"])
    assert vz.visual_tokens == 64
    tok64 = [vz.images[0]]
    same = estimate_request(LLAVA, H100, **KW, tokenizations=tok64)
    assert flops(vz, "prefill") == flops(same, "prefill")  # the LLM sees exactly 64 + 64 tokens
    sel = {r["op"]: r["flops"] for r in vz.op_rows() if r["op"].startswith("technique.visionzip")}
    # CLS row of 16 heads over 577 keys, (2*64 + 5) FLOPs per score
    assert sel["technique.visionzip.scores"] == 16 * 577 * (2 * 64 + 5)
    # 54 dominant + 10 contextual: the 522 others are compared with the 10 targets over 1024 features
    assert sel["technique.visionzip.merge"] == pytest.approx((576 - 54) * 10 * (2 * 1024 + 1))
    assert flops(vz, "encode") == pytest.approx(flops(same, "encode") + sum(sel.values()))


def test_tome_layer_split_reproduces_encode_ops_and_derives_r8():
    cfg = default_graph_config(LLAVA, 1)
    plain = encode_ops(LLAVA, (577,), 576, 576, cfg)
    split = tome_encode_ops(LLAVA, (577,), 0, cfg, 576, 576)
    assert sum(o.total_flops for o in split) == pytest.approx(sum(o.total_flops for o in plain), rel=1e-12)
    assert sum(o.total_bytes for o in split) == pytest.approx(sum(o.total_bytes for o in plain), rel=1e-12)
    tm = est(["tome:r=8"])
    # 23 layers x 8 merged: 577 -> 393 ViT tokens leave the encoder; minus CLS, 392 visual tokens
    assert tm.visual_tokens == 392
    # tokens entering layer i: 577 - 8i; sum over 23 layers = 23*577 - 8*253 = 11,247; after merge 11,063
    attn_half = 2 * 1024 * (3072 + 1024) * 11_247  # qkv + o_proj on the tokens entering each layer
    mlp_half = 2 * 1024 * (4096 + 4096) * 11_063  # MLP after the merge
    vit_gemm = sum(r["flops"] for r in tm.op_rows() if r["module"] == "vision" and r["kind"] == GEMM)
    assert vit_gemm == pytest.approx(attn_half + mlp_half, rel=1e-12)
    assert flops(tm, "encode") < flops(est(), "encode")


def test_tome_refused_for_spatial_merge_projectors():
    with pytest.raises(SpecError, match="tome.*spatial grid"):
        compose(lvlmsim.load_model("qwen2-vl-7b"), H100, ["tome"])


def test_resolution_cap_rewrites_the_policy():
    qwen = lvlmsim.load_model("qwen2-vl-7b")
    full = compose(qwen, H100, []).tokenize_image(1344, 1008)
    capped = compose(qwen, H100, ["resolution_cap:max_pixels=401408"]).tokenize_image(1344, 1008)
    assert capped.llm_tokens < full.llm_tokens
    # smart_resize under 401,408 px (factor 28): 728x532 px -> 26x19 merged tokens + 2 special
    assert capped.llm_tokens == 26 * 19 + 2
    internvl = lvlmsim.load_model("internvl2.5-8b")
    one = compose(internvl, H100, ["resolution_cap:max_tiles=1"]).tokenize_image(1344, 1008)
    assert one.llm_tokens == 256 + 2  # one 448 px tile, no thumbnail, <img></img>
    notes = est(["resolution_cap:max_tiles=2"]).notes
    assert any("no effect" in n for n in notes)  # LLaVA-1.5 is fixed-resolution


# ---------------------------------------------------------------------------------------------------------------
# KV budget


def test_kv_budget_policy_views():
    p = KVBudgetPolicy(256, "prompt")
    assert p.kept(640, 576, 10) == (266, 576 * 256 // 640)
    r = KVBudgetPolicy(256, "rolling")
    assert r.kept(640, 576, 10)[0] == 256
    v = KVBudgetPolicy(64, visual_only=True)
    assert v.kept(640, 576, 10) == (64 + 64 + 10, 64)
    seq, pv = p.decode_view(SeqWork(new_tokens=1, past_tokens=650), 640, 576)
    assert (seq.past_tokens, pv) == (266, 230)


def test_kv_budget_cuts_decode_reads_and_memory():
    base, kb = est(), est(["kv_budget:tokens=64,visual_only=true"])
    assert kb.stages["decode"].bytes < base.stages["decode"].bytes
    # kept per sequence at the end: 64 prompt text + 128 output + 64 visual, vs the whole prompt held at prefill
    assert kb.memory.request_kv_bytes == (64 + 576) * 524_288  # prefill still holds all 640 prompt tokens
    assert kb.memory.request_kv_bytes < base.memory.request_kv_bytes


# ---------------------------------------------------------------------------------------------------------------
# speculative decoding


def test_expected_tokens_formula():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)
    comp = compose(LLAVA, H100, ["speculative:alpha=0.8,gamma=4"])
    rng = random.Random(0)
    draws = [comp.decode_policy.sample_tokens(rng) for _ in range(20_000)]
    assert max(draws) == 5 and min(draws) == 1
    assert sum(draws) / len(draws) == pytest.approx(expected_tokens(0.8, 4), rel=0.02)


@pytest.mark.parametrize("draft", ["heads", "llava-1.5-7b"])
def test_speculative_with_alpha_zero_is_never_faster(draft):
    base = est()
    sp = est([f"speculative:alpha=0,gamma=4,draft={draft}"])
    assert sp.tokens_per_decode_step == 1.0
    assert sp.tpot_s > base.tpot_s


def test_speculative_with_alpha_near_one_approaches_gamma_plus_one():
    gamma, overhead = 4, 0.05
    base = est(output_tokens=2)
    sp = est([f"speculative:alpha=0.999999,gamma={gamma},head_overhead={overhead}"], output_tokens=2)
    assert sp.tokens_per_decode_step == pytest.approx(gamma + 1, rel=1e-5)
    comp = compose(LLAVA, H100, [f"speculative:alpha=0.999999,gamma={gamma}"])
    step = (SeqWork(new_tokens=1, past_tokens=640),)
    verify = comp.decode_policy.verify_ops(step, (576,))
    head = next(op for op in verify if op.name == "llm.lm_head")
    assert head.shape == (gamma + 1, 32_000, 4096)  # logits at every drafted position
    assert next(op for op in verify if op.name == "llm.attention").shape[1] == gamma + 1
    # one decode step (output_tokens=2) at context 640: TPOT = (gamma drafts at 5% of a plain step + one
    # verification pass) / (gamma + 1)
    cm = CostModel(H100)
    t_plain = base.tpot_s
    t_verify = cm.time_s(verify)
    assert comp.decode_policy.step_time_s(cm, step, (576,)) == pytest.approx(gamma * overhead * t_plain + t_verify)
    assert sp.tpot_s == pytest.approx((gamma * overhead * t_plain + t_verify) / (gamma + 1), rel=1e-5)
    # verifying 5 tokens is still weight-bound, so it costs about one plain step:
    # speedup ~ (gamma+1) / (1 + gamma*overhead) = 4.17, never more than gamma + 1
    assert t_verify == pytest.approx(t_plain, rel=0.05)
    speedup = t_plain / sp.tpot_s
    assert (gamma + 1) / (1 + gamma * overhead) * 0.95 < speedup < gamma + 1


def test_draft_model_adds_its_weights_kv_and_prefill():
    sp = est(["speculative:alpha=0.7,gamma=3,draft=llava-1.5-7b"])
    base = est()
    assert sp.memory.weights_bytes == pytest.approx(base.memory.weights_bytes + param_counts(LLAVA)["llm"] * 2
                                                    + 192 * 524_288)  # draft weights + its text-only KV
    assert any(r["op"].startswith("draft.") for r in sp.op_rows() if r["stage"] == "prefill")


# ---------------------------------------------------------------------------------------------------------------
# reuse


def test_reuse_cache_lru_capacity_pins_and_hit_rate():
    c = ReuseCache(capacity_entries=2)
    assert not c.access("a", 10)
    assert not c.access("b", 10)
    assert c.access("a", 10)  # a becomes most recent
    assert not c.access("c", 10)  # evicts b (least recently used)
    assert "b" not in c and "a" in c and "c" in c
    assert (c.hits, c.misses, c.evictions) == (1, 3, 1)
    assert c.hit_rate == 0.25
    c.pin("a")
    c.access("d", 10)  # a is pinned: c goes
    assert "a" in c and "c" not in c
    b = ReuseCache(capacity_bytes=100)
    b.insert("x", 60)
    b.insert("y", 60)  # evicts x to fit
    assert "x" not in b and b.resident_bytes == 60
    b.insert("huge", 500)
    assert "huge" not in b and b.rejected == 1
    with pytest.raises(SpecError, match="capacity"):
        ReuseCache()


def test_reuse_hit_rate_scales_encode_and_prefill():
    base = est()
    r = est(["reuse:hit_rate=0.5,capacity_entries=10"])
    assert flops(r, "encode") == pytest.approx(0.5 * flops(base, "encode"))
    hit = llm_ops(LLAVA, (SeqWork(new_tokens=64, past_tokens=576),), "prefill", default_graph_config(LLAVA, 1),
                  (576,))
    assert flops(r, "prefill") == pytest.approx(0.5 * flops(base, "prefill") + 0.5 * sum(o.total_flops for o in hit))
    # ten images' encoder outputs (576 x 4096 x 2 B) and KV (576 x 524,288 B) are held on the device
    held = 10 * (576 * 4096 * 2 + 576 * 524_288)
    assert r.memory.weights_bytes == pytest.approx(base.memory.weights_bytes + held)
    assert r.to_dict()["reuse_hit_rate"] == 0.5


# ---------------------------------------------------------------------------------------------------------------
# composition, conflicts, errors, accuracy


def test_no_op_technique_reproduces_estimate_request_exactly():
    base, same = est(), est(["attention:kernel=flash"])
    for stage in ("encode", "prefill", "decode"):
        assert same.stages[stage].flops == base.stages[stage].flops
        assert same.stages[stage].time_s == base.stages[stage].time_s
    assert same.op_rows() == base.op_rows()
    assert same.memory.needed_bytes == base.memory.needed_bytes


@pytest.mark.parametrize("pair, what", [
    (["weight_quant:scheme=fp8,module=all", "weight_quant:scheme=w4a16,module=llm"], "weights of the llm module"),
    (["fastv", "pyramiddrop"], "in-LLM visual-token schedule"),
    (["visionzip", "prumerge"], "pre-LLM visual token reduction"),
    (["kv_quant:bits=4", "kv_quant:bits=8"], "KV-cache dtype"),
])
def test_conflicts_are_reported(pair, what):
    with pytest.raises(SpecError, match=what):
        compose(LLAVA, H100, pair)


def test_fp4_runs_llm_gemms_at_the_fp4_peak_on_blackwell_only():
    # NVFP4 W4A4 on B200: LLM weights at half a byte, every LLM GEMM in fp4 (9000 TFLOP/s dense vs 4500 for fp8),
    # the same FLOPs as bf16 (no dequantization in the kernel: the tensor cores take fp4 operands).
    b200 = lvlmsim.load_hardware("b200")
    base = apply_to_estimate(LLAVA, b200, [], **KW)
    q = apply_to_estimate(LLAVA, b200, ["weight_quant:scheme=fp4"], **KW)
    assert q.memory.weights_by_module["llm"] == param_counts(LLAVA)["llm"] * 0.5
    llm_gemms = [r for r in q.op_rows() if r["kind"] == GEMM and r["module"] == "llm"]
    assert llm_gemms and all(r["dtype"] == "fp4" for r in llm_gemms)
    assert flops(q, "prefill") == flops(base, "prefill")
    assert b200.peak_flops("fp4") == 2 * b200.peak_flops("fp8") == 9000e12
    # batch-1 decode reads a quarter of the LLM weight bytes; KV, activations and kernel floors stay (~0.51x here)
    assert q.ttft_s < base.ttft_s and q.tpot_s < 0.55 * base.tpot_s
    with pytest.raises(InfeasibleError, match="no fp4 compute"):
        apply_to_estimate(LLAVA, H100, ["weight_quant:scheme=fp4"], **KW)


def test_weight_quant_on_different_modules_compose():
    comp = compose(LLAVA, H100, ["weight_quant:scheme=w4a16,module=llm", "weight_quant:scheme=fp8,module=vision"])
    assert comp.cfg.weight_dtype == {"vision": "fp8", "projector": "fp16", "llm": "int4"}


@pytest.mark.parametrize("text, field", [
    ("fastv:keep=1.5", "keep"), ("fastv:kep=0.5", "kep"), ("kv_quant:bits=3", "bits"),
    ("weight_quant:scheme=int3", "scheme"), ("speculative:gamma=2", "alpha"), ("kv_budget:tokens=0", "tokens"),
    ("pyramiddrop:layers=16/8", "layers"), ("token_schedule:schedule=2:0.2/16:0.5", "schedule"),
    ("visionzip:tokens=64,keep=0.5", "tokens/keep"), ("fastv:accuracy_delta=-1", "accuracy_source"),
])
def test_bad_params_name_the_field(text, field):
    with pytest.raises(SpecError, match=field):
        parse_technique(text)


def test_unknown_kind_lists_allowed_kinds():
    with pytest.raises(SpecError, match=r"Did you mean: fastv\?.*Allowed kinds: attention, fastv"):
        parse_technique("fastvv:keep=0.5")


def test_accuracy_is_reported_as_given_never_invented():
    e = est(["fastv:layer=2,keep=0.5,accuracy_delta=-0.8,accuracy_source=FastV Table 1 (LLaVA-1.5-13B)",
             "kv_quant:bits=8"])
    acc = {a["technique"].split(":")[0]: a for a in e.to_dict()["accuracy"]}
    assert acc["fastv"]["accuracy_delta"] == -0.8
    assert acc["fastv"]["accuracy_source"].startswith("FastV Table 1")
    assert acc["kv_quant"]["accuracy_delta"] is None
    assert any("accuracy -0.8 points" in n for n in e.notes)
    assert any("kv_quant: no accuracy figure given" in n for n in e.notes)


def test_dict_and_config_inputs_match_strings():
    a = est(["fastv:layer=3,keep=0.25"])
    b = est([{"kind": "fastv", "layer": 3, "keep": 0.25}])
    c = est([parse_technique("fastv:layer=3,keep=0.25")])
    assert a.to_dict() == b.to_dict() == c.to_dict()


def test_engine_hooks_match_the_estimate_without_techniques():
    comp = compose(LLAVA, H100, [])
    cm = CostModel(H100)
    seqs = (SeqWork(new_tokens=1, past_tokens=700),) * 4
    plain = cm.time_s(llm_ops(LLAVA, seqs, "decode", comp.cfg, (576,) * 4))
    assert comp.decode_step_time_s(cm, seqs, (576,) * 4) == pytest.approx(plain, rel=1e-12)
    assert comp.decode_view(seqs[0], 640, 576) == (seqs[0], 576)
    tok = tokenize_image(LLAVA, 336, 336)
    assert comp.tokenize_image(336, 336) == tok
    assert cm.time_s(comp.encode_ops([tok])) == pytest.approx(cm.time_s(encode_ops(LLAVA, (577,), 576, 576,
                                                                                   comp.cfg)))


@pytest.mark.parametrize("text", ["fastv:layer=2,,keep=0.5", "fastv:layer=2,", "fastv:,layer=2"])
def test_technique_with_an_empty_parameter_item_is_refused_not_dropped(text):
    """A doubled comma used to be skipped silently (found in wave 10's acceptance pass); every list flag refuses it."""
    with pytest.raises(SpecError, match=r"technique 'fastv': empty item"):
        parse_technique(text)
