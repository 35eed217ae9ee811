"""Cost model: the roofline formula, bound labels, provenance, and monotonicity in hardware."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvlmsim.cost import CostModel, DefaultProfile, PeakProfile, allreduce_s
from lvlmsim.errors import InfeasibleError
from lvlmsim.ops.graph import allreduce, attention, gemm
from lvlmsim.ops.op import ATTN_DECODE, GraphConfig
from lvlmsim.specs import load_hardware

CFG = GraphConfig()


def test_large_gemm_is_compute_bound_at_derated_peak():
    hw = load_hardware("h100-sxm")
    op = gemm("g", "prefill", "llm", 8192, 8192, 8192, CFG)
    c = CostModel(hw, DefaultProfile()).cost(op)
    # 2 * 8192^3 = 1.0995e12 FLOP at 0.75 * 989.4 TFLOP/s = 1.4817 ms, plus the 3 us floor
    assert c.bound == "compute"
    assert c.time_s == pytest.approx(2 * 8192**3 / (0.75 * 989.4e12) + 3e-6, rel=1e-9)
    assert c.source == "roofline-default"


def test_decode_gemm_is_memory_bound():
    hw = load_hardware("h100-sxm")
    op = gemm("g", "decode", "llm", 1, 4096, 4096, CFG)
    c = CostModel(hw, PeakProfile()).cost(op)
    # bytes: x 4096*2 + W 4096*4096*2 + y 4096*2 = 33,570,816 at 3.35 TB/s = 10.02 us
    assert c.bound == "memory"
    assert c.time_s == pytest.approx(33_570_816 / 3.35e12, rel=1e-9)


def test_tiny_op_is_overhead_bound():
    hw = load_hardware("h100-sxm")
    op = gemm("g", "decode", "llm", 1, 64, 64, CFG)
    assert CostModel(hw).cost(op).bound == "overhead"


def test_missing_dtype_fails_clearly():
    hw = load_hardware("a100-sxm-80gb")
    op = gemm("g", "prefill", "llm", 128, 128, 128, GraphConfig(compute_dtype={"llm": "fp8"}))
    with pytest.raises(InfeasibleError, match="no fp8 compute"):
        CostModel(hw).cost(op)


def test_allreduce_matches_hand_formula():
    # 8 devices, 64 MiB message, 450 GB/s per direction, 2 us small-message latency: the ring moves 2*7/8 of the
    # message over each link, and the latency grows with the tree depth log2(8) = 3: 2*7/8 * 64Mi / 450e9 + 3 * 2e-6
    t = allreduce_s(64 * 2**20, 8, 450e9, 2e-6)
    assert t == pytest.approx(2 * 7 / 8 * 64 * 2**20 / 450e9 + 3 * 2e-6)
    assert allreduce_s(1e6, 1, 450e9, 2e-6) == 0.0
    # a tiny message on 2 devices costs one link latency
    assert allreduce_s(0.0, 2, 450e9, 5e-6) == pytest.approx(5e-6)


def test_allreduce_on_a_mesh_uses_the_links_of_its_group():
    # MI300X, 64 MiB bf16 all-reduce at the pure roofline: tp=2 crosses one 64 GB/s xGMI link,
    # 2*1/2 * 64Mi / 64e9 + log2(2) * 10 us; tp=8 spreads over 7 links, 2*7/8 * 64Mi / 448e9 + 3 * 10 us.
    hw = load_hardware("mi300x")
    cm = CostModel(hw, PeakProfile())
    msg = 64 * 2**20
    t2 = cm.cost(allreduce("ar", "prefill", "llm", msg, GraphConfig(tp=2))).time_s
    t8 = cm.cost(allreduce("ar", "prefill", "llm", msg, GraphConfig(tp=8))).time_s
    assert t2 == pytest.approx(msg / 64e9 + 10e-6)
    assert t8 == pytest.approx(2 * 7 / 8 * msg / 448e9 + 3 * 10e-6)


@settings(max_examples=50, deadline=None)
@given(m=st.integers(1, 8192), n=st.integers(1, 8192), k=st.integers(1, 8192), scale=st.floats(1.0, 10.0))
def test_more_bandwidth_or_peak_never_slower(m, n, k, scale):
    hw = load_hardware("l40s")
    faster_bw = hw.model_copy(update={"mem_bw_gbps": hw.mem_bw_gbps * scale})
    faster_peak = hw.model_copy(update={"peak_tflops": {d: v * scale for d, v in hw.peak_tflops.items()}})
    op = gemm("g", "prefill", "llm", m, n, k, CFG)
    base = CostModel(hw).cost(op).time_s
    assert CostModel(faster_bw).cost(op).time_s <= base
    assert CostModel(faster_peak).cost(op).time_s <= base


def test_decode_attention_time_grows_with_context():
    hw = load_hardware("h100-sxm")
    cm = CostModel(hw)

    def t(ctx: int) -> float:
        op = attention("a", ATTN_DECODE, "decode", "llm", batch=8, pairs=8 * ctx, q_tokens=8, kv_tokens_read=8 * ctx,
                       heads=32, kv_heads=8, head_dim=128, cfg=CFG)
        return cm.cost(op).time_s

    assert t(1000) < t(10_000) < t(100_000)


class _SkewedProfile:
    """Efficiencies of a fit that charged a shape's cost to the wrong side: a tiny compute share (the CPU GEMM form's
    one-row value, 0.28% of peak) or a tiny memory share."""

    name = "skewed"

    def __init__(self, compute: float, memory: float):
        self.compute, self.memory = compute, memory

    def efficiency(self, op, hw):
        from lvlmsim.cost.profile import Efficiency

        return Efficiency(self.compute, self.memory, 0.0, self.name)


def test_bound_label_follows_the_datasheet_ridge_whatever_the_fitted_split():
    """A batch-1 GEMV (1 FLOP/byte, CPU ridge 4.6e12 / 83.2e9 = 55.3 FLOP/byte) fitted at 0.28% of peak compute and
    34.4% of bandwidth takes max(33.55 MFLOP / (0.0028 x 4.6 TFLOP/s), 33.57 MB / (0.344 x 83.2 GB/s)) = 2.605 ms, the
    compute term: it was labelled compute-bound. Same time now, charged to memory: memory-bound at 33.57 MB / 2.605 ms
    = 12.9 GB/s (15.5% of bandwidth), compute at peak. Mirror case: a GEMM right of the ridge whose fit left memory
    the larger term is compute-bound at the same time."""
    cpu = load_hardware("cpu-generic")
    gemv = gemm("g", "decode", "llm", 1, 4096, 4096, CFG)
    flops, nbytes = 2 * 4096 * 4096, 2 * (4096 + 4096 * 4096 + 4096)
    assert (gemv.flops, gemv.bytes) == (flops, nbytes)
    body_s = max(flops / (0.0028 * 4.6e12), nbytes / (0.344 * 83.2e9))
    assert body_s == pytest.approx(2.605e-3, rel=1e-3)
    c = CostModel(cpu, _SkewedProfile(0.0028, 0.344)).cost(gemv)
    assert c.bound == "memory" and c.time_s == pytest.approx(body_s, rel=1e-12)
    assert c.memory_s == pytest.approx(body_s, rel=1e-12) and c.compute_s == pytest.approx(flops / 4.6e12, rel=1e-12)
    assert (c.eff_compute, c.eff_memory) == (1.0, pytest.approx(nbytes / (83.2e9 * body_s), rel=1e-12))
    h100 = load_hardware("h100-sxm")
    big = gemm("g", "prefill", "llm", 8192, 8192, 8192, CFG)  # 2731 FLOP/byte, ridge 295
    c = CostModel(h100, _SkewedProfile(0.75, 0.01)).cost(big)
    body_s = big.bytes / (0.01 * 3.35e12)
    assert c.bound == "compute" and c.time_s == pytest.approx(body_s, rel=1e-12)
    assert c.compute_s == pytest.approx(body_s, rel=1e-12) and c.eff_memory == 1.0
    # a split that already agrees with the ridge is left as fitted
    c = CostModel(h100, _SkewedProfile(0.5, 0.7)).cost(big)
    assert (c.bound, c.eff_compute, c.eff_memory) == ("compute", 0.5, 0.7)


def test_cpu_decode_gemms_are_not_labelled_compute_bound():
    """The shipped CPU profile prices qwen2.5-vl-7b's decode GEMMs (1 FLOP/byte) with its fitted per-row compute cost;
    they sit far left of the CPU's 55 FLOP/byte ridge, so memory (or overhead), never compute, and the time is the
    profile's: the max of its own two terms."""
    from lvlmsim import api

    est = api.estimate(model="qwen2.5-vl-7b", hardware="cpu-generic")
    cpu = load_hardware("cpu-generic")
    gemms = [c for c in est.stages["decode"].ops if c.op.kind == "gemm"]
    assert gemms and all(c.bound == "memory" for c in gemms)
    for c in gemms:
        eff = est.cost_profile.efficiency(c.op, cpu)
        fitted_body_s = max(c.op.flops / (eff.compute * cpu.peak_flops(c.op.dtype)),
                            c.op.bytes / (eff.memory * cpu.mem_bw_bytes_per_s))
        assert c.time_s == pytest.approx(fitted_body_s + eff.floor_s, rel=1e-12)
