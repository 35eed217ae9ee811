"""The device-general efficiency model: datasheet features, the joint fit, `auto` resolution, leave-one-device-out.

Oracles: features hand-derived from the YAML datasheets; a joint fit on synthetic devices whose times come from known
parameters (bytes at half-saturated bandwidth proportional to bandwidth) must price a fourth, unseen device."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from shared_data import MEASURED, needs_shared
from typer.testing import CliRunner

from lvlmsim.calibrate import fit as F
from lvlmsim.calibrate.general import (
    FAMILY_SETUPS,
    GeneralFamily,
    GeneralModel,
    _from_z,
    _to_z,
    device_features,
    fit_general_family,
    missing_features,
)
from lvlmsim.calibrate.measured import FAMILIES, TABLE_FILES, TABLES, Measurement, elementwise_op, gemm_op
from lvlmsim.calibrate.model import FittedProfile, form_for
from lvlmsim.calibrate.profiles import fitted_base, general_model, load_profile_for, shipped_profiles
from lvlmsim.cli.calibrate import register
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import ELEMENTWISE
from lvlmsim.specs.registry import load_hardware

H100 = load_hardware("h100-sxm")
RTX = load_hardware("rtx-pro-6000-server")


def test_features_are_log_ratios_to_the_h100_datasheet():
    f = device_features(H100)
    assert all(abs(v) < 1e-12 for k, v in f.items() if not k.startswith("k_")) and f["k_fa3"] == 1.0
    r = device_features(RTX)
    assert r["log_bw"] == pytest.approx(math.log(1597 / 3350))  # the Server Edition's datasheet bandwidth
    assert r["log_sms"] == pytest.approx(math.log(188 / 132))
    # watts per peak FLOP/s relative to H100's 700 W / 989.4 TF/s
    assert r["log_power"] == pytest.approx(math.log((600 / 467.8) / (700 / 989.4)))
    assert r["gddr"] == 1.0 and r["k_fa2"] == 1.0 and r["k_fa3"] == 0.0
    # tensor FLOPs per SM per clock: 467.8e12 / (188 x 2.43e9) = 1024 against H100's 989.4e12 / (132 x 1.98e9) = 3786
    assert r["log_sm_rate"] == pytest.approx(math.log(1024.0 / 3785.7), abs=1e-3)
    # fp8 doubles the rate per SM, so the feature moves by log 2 with the dtype
    assert device_features(RTX, "fp8")["log_sm_rate"] - r["log_sm_rate"] == pytest.approx(math.log(2.0))
    # B300 SXM6 AC, the measured part: 148 SMs at 2032 MHz; 2250e12 / (148 x 2.032e9) = 7481.6 FLOPs per SM per clock
    b300 = device_features(load_hardware("b300"))
    assert b300["k_bw"] == 1.0 and b300["log_clock"] == pytest.approx(math.log(2032 / 1980))
    assert b300["log_sms"] == pytest.approx(math.log(148 / 132))
    assert b300["log_sm_rate"] == pytest.approx(math.log(7481.6 / 3785.7), abs=1e-3)
    assert b300["arch_sm100"] == 1.0 and f["arch_sm100"] == 0.0 and r["arch_sm100"] == 0.0  # sm103 vs sm90, sm120
    assert missing_features(load_hardware("b300")) == []


def test_new_measured_devices_have_datasheets():
    b300 = load_hardware("b300")
    assert b300.peak_tflops["bf16"] == 2250 and b300.peak_tflops["fp4"] == 13500 and b300.mem_bw_gbps == 8000
    assert RTX.peak_tflops["bf16"] == 467.8 and RTX.mem_bw_gbps == 1597 and RTX.intra_node_link.bw_gbps == 64
    assert RTX.memory_type == "gddr7" and RTX.compute_capability == "12.0"


def test_z_coordinates_roundtrip():
    form = form_for("gemm", "gemm+l2")
    nat = [q.init if q.kind != "floor" else 3e-6 for q in form.params]
    back = _from_z(form, _to_z(form, nat, 3e-6), 3e-6)
    np.testing.assert_allclose(back, nat, rtol=1e-9)


def _device(bw_gbps: float, name: str):
    return H100.model_copy(update={"id": name, "mem_bw_gbps": bw_gbps})


def _synthetic_rows(hw, truth: GeneralFamily, rng) -> list[Measurement]:
    ops = [elementwise_op(float(n), "bf16", 2.0, 1.0, 1.0, name="measured.add")
           for n in rng.choice([1e3, 3e4, 1e5, 1e6, 3e6, 1e7, 1e8, 3e8], 160)]
    prof = GeneralModel("t", {truth.key: truth}).profile_for(hw)
    clean = F.cost_model_times([Measurement(o, 1.0, "elementwise", "t") for o in ops], hw, prof)
    noisy = clean * np.exp(rng.normal(0.0, 0.02, len(clean)))
    return [Measurement(o, float(t), "elementwise", "synthetic", "add") for o, t in zip(ops, noisy, strict=True)]


def test_joint_fit_transfers_to_an_unseen_device_by_its_bandwidth():
    """Three devices of 1, 2 and 4 TB/s whose byte saturation scales with bandwidth; the fit prices a 8 TB/s one."""
    rng = np.random.default_rng(5)
    form = form_for(ELEMENTWISE, "elementwise+l2")
    truth_nat = {"ec_max": 0.3, "em_max": 0.85, "b0": 2e6, "pb": 1.2, "boost": 0.05, "bc": 3e7, "pc": 2.0,
                 "cache_boost": 0.01, "cache_x": 0.2, "cache_p": 2.0, "floor_s": 3e-6, "overlap": 0.3}
    floor_ref = 3e-6
    z = _to_z(form, [truth_nat[n] for n in form.param_names], floor_ref)
    truth = GeneralFamily("elementwise/add", ELEMENTWISE, dict(zip(form.param_names, z, strict=True)),
                          {"b0": {"log_bw": 1.0}}, {}, floor_ref, variant="elementwise+l2")
    train = {f"d{bw}": _device(bw, f"d{bw}") for bw in (1000.0, 2000.0, 4000.0)}
    per_dev = {k: (hw, _synthetic_rows(hw, truth, rng)) for k, hw in train.items()}
    got = fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=160, max_iter=60)
    unseen = _device(8000.0, "d8000")
    rows = _synthetic_rows(unseen, truth, rng)
    pred = F.cost_model_times(rows, unseen, GeneralModel("g", {got.key: got}).profile_for(unseen))
    err = F.abs_pct_errors(pred, np.array([r.measured_s for r in rows]))
    assert np.median(err) < 5.0
    assert got.coefs["b0"]["log_bw"] == pytest.approx(1.0, abs=0.35)


def test_general_model_json_roundtrip_and_errors(tmp_path):
    model = general_model()
    assert model is not None, "calibration/profiles/general/gpu.json is shipped"
    path = model.save(tmp_path / "g.json")
    again = GeneralModel.load(path)
    op = gemm_op(512, 4096, 4096)
    a = CostModel(RTX, model.profile_for(RTX)).cost(op)
    b = CostModel(RTX, again.profile_for(RTX)).cost(op)
    assert a.time_s == b.time_s and a.source == "general:general-gpu:gemm"
    data = json.loads(path.read_text())
    data["families"]["gemm"]["coefs"] = {"b0": {"no_such_feature": 1.0}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="families.gemm.coefs"):
        GeneralModel.load(bad)


def test_auto_uses_own_profile_else_general_model_for_gpus():
    for hw_id in ("a100-sxm-80gb", "b300", "rtx-pro-6000-server", "l40s", "mi300x"):
        prof = load_profile_for(load_hardware(hw_id), "auto")
        prof = fitted_base(prof)  # MLA cores and FA2 windowed decode are priced by wrappers around it
        assert isinstance(prof, FittedProfile) and prof.source_for("gemm").startswith("general:"), hw_id
        fam = prof.families["gemm"]
        assert fam.holdout_median_abs_pct_err is not None and fam.band() is not None
    if "h100-sxm" in shipped_profiles():
        assert fitted_base(load_profile_for(H100, "auto")).source_for("gemm") == "calibrated:h100-sxm:gemm"
        assert fitted_base(load_profile_for(H100, "general")).source_for("gemm").startswith("general:")


def test_general_profile_band_brackets_the_prediction():
    prof = load_profile_for(load_hardware("a100-sxm-80gb"))
    lo, hi = prof.band_for("general:general-gpu:gemm")
    assert lo < 1.0 < hi
    assert prof.band_for("roofline-default") is None


def test_table_family_registry_is_consistent():
    assert list(FAMILIES)[:5] == ["gemm", "context_attention", "generation_attention", "encoder_attention", "nccl"]
    for name, fam in FAMILIES.items():
        assert TABLES[name] == fam.kind
        assert fam.file_name is None or TABLE_FILES[fam.file_name] == name
    assert FAMILIES["generation_attention_sliding"].regime is not None  # rows out of another family's table


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _cb() -> None:
        pass

    return app


def _gemm_table(root: Path, speed: float) -> None:
    """A gemm table whose times follow a roofline at `speed` x the H100 datasheet, plus a 3 us floor."""
    lines = ["kernel_source,gemm_dtype,m,n,k,latency"]
    for m in (1, 16, 64, 256, 1024, 4096):
        for n in (1024, 4096, 8192):
            for k in (1024, 4096):
                t = max(2 * m * n * k / (989.4e12 * speed * 0.7), 2 * (m * k + k * n + m * n) / (3350e9 * 0.8)) + 3e-6
                lines.append(f"lin,bfloat16,{m},{n},{k},{t * 1e3:.6g}")
    path = root / "gemm" / "vllm" / "0.1" / "gemm_perf.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_cli_leave_one_out_json_shape_on_synthetic_folders(tmp_path):
    _gemm_table(tmp_path / "h100_sxm", 1.0)
    _gemm_table(tmp_path / "a100_sxm", 0.33)
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"h100_sxm", "a100_sxm"}
    for dev in data.values():  # issue 11's four figures, and the rows the table left out (none here)
        assert set(dev["gemm"]) == {"median_abs_pct_err", "p90_abs_pct_err", "n", "roofline_median_abs_pct_err",
                                    "skipped"}
        assert dev["gemm"]["n"] == 36 and dev["gemm"]["skipped"] == {}
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path / "h100_sxm")])
    assert res.exit_code == 2 and "--data" in res.output and "two device folders" in res.output
    res = CliRunner().invoke(_app(), ["validate", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "--hardware" in res.output


def test_cli_leave_one_out_reports_skipped_rows_in_json_and_text(tmp_path):
    """A negative-latency row and an unknown-dtype row in one device's gemm table: the held-out cell's `skipped`
    counts them by reason (--seeds 2 too) and the text lists them under the device, so no reader misses them."""
    _gemm_table(tmp_path / "h100_sxm", 1.0)
    _gemm_table(tmp_path / "a100_sxm", 0.33)
    path = tmp_path / "a100_sxm" / "gemm" / "vllm" / "0.1" / "gemm_perf.csv"
    path.write_text(path.read_text() + "lin,bfloat16,64,1024,1024,-1\nlin,int4,64,1024,1024,0.01\n")
    args = ["validate", "--leave-one-out", "--data", str(tmp_path)]
    for extra in ([], ["--seeds", "2"]):
        data = json.loads(CliRunner().invoke(_app(), [*args, "--json", *extra]).stdout)
        assert data["a100_sxm"]["gemm"]["n"] == 36 and sum(data["a100_sxm"]["gemm"]["skipped"].values()) == 2
        assert data["h100_sxm"]["gemm"]["skipped"] == {}
        text = CliRunner().invoke(_app(), [*args, *extra]).stdout
        assert "rows left out of each device's (subsampled) tables:" in text
        assert "a100_sxm              skipped 1 rows: gemm: dtype bfloat16" in text
        assert "h100_sxm              skipped" not in text


def test_seed_summary_means_ranges_and_missing_cells():
    """Hand-made per-seed reports: the mean under the one-seed key, the per-seed values in seed order, min / max; a
    cell one seed lacks is summarised over the seeds that have it."""
    from lvlmsim.calibrate.loo import seed_summary

    def cell(med, p90, n=10, flat=50.0):
        return {"median_abs_pct_err": med, "p90_abs_pct_err": p90, "n": n, "roofline_median_abs_pct_err": flat}

    reports = [{"a": {"gemm": cell(10.5, 27.4, n=6000, flat=19.0), "moe": cell(17.0, 40.0)}},
               {"a": {"gemm": cell(12.5, 37.2, n=6000, flat=21.0)}},
               {"a": {"gemm": cell(11.0, 30.0, n=6000, flat=20.0)}}]
    out = seed_summary(reports)
    g = out["a"]["gemm"]
    assert g["median_abs_pct_err"] == 11.33 and g["median_abs_pct_err_seeds"] == [10.5, 12.5, 11.0]
    assert (g["median_abs_pct_err_min"], g["median_abs_pct_err_max"]) == (10.5, 12.5)
    assert g["p90_abs_pct_err"] == 31.53 and (g["p90_abs_pct_err_min"], g["p90_abs_pct_err_max"]) == (27.4, 37.2)
    assert g["n"] == 6000 and g["roofline_median_abs_pct_err"] == 20.0
    assert out["a"]["moe"]["median_abs_pct_err_seeds"] == [17.0] and out["a"]["moe"]["median_abs_pct_err"] == 17.0


def test_cli_leave_one_out_seeds_reports_mean_and_range(tmp_path):
    """--seeds 2: the one-seed keys hold the mean, `_seeds` / min / max sit beside them. 36 rows per table are below
    every subsample cap and the fit's rows per device, so both seeds read and fit the same rows: min == max."""
    _gemm_table(tmp_path / "h100_sxm", 1.0)
    _gemm_table(tmp_path / "a100_sxm", 0.33)
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path), "--json",
                                      "--seeds", "2"])
    assert res.exit_code == 0, res.output
    one = json.loads(CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path),
                                                 "--json"]).stdout)
    for dev, fams in json.loads(res.stdout).items():
        g = fams["gemm"]
        assert len(g["median_abs_pct_err_seeds"]) == 2 and g["n"] == 36
        assert g["median_abs_pct_err_min"] == g["median_abs_pct_err_max"] == one[dev]["gemm"]["median_abs_pct_err"]
        assert g["p90_abs_pct_err"] == one[dev]["gemm"]["p90_abs_pct_err"]
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path), "--seeds", "2"])
    assert res.exit_code == 0, res.output
    assert "seeds 0-1" in res.stdout and "median % mean [min-max]" in res.stdout
    assert "mean over seeds 0-1" in res.stdout
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path), "--seeds", "0"])
    assert res.exit_code == 2 and "--seeds" in res.output and ">= 1" in res.output
    res = CliRunner().invoke(_app(), ["validate", "--hardware", "h100-sxm", "--data", str(tmp_path / "h100_sxm"),
                                      "--seeds", "2"])
    assert res.exit_code == 2 and "--seeds" in res.output and "--leave-one-out" in res.output


