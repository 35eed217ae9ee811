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


# ------------------------------------------------------------------------------------------------------------------
# --decode: one decode step of the served TPOT


def test_needed_gemm_share_is_gemm_bytes_over_the_time_the_other_parts_leave():
    """10.5 ms published, 0.5 + 0.8 + 0.3 ms of attention, other kernels and host priced: the GEMMs have 8.9 ms for
    8 GB, 8e9 / 8.9e-3 / 1e12 = 0.8989 of a 1 TB/s datasheet; a published step shorter than the other parts alone
    leaves the GEMMs no time (inf)."""
    s = _script()
    step = s.StepSums(gemm_s=10e-3, gemm_bytes=8e9, attention_s=0.5e-3, other_kernels_s=0.8e-3, non_kernel_s=0.3e-3,
                      step_bytes=8.1e9, measured_gemm_s=None)
    assert step.step_s == pytest.approx(11.6e-3)
    assert s.needed_gemm_share(step, 10.5e-3, 1e12) == pytest.approx(8e9 / 8.9e-3 / 1e12)
    assert s.needed_gemm_share(step, 1.5e-3, 1e12) == math.inf


def test_one_decode_step_of_qwen3_4b_splits_the_tpot_and_reads_its_weights_once():
    """qwen3-vl-4b (Qwen3-4B's language model: 36 layers, hidden 2560, 32/8 heads of 128, MLP 9728, tied 151,936 x 2560
    LM head) reads, per decode step, 36 x (2560 x 6144 + 4096 x 2560 + 2560 x 19456 + 9728 x 2560) + 151936 x 2560 =
    4,022,272,000 bf16 weights = 8.0445 GB in its GEMMs (activations add 3.9 MB); the step's parts sum to the
    estimate's TPOT, so no priced time is left out of the split."""
    import lvlmsim

    s = _script()
    est = lvlmsim.estimate("qwen3-vl-4b", "rtx-4090", images=0, prompt_tokens=192, output_tokens=2, runtime="vllm")
    step = s.decode_op_table(est, None, "rtx-4090", False)
    weights = 36 * (2560 * 6144 + 4096 * 2560 + 2560 * 19456 + 9728 * 2560) + 151936 * 2560
    assert weights == 4_022_272_000
    assert step.gemm_bytes == pytest.approx(2 * weights + 3_884_800, rel=1e-9)
    assert step.step_s == pytest.approx(est.tpot_s, rel=1e-12)
    assert step.measured_gemm_s is None


@needs_shared
def test_a_grid_decode_attention_reads_its_own_row_of_the_a100_table():
    """generation_attention_perf.csv (A100, vLLM 0.14) measures batch 1, 32/8 heads of 128, step 127 (128 keys) at
    0.0128053 ms (read by hand): a decode op reading 128 keys per sequence is that row."""
    from lvlmsim.calibrate.measured import decode_attention_op

    s = _script()
    t = s.load_tables(MEASURED / "aiconfigurator" / "data" / "a100_sxm")
    seconds, _ = s.decode_attention_measured_s(t, decode_attention_op(1, 127, 32, 8, 128))
    assert seconds == pytest.approx(0.0128053e-3, rel=1e-5)
