"""The fitted MLA family (issue 16) prices MLA cores under `auto`: the additive compute + memory time of the fit,
the per-call overhead on the floor, its source and held-out error on every op row; other ops keep their profile."""

from __future__ import annotations

import json

import pytest

from lvlmsim.calibrate.mla_family import FIT_FILE, MlaFamily, MlaPricedProfile, shipped_mla_family
from lvlmsim.calibrate.profiles import load_profile_for
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.cost.roofline import MEMORY, CostModel
from lvlmsim.cost.uncertainty import family_band
from lvlmsim.estimate import estimate_request
from lvlmsim.ops.op import ATTN_MLA_DECODE, ATTN_MLA_PREFILL, GEMM, Op
from lvlmsim.specs.registry import load_hardware, load_model, profiles_dir
from tests.shared_data import MEASURED, needs_shared

FAMILY = MlaFamily(overhead_decode_s=60e-6, overhead_prefill_s=80e-6, e_decode=0.8, e_prefill=0.5,
                   fitted_on=("a", "b"), errors_pct={ATTN_MLA_DECODE: 12.0, ATTN_MLA_PREFILL: 15.0},
                   bands={ATTN_MLA_DECODE: (0.8, 1.3), ATTN_MLA_PREFILL: (0.8, 1.4)})


def _op(kind: str, flops: float, bytes_read: float) -> Op:
    return Op(name="llm.attention", kind=kind, stage="decode", module="llm", flops=flops, bytes_read=bytes_read,
              bytes_written=0.0, dtype="bf16", shape=(1,), count=1)


def test_decode_core_time_is_compute_plus_memory_plus_overhead_by_hand():
    """H100 SXM (989.4 TFLOP/s bf16, 3350 GB/s): 1e9 FLOP at 0.75 = 1.3477 us; 1e9 B at 0.8 = 373.13 us; + 60 us
    overhead + 3 us floor = 437.48 us, memory-bound (the larger side carries the sum)."""
    hw = load_hardware("h100-sxm")
    cost = CostModel(hw, MlaPricedProfile(DEFAULT_PROFILE, FAMILY)).cost(_op(ATTN_MLA_DECODE, 1e9, 1e9))
    compute_s = 1e9 / (0.75 * hw.peak_flops("bf16"))
    memory_s = 1e9 / (0.8 * hw.mem_bw_bytes_per_s)
    assert cost.time_s == pytest.approx(compute_s + memory_s + 63e-6, rel=1e-9)
    assert cost.time_s == pytest.approx(437.48e-6, rel=1e-3)
    assert cost.bound == MEMORY and cost.compute_s == pytest.approx(compute_s)
    assert cost.source == "general:mla-fit:attn_mla_decode" and cost.measured_error_pct == 12.0


def test_prefill_core_uses_the_fitted_compute_efficiency():
    """1e12 FLOP at 0.5 of 989.4 TFLOP/s = 2.0214 ms, plus 1e8 B at 0.8 = 37.31 us, + 80 + 3 us."""
    hw = load_hardware("h100-sxm")
    cost = CostModel(hw, MlaPricedProfile(DEFAULT_PROFILE, FAMILY)).cost(_op(ATTN_MLA_PREFILL, 1e12, 1e8))
    assert cost.time_s == pytest.approx(1e12 / (0.5 * 989.4e12) + 1e8 / (0.8 * 3350e9) + 83e-6, rel=1e-6)
    assert cost.bound == "compute"


def test_other_ops_keep_the_base_profile():
    hw = load_hardware("h100-sxm")
    gemm = _op(GEMM, 1e9, 1e6)
    assert MlaPricedProfile(DEFAULT_PROFILE, FAMILY).efficiency(gemm, hw) == DEFAULT_PROFILE.efficiency(gemm, hw)


def test_band_of_an_mla_source_is_the_fits_held_out_band():
    prof = MlaPricedProfile(DEFAULT_PROFILE, FAMILY)
    assert family_band(prof, "general:mla-fit:attn_mla_prefill") == (0.8, 1.4)
    assert family_band(prof, "roofline-default") is None


def test_auto_prices_mla_cores_with_the_shipped_fit_on_gpus_only():
    """Every GPU (own profile or general model) gets the MLA family under auto; a TPU keeps the flat derate."""
    assert (profiles_dir() / FIT_FILE).is_file()
    op = _op(ATTN_MLA_DECODE, 1e9, 1e9)
    for hw_id in ("h100-sxm", "l40s"):
        hw = load_hardware(hw_id)
        assert load_profile_for(hw, "auto").efficiency(op, hw).source == "general:mla-fit:attn_mla_decode"
    tpu = load_hardware("tpu-v6e")
    assert load_profile_for(tpu, "auto").efficiency(op, tpu).source == "roofline-default"


def test_deepseek_vl2_estimate_says_which_model_priced_each_mla_row():
    est = estimate_request(load_model("deepseek-vl2"), load_hardware("h100-sxm"), images=1, prompt_tokens=64,
                           output_tokens=16, profile=load_profile_for(load_hardware("h100-sxm"), "auto"))
    mla_rows = [r for r in est.op_rows() if r["kind"] in (ATTN_MLA_DECODE, ATTN_MLA_PREFILL)]
    assert {r["kind"] for r in mla_rows} == {ATTN_MLA_DECODE, ATTN_MLA_PREFILL}
    fam = shipped_mla_family()
    for r in mla_rows:
        assert r["source"] == f"general:mla-fit:{r['kind']}"
        assert r["measured_error_pct"] == fam.errors_pct[r["kind"]]


@needs_shared
@pytest.mark.slow
def test_shipped_fit_is_reproduced_from_the_module_tables():
    """calibration/profiles/general/mla.json's all-devices parameters come out of fit_mla on the shared tables."""
    from lvlmsim.calibrate.mla import DEVICE_DIRS, device_rows, fit_mla, load_mla_modules

    devices = {}
    for folder, hw_id in DEVICE_DIRS.items():
        hw = load_hardware(hw_id)
        devices[hw_id] = device_rows(load_mla_modules(MEASURED / "aiconfigurator" / "data" / folder).rows, hw,
                                     load_profile_for(hw, "auto"))
    fit = fit_mla(devices)
    shipped = json.loads((profiles_dir() / FIT_FILE).read_text())["all"]["params"]
    assert fit.e_decode == pytest.approx(shipped["e_decode"]) and fit.e_prefill == pytest.approx(shipped["e_prefill"])
    assert fit.overhead_decode_s == pytest.approx(shipped["overhead_decode_s"])