@pytest.mark.shared_data
@needs_shared
def test_validate_a100_defaults_to_general_model_and_beats_flat_derate():
    from lvlmsim.calibrate.validate import validate

    hw = load_hardware("a100-sxm-80gb")
    report, _ = validate(hw, MEASURED / "aiconfigurator/data/a100_sxm", load_profile_for(hw, "auto"))
    for fam, e in report.items():
        assert all(s.startswith("general:") for s in e["profile_sources"]), fam
        assert e["median_abs_pct_err"] < e["roofline_median_abs_pct_err"], fam


def test_default_profile_has_no_band():
    assert not hasattr(DEFAULT_PROFILE, "band_for")


def test_a_profile_fitted_on_another_device_is_flagged_never_silent(tmp_path):
    if "h100-sxm" not in shipped_profiles():
        pytest.skip("calibration/profiles/h100-sxm.json not shipped")
    a100 = load_hardware("a100-sxm-80gb")
    prof = load_profile_for(a100, str(shipped_profiles()["h100-sxm"]))
    assert prof.name == "h100-sxm-on-a100-sxm-80gb"
    assert CostModel(a100, prof).cost(gemm_op(64, 4096, 4096)).source == "transferred:h100-sxm-on-a100-sxm-80gb:gemm"
    from lvlmsim.calibrate.profiles import profile_provenance

    assert profile_provenance(a100, str(shipped_profiles()["h100-sxm"]))["profile_kind"] == "transferred"
    assert load_profile_for(H100, str(shipped_profiles()["h100-sxm"])).name == "h100-sxm"  # its own device: as is


