"""The fitted MoE family (issue 12) prices a MoE layer's expert ops under `auto`: the fit's rows-per-expert compute
efficiency, size-dependent memory efficiency and per-layer fixed cost, its source, held-out error and band on every
op row; the router, collectives and every non-MoE op keep their profile."""

from __future__ import annotations

import dataclasses

import pytest

from lvlmsim.calibrate.moe_family import MoEFamily, MoEPricedProfile, shipped_moe_family
from lvlmsim.calibrate.profiles import load_profile_for
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.cost.roofline import CostModel
from lvlmsim.cost.uncertainty import family_band
from lvlmsim.estimate import estimate_request
from lvlmsim.ops.op import ELEMENTWISE, GEMM, MOE_GEMM, Op
from lvlmsim.specs.registry import load_hardware, load_model

FAMILY = MoEFamily(ec={"bf16": 0.5, "fp8": 0.4, "fp8_block": 0.3, "fp4": 0.6}, em=0.8, floor_s=40e-6,
                   fitted_on=("a", "b"), error_pct=30.0, band=(0.5, 2.0))


def _expert_gemm(pairs: float, touched: float, flops: float, bytes_read: float) -> Op:
    return Op(name="llm.moe_experts_up", kind=MOE_GEMM, stage="decode", module="llm", flops=flops,
              bytes_read=bytes_read, bytes_written=0.0, dtype="bf16", shape=(pairs, 1536, 2048, touched, 128),
              count=1)


def test_expert_gemm_efficiencies_by_hand():
    """32 token-expert rows over 8 touched experts: 4 rows each fill 4/128 of one 128-row tile per expert, so
    ec = 0.5 * 32 / (8 * 128) = 0.015625; em = 0.8; half the 40 us layer floor on each of the two GEMMs."""
    eff = FAMILY.efficiency(_expert_gemm(32, 8, 1e9, 1e6), load_hardware("h100-sxm"))
    assert eff.compute == pytest.approx(0.015625) and eff.memory == pytest.approx(0.8)
    assert eff.floor_s == pytest.approx(20e-6)
    assert eff.source == "general:moe-fit:moe_gemm" and eff.measured_error_pct == 30.0


def test_per_launch_floor_counts_the_kernels_of_each_gpus_moe_library():
    """A per-launch fit (floor "launch", 4 us) charges each GEMM half the layer's launches (moe.layer_launches, 128
    experts held, top-8, a decode batch): Triton on H100 / A100 router + align + count_and_sort + GEMM, act, GEMM,
    sum = 7; TRT-LLM-gen bf16 on B300 routing + GEMM1 + GEMM2 + finalize = 4 (fp4 adds vLLM's input quant: 5);
    FlashInfer CUTLASS on RTX PRO 6000 router + sort + expand + GEMM1 + act + GEMM2 + finalize = 7."""
    per_launch = MoEFamily(**{**FAMILY.__dict__, "floor_s": 4e-6, "floor": "launch"})
    op = _expert_gemm(32, 8, 1e9, 1e6)
    for hid, launches in (("h100-sxm", 7), ("a100-sxm-80gb", 7), ("b300", 4), ("rtx-pro-6000-server", 7)):
        assert per_launch.efficiency(op, load_hardware(hid)).floor_s == pytest.approx(2e-6 * launches), hid
    fp4 = dataclasses.replace(op, dtype="fp4")
    assert per_launch.efficiency(fp4, load_hardware("b300")).floor_s == pytest.approx(2e-6 * 5)


def test_expert_gemm_time_by_hand_on_h100():
    """999e6 bytes at 0.8 of 3350 GB/s = 372.76 us beats 1e9 FLOP at 0.015625 of 989.4 TFLOP/s = 64.69 us:
    memory-bound, + 20 us = 392.76 us."""
    cost = CostModel(load_hardware("h100-sxm"), MoEPricedProfile(DEFAULT_PROFILE, FAMILY)).cost(
        _expert_gemm(32, 8, 1e9, 999e6))
    assert cost.time_s == pytest.approx(999e6 / (0.8 * 3350e9) + 20e-6, rel=1e-4)
    assert cost.bound == "memory"


def test_many_rows_per_expert_fill_their_tiles():
    """4096 rows over 8 experts = 512 rows each = 4 whole tiles: the full 0.5 ceiling; 4100 rows pad to 5 tiles."""
    eff = FAMILY.efficiency(_expert_gemm(4096, 8, 1e12, 1e6), load_hardware("h100-sxm"))
    assert eff.compute == pytest.approx(0.5)
    assert FAMILY.efficiency(_expert_gemm(4100, 8, 1e12, 1e6), load_hardware("h100-sxm")).compute == pytest.approx(
        0.5 * 4100 / (8 * 5 * 128))


def test_layer_elementwise_ops_carry_no_floor_of_their_own_and_others_keep_the_base():
    hw = load_hardware("h100-sxm")
    prof = MoEPricedProfile(DEFAULT_PROFILE, FAMILY)
    act = Op(name="llm.moe_act", kind=ELEMENTWISE, stage="decode", module="llm", flops=1e6, bytes_read=1e6,
             bytes_written=0.0, dtype="bf16", shape=(1,), count=1)
    assert prof.efficiency(act, hw).floor_s == 0.0 and prof.efficiency(act, hw).memory == 0.8
    router = Op(name="llm.moe_router", kind=GEMM, stage="decode", module="llm", flops=1e6, bytes_read=1e6,
                bytes_written=0.0, dtype="bf16", shape=(1, 128, 2048), count=1)
    assert prof.efficiency(router, hw) == DEFAULT_PROFILE.efficiency(router, hw)


def test_band_of_a_moe_source_is_the_fits_held_out_band():
    prof = MoEPricedProfile(DEFAULT_PROFILE, FAMILY)
    assert family_band(prof, "general:moe-fit:moe_gemm") == (0.5, 2.0)
    assert family_band(prof, "roofline-default") is None


def test_qwen3_moe_estimate_says_which_model_priced_each_moe_row():
    """Under auto on H100 the expert GEMMs and the layer's elementwise ops name the MoE fit; the router does not."""
    hw = load_hardware("h100-sxm")
    est = estimate_request(load_model("qwen3-vl-30b-a3b"), hw, images=1, prompt_tokens=64, output_tokens=16,
                           profile=load_profile_for(hw, "auto"))
    fam = shipped_moe_family()
    assert fam is not None and fam.band is not None
    rows = {r["op"]: r for r in est.op_rows()}
    expert_rows = [r for r in rows.values() if r["kind"] == MOE_GEMM]
    assert expert_rows and all(r["source"] == "general:moe-fit:moe_gemm" for r in expert_rows)
    assert all(r["measured_error_pct"] == fam.error_pct for r in expert_rows)
    assert rows["llm.moe_combine"]["source"] == "general:moe-fit:elementwise"
    assert not rows["llm.moe_router"]["source"].startswith("general:moe-fit")
