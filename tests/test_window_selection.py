"""What decides how a windowed prefill is fitted and priced (issue 16), and the pieces of
benchmarks/window_tile_selection.py that decide what a candidate prices.

Oracles are hand-counted tiles: TRT-LLM-gen's context CTA of 256 query rows loops over 128-key tiles from the tile of
its first row's window start to the tile of its last row's causal limit (FA2's rule with 64-row query blocks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lvlmsim.calibrate.kernels import window_binds
from lvlmsim.calibrate.measured import prefill_attention_op, sliding_prefill_attention_op


def _selection():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "window_tile_selection.py"
    spec = importlib.util.spec_from_file_location("window_tile_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_window_binds_only_once_the_keys_outgrow_it():
    """The `unbound` fit keeps windowed rows whose whole cache fits the window: they run the causal key loop."""
    assert not window_binds(sliding_prefill_attention_op(batch=2, isl=128, heads=16, kv_heads=8, head_dim=128,
                                                         window=128))
    assert window_binds(sliding_prefill_attention_op(batch=2, isl=129, heads=16, kv_heads=8, head_dim=128, window=128))
    assert not window_binds(prefill_attention_op(batch=2, isl=4096, heads=16, kv_heads=8, head_dim=128))


def test_visited_keys_count_whole_trtllm_tiles():
    """512 tokens, 128-key window: CTA 0 (rows 0-255) visits tiles 0-1 (256 keys a row), CTA 1 (rows 256-511)
    tiles 1-3 (its first row's window starts at key 129: 384 keys a row); (256 x 256 + 256 x 384) / 512 = 320."""
    sel = _selection()
    assert sel.visited_keys_per_row(512, 0, 128, 128.0, 1, "bw") == 320.0
    assert sel.visited_keys_per_row(512, 0, 0, 128.0, 1, "bw") == (256 * 256 + 256 * 512) / 512  # causal: 384


def test_visited_key_loop_is_the_causal_length_with_as_many_keys_a_row():
    """Causal rows of L in (384, 512] tokens visit (256 x 256 + (L - 256) x 512) / L keys a row on TRT-LLM-gen
    (below 320 for L <= 384: 298.7 at 384, 341.8 at 385), so the 512-token windowed row reads as 385 tokens; on FA2
    (64 x 128 blocks) a 256-token row under a 128-key window visits 192 keys a row, which no shorter causal row
    reaches (256 - 16384 / L < 192 below 256)."""
    sel = _selection()
    bw_row = sliding_prefill_attention_op(batch=1, isl=512, heads=8, kv_heads=8, head_dim=128, window=128)
    assert sel.visited_loop_length(bw_row, "bw") == 385.0
    fa2_row = sliding_prefill_attention_op(batch=1, isl=256, heads=8, kv_heads=8, head_dim=128, window=128)
    assert sel.visited_keys_per_row(256, 0, 128, 128.0, 1, "fa2") == 192.0
    assert sel.visited_loop_length(fa2_row, "fa2") == 256.0
    assert sel.visited_loop_length(fa2_row, None) is None  # no known tiles: the useful-key loop is used instead


def _prefill_rows(hw, bound_time_s: float):
    """Causal prefill rows at a smooth synthetic time, windowed rows whose 128 keys fit their window (fitted like
    causal ones), and windowed rows the window binds, at `bound_time_s`."""
    from lvlmsim.calibrate.measured import Measurement

    rows = []
    for batch in (1, 2, 4, 8):
        for isl in (64, 256, 1024, 4096):
            op = prefill_attention_op(batch=batch, isl=isl, heads=16, kv_heads=8, head_dim=128)
            rows.append(Measurement(op, 1e-5 + op.flops / (0.5 * hw.peak_flops("bf16")), "context_attention", "s"))
            short = sliding_prefill_attention_op(batch=batch, isl=min(isl, 128), heads=16, kv_heads=8, head_dim=128,
                                                 window=128)
            rows.append(Measurement(short, 1e-5 + short.flops / (0.5 * hw.peak_flops("bf16")),
                                    "context_attention_sliding", "s"))
            bound = sliding_prefill_attention_op(batch=batch, isl=isl + 129, heads=16, kv_heads=8, head_dim=128,
                                                 window=128)
            rows.append(Measurement(bound, bound_time_s, "context_attention_sliding", "s"))
    return rows


def test_the_prefill_fit_never_sees_a_row_a_window_binds():
    """general.FAMILY_SETUPS["attn_prefill"] fits on the rows no window binds: bound rows at 10 us or at 1 s leave
    the fitted family exactly the same, where a family fitted on every row (the joint fit) moves."""
    from dataclasses import replace

    from lvlmsim.calibrate import general
    from lvlmsim.specs.registry import load_hardware

    hw = load_hardware("h100-sxm")
    assert not general.FAMILY_SETUPS["attn_prefill"].window_bound_rows
    fits = [general.fit_general({hw.id: (hw, _prefill_rows(hw, t))}, families=["attn_prefill"]).families
            ["attn_prefill"].z0 for t in (1e-5, 1.0)]
    assert fits[0] == fits[1]
    saved = general.FAMILY_SETUPS["attn_prefill"]
    general.FAMILY_SETUPS["attn_prefill"] = replace(saved, window_bound_rows=True)
    try:
        joint = [general.fit_general({hw.id: (hw, _prefill_rows(hw, t))}, families=["attn_prefill"]).families
                 ["attn_prefill"].z0 for t in (1e-5, 1.0)]
    finally:
        general.FAMILY_SETUPS["attn_prefill"] = saved
    assert joint[0] != joint[1]


def _bag_selection():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "window_bag_selection.py"
    spec = importlib.util.spec_from_file_location("window_bag_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _FakeDraws:
    """Stands in for window_bag_selection.Draws: a fit's prediction on any device is a constant set per (draw,
    start), and a device's score is its mean predicted time (so the scores are hand-computable)."""

    def __init__(self, level: dict):
        self.level = level

    def pred(self, names, fit, held):
        import numpy as np

        return np.full(3, self.level[fit])

    def score(self, held, pred):
        return float(pred.mean())


def test_bagging_prices_at_the_geometric_mean_of_its_draws():
    """bag:4 over draws priced 1, 2, 4 and 8: (1 x 2 x 4 x 8)^(1/4) = 2^(6/4) = 2.828...; `none` is draw 0 alone."""
    sel = _bag_selection()
    fake = _FakeDraws({(0, "shipped"): 1.0, (1, "shipped"): 2.0, (2, "shipped"): 4.0, (3, "shipped"): 8.0})
    assert sel.predict(fake, "bag:4", ("a", "b"), "c")[0] == pytest.approx(2 ** 1.5, rel=1e-12)
    assert sel.predict(fake, "none", ("a", "b"), "c")[0] == 1.0


def test_cross_validated_draw_is_the_lowest_leave_one_out_first_on_a_tie():
    """cv:4 scores each draw by the leave-one-out over its training devices (here the draw's level) and keeps the
    lowest: draw 2 at 3.0; on a tie (draws 1 and 2 at 3.0) the lower draw; one training device: draw 0."""
    sel = _bag_selection()
    fits = sel.PROCEDURES["cv:4"][1]
    fake = _FakeDraws({(0, "shipped"): 5.0, (1, "shipped"): 4.0, (2, "shipped"): 3.0, (3, "shipped"): 6.0})
    assert sel.cv_pick(fake, ("a", "b"), fits) == (2, [5.0, 4.0, 3.0, 6.0])
    fake.level[(1, "shipped")] = 3.0
    assert sel.cv_pick(fake, ("a", "b"), fits)[0] == 1
    assert sel.cv_pick(fake, ("a",), fits) == (0, [])
    assert sel.predict(fake, "cv:4", ("a", "b"), "c")[0] == 3.0


def test_selection_takes_the_first_listed_within_a_tenth_of_a_point():
    """The pre-declared tie rule: a later candidate must beat an earlier one by more than TIE_POINTS (0.1)."""
    sel = _bag_selection()
    assert sel.TIE_POINTS == 0.1
    assert sel.first_within({"none": 13.87, "bag:4": 13.95, "cv:4": 13.86}) == "none"
    assert sel.first_within({"none": 13.87, "bag:4": 13.70, "cv:4": 13.86}) == "bag:4"


def _fold_convergence():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "window_fold_convergence.py"
    spec = importlib.util.spec_from_file_location("window_fold_convergence", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fold_convergence_reads_its_flags_and_refuses_others_by_name():
    """Defaults are the fold the diagnosis is about (H100 held out at seed 2); a device outside the measured four, a
    non-integer seed or an unknown flag is refused with the flag and the allowed values named."""
    conv = _fold_convergence()
    assert conv.parse_args([]) == ("h100_sxm", 2, set())
    assert conv.parse_args(["--held", "b300_sxm", "--seed", "1", "--draws"]) == ("b300_sxm", 1, {"--draws"})
    assert conv.parse_args(["--folds", "--draws"])[2] == {"--draws", "--folds"}
    with pytest.raises(ValueError, match=r"--held: 'v100'.*allowed: a100_sxm, h100_sxm, b300_sxm"):
        conv.parse_args(["--held", "v100"])
    with pytest.raises(ValueError, match=r"--seed: expected a non-negative integer"):
        conv.parse_args(["--seed", "-1"])
    with pytest.raises(ValueError, match=r"unknown or incomplete argument '--seed'"):
        conv.parse_args(["--seed"])
    with pytest.raises(ValueError, match=r"unknown or incomplete argument '--iters'"):
        conv.parse_args(["--iters", "3"])


def test_b300_before_wave_8_has_the_old_features():
    """The diagnosis's 'before' B300: 160 SMs and no clock (priced at the reference's 1980 MHz), everything else and
    every other device as given. On-chip over DRAM bandwidth then differs by log(160/148) - log(2032/1980) = 0.0520."""
    import math

    from lvlmsim.calibrate.general import device_features
    from lvlmsim.specs.registry import load_hardware

    conv = _fold_convergence()
    b300, h100 = load_hardware("b300"), load_hardware("h100-sxm")
    devices = {"b300_sxm": (b300, ["row"]), "h100_sxm": (h100, ["other"])}
    before = conv.with_b300_before(devices)
    hw = before["b300_sxm"][0]
    assert (hw.sm_count, hw.boost_clock_mhz, hw.mem_bw_gbps) == (160, None, b300.mem_bw_gbps)
    assert before["b300_sxm"][1] == ["row"] and before["h100_sxm"] is devices["h100_sxm"]
    assert devices["b300_sxm"][0].sm_count == 148  # the given devices are not changed
    shift = device_features(hw)["log_onchip"] - device_features(b300)["log_onchip"]
    assert shift == pytest.approx(math.log(160 / 148) - math.log(2032 / 1980), abs=1e-12)
    assert shift == pytest.approx(0.0520, abs=5e-5)


def test_fit_convergence_reads_its_flags_and_refuses_others_by_name():
    """benchmarks/fit_convergence.py: the shipped caps unless --max-iter, a report path, the per-device check; a cap
    below 1, a non-number or an unknown flag is refused with the flag and the allowed values named."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_convergence.py"
    spec = importlib.util.spec_from_file_location("fit_convergence", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_args([]) == {"max_iter": None, "json_out": None, "profile": False}
    assert mod.parse_args(["--max-iter", "50", "--json-out", "x.json", "--profile"]) == {
        "max_iter": 50, "json_out": Path("x.json"), "profile": True}
    with pytest.raises(ValueError, match=r"--max-iter: expected a whole number >= 1"):
        mod.parse_args(["--max-iter", "0"])
    with pytest.raises(ValueError, match=r"unknown or incomplete argument '--seeds'; allowed: --max-iter N"):
        mod.parse_args(["--seeds", "4"])