def test_a_cpu_profile_is_refused_on_a_gpu_and_a_gpu_profile_on_a_cpu():
    """`calibrate --device cpu --out my-cpu.json` then `estimate --hardware h100-sxm --profile my-cpu.json` priced an
    H100 with a CPU's kernel efficiencies (TPOT 40 ms against 6 ms), flagged only by the profile's name: one machine
    kind's kernels say nothing of the other's, so it is refused in one line naming the allowed profiles."""
    profiles = shipped_profiles()
    if not {"h100-sxm", "cpu-generic"} <= set(profiles):
        pytest.skip("the shipped h100-sxm / cpu-generic profiles are needed")
    cpu = load_hardware("cpu-generic")
    with pytest.raises(SpecError, match=r"was fitted on cpu-generic \(a cpu\) and cannot price h100-sxm \(a gpu\); "
                                        r"allowed: a profile fitted on a gpu, auto, general, default, peak"):
        load_profile_for(H100, str(profiles["cpu-generic"]))
    with pytest.raises(SpecError, match=r"cannot price cpu-generic \(a cpu\); allowed: a profile fitted on a cpu, "
                                        r"auto, default, peak"):
        load_profile_for(cpu, str(profiles["h100-sxm"]))
    a100 = load_hardware("a100-sxm-80gb")  # GPU to GPU: transferred by datasheet ratios and flagged, as before
    assert load_profile_for(a100, str(profiles["h100-sxm"])).name == "h100-sxm-on-a100-sxm-80gb"


