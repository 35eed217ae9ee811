"""The expert-parallel all-to-all as a measured family (issue 12): NCCL's `alltoall` rows loaded as the graph's ALLTOALL
op, the all-reduce family's form with one latency instead of log2(n), fitted in the device-general model, and `auto`
on a device whose own profile lacks it priced by the general model's family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvlmsim.calibrate import fit as F
from lvlmsim.calibrate.general import GeneralFamily, GeneralModel, _to_z, fit_general_family
from lvlmsim.calibrate.measured import FAMILIES, Measurement, alltoall_op, load_nccl
from lvlmsim.calibrate.model import FamilyFit, FittedProfile, form_for, op_regime
from lvlmsim.calibrate.profiles import fitted_base, general_model, load_profile_for, shipped_profile_for
from lvlmsim.calibrate.validate import validate
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.cost.roofline import CostModel
from lvlmsim.ops.op import ALLTOALL
from lvlmsim.specs.registry import load_hardware

H100 = load_hardware("h100-sxm")  # NVSwitch: 450 GB/s per direction, 5 us link latency
LINK_BPS, LINK_LAT_S = 450e9, 5e-6


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# three all-to-all rows: 524288 half elements = 1 MiB per device on 2, 4 and 8 GPUs (latency in ms)
THREE_ROWS = ("op_name,kernel_source,nccl_dtype,num_gpus,message_size,latency\n"
              "alltoall,NCCL,half,2,524288,0.0200\nalltoall,NCCL,half,4,524288,0.0250\n"
              "alltoall,NCCL,half,8,524288,0.0300\nall_reduce,NCCL,half,8,524288,0.0400\n")


def test_nccl_alltoall_rows_are_the_graphs_alltoall_op(tmp_path):
    """message_size is the per-device element count (x 2 B for half): the op carries 1 MiB per device."""
    path = tmp_path / "nccl_perf.csv"
    _write(path, THREE_ROWS)
    res = load_nccl(path, "nccl_perf.csv")
    a2a = [r for r in res.rows if r.family == "alltoall"]
    assert [r.op.devices for r in a2a] == [2, 4, 8] and [r.family for r in res.rows].count("nccl") == 1
    assert all(r.op.kind == ALLTOALL and r.op.bytes_read == 1048576.0 for r in a2a)
    assert a2a[0].measured_s == pytest.approx(20e-6)
    assert F.group_key(a2a[0]) == "alltoall" and FAMILIES["alltoall"].regime(a2a[0]) == "msg 64 KiB-4 MiB"


def test_validate_reports_the_alltoall_family_against_the_flat_derate_by_hand(tmp_path):
    """Flat derate: t = (n-1)/n x 1 MiB / (0.8 x 450 GB/s) + 5 us latency + 8 us floor = 14.456 / 15.184 / 15.549 us
    against 20 / 25 / 30 us measured: |error| 27.72, 39.26, 48.17%; median 39.26."""
    root = tmp_path / "h100_sxm"
    _write(root / "comm/nccl/1/nccl_perf.csv", THREE_ROWS)
    report, info = validate(H100, root, DEFAULT_PROFILE)
    fam = report["alltoall"]
    assert fam["n"] == 3 and report["nccl"]["n"] == 1
    want = [abs(((n - 1) / n * 1048576 / (0.8 * LINK_BPS) + LINK_LAT_S + 8e-6) / t - 1) * 100
            for n, t in ((2, 20e-6), (4, 25e-6), (8, 30e-6))]
    assert want == pytest.approx([27.72, 39.26, 48.17], abs=0.01)
    assert fam["median_abs_pct_err"] == pytest.approx(39.26, abs=0.01)
    assert not any("alltoall" in k for k in info["skipped"])


def test_alltoall_form_replaces_one_latency_by_the_fitted_a0_a1():
    """e(n) x S(bytes) scales the link term; a0 + a1 (n-1) replaces the cost model's one 5 us latency. With e2 0.5,
    e8 0.8, b0 1 MB, pb 1, a0 10 us, a1 1 us at 3 MB (S = 0.75): 8 GPUs 7/8 x 3e6 / (0.6 x 450e9) + 17 us = 26.722 us,
    2 GPUs 1/2 x 3e6 / (0.375 x 450e9) + 11 us = 19.889 us."""
    params = {"e2": 0.5, "e4": 0.6, "e8": 0.8, "b0": 1e6, "pb": 1.0, "a0": 10e-6, "a1": 1e-6}
    prof = FittedProfile("t", "h100-sxm", {"alltoall": FamilyFit(kind=ALLTOALL, params=params)})
    cm = CostModel(H100, prof)
    assert cm.cost(alltoall_op(3e6, 8)).time_s == pytest.approx(26.7222e-6, rel=1e-5)
    assert cm.cost(alltoall_op(3e6, 2)).time_s == pytest.approx(19.8889e-6, rel=1e-5)
    assert cm.cost(alltoall_op(3e6, 8)).source == "calibrated:t:alltoall"


def _truth() -> GeneralFamily:
    form = form_for(ALLTOALL)
    nat = {"e2": 0.55, "e4": 0.66, "e8": 0.72, "b0": 5e6, "pb": 0.7, "a0": 9e-6, "a1": 0.4e-6}
    z = _to_z(form, [nat[n] for n in form.param_names], 10e-6)
    return GeneralFamily("alltoall", ALLTOALL, dict(zip(form.param_names, z, strict=True)), {}, {}, 10e-6)


def test_joint_fit_recovers_synthetic_alltoall_times():
    """Rows drawn from known parameters (2/4/8 GPUs, 256 B - 256 MiB, 2% noise): the fit prices them within 2%."""
    rng = np.random.default_rng(3)
    truth = GeneralModel("t", {"alltoall": _truth()}).profile_for(H100)
    ops = [alltoall_op(float(b), int(n)) for b in 2.0 ** np.arange(8, 29) for n in (2, 4, 8)]
    clean = F.cost_model_times([Measurement(o, 1.0, "alltoall", "t") for o in ops], H100, truth)
    rows = [Measurement(o, float(t * np.exp(rng.normal(0, 0.02))), "alltoall", "synthetic")
            for o, t in zip(ops, clean, strict=True)]
    got = fit_general_family("alltoall", {"h100-sxm": (H100, rows)})
    pred = F.cost_model_times(rows, H100, GeneralModel("g", {"alltoall": got}).profile_for(H100))
    assert np.median(np.abs(pred / clean - 1)) < 0.02


def test_auto_on_h100_prices_alltoall_by_the_general_models_family():
    """h100-sxm.json has no all-to-all family: `auto` borrows the general model's, and says so (source, expected
    error, band), while every other op keeps the device's own profile."""
    model = general_model()
    if model is None or "alltoall" not in model.families or shipped_profile_for("h100-sxm") is None:
        pytest.skip("no shipped general model with an alltoall family")
    assert "alltoall" not in shipped_profile_for("h100-sxm").families
    from lvlmsim.api import estimate

    est = estimate("qwen3-vl-30b-a3b", "h100-sxm", batch=8, output_tokens=2, tp=8, ep=8)
    rows = [r for r in est.op_rows() if r["kind"] == ALLTOALL]
    assert rows and all(r["source"] == "general:general-gpu:alltoall" for r in rows)
    # expected error: the family's held-out median in the op's message-size regime (decode: <= 64 KiB per device)
    errors = model.families["alltoall"].regime_errors
    assert all(r["measured_error_pct"] == errors[op_regime(alltoall_op(*r["shape"]))] for r in rows)
    assert {r["measured_error_pct"] for r in rows if r["stage"] == "decode"} == {errors["msg <=64 KiB"]}
    gemm = next(r for r in est.op_rows() if r["op"] == "llm.qkv_proj")
    assert gemm["source"] == "calibrated:h100-sxm:gemm"
    prof = load_profile_for(H100, "auto")
    assert prof.band_for_op("general:general-gpu:alltoall", alltoall_op(1e6, 8)) is not None
    assert fitted_base(load_profile_for(load_hardware("a100-sxm-80gb"))).source_for(ALLTOALL) \
        == "general:general-gpu:alltoall"
