"""benchmarks/moe_tail_map.py: the tail tables and the priced-bound labels on hand-built rows."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lvlmsim.calibrate.moe import PARAM_NAMES, MoEData
from lvlmsim.specs.registry import load_hardware


def _tail_map():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "moe_tail_map.py"
    spec = importlib.util.spec_from_file_location("moe_tail_map", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_axis_table_shares_lift_and_sign_by_hand():
    """Ten rows, cutoff 40%: the two tail rows are both in cell 'a' (4 rows), one slower than priced (+log), one
    faster: tail share 1.0, row share 0.4, lift 2.5, half of its tail slow."""
    frame = pd.DataFrame({"cell": ["a"] * 4 + ["b"] * 6,
                          "abs_err_pct": [50.0, 60.0, 10.0, 5.0] + [10.0] * 6,
                          "log_ratio": [0.7, -0.5, 0.1, -0.05] + [0.0] * 6})
    table = _tail_map().axis_table(frame, "cell", 40.0).set_index("cell")
    assert math.isclose(table.loc["a", "share"], 0.4)
    assert math.isclose(table.loc["a", "tail_share"], 1.0)
    assert math.isclose(table.loc["a", "lift"], 2.5)
    assert math.isclose(table.loc["a", "tail_slow"], 0.5)
    assert math.isclose(table.loc["a", "tail_med_log"], 0.1)
    assert table.loc["b", "tail_share"] == 0.0 and np.isnan(table.loc["b", "tail_slow"])


def test_priced_bound_names_the_dominant_term():
    """On h100-sxm (989.4 TFLOP/s bf16, 3350 GB/s) with ceilings 0.5, em 0.8, 4 us per launch: an empty row is the
    5 launches' 20 us; 1 GB of weights is 1e9 / (0.8 x 3.35e12) = 373 us > 20 us of launches; 1e13 FLOP is
    1e13 / (0.5 x 989.4e12) = 20 ms above its 1e6 bytes."""
    hw = load_hardware("h100-sxm")
    n = 3
    cols = {k: np.zeros(n) for k in MoEData.COLUMNS}
    cols.update(dtype=np.array(["bf16"] * n), table_dtype=np.array(["bfloat16"] * n),
                bytes_up=np.array([0.0, 1e9, 1e6]), flops_up=np.array([0.0, 0.0, 1e13]),
                pairs=np.ones(n), touched=np.ones(n), padded_rows=np.ones(n), tile_share=np.ones(n),
                launches=np.full(n, 5.0), smem_ratio=np.ones(n), triton_default=np.zeros(n, dtype=bool),
                fit_excluded=np.zeros(n, dtype=bool), measured_s=np.ones(n))
    params = [0.5] * (len(PARAM_NAMES) - 2) + [0.8, 4e-6]
    bound = _tail_map().priced_bound(params, MoEData(**cols), hw)
    assert list(bound) == ["launch floor", "memory", "compute"]


def _wave_selection():
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))  # the script imports benchmarks/moe_nested.py, as it does when run
    try:
        spec = importlib.util.spec_from_file_location("moe_wave_selection", bench / "moe_wave_selection.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    return mod


def test_wave_efficiency_by_hand():
    """132 SMs: 8 tiles fill 8 of 132 slots, 132 exactly one wave, 133 spill into a second wave (133 / 264)."""
    eff = _wave_selection().wave_efficiency(np.array([8.0, 132.0, 133.0]), 132)
    assert np.allclose(eff, [8 / 132, 1.0, 133 / 264])


def test_with_waves_scales_each_gemm_by_its_own_tiles():
    """Qwen3-30B's widths (hidden 2048, gate+up 1536) on 200 rows padded to 256 (2 M tiles): the up GEMM has
    2 x 12 = 24 tiles (FLOPs x 132 / 24), the down GEMM 2 x 16 = 32 (x 132 / 32); bytes stay."""
    n = 1
    cols = {k: np.zeros(n) for k in MoEData.COLUMNS}
    flops_up, flops_down = 2.0 * 200 * 1536 * 2048, 2.0 * 200 * 2048 * 768
    cols.update(pairs=np.array([200.0]), padded_rows=np.array([256.0]), hidden=np.array([2048]),
                flops_up=np.array([flops_up]), flops_down=np.array([flops_down]), tile_share=np.ones(n),
                bytes_up=np.array([7.0]))
    out = _wave_selection().with_waves(MoEData(**cols), 132)
    assert math.isclose(out.flops_up[0], flops_up * 132 / 24)
    assert math.isclose(out.flops_down[0], flops_down * 132 / 32)
    assert out.bytes_up[0] == 7.0