def test_estimate_dtype_lets_a_cpu_run_an_fp16_model():
    from lvlmsim import api
    from lvlmsim.errors import InfeasibleError

    with pytest.raises(InfeasibleError, match=r"dtype: hardware 'cpu-generic' has no fp16 compute \(llava-1.5-7b runs "
                                              r"in fp16\); it supports: fp32, bf16; run the model in one of them with "
                                              r"dtype= \(estimate --dtype\)"):
        api.estimate(model="llava-1.5-7b", hardware="cpu-generic")
    est = api.estimate(model="llava-1.5-7b", hardware="cpu-generic", dtype="fp32")
    assert est.ttft_s > 0 and all(c.op.dtype in ("fp32", "none") for s in est.stages.values() for c in s.ops)
    with pytest.raises(SpecError, match="dtype: 'fp12' is not one of"):
        api.estimate(model="llava-1.5-7b", hardware="cpu-generic", dtype="fp12")


def test_calibrate_drops_a_family_fitted_worse_than_the_default():
    from lvlmsim.calibrate.model import FamilyFit
    from lvlmsim.calibrate.run import drop_worse_than_default

    good = FamilyFit(kind="gemm", params={}, holdout_median_abs_pct_err=5.0,
                     roofline_default_holdout_median_abs_pct_err=40.0)
    bad = FamilyFit(kind="conv", params={}, holdout_median_abs_pct_err=219.0,
                    roofline_default_holdout_median_abs_pct_err=60.0)
    prof = FittedProfile("p", "cpu-generic", {"gemm": good, "conv": bad}, aliases={"elementwise": "gemm"})
    dropped = drop_worse_than_default(prof)
    assert set(dropped) == {"conv"} and set(prof.families) == {"gemm"} and "219.0%" in dropped["conv"]


