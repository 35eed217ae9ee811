"""Nested leave-one-device-out check of the GEMM overlap share (beta) by tensor-core issue model (issue 11, wave 7).

    python benchmarks/gemm_overlap_selection.py          # bf16 and fp8 (~5 min on the shared machine)
    python benchmarks/gemm_overlap_selection.py bf16     # one dtype
    python benchmarks/gemm_overlap_selection.py --seed 1 # the tables' row subsample at seed 1 (fits at seed 0)

Why: every GEMM form prices time = max(compute, memory) + beta x the smaller of the two (model.apply_overlap), beta
one shared share. Near the ridge point, where the two terms are comparable, beta decides the price, and there the
bf16 rows split by architecture (`python benchmarks/gemm_residual_map.py --held-out`, seed 0, before this check,
signed median of the `ai` ridge column): fitted on all four devices A100 -6.2% and RTX PRO 6000 -4.9% (priced fast),
H100 +3.5% and B300 +0.2%; held out A100 -11.2% (its 129-1024-row ridge cell, 16% of its rows, -13%) and H100 +9.5%.
Compute-bound and memory-bound rows carry no such split. The architectural fact that orders the devices that way is
how the tensor cores are issued: A100 (sm80) and RTX PRO 6000 (sm120) run warp-synchronous mma.sync (operands staged
from shared memory into registers by the issuing warps, which then wait on the MMA), H100 (sm90 wgmma) and B300
(sm103 tcgen05) issue asynchronous warpgroup/CTA MMAs that read shared memory directly, so their warp-specialised
kernels overlap loads, MMAs and the epilogue (general.SYNC_MMA_MAJORS cites the sources). The flag splits the four
devices 2-2, so every outer fold has both kinds among its training devices and the coefficient is fitted, not a prior.
Two candidates per family, each with the family's shipped form and ridge weight:
- `shipped`: the family's shipped links (none on `overlap`);
- `syncmma`: the same links plus beta (`overlap`, logit) by the sync_mma flag, prior 0 (no sign assumed).
Criterion, fixed before any outer figure was read (benchmarks/gemm_nested.py): per outer held-out device the
candidate with the lowest inner score (lvlmsim.calibrate.loo.inner_score over the other devices only) wins, a tie
keeps `shipped`; `syncmma` ships for a family only if it wins a strict majority of its outer folds (bf16: 3 of 4,
fp8: 2 of 3) by at least 0.01 point of inner score each (the printed precision; less counts as a tie), a split is no
pick. fp8 is measured on H100, B300 and RTX PRO 6000 only, so RTX PRO 6000 is its one
sync-MMA device: in its own fold the coefficient stays at its prior and the two candidates tie. Figures are median /
p90 |error| (%), the dtype's rows only. Needs ../shared/data/measured (never copied into the project).
Outcome. Seed 0 (bf16 175 s, fp8 40 s): bf16 picks `syncmma` in the A100 (inner 7.93 -> 7.82), B300 (9.87 -> 9.63)
and H100 (11.75 -> 11.48) folds and ties in RTX PRO 6000's (10.27 / 10.27); held out / nested A100 8.7 / 28.4 -> 8.6
/ 27.9, B300 9.4 / 30.9 -> 8.9 / 28.8, H100 7.7 / 20.6 -> 7.4 / 19.9, RTX PRO 6000 8.3 / 43.4 (tie; `syncmma` held out
there 9.2 / 45.1, its coefficient fitted from A100 alone); fp8 picks it in the B300 (19.87 -> 19.58) and H100 (18.94
-> 17.79) folds, ties in RTX PRO 6000's, held out within 0.1 point. By the rule above both would ship, and were
shipped in a first commit; the leave-one-out table over seeds 0-3 then read GEMM A100 8.8 -> 8.7, H100 8.6 -> 8.4,
B300 10.4 -> 10.5, RTX PRO 6000 13.9 -> 14.8%. A check at table seed 1 (`--seed 1`) reversed the bf16 picks (A100 /
B300 / H100 folds 8.45 / 8.95, 9.20 / 9.75, 12.13 / 13.07), so a robustness rule was added and committed before
seeds 2 and 3 were run (disclosed: after seed 0's outer figures and seed 1's inner scores were seen): per fold the
lower MEAN inner score over table seeds 0-3 (fit draw at seed 0) wins, same tie and majority rules. Means shipped /
syncmma: bf16 A100 8.61 / 8.69, B300 9.81 / 9.73, H100 11.80 / 12.29, RTX PRO 6000 10.885 / 10.880 (tie); fp8 B300
19.06 / 19.61, H100 17.65 / 18.26, RTX PRO 6000 11.81 / 11.81 (tie). The flag wins one bf16 fold of four and no fp8
fold, so it is NOT shipped: the seed-0 gain was one subsample's. Nothing in the package's fits moves.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from gemm_nested import run_dtypes  # noqa: E402

from lvlmsim.calibrate import general  # noqa: E402

TABLE = "gemm"
FAMILIES = {"bf16": "gemm", "fp8": "gemm.fp8"}
SYNC_MMA_PRIOR = 0.0  # the sign is argued, the size is not: the data fit it


def candidates(key: str) -> dict[str, general.FamilySetup]:
    """Family `key`'s shipped form and ridge with its shipped links (none on `overlap`), and the same with beta linked
    to the sync_mma flag."""
    shipped = general.FAMILY_SETUPS[key]
    links = shipped.links if shipped.links is not None else general.LINKS["gemm"]
    before = {param: feats for param, feats in links.items() if param != "overlap"}
    linked = {**before, "overlap": {"sync_mma": SYNC_MMA_PRIOR}}
    return {"shipped": general.FamilySetup(shipped.variant, before, shipped.ridge),
            "syncmma": general.FamilySetup(shipped.variant, linked, shipped.ridge)}


def main(argv: list[str] | None = None) -> int:
    return run_dtypes(list(argv if argv is not None else sys.argv[1:]), FAMILIES, candidates, inner_width=32,
                      label_width=9)


if __name__ == "__main__":
    raise SystemExit(main())
