"""The pieces of benchmarks/decode_item_selection.py and benchmarks/decode_tail_map.py (issue 11) that decide what a
candidate prices and how a tail is counted. Oracles are hand-set links and hand-counted rows."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from lvlmsim.calibrate import general
from lvlmsim.errors import SpecError

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))  # as a run from the repository root sees it
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


@pytest.fixture(scope="module")
def sel():
    return _load("decode_item_selection")


@pytest.fixture(scope="module")
def tmap():
    return _load("decode_tail_map")


def test_shipped_candidate_is_the_shipped_setup(sel):
    """`shipped` must be what general.py fits, or the check compares against something that is not shipped."""
    assert sel.candidate_setup("shipped") == general.FAMILY_SETUPS["attn_decode"]


def test_item_bytes_drops_only_the_c0_links(sel):
    """A fixed byte count per item: c0 carries no bandwidth or SM link; every other link and the ridge stay."""
    shipped, cand = general.FAMILY_SETUPS["attn_decode"], sel.candidate_setup("item-bytes")
    assert shipped.links["c0"] == {"log_bw": 1.0, "log_sms": -1.0}
    assert "c0" not in cand.links
    assert {p: f for p, f in shipped.links.items() if p != "c0"} == cand.links
    assert (cand.variant, cand.ridge) == (shipped.variant, shipped.ridge)


def test_unknown_candidate_names_the_allowed_ones(sel):
    with pytest.raises(SpecError, match="shipped, item-bytes"):
        sel.candidate_setup("per-sm")


def _frame(ratios: list[float], items: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"ratio": ratios, "items": items,
                         "abs_err_pct": [abs(r - 1.0) * 100.0 for r in ratios]})


def test_tail_share_lift_and_sign_by_cell(tmap):
    """Five rows, cutoff 30%: the tail is the 2.0 and 0.5 rows (100% and 50% off). Cell 'many' holds 2 of 5 rows
    and both tail rows' one priced slow (2.0): share 0.4, tail share 0.5, lift 1.25, over 1.0."""
    frame = _frame([1.1, 2.0, 0.5, 1.0, 0.9], ["few", "many", "few", "few", "many"])
    table = tmap.axis_table(frame, "items", 30.0).set_index("items")
    assert table.loc["many", "rows"] == 2
    assert math.isclose(table.loc["many", "share"], 0.4)
    assert math.isclose(table.loc["many", "tail_share"], 0.5)
    assert math.isclose(table.loc["many", "lift"], 1.25)
    assert table.loc["many", "over"] == 1.0 and table.loc["few", "over"] == 0.0
    assert math.isclose(table.loc["many", "tail_med_ratio"], 2.0)


def test_symmetric_p90_counts_a_2x_fast_row_as_far_off_as_a_2x_slow_one(tmap):
    """Ten rows priced 0.5x (2x fast): |pred/meas - 1| says 50%, the symmetric error 100%."""
    frame = _frame([0.5] * 10, ["few"] * 10)
    assert math.isclose(tmap.symmetric_p90_pct(frame), 100.0)
    assert math.isclose(float(frame.abs_err_pct.quantile(0.9)), 50.0)


def test_kernel_class_features_split_devices_by_launch_structure(sel):
    """FA2 devices (A100 sm80, RTX PRO 6000 sm120) carry their own bandwidth and SM log ratios to H100's 3350 GB/s and
    132 SMs; the persistent-scheduler devices (H100 FA3, B300 TRT-LLM-gen) carry the flag and zeros."""
    from lvlmsim.specs.registry import load_hardware

    a100 = sel.kernel_class_features(load_hardware("a100-sxm-80gb"))
    assert a100["persistent_decode"] == 0.0
    assert math.isclose(a100["log_bw_cta"], math.log(2039 / 3350))
    assert math.isclose(a100["log_sms_cta"], math.log(108 / 132))
    rtx = sel.kernel_class_features(load_hardware("rtx-pro-6000-server"))
    assert rtx["persistent_decode"] == 0.0 and math.isclose(rtx["log_sms_cta"], math.log(188 / 132))
    for hw_id in ("h100-sxm", "b300"):
        feats = sel.kernel_class_features(load_hardware(hw_id))
        assert (feats["persistent_decode"], feats["log_bw_cta"], feats["log_sms_cta"]) == (1.0, 0.0, 0.0)


