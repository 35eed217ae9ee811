"""Nested leave-one-device-out check of the m = 1 GEMM's compute term at the CUDA-core FP32 rate (issues 11 + 13,
wave 6).

    python benchmarks/gemm_gemv_selection.py          # bf16 (~3 min on the shared machine)

Why: the shipped bf16 GEMM family (general.FAMILY_SETUPS["gemm"], SplitKGemmForm) prices a GEMM as max(memory,
compute) + beta x the smaller term, the compute term as FLOPs over a fitted share of the dtype's TENSOR peak. At
m = 1 that share is ~0.8% of the tensor peak, and on a device whose tensor peak is small against its bandwidth (RTX
4090: GeForce bf16 with FP32 accumulate is half rate, 165 TFLOP/s, 164 FLOP/B) the compute term comes to ~2/3 of the
memory term and beta x it to the whole TPOT overprice of bench row tt-394
(`PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-394 --decode --ops 128`). A one-row GEMM does
no tensor-core work worth the name: cuBLAS runs it as a matrix-vector kernel (public PyTorch profiler traces of M = 1
decode steps show `gemv2T_kernel_val<..., float, 128, 16, ...>`, FP32 accumulators on CUDA cores) or as a tile kernel
whose MMA M is 15/16 or 63/64 padding (Vinci-hit/RustInfer#4: cuBLASLt's split-K overhead and tensor-core padding at
M = 1, a CUDA-core GEMV 25-44% faster; sgl-project/sglang#29126: fp8 M = 1 on a 64-row MMA tile). What does not
overlap with the weight stream is the SM's ordinary instruction work (conversion, FMA, reduction), whose rate is the
CUDA-core FP32 rate (hardware_specs peak_tflops.fp32), not the tensor peak: the two differ by 2x on RTX 4090, 4x on
RTX PRO 6000, 15-16x on A100 and H100 and 30x on B300. Two candidates, everything else the shipped setup:
- `tensor`: the shipped form (gemm+splitk+l2);
- `gemv`: gemm+splitk+gemv+l2 (model.GemvGemmForm): the m = 1 compute share times the device's FP32 share of its
  tensor peak over H100's (no fitted parameter; H100 prices as before, rows with m > 1 unchanged).
Criterion, fixed before any outer figure was read: per outer held-out device the candidate with the lowest inner score
(lvlmsim.calibrate.loo.inner_score over the other three devices) wins, a tie keeps `tensor`; `gemv` ships only if it
wins in at least three of the four outer folds (2-2: the lower mean of the `pooled held-out` per-device medians
decides, a tie keeps `tensor`). Figures are median / p90 |error| (%), bf16 rows only. Needs ../shared/data/measured
(never copied into the project).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from gemm_nested import dtype_devices, select  # noqa: E402

from lvlmsim.calibrate import general  # noqa: E402

TABLE = "gemm"
KEY = "gemm"
DTYPE = "bf16"


def candidates() -> dict[str, general.FamilySetup]:
    """The shipped bf16 GEMM setup, and the same links and ridge with the m = 1 compute term at the FP32 rate."""
    shipped = general.FAMILY_SETUPS[KEY]
    variant = shipped.variant.replace("gemm+splitk", "gemm+splitk+gemv")
    return {"tensor": shipped, "gemv": general.FamilySetup(variant, shipped.links, shipped.ridge)}


def main() -> int:
    t0 = time.perf_counter()
    devices = dtype_devices(TABLE, DTYPE)
    if devices is None:
        return 1
    select(KEY, TABLE, DTYPE, candidates(), devices, fit_families=[KEY], inner_width=26, label_width=8)
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
