"""Fitted efficiency profiles: form consistency, fitting, JSON, lookup, and the CI quick calibration of this CPU."""

from __future__ import annotations

import json
import math
import random
import statistics
import time

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lvlmsim.calibrate import fit as F
from lvlmsim.calibrate.measured import (
    Measurement,
    allreduce_op,
    conv_op,
    decode_attention_op,
    elementwise_op,
    encoder_attention_op,
    gemm_op,
    prefill_attention_op,
)
from lvlmsim.calibrate.model import FORMS, FamilyFit, FittedProfile
from lvlmsim.calibrate.profiles import fitted_base, load_profile_for, shipped_profiles
from lvlmsim.cli.calibrate import register
from lvlmsim.cost.profile import DefaultProfile, EfficiencyProfile, PeakProfile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import ALLREDUCE, ATTN_DECODE, ATTN_ENCODER, ATTN_PREFILL, CONV, ELEMENTWISE, GEMM
from lvlmsim.specs.registry import load_hardware

H100 = load_hardware("h100-sxm")
CPU = load_hardware("cpu-generic")


def _init_params(kind: str) -> dict[str, float]:
    return {q.name: q.init for q in FORMS[kind].params}


def _hyper(kind: str, pick: int = -1) -> dict[str, float]:
    return {k: v[pick] for k, v in FORMS[kind].hyper_grid.items()}


def _ops(kind: str, n: int, rng: random.Random):
    ops = []
    for _ in range(n):
        if kind == GEMM:
            ops.append(gemm_op(rng.choice([1, 7, 17, 130, 1000, 4097]), rng.choice([64, 1000, 4096]),
                               rng.choice([128, 777, 8192])))
        elif kind == CONV:
            ops.append(conv_op(rng.choice([256, 576, 1024]), rng.choice([768, 1152]), 3, rng.choice([14, 16])))
        elif kind == ATTN_PREFILL:
            ops.append(prefill_attention_op(rng.choice([1, 4]), rng.choice([1, 100, 2048]), 32, rng.choice([8, 32]),
                                            rng.choice([64, 128])))
        elif kind == ATTN_ENCODER:
            ops.append(encoder_attention_op(rng.choice([1, 8]), rng.choice([16, 576, 4096]), 16,
                                            rng.choice([64, 72, 80])))
        elif kind == ATTN_DECODE:
            ops.append(decode_attention_op(rng.choice([1, 64]), rng.choice([1, 500, 30000]), 32, 8,
                                           rng.choice([64, 128])))
        elif kind == ELEMENTWISE:
            ops.append(elementwise_op(rng.choice([1e3, 1e6, 1e8]), "bf16", 2.0, 1.0, 1.0))
        else:
            ops.append(allreduce_op(rng.choice([1e3, 1e6, 1e9]), rng.choice([2, 4, 8])))
    return ops