def test_cross_attention_model_without_an_image_skips_its_cross_layers():
    """Llama-3.2-Vision given no image: vLLM and transformers skip the cross-attention layers entirely."""
    from lvlmsim import api
    from lvlmsim.specs.registry import load_model

    lm = load_model("llama-3.2-11b-vision").llm
    n_cross = len(lm.cross_attention_layers)
    text = api.estimate(model="llama-3.2-11b-vision", hardware="h100-sxm", images=0)
    ops = text.stages["prefill"].ops
    assert not [c for c in ops if "cross" in c.op.name]
    # vLLM's Mllama: a self-attention layer runs 1 plain norm + 1 fused add-norm; a cross-attention layer 2 plain norms
    assert sum(c.op.count for c in ops if c.op.name == "llm.norm") == lm.num_layers - n_cross
    img = api.estimate(model="llama-3.2-11b-vision", hardware="h100-sxm", images=1)
    assert sum(c.op.count for c in img.stages["prefill"].ops if c.op.name == "llm.norm") == lm.num_layers + n_cross
    assert any(c.op.name == "llm.cross_attention" for c in img.stages["decode"].ops)


def test_elementwise_ops_are_never_labelled_compute_bound():
    """A norm streams bytes at ~1 FLOP/byte: memory- or overhead-bound whatever compute share a fit gave it."""
    from lvlmsim import api

    for hw, dtype in (("cpu-generic", "fp32"), ("h100-sxm", None), ("a100-sxm-80gb", None)):
        est = api.estimate(model="llava-1.5-7b", hardware=hw, dtype=dtype)
        rows = [c for s in est.stages.values() for c in s.ops if c.op.kind == ELEMENTWISE]
        assert rows and all(c.bound in ("memory", "overhead") for c in rows), hw


def test_ops_carry_the_expected_error_of_their_size_regime():
    a100 = load_hardware("a100-sxm-80gb")
    prof = load_profile_for(a100)
    regimes = fitted_base(prof).families["gemm"].regime_errors
    assert set(regimes) >= {"m 1-16", "m >4096"}
    cm = CostModel(a100, prof)
    assert cm.cost(gemm_op(8, 4096, 4096)).measured_error_pct == regimes["m 1-16"]
    assert cm.cost(gemm_op(8192, 4096, 4096)).measured_error_pct == regimes["m >4096"]


def test_noisy_timings_are_detected():
    from lvlmsim.calibrate.bench import noisy, spread

    assert spread(10.0, 9.0, 12.0) == pytest.approx(0.3) and not noisy(10.0, 9.0, 12.0)
    assert noisy(10.0, 9.0, 20.0)  # a stolen core: p90 twice the median


