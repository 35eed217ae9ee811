"""Operator graph: parameter counts and FLOPs checked against hand derivations and published figures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvlmsim.ops.graph import encode_ops, layer_segments, llm_ops, llm_params, param_counts
from lvlmsim.ops.op import ATTN_DECODE, ATTN_PREFILL, GraphConfig, SeqWork
from lvlmsim.specs import LanguageModelSpec, load_model

CFG = GraphConfig()


def llama2_7b() -> LanguageModelSpec:
    return LanguageModelSpec(name="llama-2-7b", num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=32,
                             head_dim=128, intermediate_size=11008, vocab_size=32000)


def test_llama2_7b_params_match_published_6_74b():
    # embeddings + untied head: 2 * 32000 * 4096 = 262,144,000
    # per layer: attention 4 * 4096^2 = 67,108,864; gated MLP 3 * 4096 * 11008 = 135,266,304; 2 norms 8,192
    # 32 layers: 6,476,267,520; final norm 4,096 -> 6,738,415,616 (published: 6.74 B)
    n = llm_params(llama2_7b())
    assert n == 6_738_415_616
    assert abs(n / 6.74e9 - 1) < 0.005


def test_llava_1_5_7b_params_about_7_06b():
    # CLIP ViT-L/14-336: ~303.5 M (24 layers of 12.6 M + patch/position embeddings); projector 1024x4096 + 4096x4096
    # (+ biases) = 20.98 M; LLM 6.738 B -> 7.063 B. Published LLaVA-1.5-7B: about 7.06 B.
    counts = param_counts(load_model("llava-1.5-7b"))
    assert counts["projector"] == 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    total = sum(counts.values())
    assert abs(total / 7.06e9 - 1) < 0.005


def test_prefill_flops_of_640_token_llava_request_derived_independently():
    # 576 visual + 64 text = 640 tokens through Llama-2-7B-shaped vicuna.
    # Linear layers per token: 2 * (4*4096^2 + 3*4096*11008) = 2 * 202,375,168 = 404,750,336 FLOPs per layer
    #   -> 640 tokens * 32 layers: 8,289,286,881,280
    # causal attention: 4 * heads * head_dim * pairs, pairs = 640*641/2 = 205,120 -> 4*32*128*205,120 = 3,360,686,080
    #   per layer -> 32 layers: 107,541,954,560
    # LM head on the last token only: 2 * 4096 * 32000 = 262,144,000
    # elementwise (norms 5/elem x2, residual 1/elem x2, rotary 3/elem on q and k, SiLU*mul 8/elem, per layer):
    #   640 * (2*5*4096 + 2*4096 + 3*2*4096 + 8*11008) = 640 * 161,792 = 103,546,880 per layer -> 3,313,500,160
    #   final norm 5 * 4096 = 20,480
    model = load_model("llava-1.5-7b")
    ops = llm_ops(model, (SeqWork(new_tokens=640, visual_new=576),), "prefill", CFG)
    expected = 8_289_286_881_280 + 107_541_954_560 + 262_144_000 + 3_313_500_160 + 20_480
    assert sum(op.total_flops for op in ops) == pytest.approx(expected, rel=1e-12)
    attn = [op for op in ops if op.kind == ATTN_PREFILL]
    assert len(attn) == 1 and attn[0].total_flops == pytest.approx(107_541_954_560)


def test_lm_head_runs_only_on_emitting_sequences():
    model = load_model("llava-1.5-7b")
    chunk = llm_ops(model, (SeqWork(new_tokens=512, emits_token=False),), "prefill", CFG)
    last = llm_ops(model, (SeqWork(new_tokens=512, past_tokens=512, emits_token=True),), "prefill", CFG)
    assert not any(op.name == "llm.lm_head" for op in chunk)
    head = [op for op in last if op.name == "llm.lm_head"][0]
    assert head.shape == (1, 32000, 4096)


def test_gqa_reads_fewer_kv_bytes_than_mha():
    model = load_model("qwen2-vl-7b")  # 28 query heads, 4 KV heads of 128
    seq = (SeqWork(new_tokens=1, past_tokens=4096),)
    attn = [op for op in llm_ops(model, seq, "decode", CFG) if op.kind == ATTN_DECODE][0]
    # K and V of 4097 tokens, 4 heads x 128 x 2 bytes, plus Q and O of one token (28 x 128 x 2 bytes each)
    kv = 2 * 4097 * 4 * 128 * 2
    qo = 2 * 28 * 128 * 2
    new_kv = 2 * 1 * 4 * 128 * 2
    assert attn.bytes == pytest.approx(kv + qo + new_kv)


def test_naive_attention_adds_score_matrix_traffic():
    model = load_model("llava-1.5-7b")
    seq = (SeqWork(new_tokens=640),)
    flash = [op for op in llm_ops(model, seq, "prefill", CFG) if op.kind == ATTN_PREFILL][0]
    naive_cfg = GraphConfig(flash_attention=False)
    naive = [op for op in llm_ops(model, seq, "prefill", naive_cfg) if op.kind == ATTN_PREFILL][0]
    pairs = 640 * 641 / 2
    # S and P are each written once and read once: 4 passes of heads * pairs bf16 scores
    assert naive.bytes - flash.bytes == pytest.approx(4 * 32 * pairs * 2)
    assert naive.flops > flash.flops


def test_tensor_parallel_splits_gemms_and_adds_two_allreduces_per_layer():
    model = load_model("llava-1.5-7b")
    seq = (SeqWork(new_tokens=100),)
    one = {op.name: op for op in llm_ops(model, seq, "prefill", CFG)}
    four = {op.name: op for op in llm_ops(model, seq, "prefill", GraphConfig(tp=4))}
    assert four["llm.mlp_up"].flops == pytest.approx(one["llm.mlp_up"].flops / 4)
    assert "llm.allreduce" not in one
    assert four["llm.allreduce"].count == 2 * 32
    assert four["llm.allreduce"].bytes_read == 100 * 4096 * 2


def test_window_attention_costs_less_than_full_for_qwen25_vit():
    model = load_model("qwen2.5-vl-7b")
    full_layers = len(model.vision.window.full_attention_layers)
    seq = (4096,)  # a 64x64-patch image: 64 windows of 8x8 patches
    ops = encode_ops(model, seq, 4096, 1024, CFG)
    window = [op for op in ops if op.name == "vision.attention.window"][0]
    full = [op for op in ops if op.name == "vision.attention"][0]
    assert full.count == full_layers
    assert window.count == model.vision.num_layers - full_layers
    # full: 4096^2 pairs; window: 64 windows x 64^2 pairs -> 64x fewer
    assert full.flops / window.flops == pytest.approx(64.0)


def test_layer_segments_follow_the_visual_token_schedule():
    assert layer_segments(32, ()) == [(0, 31, 1.0)]
    assert layer_segments(32, ((2, 0.5),)) == [(0, 1, 1.0), (2, 31, 0.5)]
    assert layer_segments(32, ((8, 0.5), (16, 0.25))) == [(0, 7, 1.0), (8, 15, 0.5), (16, 31, 0.25)]


@settings(max_examples=40, deadline=None)
@given(a=st.integers(1, 4000), extra=st.integers(1, 4000), batch=st.integers(1, 8))
def test_flops_monotone_in_tokens_and_batch(a, extra, batch):
    model = load_model("llava-1.5-7b")

    def flops(tokens: int, b: int) -> float:
        return sum(op.total_flops for op in llm_ops(model, (SeqWork(new_tokens=tokens),) * b, "prefill", CFG))

    assert flops(a + extra, batch) > flops(a, batch)
    assert flops(a, batch + 1) > flops(a, batch)
