"""Nested leave-one-device-out check of vLLM's fp8 CUTLASS dispatch tiles in the fp8 wave form (issue 11, round 2).

    python benchmarks/gemm_dispatch_selection.py     # ~40 s on the shared machine

The fp8 rows of aiconfigurator's vLLM 0.24 tables were measured with CutlassFP8ScaledMMLinearKernel (kernel_source
column; per-tensor scales), i.e. vLLM's cutlass_scaled_mm, whose CTA tile is fixed per architecture and m bucket by
csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm{90,100,120}_fp8_dispatch.cuh (FP8_DISPATCH in
benchmarks/gemm_tile_selection.py, with commits). Candidates for the family key `gemm.fp8`:
- `shipped`: WaveGemmForm (variant gemm+waves+l2) with one tile for every row by the fit's grid search;
- `dispatch`: the same form, its smooth saturations unchanged, with the tile quantisation and the waves over the SMs
  of the tile the dispatch picks for the row's architecture and m (A/B swapped for small m, sm100's 2-SM tiles
  halved per SM): useful share m n / (ceil(tiles / SMs) SMs tm tn), no grid search. A fact from the kernel's source,
  no new parameter.
- `occupancy` (added after `dispatch`'s outer figures were seen, so its outer figures are not a clean held-out
  test): the shipped form's grid-searched tile quantisation times the SMs' busy share tiles / (waves SMs) under the
  dispatch's tile (its padding not counted).
Result (all three lose in every inner fold, so nothing ships): see calibration/README.md, "GEMM round 2".
The NVFP4 rows have no such table: B300's FlashInferCuteDslNvFp4LinearKernel and RTX PRO 6000's
FlashInferCutlassNvFp4LinearKernel pick (runner, tactic) by FlashInfer's autotuner, profiling at run time, or a
fallback tactic without it (docs.flashinfer.ai/autotuning.html; vLLM's kernel_warmup.flashinfer_autotune), so no
source fixes their tile per m.
For each outer held-out device the candidate is chosen by an inner leave-one-out over the other fp8 devices only
(lvlmsim.calibrate.loo.fold_table_errors: median |error| per inner held-out device; score: the mean over inner folds;
a tie keeps `shipped`), criterion fixed before any outer figure was seen. Then every candidate is fitted on the
training devices and priced on the outer one (`nested` is the chosen one's), and in-sample (fitted on all, priced on
each). Figures are median / p90 |error| (%), fp8 rows only. Needs ../shared/data/measured (never copied).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gemm_nested import dtype_devices, select  # noqa: E402
from gemm_tile_selection import FP8_DISPATCH  # noqa: E402

from lvlmsim.calibrate import general, model  # noqa: E402
from lvlmsim.calibrate.model import CachedForm, GemmForm  # noqa: E402

KEY, DTYPE, TABLE = "gemm.fp8", "fp8", "gemm"


def dispatch_tile(m: int, n: int, k: int, cc_major: int) -> tuple[float, float, bool]:
    """(tile over the kernel's rows, over its columns, A/B swapped) vLLM's fp8 dispatch picks; 128 x 128 unswapped
    for an architecture without a table."""
    for cc, picks, t_m, t_n, sw in FP8_DISPATCH:
        if cc == cc_major and bool(picks(m, n, k)):
            return t_m, t_n, sw
    return 128.0, 128.0, False


def dispatch_useful(m: int, n: int, k: int, cc_major: int, sms: int) -> float:
    """Useful share of the machine m n / (waves SMs tm tn) under the tile vLLM's fp8 dispatch picks."""
    tm, tn, swap = dispatch_tile(m, n, k, cc_major)
    rows, cols = (n, m) if swap else (m, n)
    tiles = math.ceil(rows / tm) * math.ceil(cols / tn)
    return m * n / (math.ceil(tiles / sms) * sms * tm * tn)


def dispatch_occupancy(m: int, n: int, k: int, cc_major: int, sms: int) -> float:
    """Busy share of the SMs, tiles / (waves SMs), under the dispatch's tile (its padding not counted)."""
    tm, tn, swap = dispatch_tile(m, n, k, cc_major)
    rows, cols = (n, m) if swap else (m, n)
    tiles = math.ceil(rows / tm) * math.ceil(cols / tn)
    return tiles / (math.ceil(tiles / sms) * sms)


class DispatchWaveGemmForm(GemmForm):
    """WaveGemmForm with the dispatch's tile per row instead of one grid-searched tile."""

    name = "gemm+dispatchwaves"
    hyper_grid = {}

    def features(self, op, hw):
        m, n, k = (int(v) for v in op.shape[:3])
        cc = (hw.compute_capability or "").split(".")[0]
        useful = dispatch_useful(m, n, k, int(cc) if cc.isdigit() else 0, int(hw.sm_count or model.REF_SM_COUNT))
        return (*super().features(op, hw), useful)

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p, {"tile_m": 1.0, "tile_n": 1.0}, x[:-1])
        return ec * x[-1], em, floor_s


class DispatchOccupancyGemmForm(GemmForm):
    """GemmForm (grid-searched tile quantisation, as shipped) times the SMs' busy share under the dispatch's tile
    (candidate `occupancy`, added after `dispatch`'s outer figures were seen)."""

    name = "gemm+dispatchocc"

    def features(self, op, hw):
        m, n, k = (int(v) for v in op.shape[:3])
        cc = (hw.compute_capability or "").split(".")[0]
        occ = dispatch_occupancy(m, n, k, int(cc) if cc.isdigit() else 0, int(hw.sm_count or model.REF_SM_COUNT))
        return (*super().features(op, hw), occ)

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p, h, x[:-1])
        return ec * x[-1], em, floor_s


CANDIDATES = {"shipped": general.FAMILY_SETUPS[KEY],
              "dispatch": general.FamilySetup("gemm+dispatchwaves+l2", None, None),
              "occupancy": general.FamilySetup("gemm+dispatchocc+l2", None, None)}


def register() -> None:
    """The candidate forms, for this run only (the package ships none of them)."""
    model.FORM_VARIANTS["gemm+dispatchwaves+l2"] = CachedForm(DispatchWaveGemmForm())
    model.FORM_VARIANTS["gemm+dispatchocc+l2"] = CachedForm(DispatchOccupancyGemmForm())


def main() -> int:
    devices = dtype_devices(TABLE, DTYPE)
    if devices is None:
        return 1
    register()
    t0 = time.perf_counter()
    select(KEY, TABLE, DTYPE, CANDIDATES, devices, fit_families=[KEY], inner_width=50, label_width=10)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