def _loo_tables():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "loo_tables.py"
    spec = importlib.util.spec_from_file_location("loo_tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loo_tables_rewrite_the_documented_tables_in_place():
    """benchmarks/loo_tables.py --update finds both documented tables by their headers and replaces only their rows."""
    mod = _loo_tables()
    stats = {"median_abs_pct_err": 9.61, "p90_abs_pct_err": 30.24, "n": 10, "roofline_median_abs_pct_err": 11.18}
    report = {"h100_sxm": {"gemm": stats}}
    readme, calib = mod.table(report, 0), mod.table(report, 1)
    assert readme[2].startswith("| H100 SXM (Hopper) | 9.6% (11.2) | - |")
    assert calib[2].startswith("| H100 SXM | 9.6 / 30.2 (11.2) | - (no table) |")
    seeds = {**stats, "median_abs_pct_err_min": 9.0, "median_abs_pct_err_max": 10.44, "p90_abs_pct_err_min": 27.4,
             "p90_abs_pct_err_max": 33.06}  # a seed_summary cell: the mean under the one-seed key, its range beside
    assert mod.table({"h100_sxm": {"gemm": seeds}}, 0)[2].startswith("| H100 SXM (Hopper) | 9.6% [9.0-10.4] (11.2) |")
    assert mod.table({"h100_sxm": {"gemm": seeds}}, 1)[2].startswith(
        "| H100 SXM | 9.6 [9.0-10.4] / 30.2 [27.4-33.1] (11.2) |")
    skipped_only = {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0, "roofline_median_abs_pct_err": None,
                    "skipped": {"gemm: dtype int4 or non-positive latency": 3}}  # every row of the table skipped
    assert mod.table({"h100_sxm": {"gemm": skipped_only}}, 1)[2].startswith("| H100 SXM | - (no table) |")
    root = Path(__file__).resolve().parents[1]
    for lines, doc in ((readme, root / "README.md"), (calib, root / "calibration" / "README.md")):
        text = doc.read_text()
        new = mod.replace_table(text, lines)
        assert lines[2] in new and new.count(lines[0]) == 1
        assert len(new.splitlines()) == len(text.splitlines()) - 3  # four device rows became one


def test_allreduce_latency_follows_clock_and_blackwell_flag():
    """The shipped all-reduce family's small-message latency a0 moves with the SM clock (A100 1410 MHz vs H100's 1980)
    and the datacenter-Blackwell flag (B300: its 2032 MHz and the flag) by its fitted coefficients."""
    model = general_model()
    fam = model.families["allreduce"]
    coef = fam.coefs["a0"]
    a100, b300 = load_hardware("a100-sxm-80gb"), load_hardware("b300")
    a0 = {hw.id: fam.params_for(hw, "bf16")["a0"] for hw in (H100, a100, b300)}
    assert a0["a100-sxm-80gb"] / a0["h100-sxm"] == pytest.approx((1410 / 1980) ** coef["log_clock"], rel=1e-4)
    assert a0["b300"] / a0["h100-sxm"] == pytest.approx(
        (2032 / 1980) ** coef["log_clock"] * math.exp(coef["arch_sm100"]), rel=1e-4)
    assert coef["log_clock"] < 0 < coef["arch_sm100"]  # slower clock and Blackwell: higher latency, as measured


def test_gemm_saturation_points_follow_tensor_rate_per_sm():
    """GEMM's n0 and k0 scale with tensor FLOPs per SM per clock: RTX PRO 6000 (1024 bf16 FLOP/SM/clk) needs less depth
    and width than H100 (3786) to fill its SMs, by (1024/3786)^coef with the shipped coefficient."""
    fam = general_model().families["gemm"]
    h, r = fam.params_for(H100, "bf16"), fam.params_for(RTX, "bf16")
    for p in ("n0", "k0"):
        c = fam.coefs[p]["log_sm_rate"]
        assert r[p] / h[p] == pytest.approx((1024.0 / 3785.7) ** c, rel=1e-3)
        assert 0.0 < c < 1.5  # a physical exponent near its prior 1/2, not a free-running fit


def test_family_prior_pulls_the_named_intercepts_with_weight_times_sqrt_rows():
    """FamilySetup.prior's residuals: w x sqrt(rows per device) x (z - default) on each named intercept, the fit's
    negligible PRIOR_WEIGHT on the others, and the Jacobian's prior block the same diagonal."""
    from lvlmsim.calibrate import general

    rng = np.random.default_rng(7)
    form = form_for(ELEMENTWISE, "elementwise+l2")
    truth = GeneralFamily("elementwise/add", ELEMENTWISE, dict(zip(form.param_names, _to_z(
        form, [q.init if q.kind != "floor" else 3e-6 for q in form.params], 3e-6), strict=True)), {}, {}, 3e-6,
        variant="elementwise+l2")
    devices = []
    for bw in (1000.0, 2000.0):
        hw = _device(bw, f"d{bw}")
        data = F.family_data(ELEMENTWISE, _synthetic_rows(hw, truth, rng)[:100], hw, form)
        devices.append(general._DeviceData(hw.id, data, device_features(hw), np.log(data.measured_s)))
    z_base = np.zeros(len(form.params))
    joint = general._Joint(form, {"b0": {"log_bw": 1.0}}, devices, {}, 3e-6, z_base, prior={"b0": 0.5})
    theta = np.concatenate([z_base + 1.0, joint.b_prior])
    r = joint.residuals(theta)
    prior_part = r[200: 200 + joint.P]
    expected = np.full(joint.P, F.PRIOR_WEIGHT)
    expected[form.param_names.index("b0")] = 0.5 * math.sqrt(100)
    np.testing.assert_allclose(prior_part, expected, rtol=1e-12)
    np.testing.assert_allclose(joint.jacobian(theta, r)[200: 200 + joint.P, : joint.P], np.diag(expected))
    assert general.FamilySetup("x", None).prior == {}  # no prior unless a family declares one


def test_family_prior_holds_a_weakly_seen_intercept_near_the_form_default(monkeypatch):
    """Truth b0 = 2e7 bytes (the default 1e6): the rows see it, so the fit without a prior moves toward it; a prior of
    weight 1 (x sqrt(160) rows: ~13 per unit of log b0) outweighs the few rows it bends and keeps b0 by the default."""
    from lvlmsim.calibrate import general

    rng = np.random.default_rng(11)
    form = form_for(ELEMENTWISE, "elementwise+l2")
    truth_nat = {"ec_max": 0.3, "em_max": 0.85, "b0": 2e7, "pb": 1.2, "boost": 0.05, "bc": 3e7, "pc": 2.0,
                 "cache_boost": 0.01, "cache_x": 0.2, "cache_p": 2.0, "floor_s": 3e-6, "overlap": 0.3}
    z = _to_z(form, [truth_nat[n] for n in form.param_names], 3e-6)
    truth = GeneralFamily("elementwise/add", ELEMENTWISE, dict(zip(form.param_names, z, strict=True)),
                          {"b0": {"log_bw": 1.0}}, {}, 3e-6, variant="elementwise+l2")
    per_dev = {f"d{bw}": (hw, _synthetic_rows(hw, truth, rng)) for bw in (1000.0, 2000.0, 4000.0)
               for hw in [_device(bw, f"d{bw}")]}
    fitted = {}
    for weight in (0.0, 1.0):
        setup = general.FamilySetup("elementwise+l2", {"b0": {"log_bw": 1.0}}, prior={"b0": weight})
        monkeypatch.setitem(general.FAMILY_SETUPS, "elementwise/add", setup)
        fitted[weight] = fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=160,
                                            max_iter=60).z0["b0"]
    default = math.log(1e6)
    assert abs(fitted[0.0] - math.log(2e7)) < abs(fitted[0.0] - default)  # the rows alone lean to the truth
    assert abs(fitted[1.0] - default) < 0.5 * abs(fitted[0.0] - default)


