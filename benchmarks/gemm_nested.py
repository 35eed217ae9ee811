"""The nested leave-one-device-out check the GEMM selection scripts share (gemm_splitk_selection,
gemm_stream_selection, gemm_dispatch_selection): one GEMM family key, its table's rows of one dtype, candidate
FamilySetups. For each outer held-out device the candidate with the lowest inner score wins (lvlmsim.calibrate.loo
.inner_score over the other devices only; a tie keeps the first listed), then every candidate is fitted on those
devices and priced on the outer one: the `nested` column is the chosen candidate's outer error. Then the pooled
held-out figures per candidate and in-sample (fitted on all devices, priced on each). Figures are median / p90
|error| (%). Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import family_setup, inner_score, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

Devices = dict[str, tuple]


def dtype_devices(table: str, dtype: str, *, seed: int = 0) -> Devices | None:
    """{device folder: (hardware, its `table` rows of `dtype`)} for the devices that have some (the table subsample
    at `seed`, loo.load_devices); None (after saying why) when ../shared/data/measured is absent."""
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return None
    devices = {n: (hw, [r for r in rows if r.family == table and r.op.dtype == dtype])
               for n, (hw, rows) in load_devices(measured / "aiconfigurator" / "data", seed=seed).items()}
    return {n: v for n, v in devices.items() if v[1]}


def errors(key: str, setup: general.FamilySetup, devices: Devices, train: list[str], held: str,
           fit_families: list[str] | None = None) -> np.ndarray:
    """|error| % of `held`'s rows, family `key` fitted as `setup` on the `train` devices."""
    with family_setup(key, setup):
        fitted = general.fit_general({devices[n][0].id: devices[n] for n in train}, families=fit_families)
    hw, rows = devices[held]
    return abs_pct_errors(cost_model_times(rows, hw, fitted.profile_for(hw)), np.array([r.measured_s for r in rows]))


def cell(err: np.ndarray) -> str:
    return f"{np.median(err):.1f} / {np.percentile(err, 90):.1f}"


def select(key: str, table: str, dtype: str, candidates: dict[str, general.FamilySetup], devices: Devices, *,
           fit_families: list[str] | None = None, inner_width: int = 28, label_width: int = 9) -> None:
    """Print the nested check of `candidates` for family `key` (see the module docstring)."""
    print(f"{key} ({dtype}): outer held-out, inner score per candidate, chosen, outer median / p90 % per candidate "
          f"({', '.join(candidates)}), nested")
    outer: dict[str, list[np.ndarray]] = {c: [] for c in candidates}
    nested = []
    for held in devices:
        rest = [n for n in devices if n != held]
        scores = {}
        for label, setup in candidates.items():
            with family_setup(key, setup):
                scores[label] = inner_score(devices, rest, key, (table,))
        choice = min(scores, key=scores.get)  # the first listed on a tie
        errs = {label: errors(key, setup, devices, rest, held, fit_families) for label, setup in candidates.items()}
        for label, err in errs.items():
            outer[label].append(err)
        nested.append(errs[choice])
        inner = "  ".join(f"{k} {v:.2f}" for k, v in scores.items())
        print(f"  {held:<22}{inner:<{inner_width}}{choice:<{label_width}}"
              + "  ".join(f"{cell(e):>13}" for e in errs.values()) + f"   {cell(errs[choice])}", flush=True)
    pooled = "   ".join(f"{c} {cell(np.concatenate(e))}" for c, e in outer.items())
    print(f"  pooled held-out: {pooled}   nested {cell(np.concatenate(nested))}")
    for label, setup in candidates.items():
        cells = [f"{n} {cell(errors(key, setup, devices, list(devices), n, fit_families))}" for n in devices]
        print(f"  in-sample {label:<{label_width - 1}}" + "   ".join(cells), flush=True)


def run_dtypes(argv: list[str], families: dict[str, str], candidates: Callable[[str], dict[str, general.FamilySetup]],
               *, inner_width: int, label_width: int, table: str = "gemm") -> int:
    """A dtype-by-dtype selection script's main: `--seed N` (seed_arg.pop_seed), then the dtypes to check (all of
    `families`, {dtype: family key}, without any); each dtype's nested table (`select`), then the wall time. 2 after a
    one-line error on a bad argument, 1 without the measured data."""
    from seed_arg import pop_seed

    try:
        seed, args = pop_seed(argv)
    except ValueError as err:
        print(err)
        return 2
    dtypes = args or list(families)
    bad = [d for d in dtypes if d not in families]
    if bad:
        print(f"unknown dtype {', '.join(bad)}; allowed: {', '.join(families)}")
        return 2
    t0 = time.perf_counter()
    for dtype in dtypes:
        devices = dtype_devices(table, dtype, seed=seed)
        if devices is None:
            return 1
        key = families[dtype]
        select(key, table, dtype, candidates(key), devices, fit_families=[key], inner_width=inner_width,
               label_width=label_width)
        print()
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0
