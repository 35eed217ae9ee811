"""Measured-table importers: the conventions of aiconfigurator's and Vidur's tables, turned into graph-built Ops."""

from __future__ import annotations

import pytest
from shared_data import MEASURED, needs_shared

from lvlmsim.calibrate.measured import (
    decode_attention_op,
    gemm_op,
    load_aiconfigurator,
    load_vidur_mlp,
    op_from_row,
    prefill_attention_op,
    sliding_decode_attention_op,
    sliding_prefill_attention_op,
)
from lvlmsim.ops.op import ALLREDUCE, ALLTOALL, ATTN_DECODE, ATTN_ENCODER, ATTN_PREFILL, CONV, ELEMENTWISE, GEMM
from lvlmsim.specs.registry import load_hardware


def test_conventions_on_builders():
    d = decode_attention_op(batch=2, step=99, heads=32, kv_heads=8, head_dim=128)
    assert d.kind == ATTN_DECODE and d.shape[2] == 100  # step + 1 entries read
    assert d.flops == 4 * 32 * 128 * 2 * 100
    p = prefill_attention_op(batch=1, isl=10, heads=4, kv_heads=4, head_dim=64)
    assert p.flops == 4 * 4 * 64 * (10 * 11 / 2)  # causal from an empty cache
    assert p.bytes_written > 10 * 4 * 64 * 2  # output + the K/V write
    g8 = gemm_op(16, 4096, 4096, "fp8")
    assert g8.dtype == "fp8" and g8.weight_bytes == 4096 * 4096  # 1-byte weights, priced at the fp8 peak
    assert load_hardware("h100-sxm").peak_flops(g8.dtype) == pytest.approx(1978.9e12)


@pytest.mark.parametrize("op", [gemm_op(7, 1000, 333), prefill_attention_op(2, 300, 16, 4, 128),
                                decode_attention_op(3, 511, 8, 8, 64)])
def test_op_from_row_roundtrip(op):
    assert op_from_row(op.kind, op.shape, op.dtype) == op


def test_op_from_row_kinds():
    assert op_from_row(CONV, (576, 1024, 588), "fp32").kind == CONV
    assert op_from_row(ATTN_ENCODER, (2, 576, 576, 16, 16, 72), "fp32").flops == 4 * 16 * 72 * 2 * 576 * 576
    assert op_from_row(ELEMENTWISE, (1000,), "fp32", "add").bytes == 3 * 1000 * 4
    assert op_from_row(ALLREDUCE, (1e6, 4), "bf16").devices == 4


def test_sliding_window_measured_ops_derived_by_hand():
    """Decode at step 4095 under a 128-key window reads 128 entries; a 4096-token causal prefill under a 128-key
    window has 128*129/2 + (4096-128)*128 = 8256 + 507,904 = 516,160 query-key pairs (vs 8,390,656 unwindowed)."""
    d = sliding_decode_attention_op(2, 4095, 32, 8, 128, 128)
    assert d.shape[2] == 128 and d.flops == 4 * 32 * 128 * 2 * 128
    p = sliding_prefill_attention_op(1, 4096, 32, 8, 128, 128)
    assert p.flops == 4 * 32 * 128 * 516_160
    assert p.flops < prefill_attention_op(1, 4096, 32, 8, 128).flops / 16


@pytest.mark.shared_data
@needs_shared
def test_aiconfigurator_h100_import():
    res = load_aiconfigurator(MEASURED / "aiconfigurator/data/h100_sxm")
    fams = {r.family for r in res.rows}
    assert fams == {"gemm", "context_attention", "generation_attention", "encoder_attention", "nccl",
                    "custom_allreduce", "context_attention_sliding", "generation_attention_sliding", "alltoall"}
    kinds = {r.family: r.op.kind for r in res.rows}
    assert kinds["context_attention"] == ATTN_PREFILL and kinds["gemm"] == GEMM and kinds["nccl"] == ALLREDUCE
    assert kinds["alltoall"] == ALLTOALL and sum(r.family == "alltoall" for r in res.rows) == 126
    assert kinds["context_attention_sliding"] == ATTN_PREFILL and kinds["generation_attention_sliding"] == ATTN_DECODE
    assert not any("sliding" in k for k in res.skipped)
    # a 128-token window at step 4095 reads 128 KV entries, not 4096
    win = [r for r in res.rows if r.family == "generation_attention_sliding" and r.op.shape[2] == 128.0]
    assert win and all(r.op.shape[2] <= 8192 for r in res.rows if r.family == "generation_attention_sliding")
    nccl = [r for r in res.rows if r.family == "nccl" and r.tag == "half"]
    sizes = {r.op.bytes_read for r in nccl}
    assert 256 * 2 in sizes and 268435456 * 2 in sizes  # element count x 2 bytes for half
    assert all(r.measured_s < 1 for r in res.rows)  # ms -> s
    gen = next(r for r in res.rows if r.family == "generation_attention")
    assert gen.op.shape[1] == 1.0


@pytest.mark.shared_data
@needs_shared
def test_vidur_mlp_import():
    path = MEASURED / "vidur/data/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv"
    res = load_vidur_mlp(path)
    gemms = [r for r in res.rows if r.family == "gemm"]
    assert gemms and all(r.op.dtype == "fp16" for r in gemms)
    up = next(r for r in gemms if r.tag == "vidur.mlp_up_proj" and r.op.shape[0] == 4096)
    assert up.op.shape[1:] in ((2 * 11008, 4096), (11008, 4096), (2 * 11008 // 2, 4096), (2 * 5504, 4096),
                               (2 * 2752, 4096), (2 * 1376, 4096))
    assert {r.tag for r in res.rows if r.family == "elementwise"} >= {"vidur.add", "vidur.mlp_act"}
