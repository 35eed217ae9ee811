"""benchmarks/prefill_ops_vs_measured.py reads a measured kernel time at an op's shape (issue 13): a grid shape must
read its own row and an off-grid shape the log-FLOP/s interpolation of its neighbours, or the op table it prints
compares lvlmsim with the wrong measurement. Oracles are hand-computed from two- and four-point grids and one
hand-read row of the A100 GEMM table."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from lvlmsim.calibrate.measured import gemm_op
from tests.shared_data import MEASURED, needs_shared


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "prefill_ops_vs_measured.py"
    spec = importlib.util.spec_from_file_location("prefill_ops_vs_measured", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_log_interpolation_is_the_geometric_mean_halfway_in_log2():
    """100 at n=1024 and 400 at n=4096: n=2048 is halfway in log2, so exp(mean(log 100, log 400)) = 200; a grid
    point reads itself; past the grid's edge the edge's value is held."""
    s = _script()
    pts, axes = {(1024.0,): 100.0, (4096.0,): 400.0}, [[1024.0, 4096.0]]
    assert s.interp_log(pts, axes, (2048.0,)) == pytest.approx(200.0)
    assert s.interp_log(pts, axes, (1024.0,)) == pytest.approx(100.0)
    assert s.interp_log(pts, axes, (65536.0,)) == pytest.approx(400.0)


def test_a_missing_corner_is_dropped_and_the_rest_renormalised():
    """2-D grid with corner (2, 2) unmeasured: at (1.414.., 1) (halfway in log2 along x, on y's lower edge) only the
    y=1 corners weigh, so the answer is the 1-D geometric mean of 10 and 40 = 20; with no corner measured, None."""
    s = _script()
    pts = {(1.0, 1.0): 10.0, (2.0, 1.0): 40.0, (1.0, 2.0): 1.0}
    axes = [[1.0, 2.0], [1.0, 2.0]]
    assert s.interp_log(pts, axes, (math.sqrt(2.0), 1.0)) == pytest.approx(20.0)
    assert s.interp_log({}, axes, (1.0, 1.0)) is None


@needs_shared
def test_a_grid_gemm_reads_its_own_row_of_the_a100_table():
    """gemm_perf.csv (A100, vLLM 0.14) measures m=2048, n=4096, k=2560 bf16 at 0.197679 ms (read by hand): Gemma 3
    4B's QKV projection at a 2048-token prefill is exactly that shape."""
    s = _script()
    t = s.load_tables(MEASURED / "aiconfigurator" / "data" / "a100_sxm")
    seconds, how = s.gemm_measured_s(t, gemm_op(2048, 4096, 2560))
    assert how == "grid"
    assert seconds == pytest.approx(0.197679e-3, rel=1e-5)
