"""Nested leave-one-device-out check of cuBLAS's split-K reduction kernel in the bf16 GEMM form (issue 11).

    python benchmarks/gemm_splitk_selection.py     # ~1 min on the shared machine

Candidates for the bf16 family key `gemm`: `plain` (GemmForm with the L2 term, variant gemm+l2, the form before this
check) and `splitk` (SplitKGemmForm, variant gemm+splitk+l2: one more floor share when cuBLAS splits K and runs its
reduction kernel; lvlmsim.calibrate.model). Both use GEMM's links and ridge weight. The mechanism came from the
in-sample residual map (benchmarks/gemm_residual_map.py: bf16 GEMMs with few output tiles and a long K priced 5-40%
fast on every device) and from cuBLAS's kernels, not from a held-out table.

For each outer held-out device the candidate is chosen by an inner leave-one-out over the other three devices only
(lvlmsim.calibrate.loo.fold_table_errors: median |error| per inner held-out device over its bf16 rows; the score is
the mean over inner folds), then every candidate is fitted on those three devices and priced on the outer one: the
`nested` column is the chosen candidate's outer error. Then the pooled held-out figures per candidate and in-sample
(fitted on all four, priced on each). Figures are median / p90 |error| (%), bf16 rows only.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import family_setup, inner_score, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

KEY, DTYPE, TABLE = "gemm", "bf16", "gemm"
CANDIDATES = {"plain": general.FamilySetup("gemm+l2", None, None),
              "splitk": general.FamilySetup("gemm+splitk+l2", None, None)}


def _errors(setup: general.FamilySetup, devices: dict, train: list[str], held: str) -> np.ndarray:
    """|error| % of `held`'s rows, the family fitted as `setup` on the `train` devices."""
    with family_setup(KEY, setup):
        fitted = general.fit_general({devices[n][0].id: devices[n] for n in train})
    hw, rows = devices[held]
    return abs_pct_errors(cost_model_times(rows, hw, fitted.profile_for(hw)), np.array([r.measured_s for r in rows]))


def setup_score(setup: general.FamilySetup, devices: dict, rest: list[str]) -> float:
    """The inner leave-one-out score of the family fitted as `setup` on the `rest` devices (loo.inner_score)."""
    with family_setup(KEY, setup):
        return inner_score(devices, rest, KEY, (TABLE,))


def _cell(err: np.ndarray) -> str:
    return f"{np.median(err):.1f} / {np.percentile(err, 90):.1f}"


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    t0 = time.perf_counter()
    devices = {n: (hw, [r for r in rows if r.family == TABLE and r.op.dtype == DTYPE])
               for n, (hw, rows) in load_devices(measured / "aiconfigurator" / "data").items()}
    devices = {n: v for n, v in devices.items() if v[1]}
    print(f"{KEY} ({DTYPE}): outer held-out, inner score per candidate, chosen, outer median / p90 % per candidate "
          f"({', '.join(CANDIDATES)}), nested")
    outer: dict[str, list[np.ndarray]] = {c: [] for c in CANDIDATES}
    nested = []
    for held in devices:
        rest = [n for n in devices if n != held]
        scores = {label: setup_score(setup, devices, rest) for label, setup in CANDIDATES.items()}
        choice = min(scores, key=scores.get)
        errs = {label: _errors(setup, devices, rest, held) for label, setup in CANDIDATES.items()}
        for label, err in errs.items():
            outer[label].append(err)
        nested.append(errs[choice])
        inner = "  ".join(f"{k} {v:.2f}" for k, v in scores.items())
        print(f"  {held:<22}{inner:<28}{choice:<9}" + "  ".join(f"{_cell(e):>13}" for e in errs.values())
              + f"   {_cell(errs[choice])}")
    pooled = "   ".join(f"{c} {_cell(np.concatenate(e))}" for c, e in outer.items())
    print(f"  pooled held-out: {pooled}   nested {_cell(np.concatenate(nested))}")
    for label, setup in CANDIDATES.items():
        cells = [f"{n} {_cell(_errors(setup, devices, list(devices), n))}" for n in devices]
        print(f"  in-sample {label:<8}" + "   ".join(cells))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
