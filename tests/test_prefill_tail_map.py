"""benchmarks/prefill_tail_map.py: the tail tables, the largest tail cell and the priced bound on hand-built rows."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lvlmsim.calibrate.measured import Measurement, encoder_attention_op
from lvlmsim.cost.profile import DefaultProfile
from lvlmsim.specs.registry import load_hardware


def _tail_map():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "prefill_tail_map.py"
    spec = importlib.util.spec_from_file_location("prefill_tail_map", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_axis_table_shares_lift_and_sign_by_hand():
    """Ten rows, cutoff 40%: both tail rows in head size 64 (4 rows), one slower than priced (+log), one faster:
    tail share 1.0, row share 0.4, lift 2.5, half of its tail slow, tail median log (0.7 - 0.5) / 2 = 0.1."""
    frame = pd.DataFrame({"head_dim": [64] * 4 + [128] * 6,
                          "abs_err_pct": [50.0, 60.0, 10.0, 5.0] + [10.0] * 6,
                          "log_ratio": [0.7, -0.5, 0.1, -0.05] + [0.0] * 6})
    table = _tail_map().axis_table(frame, "head_dim", 40.0).set_index("head_dim")
    assert math.isclose(table.loc[64, "share"], 0.4)
    assert math.isclose(table.loc[64, "lift"], 2.5)
    assert math.isclose(table.loc[64, "tail_slow"], 0.5)
    assert math.isclose(table.loc[64, "tail_med_log"], 0.1)
    assert table.loc[128, "tail_share"] == 0.0 and np.isnan(table.loc[128, "tail_slow"])


def test_top_cell_names_the_cell_and_the_p90_without_it():
    """Ten rows: the two tail rows (50, 60%) are the cell (2-16 tokens, batch x heads 1); without its three rows the
    other seven are all 10%, so the p90 falls to 10%."""
    frame = pd.DataFrame({"tokens": ["2-16"] * 3 + ["17-64"] * 7, "bh": ["1"] * 3 + ["9-64"] * 7,
                          "abs_err_pct": [50.0, 60.0, 10.0] + [10.0] * 7, "log_ratio": [0.4, 0.5, 0.0] + [0.0] * 7})
    text = _tail_map().top_cell(frame, 40.0)
    assert "tokens 2-16 x batch*heads 1: 2 of 2 tail rows (100%), 3 rows" in text
    assert text.endswith("-> 10.0% without it")


def test_priced_bound_is_the_cost_models():
    """A flat 0.5 / 0.5 derate with a 1 ms floor on h100-sxm: a one-token ViT attention is floor-bound (overhead);
    with no floor, 1 x 65536 tokens x 16 heads x head size 64 is compute-bound (its FLOPs dwarf its bytes)."""
    hw = load_hardware("h100-sxm")
    rows = [Measurement(encoder_attention_op(1, 1, 16, 64, "bf16"), 1e-5, "encoder_attention", "x"),
            Measurement(encoder_attention_op(1, 65536, 16, 64, "bf16"), 1e-2, "encoder_attention", "x")]
    _pred, bound = _tail_map().priced(rows[:1], hw, DefaultProfile("t", 0.5, 0.5, 1e-3))
    assert list(bound) == ["overhead"]
    _pred, bound = _tail_map().priced(rows[1:], hw, DefaultProfile("t", 0.5, 0.5, 0.0))
    assert list(bound) == ["compute"]
