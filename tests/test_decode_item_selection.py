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