def test_family_start_sets_the_fit_initial_point_not_the_prior_centre(monkeypatch):
    """FamilySetup.start moves where Levenberg-Marquardt starts (with no iteration the fit returns it: b0 = 1 kB,
    z = log 1e3) while the prior's centre stays the form's default (the prior residual at that start is the weight x
    (log 1e3 - log 1e6)); no start is the form's defaults, as before."""
    from lvlmsim.calibrate import general

    rng = np.random.default_rng(3)
    form = form_for(ELEMENTWISE, "elementwise+l2")
    z = _to_z(form, [q.init for q in form.params], 3e-6)
    truth = GeneralFamily("elementwise/add", ELEMENTWISE, dict(zip(form.param_names, z, strict=True)), {}, {}, 3e-6,
                          variant="elementwise+l2")
    per_dev = {f"d{bw}": (hw, _synthetic_rows(hw, truth, rng)) for bw in (1000.0, 2000.0)
               for hw in [_device(bw, f"d{bw}")]}
    b0 = {}
    for start in ({}, {"b0": 1e3}):
        setup = general.FamilySetup("elementwise+l2", {}, start=start)
        monkeypatch.setitem(general.FAMILY_SETUPS, "elementwise/add", setup)
        b0[len(start)] = fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=40, max_iter=0).z0["b0"]
    assert b0[0] == pytest.approx(math.log(1e6))
    assert b0[1] == pytest.approx(math.log(1e3))
    assert general.FamilySetup("x", None).start == {}


def test_bf16_gemm_fixed_memory_time_follows_bandwidth_and_clock():
    """The bf16 GEMM family's bytes at half-saturated bandwidth (b0) go as bandwidth^c_bw x clock^c_clock (its fixed
    memory time b0 / bandwidth a number of SM cycles, benchmarks/gemm_clock_selection.py): A100 (2039 GB/s, 1410 MHz)
    against H100 (3350, 1980) by the fitted coefficients, and B300 (8000, 2032) the same way."""
    assert FAMILY_SETUPS["gemm"].links["b0"] == {"log_bw": 1.0, "log_clock": -1.0}
    fam = general_model().families["gemm"]
    coef = fam.coefs["b0"]
    a100, b300 = load_hardware("a100-sxm-80gb"), load_hardware("b300")
    b0 = {hw.id: fam.params_for(hw, "bf16")["b0"] for hw in (H100, a100, b300)}
    expect = (2039 / 3350) ** coef["log_bw"] * (1410 / 1980) ** coef["log_clock"]
    assert b0["a100-sxm-80gb"] / b0["h100-sxm"] == pytest.approx(expect, rel=1e-4)
    expect_b300 = (8000 / 3350) ** coef["log_bw"] * (2032 / 1980) ** coef["log_clock"]
    assert b0["b300"] / b0["h100-sxm"] == pytest.approx(expect_b300, rel=1e-4)
    assert coef["log_clock"] < 0  # a slower clock holds a longer fixed time, as A100's small GEMMs show


def test_sync_mma_flag_follows_the_tensor_core_issue_model():
    """sync_mma is 1 where tensor cores run only warp-synchronous mma.sync (sm80 A100, sm89 RTX 4090, sm120 RTX PRO
    6000), 0 for sm90 wgmma (H100) and sm100/103 tcgen05 (B300), and 0 (the reference's) without a compute
    capability (MI300X)."""
    flags = {h: device_features(load_hardware(h))["sync_mma"]
             for h in ("a100-sxm-80gb", "rtx-4090", "rtx-pro-6000-server", "h100-sxm", "b300", "mi300x")}
    assert flags == {"a100-sxm-80gb": 1.0, "rtx-4090": 1.0, "rtx-pro-6000-server": 1.0, "h100-sxm": 0.0, "b300": 0.0,
                     "mi300x": 0.0}


def test_no_shipped_family_links_the_sync_mma_flag():
    """sync_mma is a candidate feature (benchmarks/gemm_overlap_selection.py did not pick it over seeds 0-3): no
    shipped family setup and no family of the shipped general model links any parameter to it."""
    for key, setup in FAMILY_SETUPS.items():
        assert all("sync_mma" not in feats for feats in (setup.links or {}).values()), key
    for key, fam in general_model().families.items():
        assert all("sync_mma" not in feats for feats in fam.coefs.values()), key


def _elementwise_truth_rows(rng) -> dict:
    """Three devices (1, 2, 4 TB/s) of synthetic residual adds from known elementwise parameters, b0 by bandwidth."""
    form = form_for(ELEMENTWISE, "elementwise+l2")
    truth_nat = {"ec_max": 0.3, "em_max": 0.85, "b0": 2e6, "pb": 1.2, "boost": 0.05, "bc": 3e7, "pc": 2.0,
                 "cache_boost": 0.01, "cache_x": 0.2, "cache_p": 2.0, "floor_s": 3e-6, "overlap": 0.3}
    z = _to_z(form, [truth_nat[n] for n in form.param_names], 3e-6)
    truth = GeneralFamily("elementwise/add", ELEMENTWISE, dict(zip(form.param_names, z, strict=True)),
                          {"b0": {"log_bw": 1.0}}, {}, 3e-6, variant="elementwise+l2")
    return {f"d{bw}": (hw, _synthetic_rows(hw, truth, rng)) for bw in (1000.0, 2000.0, 4000.0)
            for hw in [_device(bw, f"d{bw}")]}