@pytest.mark.parametrize("kind", [GEMM, CONV, ATTN_PREFILL, ATTN_ENCODER, ATTN_DECODE, ELEMENTWISE, ALLREDUCE])
def test_float_path_matches_numpy_fit_path(kind):
    """FittedProfile.efficiency (floats, hot path) through CostModel == fit.predict (numpy): one model, two paths."""
    rng = random.Random(7)
    ops = _ops(kind, 40, rng)
    rows = [Measurement(op, 1e-3, "x", "test") for op in ops]
    params = {k: v * rng.uniform(0.7, 1.3) if FORMS[kind].params[i].kind != "eff" else v
              for i, (k, v) in enumerate(_init_params(kind).items())}
    fam = FamilyFit(kind=kind, params=params, hyper=_hyper(kind))
    prof = FittedProfile("t", H100.id, {kind: fam})
    got = F.cost_model_times(rows, H100, prof)
    want = F.predict(FORMS[kind], [params[n] for n in FORMS[kind].param_names], fam.hyper,
                     F.family_data(kind, rows, H100))
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_fit_recovers_synthetic_gemm_timings():
    """Times generated from known parameters (+3% noise) are fitted back to a few % on rows the fit never saw."""
    rng = np.random.default_rng(3)
    true = _init_params(GEMM) | {"ec_max": 0.7, "m0": 90.0, "em_max": 0.85, "floor_s": 4e-6}
    ms, ns, ks = (rng.choice([1, 3, 16, 33, 100, 256, 1000, 3000], 300), rng.choice([256, 1024, 4096, 12288], 300),
                  rng.choice([256, 1024, 4096, 8192], 300))
    ops = [gemm_op(int(m), int(n), int(k)) for m, n, k in zip(ms, ns, ks, strict=True)]
    fam = FamilyFit(kind=GEMM, params=true, hyper={"tile_m": 1.0, "tile_n": 1.0})
    clean = F.cost_model_times([Measurement(o, 1.0, "g", "t") for o in ops], H100, FittedProfile("t", "h", {GEMM: fam}))
    noisy = clean * np.exp(rng.normal(0.0, 0.03, len(clean)))
    rows = [Measurement(o, float(t), "gemm", "synthetic") for o, t in zip(ops, noisy, strict=True)]
    got, hold = F.fit_family(GEMM, rows, H100, seed=1, starts=2, max_iter=80)
    assert hold.sum() == 150
    assert got.holdout_median_abs_pct_err < 4.0
    assert got.roofline_default_holdout_median_abs_pct_err > got.holdout_median_abs_pct_err


def test_split_is_seeded_and_disjoint():
    a_fit, a_hold = F.split_indices(101, seed=5)
    b_fit, b_hold = F.split_indices(101, seed=5)
    assert (a_fit == b_fit).all() and (a_hold == b_hold).all()
    assert len(set(a_fit) & set(a_hold)) == 0 and len(a_fit) + len(a_hold) == 101


def _small_profile() -> FittedProfile:
    return FittedProfile("unit", H100.id, {GEMM: FamilyFit(kind=GEMM, params=_init_params(GEMM), hyper=_hyper(GEMM),
                                                             holdout_median_abs_pct_err=6.5)},
                         aliases={CONV: GEMM})


def test_profile_sources_fallback_and_alias():
    prof = _small_profile()
    assert isinstance(prof, EfficiencyProfile)
    e = prof.efficiency(gemm_op(64, 4096, 4096), H100)
    assert e.source == "calibrated:unit:gemm" and e.measured_error_pct == 6.5
    assert 0 < e.compute <= 1 and 0 < e.memory <= 1 and e.floor_s > 0
    assert prof.efficiency(conv_op(576, 1024, 3, 14), H100).source == "calibrated:unit:gemm"
    d = prof.efficiency(decode_attention_op(8, 1000, 32, 8, 128), H100)
    assert d.source == "roofline-default" and (d.compute, d.memory, d.floor_s) == (0.75, 0.8, 3e-6)


def test_elementwise_roles():
    from lvlmsim.calibrate.model import elementwise_role

    names = {"llm.norm": "norm", "llm.final_norm": "norm", "vision.residual_add": "add", "llm.rotary": "rotary",
             "llm.mlp_act": "act", "projector.act1": "act", "llm.embed": "embed", "vidur.input_layernorm": "norm",
             "vidur.attn_rope": "rotary", "measured.gelu": "act", "measured.copy": "copy", "x.unknown": None}
    for name, role in names.items():
        assert elementwise_role(name) == role, name
    el = _init_params(ELEMENTWISE)
    fams = {"elementwise/norm": FamilyFit(kind=ELEMENTWISE, params=el | {"em_max": 0.3}),
            "elementwise/add": FamilyFit(kind=ELEMENTWISE, params=el | {"em_max": 0.9})}
    prof = FittedProfile("r", H100.id, fams, aliases={ELEMENTWISE: "elementwise/add"})
    norm = elementwise_op(1e7, "bf16", name="llm.norm")
    other = elementwise_op(1e7, "bf16", name="llm.something")
    assert prof.efficiency(norm, H100).source == "calibrated:r:elementwise/norm"
    assert prof.efficiency(other, H100).source == "calibrated:r:elementwise/add"
    assert prof.efficiency(norm, H100).memory < prof.efficiency(other, H100).memory