def test_kernel_class_candidate_is_installed_only_inside_its_block(sel):
    """Inside: the three features exist and c0 links them; after: the shipped features and setup are back."""
    shipped_features, shipped_setup = general.FEATURES, general.FAMILY_SETUPS["attn_decode"]
    with sel.candidate("kernel-class"):
        assert general.FEATURES[-3:] == ("persistent_decode", "log_bw_cta", "log_sms_cta")
        assert general.FAMILY_SETUPS["attn_decode"].links["c0"] == {"log_bw_cta": 1.0, "log_sms_cta": -1.0,
                                                                   "persistent_decode": 0.0}
    assert general.FEATURES == shipped_features
    assert general.device_features is sel.SHIPPED_DEVICE_FEATURES
    assert general.FAMILY_SETUPS["attn_decode"] == shipped_setup


def test_fold_pick_keeps_shipped_within_the_tie_band(sel):
    """Round-2 rule: kernel-class 0.04 below shipped is a tie (shipped stays); 0.06 below replaces it; with no band
    the lowest wins, the first listed on an exact tie."""
    assert sel.fold_pick({"shipped": 28.70, "item-bytes": 40.0, "kernel-class": 28.66}, 0.05) == "shipped"
    assert sel.fold_pick({"shipped": 28.70, "item-bytes": 40.0, "kernel-class": 28.64}, 0.05) == "kernel-class"
    assert sel.fold_pick({"shipped": 28.70, "item-bytes": 28.60, "kernel-class": 28.50}, 0.05) == "kernel-class"
    assert sel.fold_pick({"shipped": 28.70, "kernel-class": 28.66}) == "kernel-class"
    assert sel.fold_pick({"shipped": 28.70, "kernel-class": 28.70}) == "shipped"


def _base(median: float, p90: float, flat: float = 60.0) -> dict:
    return {"median_abs_pct_err": median, "p90_abs_pct_err": p90, "roofline_median_abs_pct_err": flat}


def test_broken_targets_counts_only_cells_met_before(sel):
    """A100 full decode 11.7 -> 12.3 crosses 12 (broken); B300's p90 69.2 -> 70 was already missed (not counted);
    H100's windowed median 13.2 -> 14.9 stays <= 15 but its p90 28.3 -> 35.1 crosses 35; RTX's median 10.5 -> 21
    passes the flat derate of 20 (broken) and its 12 target (broken)."""
    baseline = {"a100_sxm": {"generation_attention": _base(11.7, 23.0)},
                "b300_sxm": {"generation_attention": _base(11.4, 69.2)},
                "h100_sxm": {"generation_attention_sliding": _base(13.2, 28.3)},
                "rtx_pro_6000_server": {"generation_attention": _base(10.5, 30.0, flat=20.0)}}
    figures = {"a100_sxm": {"generation_attention": (12.3, 23.1)},
               "b300_sxm": {"generation_attention": (11.0, 70.0)},
               "h100_sxm": {"generation_attention_sliding": (14.9, 35.1)},
               "rtx_pro_6000_server": {"generation_attention": (21.0, 30.0)}}
    broken = sel.broken_targets(baseline, figures)
    assert len(broken) == 4
    assert broken[0].startswith("a100_sxm generation_attention median 11.7 -> 12.3")
    assert broken[1].startswith("h100_sxm generation_attention_sliding p90 28.3 -> 35.1")
    assert any("flat derate 20.0" in line for line in broken)
    assert sel.broken_targets(baseline, {"b300_sxm": {"generation_attention": (11.0, 70.0)}}) == []
