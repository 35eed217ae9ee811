"""Uncertainty bands from leave-one-device-out residuals (lvlmsim.calibrate.bands), with hand-derived quantiles, and
how a profile, an estimate and the CLI carry them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from lvlmsim.calibrate.bands import (
    bias_weight,
    measured_bands,
    nested_coverage,
    pooled_between_variance,
    pooled_bias_variance,
    pooled_coverage,
    pooled_variances,
    ratio_band,
    row_bands,
    transfer_band,
    transfer_bands,
)
from lvlmsim.calibrate.general import GeneralFamily
from lvlmsim.calibrate.measured import gemm_op
from lvlmsim.cost.roofline import OpCost
from lvlmsim.cost.uncertainty import time_bands
from lvlmsim.errors import SpecError

T3_90 = 1.6377443572159062  # Student t, 3 degrees of freedom, 90th percentile (tables)
T4_90 = 1.5332062740589438  # 4 degrees of freedom
T35_90 = 1.5766  # 3.5 degrees of freedom (the t density integrated numerically; between t_3's and t_4's)
SQUARES = (np.arange(1001) / 1000.0) ** 2  # quantiles known: q10 = 0.01, q50 = 0.25, q90 = 0.81


def test_ratio_band_is_measured_over_predicted():
    """r = log(pred/meas): a model 2x too slow on every row has measured = predicted / 2."""
    assert ratio_band(np.full(10, math.log(2.0))) == (0.5, 0.5)


def test_row_noise_alone_gives_its_own_asymmetric_quantiles():
    """Two devices with the same offset (0.25), the centre following it (bias_var inf) and no between-device spread:
    the band is the rows' own skewed quantiles, q10 = 0.01 and q90 = 0.81 of r, i.e. measured/predicted in
    (exp(-0.81), exp(-0.01))."""
    lo, hi = transfer_band({"a": SQUARES, "b": SQUARES}, tau0_sq=0.0, bias_var=math.inf)
    assert math.log(lo) == pytest.approx(-0.81, abs=0.01) and math.log(hi) == pytest.approx(-0.01, abs=0.005)


def test_device_offsets_alone_give_a_student_t_band_around_the_unshrunk_mean():
    """Offsets +0.1 and -0.1, no row noise, pooled tau0^2 = 0.01 worth 2 df, the centre following the mean offset all
    the way (bias_var inf, w = 1): tau^2 = (0.02 + 2 * 0.01) / 3, the new device's offset ~ 0 + sqrt(tau^2 (1 + 1/2))
    t_3 = 0.1414 t_3, so r90 = 0.1414 * 1.6377 = 0.2316."""
    lo, hi = transfer_band({"a": np.full(200, 0.1), "b": np.full(200, -0.1)}, tau0_sq=0.01, bias_var=math.inf)
    half = math.sqrt((0.02 + 2 * 0.01) / 3 * 1.5) * T3_90
    assert math.log(hi) == pytest.approx(half, rel=0.03) and math.log(lo) == pytest.approx(-half, rel=0.03)


def test_no_family_bias_centres_the_offset_at_zero_with_k_degrees_of_freedom():
    """The same offsets when families show no bias (bias_var 0, w = 0): the centre is 0, known, so both offsets are
    spread: SS 0.02 over k - w = 2 df, tau^2 = (0.02 + 2 * 0.01) / 4 = 0.01, no (1 + w/k) term: r90 = 0.1 * t_4."""
    lo, hi = transfer_band({"a": np.full(200, 0.1), "b": np.full(200, -0.1)}, tau0_sq=0.01, bias_var=0.0)
    assert math.log(hi) == pytest.approx(0.1 * T4_90, rel=0.03) and math.log(lo) == pytest.approx(-0.1 * T4_90,
                                                                                                  rel=0.03)


def test_partial_shrinkage_of_the_centre():
    """Offsets 0.3 and 0.1 (mean 0.2), tau0^2 = 0.02, sigma_mu^2 = 0.01: w = 0.01 / (0.01 + 0.02 / 2) = 0.5, centre
    0.1; SS around it 0.04 over k - w = 1.5 df, tau^2 = (0.04 + 2 * 0.02) / 3.5; scale sqrt(tau^2 (1 + 0.5 / 2)) =
    0.1690, df 3.5: r in 0.1 -+ 0.1690 * 1.5766."""
    assert bias_weight(0.01, 0.02, 2) == pytest.approx(0.5)
    lo, hi = transfer_band({"a": np.full(300, 0.3), "b": np.full(300, 0.1)}, tau0_sq=0.02, bias_var=0.01)
    scale = math.sqrt((0.04 + 2 * 0.02) / 3.5 * 1.25)
    assert scale == pytest.approx(0.1690, abs=1e-4)
    assert -math.log(hi) == pytest.approx(0.1 - scale * T35_90, abs=0.01)
    assert -math.log(lo) == pytest.approx(0.1 + scale * T35_90, abs=0.01)


def test_one_device_family_is_not_centred_on_that_devices_offset():
    """A family on one other device (offset 0.3) when families show no bias: its one offset is spread, not bias
    (w = 0): tau^2 = (0.09 + 2 * 0.04) / 3 = 0.0567 over 3 df, the band symmetric about 0: r90 = 0.2380 * 1.6377.
    Centred on 0.3 (the unshrunk reading) a device whose offset has the other sign, as two devices' held-out
    offsets do (each is the other's transfer error), would fall outside."""
    lo, hi = transfer_band({"a": np.full(100, 0.3)}, tau0_sq=0.04, bias_var=0.0)
    half = math.sqrt(0.17 / 3) * T3_90
    assert math.log(hi) == pytest.approx(half, abs=0.015) and math.log(lo) == pytest.approx(-half, abs=0.015)
    lo_u, hi_u = transfer_band({"a": np.full(100, 0.3)}, tau0_sq=0.04, bias_var=math.inf)
    assert math.log(1 / hi_u) == pytest.approx(0.3 - math.sqrt(0.04 * 2) * 1.8856, abs=0.02)  # t_2: 1.8856


def test_bias_variance_by_moments_skips_one_device_families():
    """Family means 0.3 (k 2) and 0.0 (k 3), tau0^2 0.03: (0.09 - 0.015 + 0 - 0.01) / 2 = 0.0325; a one-device
    family (offset 1.0) says nothing about bias; negative estimates clip at 0."""
    fams = [np.array([0.2, 0.4]), np.array([-0.1, 0.0, 0.1]), np.array([1.0])]
    assert pooled_bias_variance(fams, 0.03) == pytest.approx(0.0325)
    assert pooled_bias_variance([np.array([0.1, -0.1])], 0.03) == 0.0


def test_pooled_variances_count_every_offset_when_no_family_is_biased():
    """Families f (0.1, -0.1), g (0.2, -0.2), h (0.3, one device): means 0 -> sigma_mu^2 0 -> w 0; tau0^2 is the mean
    square of all five offsets around 0: (0.01 + 0.01 + 0.04 + 0.04 + 0.09) / 5 = 0.038."""
    res = {"A": {"f": [0.1] * 9, "g": [0.2] * 9, "h": [0.3] * 9},
           "B": {"f": [-0.1] * 9, "g": [-0.2] * 9}}
    tau0_sq, bias_var = pooled_variances(res)
    assert tau0_sq == pytest.approx(0.038) and bias_var == 0.0
    # unshrunk centres (bias_var inf): the variance around each family's mean, (0.02 + 0.08) / 2 df; h adds nothing
    assert pooled_variances(res, bias_var=math.inf) == (pytest.approx(0.05), math.inf)
    assert pooled_between_variance(res) == (pytest.approx(0.05), 2)


def test_pooled_variances_follow_a_shared_bias():
    """Every family off by +0.5 on both devices, spread +-0.1: per family SS around w * 0.5 is 0.02 + 0.5 (1 - w)^2
    over 2 - w df, sigma_mu^2 = 0.25 - tau0^2 / 2 and w = sigma_mu^2 / (sigma_mu^2 + tau0^2 / 2). The fixed point:
    tau0^2 = 0.02, sigma_mu^2 = 0.24, w = 0.96 (0.5 * 0.04^2 = 0.02 * 0.04): the centre follows the shared bias."""
    res = {"A": {f: [0.6] * 9 for f in "fgh"}, "B": {f: [0.4] * 9 for f in "fgh"}}
    tau0_sq, bias_var = pooled_variances(res)
    assert tau0_sq == pytest.approx(0.02, rel=1e-6) and bias_var == pytest.approx(0.24, rel=1e-6)
    assert bias_weight(bias_var, tau0_sq, 2) == pytest.approx(0.96, rel=1e-6)


def test_two_device_family_band_from_the_other_device_covers_the_opposite_offset():
    """Two devices with opposite held-out offsets (+-0.2, as a family fitted on one and priced on the other gives):
    A's band from B alone is centred on 0 (tau0^2 = 0.04 from B's one offset, tau^2 = (0.04 + 2 * 0.04) / 3 = 0.04,
    r90 = 0.2 * t_3 = 0.3275), so A's rows at +0.2 are all inside."""
    band = transfer_bands({"B": {"f": [-0.2] * 50}})["f"]
    assert math.log(band[1]) == pytest.approx(0.2 * T3_90, abs=0.015)
    cov = nested_coverage({"A": {"f": [0.2] * 50}, "B": {"f": [-0.2] * 50}})
    assert cov["A"]["f"] == {"coverage": 1.0, "n": 50, "inside": 50}


def test_pooled_coverage_counts_rows_not_cells():
    """Cells 0.5 of 100 rows and 1.0 of 300: the cell mean is 0.75, the rows pooled (50 + 300) / 400 = 0.875."""
    cov = {"A": {"f": {"coverage": 0.5, "n": 100, "inside": 50}}, "B": {"f": {"coverage": 1.0, "n": 300,
                                                                               "inside": 300},
                                                                         "g": {"coverage": 0.0, "n": 10, "inside": 0}}}
    assert pooled_coverage(cov, {"f"}) == pytest.approx(0.875)
    assert pooled_coverage(cov) == pytest.approx(350 / 410)
    assert pooled_coverage(cov, {"x"}) is None


def test_pooled_between_variance_counts_k_minus_one_per_family():
    """Family f offsets (0.1, -0.1): SS 0.02, 1 df; family g offsets (0.2, 0, 0.4): SS 0.08, 2 df -> 0.1 / 3.
    Regime keys ('f|x') are not families."""
    res = {"A": {"f": [0.1] * 9, "g": [0.2] * 9, "f|x": [5.0] * 9},
           "B": {"f": [-0.1] * 9, "g": [0.0] * 9},
           "C": {"g": [0.4] * 9}}
    tau0_sq, dof = pooled_between_variance(res)
    assert tau0_sq == pytest.approx(0.1 / 3) and dof == 3


def test_measured_band_is_the_in_sample_quantiles():
    lo, hi = measured_bands({"gemm": SQUARES.tolist()})["gemm"]
    assert lo == pytest.approx(math.exp(-0.81), rel=1e-3) and hi == pytest.approx(math.exp(-0.01), rel=1e-3)


def test_nested_coverage_never_uses_the_device_itself():
    """Devices A and B scatter uniformly on (-1, 1) around 0: a band from them alone spans r in (-0.8, 0.8). Device C
    sits at r = 0.5 on every row: judged by A and B's band it is fully covered (had C's own rows widened or shifted
    the band, that would not be a held-out figure)."""
    grid = np.linspace(-1.0, 1.0, 2001)
    res = {"A": {"f": grid}, "B": {"f": grid}, "C": {"f": np.full(50, 0.5)}}
    cov = nested_coverage(res)
    assert cov["C"]["f"] == {"coverage": 1.0, "n": 50, "inside": 50}


def test_rows_take_their_regime_band_else_the_family_band():
    per_key = {"f": [0.0] * 5, "f|small": [0.0] * 3, "f|large": [0.0] * 2}
    bands = {"f": (0.5, 2.0), "f|small": (0.9, 1.1)}
    pairs = row_bands(per_key, "f", bands)
    assert sorted((len(r), b) for r, b in pairs) == [(2, (0.5, 2.0)), (3, (0.9, 1.1))]
    assert row_bands(per_key, "f", bands, by_regime=False) == [(per_key["f"], (0.5, 2.0))]


def _family(band: dict) -> GeneralFamily:
    return GeneralFamily(key="gemm", kind="gemm", z0={}, coefs={}, hyper={}, floor_ref=1e-6,
                         devices=["h100-sxm"], band=band)


def test_fitted_device_gets_its_in_sample_band_others_the_transfer_band():
    fam = _family({"p10_ratio": 0.6, "p90_ratio": 1.5, "regimes": {"m 1-16": [0.7, 1.4]},
                   "measured": {"h100-sxm": {"p10_ratio": 0.9, "p90_ratio": 1.1}}})
    assert fam.band_on("h100-sxm") == ((0.9, 1.1), {})
    assert fam.band_on("l40s") == ((0.6, 1.5), {"m 1-16": (0.7, 1.4)})


def test_band_json_is_checked():
    from lvlmsim.calibrate.general import _band

    good = {"p10_ratio": 0.6, "p90_ratio": 1.5, "n_held_out": 10, "regimes": {"m 1-16": [0.7, 1.4]},
            "measured": {"h100-sxm": {"p10_ratio": 0.9, "p90_ratio": 1.1}}}
    assert _band(good, "b") == good
    with pytest.raises(SpecError, match=r"b\.regimes\.m 1-16\[1\]"):
        _band({"regimes": {"m 1-16": [0.7, 0.5]}}, "b")
    with pytest.raises(SpecError, match=r"b\.regimes\.x: expected \[p10, p90\]"):
        _band({"regimes": {"x": 1.0}}, "b")
    with pytest.raises(SpecError, match=r"b\.measured\.h100-sxm\.p10_ratio"):
        _band({"measured": {"h100-sxm": {"p10_ratio": float("nan"), "p90_ratio": 1.0}}}, "b")


class _OpBandProfile:
    """Bands per op: by op name, all in one family (source 'a')."""

    name = "t"

    def __init__(self, bands):
        self.bands = bands

    def band_for_op(self, source, op):
        return self.bands.get(op.name) if source == "a" else None


def _cost(name: str, t: float, source: str = "a") -> OpCost:
    op = dataclasses.replace(gemm_op(1, 1, 1), name=name)
    return OpCost(op, t, 0.0, 0.0, 0.0, "memory", 1.0, 1.0, source, None)


def test_ops_of_one_family_move_together_by_their_own_regime_band():
    """One z per family: x = exp(s z) + exp(2 s z) is increasing in z, so its p10/p90 are the sums of the ops' own
    p10s (0.5 + 0.25) and p90s (2 + 4); independent draws would give a narrower sum."""
    prof = _OpBandProfile({"small": (0.5, 2.0), "large": (0.25, 4.0)})
    lo, hi = time_bands(prof, {"x": [_cost("small", 1.0), _cost("large", 1.0)]})["x"]
    assert lo == pytest.approx(0.75, rel=0.05) and hi == pytest.approx(6.0, rel=0.05)


def test_estimate_text_prints_the_band():
    from lvlmsim.cli import app

    res = CliRunner().invoke(app, ["estimate", "--model", "llava-1.5-7b", "--hardware", "l40s"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("80% band"))
    assert "TTFT" in line and "TPOT" in line and "E2E" in line
    flat = CliRunner().invoke(app, ["estimate", "--model", "llava-1.5-7b", "--hardware", "l40s", "--profile",
                                    "default"])
    assert "80% band: none" in flat.output


def test_unmeasured_device_gets_a_wider_band_than_a_fitted_one():
    """l40s was never measured (transfer band); a100 is among the general model's devices (its in-sample band): every
    decode op's p90/p10 multiplier is wider on l40s. (The TPOT band is not compared: l40s decode is priced at ~0.9 of
    its bandwidth, so its p10 is held at the step's read time at the datasheet bandwidth, lvlmsim.cost.uncertainty.)"""
    from lvlmsim import api
    from lvlmsim.cost.uncertainty import op_band

    def widths(hw: str) -> dict[str, float]:
        est = api.estimate(model="llava-1.5-7b", hardware=hw)
        bands = {c.op.name: op_band(est.cost_profile, c.source, c.op) for c in est.stages["decode"].ops}
        return {name: b[1] / b[0] for name, b in bands.items()}

    un, fit = widths("l40s"), widths("a100-sxm-80gb")
    assert set(un) == set(fit) and len(un) >= 8
    assert all(un[name] > fit[name] for name in un), (un, fit)


def test_strictly_nested_coverage_never_fits_on_the_judged_device(monkeypatch):
    """Every model behind device D's band is fitted without D (and without the inner held-out device); with fake
    fits whose inner residuals scatter uniformly on (-1, 1), D's rows at r = 0.5 are all inside (band r in
    (-0.8, 0.8)) and rows at r = 0.9 all outside."""
    from types import SimpleNamespace

    from lvlmsim.calibrate import loo

    fits: list[set[str]] = []
    grid = np.linspace(-1.0, 1.0, 2001).tolist()

    def fake_fit(train, **_kw):
        fits.append(set(train))
        return SimpleNamespace(families={"f": None})

    monkeypatch.setattr(loo, "fit_general", fake_fit)
    monkeypatch.setattr(loo, "held_out_report", lambda model, hw, rows: ({}, {"f": grid}))
    devices = {n: (SimpleNamespace(id=n), []) for n in ("A", "B", "C")}
    residuals = {"A": {"f": [0.5] * 4}, "B": {"f": [0.9] * 4}, "C": {"f": [0.5] * 2 + [0.9] * 2}}
    cov = loo.strictly_nested_coverage(devices, residuals)
    assert {d: c["f"]["coverage"] for d, c in cov.items()} == {"A": 1.0, "B": 0.0, "C": 0.5}
    assert len(fits) == 6 and all(len(t) == 1 for t in fits)  # 3 outer devices x 2 inner folds, one device each
    assert [next(iter(t)) for t in fits] == ["C", "B", "C", "A", "B", "A"]


def test_validate_leave_one_out_text_prints_band_coverage(tmp_path):
    from tests.test_general_model import _app, _gemm_table

    _gemm_table(tmp_path / "h100_sxm", 1.0)
    _gemm_table(tmp_path / "a100_sxm", 0.33)
    res = CliRunner().invoke(_app(), ["validate", "--leave-one-out", "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("p10-p90 band coverage"))
    covered = {x.split()[0]: float(x.split()[-1]) for x in lines[i + 1:]}
    assert set(covered) == {"h100_sxm", "a100_sxm"} and all(0.0 <= v <= 1.0 for v in covered.values())
    pooled = float(lines[i].rsplit("all rows pooled ", 1)[1].rstrip("):"))
    assert min(covered.values()) <= pooled <= max(covered.values())  # one GEMM cell per device: a row-weighted mean


def test_regime_bands_reach_through_profile_wrappers():
    """A FittedProfile's regime band for an op (GEMM m <= 16 here), seen through a wrapper that prices some ops
    itself and overrides band_for for its own source only; a size regime without a band gets the family's."""
    from lvlmsim.calibrate.model import FamilyFit, FittedProfile
    from lvlmsim.cost.profile import ProfileWrapper
    from lvlmsim.cost.uncertainty import op_band

    fam = FamilyFit(kind="gemm", params={}, band_p10_ratio=0.6, band_p90_ratio=1.5,
                    regime_bands={"m 1-16": (0.9, 1.2)})
    base = FittedProfile("p", "hw", {"gemm": fam})
    base.source_prefix = "general"

    class Own(ProfileWrapper):
        def band_for(self, source):
            return (0.5, 3.0) if source == "own:x" else super().band_for(source)

    prof = Own(base)
    src = "general:p:gemm"
    assert op_band(prof, src, gemm_op(8, 4096, 4096)) == (0.9, 1.2)
    assert op_band(prof, src, gemm_op(8192, 4096, 4096)) == (0.6, 1.5)
    assert op_band(prof, "own:x", gemm_op(8, 4096, 4096)) == (0.5, 3.0)
    assert op_band(prof, "roofline-default", gemm_op(8, 4096, 4096)) is None


def _noisy_gemm_rows(h100, sigma: float, n: int = 600):
    """GEMM rows timed by known parameters times log-normal noise of `sigma`."""
    from lvlmsim.calibrate import fit as F
    from lvlmsim.calibrate.measured import Measurement
    from lvlmsim.calibrate.model import FamilyFit, FittedProfile

    rng = np.random.default_rng(3)
    true = {p.name: p.init for p in F.FORMS["gemm"].params} | {"ec_max": 0.7, "m0": 90.0, "em_max": 0.85,
                                                                 "floor_s": 4e-6}
    ops = [gemm_op(int(m), int(n), int(k)) for m, n, k in zip(
        rng.choice([1, 3, 16, 33, 100, 256, 1000, 3000], n), rng.choice([256, 1024, 4096, 12288], n),
        rng.choice([256, 1024, 4096, 8192], n), strict=True)]
    fam = FamilyFit(kind="gemm", params=true, hyper={"tile_m": 1.0, "tile_n": 1.0})
    clean = F.cost_model_times([Measurement(o, 1.0, "g", "t") for o in ops], h100,
                               FittedProfile("t", "h", {"gemm": fam}))
    noisy = clean * np.exp(rng.normal(0.0, sigma, len(clean)))
    return [Measurement(o, float(t), "gemm", "s") for o, t in zip(ops, noisy, strict=True)]


def test_own_profile_band_is_its_held_out_quantiles():
    """A device's own fit: GEMM times from known parameters with log-normal noise sigma 0.1 -> its held-out band of
    measured / predicted is about exp(-+1.2816 * 0.1) = 0.880-1.137 (the noise's own quantiles)."""
    from lvlmsim.calibrate import fit as F
    from lvlmsim.specs.registry import load_hardware

    h100 = load_hardware("h100-sxm")
    got, _hold = F.fit_family("gemm", _noisy_gemm_rows(h100, 0.1), h100, seed=1, starts=2, max_iter=80)
    lo, hi = got.band()
    assert math.log(lo) == pytest.approx(-0.128, abs=0.03) and math.log(hi) == pytest.approx(0.128, abs=0.03)


def test_bands_attached_to_an_older_profile_match_what_the_fit_stores():
    """attach_holdout_bands re-creates the fit's seeded held-out split of a stored profile: the band it attaches is
    the one fit_profile computed on the same rows; a family whose held-out count differs is left alone."""
    from lvlmsim.calibrate import fit as F
    from lvlmsim.calibrate.shipped import attach_holdout_bands
    from lvlmsim.specs.registry import load_hardware

    h100 = load_hardware("h100-sxm")
    rows = _noisy_gemm_rows(h100, 0.1)
    prof, _mask = F.fit_profile(rows, h100, name="t", seed=2, starts=2, max_iter=60)
    want = prof.families["gemm"].band()
    prof.families["gemm"].band_p10_ratio = prof.families["gemm"].band_p90_ratio = None
    assert attach_holdout_bands(prof, rows, h100) == []
    assert prof.families["gemm"].band() == want
    assert attach_holdout_bands(prof, rows[:-10], h100) == ["gemm"]


def test_explorer_headline_shows_the_estimate_band():
    """The explorer's headline carries the same band line as `lvlmsim estimate` (one formatter, lvlmsim.fmt), after
    the line naming the model that priced it; ' · ' between TTFT, TPOT and E2E where the CLI has two spaces (HTML
    collapses them)."""
    import lvlmsim
    from lvlmsim.calibrate.profiles import profile_provenance
    from lvlmsim.fmt import band_text, provenance_text
    from tests.test_app import start

    at = start()
    want = band_text(lvlmsim.estimate("llava-1.5-7b", "h100-sxm").band_keys())
    assert want.startswith("80% band (p10")
    prov = provenance_text(profile_provenance(lvlmsim.load_hardware("h100-sxm"), "auto"))
    assert f"h100-sxm: {prov}. " + want.replace("  ", " · ") in [c.value for c in at.caption]