def test_profile_json_roundtrip_and_errors(tmp_path):
    prof = _small_profile()
    path = prof.save(tmp_path / "p.json")
    back = FittedProfile.load(path)
    op = gemm_op(17, 4096, 4096)
    assert back.efficiency(op, H100) == prof.efficiency(op, H100)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="profile"):
        FittedProfile.load(bad)
    data = json.loads(path.read_text())
    del data["families"]["gemm"]["params"]["m0"]
    bad.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"profile .*families\.gemm\.params"):
        FittedProfile.load(bad)
    with pytest.raises(SpecError, match="profile: file not found"):
        load_profile_for(H100, str(tmp_path / "missing.json"))


def test_load_profile_for_refs(tmp_path):
    assert isinstance(load_profile_for(H100, "default"), DefaultProfile)
    assert isinstance(load_profile_for(H100, "peak"), PeakProfile)
    l4 = load_hardware("l4")
    if "l4" not in shipped_profiles():  # a GPU without its own profile: the device-general model, never the flat derate
        prof = load_profile_for(l4)
        assert fitted_base(prof).source_for("gemm").startswith("general:")
    path = _small_profile().save(tmp_path / "x.json")
    a, b = load_profile_for(H100, str(path)), load_profile_for(H100, str(path))
    assert a is b  # cached
    for hw_id in shipped_profiles():
        prof = load_profile_for(load_hardware(hw_id), "auto")
        prof = fitted_base(prof)  # a GPU's profile is wrapped by the MLA family's and kernel features' pricing
        assert isinstance(prof, FittedProfile) and prof.hardware_id == hw_id


def test_shipped_profiles_are_sane():
    for hw_id, path in shipped_profiles().items():
        prof = FittedProfile.load(path)
        hw = load_hardware(hw_id)
        assert prof.families, path
        for key, fam in prof.families.items():
            assert fam.holdout_median_abs_pct_err is not None and fam.n_holdout > 0, key
        assert prof.efficiency(gemm_op(4096, 4096, 4096, "fp32" if hw.kind == "cpu" else "bf16"), hw).source \
            .startswith("calibrated:")


def test_efficiency_is_cheap():
    """The engine's hot path: a fitted efficiency is plain float math (a few microseconds)."""
    prof = _small_profile()
    ops = [gemm_op(m, 4096, 4096) for m in range(1, 2001)]
    t0 = time.perf_counter()
    for op in ops:
        prof.efficiency(op, H100)
    per_call = (time.perf_counter() - t0) / len(ops)
    assert per_call < 100e-6


# ----------------------------------------------------------------------------------------------------------------
# CLI


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _cb() -> None:  # a group, so `calibrate`/`validate` are subcommands
        pass

    return app


@pytest.mark.parametrize("args, flag", [
    (["calibrate", "--device", "tpu", "--out", "x.json"], "--device"),
    (["calibrate", "--device", "cpu", "--out", "x.txt"], "--out"),
    (["calibrate", "--device", "cpu", "--hardware", "nope-gpu", "--out", "x.json"], "--hardware"),
    (["validate", "--hardware", "nope-gpu", "--data", "."], "--hardware"),
    (["validate", "--hardware", "h100-sxm", "--data", "/definitely/not/here"], "--data"),
    (["validate", "--hardware", "h100-sxm", "--data", ".", "--profile", "/no/such.json"], "profile"),
])
def test_cli_bad_input_is_one_line_exit_2(args, flag, tmp_path):
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], res.output


