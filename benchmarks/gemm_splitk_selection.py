"""Nested leave-one-device-out check of cuBLAS's split-K reduction kernel in the bf16 GEMM form (issue 11).

    python benchmarks/gemm_splitk_selection.py     # ~1 min on the shared machine
    python benchmarks/gemm_splitk_selection.py --seed 1   # the tables' row subsample at seed 1 (fits at seed 0)
    python benchmarks/gemm_splitk_selection.py --shipped-links   # both forms with today's shipped bf16 links

Candidates for the bf16 family key `gemm`: `plain` (GemmForm with the L2 term, variant gemm+l2, the form before this
check) and `splitk` (SplitKGemmForm, variant gemm+splitk+l2: one more floor share when cuBLAS splits K and runs its
reduction kernel; lvlmsim.calibrate.model). Both use GEMM's links and ridge weight (general.LINKS: b0 by bandwidth
alone, as when the pick was made); with --shipped-links both take the links the bf16 family ships since
benchmarks/gemm_clock_selection.py (b0 by clock too), so the pick is re-checked against today's setup.
The mechanism came from the in-sample residual map (benchmarks/gemm_residual_map.py: bf16 GEMMs with few output
tiles and a long K priced 5-40% fast on every device) and from cuBLAS's kernels, not from a held-out table.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
from gemm_nested import dtype_devices, select  # noqa: E402
from seed_arg import only_seed  # noqa: E402

from lvlmsim.calibrate import general  # noqa: E402

KEY, DTYPE, TABLE = "gemm", "bf16", "gemm"
CANDIDATES = {"plain": general.FamilySetup("gemm+l2", None, None),
              "splitk": general.FamilySetup("gemm+splitk+l2", None, None)}


def candidates(shipped_links: bool) -> dict[str, general.FamilySetup]:
    """CANDIDATES, or the same two forms with the bf16 family's shipped links (general.FAMILY_SETUPS)."""
    if not shipped_links:
        return CANDIDATES
    links = general.FAMILY_SETUPS[KEY].links
    return {label: general.FamilySetup(setup.variant, links, None) for label, setup in CANDIDATES.items()}


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    shipped_links = "--shipped-links" in args
    try:
        seed = only_seed([a for a in args if a != "--shipped-links"])
    except ValueError as err:
        print(err)
        return 2
    devices = dtype_devices(TABLE, DTYPE, seed=seed)
    if devices is None:
        return 1
    t0 = time.perf_counter()
    select(KEY, TABLE, DTYPE, candidates(shipped_links), devices)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