def test_final_solve_runs_past_50_iterations_to_its_own_tolerance(monkeypatch):
    """Started far from the truth (b0 1 kB, em_max 0.2 against 2 MB and 0.85) the joint solve needs ~100 iterations:
    capped at the old 50 it stops on a slope (at_cap), with the shipped safety bound it ends by its own rule, further
    down its objective, and the family records how it ended."""
    from lvlmsim.calibrate import general

    per_dev = _elementwise_truth_rows(np.random.default_rng(5))
    setup = general.FamilySetup("elementwise+l2", {"b0": {"log_bw": 1.0}}, start={"b0": 1e3, "em_max": 0.2})
    monkeypatch.setitem(general.FAMILY_SETUPS, "elementwise/add", setup)
    capped = fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=160, max_iter=50)
    free = fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=160)
    assert {k: capped.solver[k] for k in ("iterations", "max_iter", "at_cap")} == {
        "iterations": 50, "max_iter": 50, "at_cap": True}
    assert free.solver["max_iter"] == general.FINAL_MAX_ITER and not free.solver["at_cap"]
    assert 50 < free.solver["iterations"] < general.FINAL_MAX_ITER
    assert free.solver["cost"] < capped.solver["cost"]
    assert GeneralFamily.from_dict(free.key, free.to_dict(), "t").solver == free.solver  # stored in gpu.json


def test_a_solve_that_converges_early_is_unchanged_by_the_cap(monkeypatch):
    """Started at b0 = 1 GB the solve ends by its own rule before 50 iterations: the old cap of 50 and the safety
    bound give the very same parameters."""
    from lvlmsim.calibrate import general

    per_dev = _elementwise_truth_rows(np.random.default_rng(5))
    setup = general.FamilySetup("elementwise+l2", {"b0": {"log_bw": 1.0}}, start={"b0": 1e9})
    monkeypatch.setitem(general.FAMILY_SETUPS, "elementwise/add", setup)
    fits = [fit_general_family("elementwise/add", per_dev, seed=0, rows_per_device=160, max_iter=m)
            for m in (50, None)]
    assert [f.solver["at_cap"] for f in fits] == [False, False]
    assert fits[0].solver["iterations"] == fits[1].solver["iterations"] < 50
    assert fits[0].z0 == fits[1].z0 and fits[0].coefs == fits[1].coefs


def test_solvers_flag_a_stop_at_their_cap_and_not_one_by_their_rule():
    """fit.levenberg_marquardt on one device's rows: one iteration cannot meet its tolerance (at_cap); unbounded it
    stops by its rule. loo.solve_summary counts the fits that stopped at the cap."""
    from lvlmsim.calibrate.loo import solve_summary

    hw, rows = next(iter(_elementwise_truth_rows(np.random.default_rng(2)).values()))
    form = form_for(ELEMENTWISE, "elementwise+l2")
    data = F.family_data(ELEMENTWISE, rows, hw, form)
    z0 = np.array([q.init if q.kind not in ("eff", "floor", "exp", "pos") else 0.0 for q in form.params])
    one = F.levenberg_marquardt(form, z0, {}, data, max_iter=1, floor_ref=3e-6)[2]
    free = F.levenberg_marquardt(form, z0, {}, data, max_iter=1000, floor_ref=3e-6)[2]
    assert one == (1, True)
    assert not free.at_cap and 1 < free.iterations < 1000
    solves = [{"held": "a", "family": "gemm", "iterations": 50, "max_iter": 50, "at_cap": True, "seed": 2},
              {"held": "b", "family": "gemm", "iterations": 12, "max_iter": 50, "at_cap": False, "seed": 2}]
    assert solve_summary(solves) == ("2 joint solves, most iterations 50 (cap 50), 1 stopped at the cap: "
                                     "gemm (a, seed 2)")


def test_loo_tables_read_a_saved_validate_report_without_fitting(tmp_path, capsys):
    """--from-json prints the tables from the report `validate --leave-one-out --json` wrote, so a documented table is
    that run's figures (no second ten-minute run); without --update nothing is rewritten."""
    mod = _loo_tables()
    stats = {"median_abs_pct_err": 9.61, "p90_abs_pct_err": 30.24, "n": 10, "roofline_median_abs_pct_err": 11.18}
    saved = tmp_path / "loo.json"
    saved.write_text(json.dumps({"h100_sxm": {"gemm": stats}}))
    assert mod.main(["--from-json", str(saved)]) == 0
    assert "| H100 SXM | 9.6 / 30.2 (11.2) | - (no table) |" in capsys.readouterr().out