# ----------------------------------------------------------------------------------------------------------------
# CI: calibrate this CPU (quick) and check the model on measurements it was not fitted on


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    pytest.importorskip("torch")
    from lvlmsim.calibrate.run import calibrate

    out = tmp_path_factory.mktemp("cal") / "cpu-quick.json"
    t0 = time.perf_counter()
    prof = calibrate("cpu", out, quick=True, threads=1)
    return prof, out, time.perf_counter() - t0


def test_quick_calibration_writes_profile_and_csv(quick_profile):
    prof, out, wall_s = quick_profile
    data = json.loads(out.read_text())
    env = data["environment"]
    for key in ("device_name", "torch_version", "dtype", "date", "hardware_id", "timing", "cache_handling"):
        assert env.get(key), key
    assert env["hardware_id"] == "cpu-generic" and env["dtype"] == "fp32"
    assert (out.parent / data["measurements_csv"]).exists()
    assert {"gemm", "attn_prefill", "attn_decode", "attn_encoder"} <= set(prof.families)
    assert any(k.startswith("elementwise/") for k in prof.families)
    assert wall_s < 120, f"quick calibration took {wall_s:.0f} s (budget 60 s on a quiet 2-core CPU)"


def test_quick_calibration_predicts_held_out_rows_within_its_reported_error(quick_profile):
    """Reload the profile, rebuild every held-out row's Op from the CSV, price it with CostModel: the median error
    must stay within the error the profile reports (x1.5 + 5 points, CI machines are noisy)."""
    from lvlmsim.calibrate.run import read_measurements_csv

    _, out, _ = quick_profile
    prof = FittedProfile.load(out)
    rows, hold = read_measurements_csv(out.with_suffix(".csv"))
    cm = CostModel(CPU, prof)
    by_fam: dict[str, list[float]] = {}
    for r, h in zip(rows, hold, strict=True):
        if h:
            key = F.group_key(r)
            by_fam.setdefault(key, []).append(abs(cm.cost(r.op).time_s / r.measured_s - 1) * 100)
    for key, fam in prof.families.items():
        errs = by_fam[key]
        assert len(errs) == fam.n_holdout
        med = statistics.median(errs)
        assert med <= fam.holdout_median_abs_pct_err * 1.5 + 5, (key, med, fam.holdout_median_abs_pct_err)
        assert med < fam.roofline_default_holdout_median_abs_pct_err, key


def test_quick_calibration_predicts_fresh_gemm_shapes(quick_profile):
    """Shapes absent from the suite, timed now: the fitted GEMM model stays within a generous multiple of its error."""
    import torch

    from lvlmsim.calibrate.bench import QUICK, _gemm_case, time_fn

    _, out, _ = quick_profile
    prof = FittedProfile.load(out)
    cm = CostModel(CPU, prof)
    errs = []
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for m, n, k in ((3, 1100, 900), (40, 700, 1300), (300, 600, 500), (90, 2500, 300), (700, 333, 777),
                            (12, 3000, 1700)):
                case = _gemm_case(m, n, k, "fp32", 4)
                med, *_ = time_fn(torch, case.make(torch, "cpu", torch.float32, 4), "cpu", QUICK)
                errs.append(abs(cm.cost(case.op).time_s / med - 1) * 100)
    finally:
        torch.set_num_threads(old)
    reported = prof.families["gemm"].holdout_median_abs_pct_err
    assert statistics.median(errs) <= reported * 2 + 15, (errs, reported)
    assert not any(math.isnan(e) for e in errs)


def test_cuda_device_names_map_to_hardware_ids():
    from lvlmsim.calibrate.run import default_hardware_id

    assert default_hardware_id("cpu") == "cpu-generic"
    assert default_hardware_id("cuda", "NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert default_hardware_id("cuda", "NVIDIA H100 PCIe") == "h100-pcie"
    assert default_hardware_id("cuda", "NVIDIA A100-SXM4-80GB") == "a100-sxm-80gb"
    assert default_hardware_id("cuda", "NVIDIA L40S") == "l40s"
    with pytest.raises(SpecError, match="--hardware"):
        default_hardware_id("cuda", "Some Future GPU")
