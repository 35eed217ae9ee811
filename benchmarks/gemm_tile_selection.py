"""Nested leave-one-device-out check of the tiled GEMM form against the shipped one, per dtype (issue 11).

    python benchmarks/gemm_tile_selection.py              # bf16 and fp8 (~2 min on the shared machine)
    python benchmarks/gemm_tile_selection.py gemm.fp8     # one family key

Candidates per family key: `shipped` (its FamilySetup in lvlmsim.calibrate.general: bf16 SplitKGemmForm since
benchmarks/gemm_splitk_selection.py, GemmForm when calibration/README's figures of this check were taken; fp8
WaveGemmForm), `tiles` (TiledGemmForm, variant gemm+tiles+l2: the best of CUTLASS's CTA tiles with tile quantisation,
waves over the SMs and split-K, links TILE_LINKS) and `tiles-norate` (the same without the tensor-rate links of a0 and
k0, added after `tiles`' held-out figures were seen); for fp8 also `dispatch` (DispatchFp8GemmForm: the tile vLLM's
fp8 CUTLASS dispatch picks per architecture, added after the first run). Nothing here is shipped: the tiled forms lost
(calibration/README).
For each outer held-out device the candidate is chosen by an inner leave-one-out over the other devices only (median
|error| over their rows of that dtype), then every candidate is fitted on those devices and priced on the outer one:
the `nested` column is the chosen candidate's outer error, the others each candidate's. Then leave-one-out over all
devices (each candidate's outer figures pooled), in-sample (fitted on every device, priced on each; with the fitted
hyper-parameters) and alone (each device fitted on its own rows: what the form can do on one device). Figures are
median / p90 |error| (%). Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, model  # noqa: E402
from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.model import CachedForm, Form, Param, sat  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.ops.op import Op  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402

# CTA tiles (m x n) a tiled GEMM is priced over: tile shapes NVIDIA CUTLASS's profiler instantiates for 16-bit tensor
# cores on sm80 and sm90 (python/cutlass_library/generator.py, GenerateSM80_TensorOp_16816 and the sm90 WGMMA
# generators; 256x128, 128x256, 128x128, 128x64, 64x128 and 64x64 among them), the kernel families cuBLAS picks from.
GEMM_CTA_TILES = ((256.0, 128.0), (128.0, 256.0), (128.0, 128.0), (128.0, 64.0), (64.0, 128.0), (64.0, 64.0))


class TiledGemmForm(Form):
    """GEMM priced as the best of a discrete set of CTA tiles (GEMM_CTA_TILES), as a library picks a kernel.

    For a tile tm x tn: tiles = ceil(m/tm) ceil(n/tn); when there are fewer tiles than SMs and the hyper-parameter
    `split_k` (the least K per split; 0: never split, as vLLM's CUTLASS fp8 kernel) allows, K is split s =
    min(floor(SMs / tiles), floor(k / split_k)) ways; the CTAs run in waves = ceil(tiles s / SMs) over the SMs (SM count
    from the datasheet), so the useful share of the machine is m n s / (waves SMs tm tn). Each CTA's MMA efficiency is
    S(tile intensity tm tn / (tm + tn); a0, 1) (a small tile reads more operand bytes per FLOP from shared memory,
    whose bandwidth per SM per clock is fixed while the MMA rate per clock grows) x S(MMA work per CTA in 128 x 128
    tiles' K; k0, pk) (a CTA's fixed prologue and epilogue against its K loop). Compute efficiency is ec_max x the
    best tile's product; memory as GemmForm (bytes and output-column saturations)."""

    name = "gemm+tiles"
    core = (
        Param("ec_max", "eff", 0.8, "compute efficiency of a large tile with a long K loop"),
        Param("a0", "pos", 16.0, "tile intensity tm tn / (tm + tn) at half MMA efficiency"),
        Param("k0", "pos", 128.0, "K per CTA (in 128 x 128 tiles' work) at half saturation"),
        Param("pk", "exp", 1.0, "steepness in K per CTA"),
        Param("em_max", "eff", 0.85, "memory efficiency of a large transfer"),
        Param("b0", "pos", 4e6, "bytes at half-saturated bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("nb0", "pos", 512.0, "output columns at half-saturated bandwidth (skinny GEMMs stream with few CTAs)"),
        Param("pnb", "exp", 1.0, "steepness of bandwidth in n"),
        Param("floor_s", "floor", 3e-6, "per-kernel floor"),
    )
    hyper_grid = {"split_k": (0.0, 128.0, 512.0)}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        m, n, k = op.shape[:3]
        return (float(m), float(n), float(k), op.bytes, float(hw.sm_count or model.REF_SM_COUNT))

    def eff(self, xp, p, h, x):
        ec_max, a0, k0, pk, em_max, b0, pb, nb0, pnb, floor_s = p
        m, n, k, nbytes, sms = x
        best = 0.0
        for tm, tn in GEMM_CTA_TILES:
            tiles = xp.ceil(m / tm) * xp.ceil(n / tn)
            splits = 1.0
            if h["split_k"] > 0:  # floor(a) = -ceil(-a), at least one split
                splits = xp.maximum(xp.minimum(-xp.ceil(-sms / tiles), -xp.ceil(-k / h["split_k"])), 1.0)
            waves = xp.ceil(tiles * splits / sms)
            useful = m * n * splits / (waves * sms * tm * tn)
            mma = 1.0 / (1.0 + a0 * (tm + tn) / (tm * tn))
            best = xp.maximum(best, useful * mma * sat(xp, k / splits * (tm * tn / 16384.0), k0, pk))
        em = em_max * sat(xp, nbytes, b0, pb) * sat(xp, n, nb0, pnb)
        return ec_max * best, em, floor_s



# The tiled form's links: bytes by bandwidth, peak share by power headroom, L2 boost by on-chip bandwidth (GEMM's);
# the tile intensity at half MMA efficiency (a0) and the K per CTA at half saturation (k0) by the SM's tensor rate per
# clock, prior exponent 1: shared-memory bandwidth per SM per clock is the same on sm80-sm120 (128 B/clk), so the
# operand bytes per FLOP a tile may read falls as 1 / rate; a CTA's fixed prologue/epilogue cycles hide behind a K loop
# whose cycles per unit of K fall as 1 / rate.
TILE_LINKS = {"b0": {"log_bw": 1.0}, "ec_max": {"log_power": 0.5}, "cache_boost": {"log_onchip": 1.0},
              "a0": {"log_sm_rate": 1.0}, "k0": {"log_sm_rate": 1.0}}
DTYPES = {"gemm": "bf16", "gemm.fp8": "fp8"}


# vLLM's per-tensor fp8 CUTLASS kernel (CutlassFP8ScaledMMLinearKernel): the CTA tile its dispatch picks per
# architecture by m (and n or k), read from vllm-project/vllm csrc/quantization/w8a8/cutlass/c3x/
# scaled_mm_sm{90,100,120}_fp8_dispatch.cuh (commits 68f442e, 487e7b0, 3da1af5; the measured tables' build may differ).
# Rows: (compute-capability major, predicate on (m, n, k), tile over the kernel's rows, tile over its columns, swap A
# and B: the kernel's rows are then the weight's n). sm100 tiles whose cluster is even in M run as 2-SM MMA (CUTLASS's
# KernelScheduleAuto), so each SM holds half the listed M (256x128 -> 128x128, 128x128 -> 64x128, 128x32 -> 64x32,
# 128x64 -> 64x64). Persistent scheduling: the tiles run in ceil(tiles / SMs) waves, no split-K.
FP8_DISPATCH = (
    (9, lambda m, n, k: m <= 16, 64.0, 16.0, True),
    (9, lambda m, n, k: (m > 16) & (m <= 64) & (n <= 1280), 64.0, 16.0, True),
    (9, lambda m, n, k: (m > 16) & (m <= 64) & (n > 1280), 64.0, 64.0, True),
    (9, lambda m, n, k: (m > 64) & (m <= 128), 64.0, 128.0, False),
    (9, lambda m, n, k: m > 128, 128.0, 128.0, False),
    (10, lambda m, n, k: m <= 16, 64.0, 32.0, True),
    (10, lambda m, n, k: (m == 64) & (k < 4096), 64.0, 64.0, False),
    (10, lambda m, n, k: (m > 16) & (m <= 64) & ((m < 64) | (k >= 4096)), 64.0, 64.0, True),
    (10, lambda m, n, k: (m > 64) & (m <= 256), 64.0, 128.0, False),
    (10, lambda m, n, k: m > 256, 128.0, 128.0, False),
    (12, lambda m, n, k: m <= 16, 16.0, 64.0, False),
    (12, lambda m, n, k: (m > 16) & (m <= 32), 32.0, 64.0, False),
    (12, lambda m, n, k: (m > 32) & (m <= 256), 64.0, 64.0, False),
    (12, lambda m, n, k: m > 256, 128.0, 128.0, False),
)


class DispatchFp8GemmForm(TiledGemmForm):
    """TiledGemmForm with the tile vLLM's fp8 dispatch picks (FP8_DISPATCH) instead of the best one, no split-K."""

    name = "gemm+dispatch"
    hyper_grid = {}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        cc = (hw.compute_capability or "9").split(".")[0]
        return (*super().features(op, hw), float(cc) if cc.isdigit() else 9.0)

    def eff(self, xp, p, h, x):
        ec_max, a0, k0, pk, em_max, b0, pb, nb0, pnb, floor_s = p
        m, n, k, nbytes, sms, arch = x
        ec = 0.0
        for cc, picks, tm, tn, swap in FP8_DISPATCH:
            rows, cols = (n, m) if swap else (m, n)
            tiles = xp.ceil(rows / tm) * xp.ceil(cols / tn)
            useful = m * n / (xp.ceil(tiles / sms) * sms * tm * tn)
            mma = 1.0 / (1.0 + a0 * (tm + tn) / (tm * tn))
            ec = ec + (arch == cc) * picks(m, n, k) * useful * mma * sat(xp, k * (tm * tn / 16384.0), k0, pk)
        em = em_max * sat(xp, nbytes, b0, pb) * sat(xp, n, nb0, pnb)
        return ec_max * ec, em, floor_s


def candidates(key: str) -> dict[str, general.FamilySetup]:
    shipped = general.FAMILY_SETUPS.get(key, general.FamilySetup("gemm+l2", None, None))
    no_rate = {p: fs for p, fs in TILE_LINKS.items() if p not in ("a0", "k0")}
    return {"shipped": shipped, "tiles": general.FamilySetup("gemm+tiles+l2", TILE_LINKS, None),
            "tiles-norate": general.FamilySetup("gemm+tiles+l2", no_rate, None),
            **({"dispatch": general.FamilySetup("gemm+dispatch+l2", TILE_LINKS, None)} if key == "gemm.fp8" else {})}


def _errors(key: str, setup: general.FamilySetup, train: dict, hw, rows) -> np.ndarray:
    saved = general.FAMILY_SETUPS
    general.FAMILY_SETUPS = {**saved, key: setup}
    try:
        fitted = general.fit_general(train, families=[key])
    finally:
        general.FAMILY_SETUPS = saved
    return _pct(fitted, hw, rows)


def _pct(fitted: general.GeneralModel, hw, rows) -> np.ndarray:
    return abs_pct_errors(cost_model_times(rows, hw, fitted.profile_for(hw)), np.array([r.measured_s for r in rows]))


def _cell(err: np.ndarray) -> str:
    return f"{np.median(err):.1f} / {np.percentile(err, 90):.1f}"


def select(key: str, devices: dict) -> None:
    dtype = DTYPES[key]
    own = {n: (hw, [r for r in rows if r.op.dtype == dtype]) for n, (hw, rows) in devices.items()}
    own = {n: v for n, v in own.items() if v[1]}
    cands = candidates(key)
    print(f"\n{key} ({dtype}): held-out device, inner median % per candidate, chosen, outer median / p90 % per "
          f"candidate ({', '.join(cands)}), nested (the chosen one's)")
    outer_errs: dict[str, list] = {c: [] for c in cands}
    nested = []
    for outer in own:
        rest = {n: v for n, v in own.items() if n != outer}
        scores = {}
        for label, setup in cands.items():
            errs = [_errors(key, setup, {devices[m][0].id: devices[m] for m in rest if m != inner}, *rest[inner])
                    for inner in rest]
            scores[label] = float(np.median(np.concatenate(errs)))
        choice = min(scores, key=scores.get)
        train = {devices[m][0].id: devices[m] for m in rest}
        errs = {label: _errors(key, setup, train, *own[outer]) for label, setup in cands.items()}
        for label, err in errs.items():
            outer_errs[label].append(err)
        nested.append(errs[choice])
        inner = "  ".join(f"{k} {v:.1f}" for k, v in scores.items())
        print(f"  {outer:<22}{inner:<66}{choice:<14}" + "  ".join(f"{_cell(e):>13}" for e in errs.values())
              + f"   {_cell(errs[choice])}")
    pooled = "   ".join(f"{c} {_cell(np.concatenate(e))}" for c, e in outer_errs.items())
    print(f"  all devices (pooled held-out): {pooled}   nested {_cell(np.concatenate(nested))}")
    for label, setup in cands.items():
        saved = general.FAMILY_SETUPS
        general.FAMILY_SETUPS = {**saved, key: setup}
        try:
            fitted = general.fit_general({devices[n][0].id: devices[n] for n in own}, families=[key])
        finally:
            general.FAMILY_SETUPS = saved
        cells = [f"{n} {_cell(_pct(fitted, hw, rows))}" for n, (hw, rows) in own.items()]
        print(f"  in-sample {label:<13}" + "   ".join(cells) + f"   {fitted.families[key].hyper}")
    for label, setup in cands.items():  # each device fitted on its own rows: what the form can do on one device
        cells = []
        for n, (hw, rows) in own.items():
            alone = {hw.id: devices[n]}
            cells.append(f"{n} {_cell(_errors(key, setup, alone, hw, rows))}")
        print(f"  alone {label:<17}" + "   ".join(cells))


def main(argv: list[str] | None = None) -> int:
    keys = (argv if argv is not None else sys.argv[1:]) or list(DTYPES)
    unknown = [k for k in keys if k not in DTYPES]
    if unknown:
        print(f"unknown family key {', '.join(unknown)}; known: {', '.join(DTYPES)}")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    # registered for this run only: the package ships no tiled form (it did not win the nested check)
    model.FORM_VARIANTS["gemm+tiles+l2"] = CachedForm(TiledGemmForm())
    model.FORM_VARIANTS["gemm+dispatch+l2"] = CachedForm(DispatchFp8GemmForm())
    t0 = time.perf_counter()
    devices = {n: (hw, [r for r in rows if r.family == "gemm"])
               for n, (hw, rows) in load_devices(measured / "aiconfigurator" / "data").items()}
    for key in keys:
        select(key, devices)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
