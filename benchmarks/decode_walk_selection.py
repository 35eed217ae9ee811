"""Nested check of the unsplit decode walk (issues 13 and 16): FA2's windowed and MHA decodes run one CTA per
(sequence, query head) over all its keys (lvlmsim.calibrate.kernels.unsplit_key_blocks), priced by SplitDecodeForm as a
memory time of at least (key blocks - WALK_BLOCKS_IN_FLOOR) x a fitted time per block.

    python benchmarks/decode_walk_selection.py      # ~1-2 min: 4 outer folds x (3 inner fits x 4 candidates + 1)
    python benchmarks/decode_walk_selection.py --seed 1   # the tables' row subsample at seed 1 (fits at seed 0)

Candidates:
- `shipped`: the model before this change: FA2's MHA decode pays a combine kernel as if it split, no walk;
- `no-walk`: FA2 splits only its swapped GQA decodes (DECODE_SPLIT_KV), no walk term;
- `walk-all`: the walk term over every key block, on top of the floor;
- `walk-beyond-first` (shipped): over the blocks beyond the first, which the floor holds (it is fitted on the smallest
  kernels, each walking one block).
Per outer device the candidate is picked by an inner leave-one-out over the other three (mean of their median |error|
on full and windowed decode rows), fitted on the three and priced on the outer one. The printed held-out figures are
the outer device's median |error| per decode table. Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_arg import only_seed  # noqa: E402

from lvlmsim.calibrate import kernels, model  # noqa: E402
from lvlmsim.calibrate.loo import fold_table_errors, load_devices, nested_pick  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.ops.op import Op  # noqa: E402

TABLES = ("generation_attention", "generation_attention_sliding")
SHIPPED_SPLITS, SHIPPED_WALK, SHIPPED_OFFSET = kernels.splits_kv, kernels.unsplit_key_blocks, model.WALK_BLOCKS_IN_FLOOR
CANDIDATES = ("shipped", "no-walk", "walk-all", "walk-beyond-first")


def _old_splits_kv(op: Op, kernel: str | None) -> bool:
    """The rule before DECODE_SPLIT_KV: FA2 split every full-attention decode, MHA included."""
    if kernel == "fa2":
        return not (op.kind == model.ATTN_DECODE and op.name.endswith(kernels.SLIDING_SUFFIX))
    return SHIPPED_SPLITS(op, kernel)


def use(candidate: str) -> None:
    """Install `candidate`'s rules where SplitDecodeForm reads them."""
    model.splits_kv = _old_splits_kv if candidate == "shipped" else SHIPPED_SPLITS
    model.unsplit_key_blocks = (lambda op, kernel: 0.0) if candidate in ("shipped", "no-walk") else SHIPPED_WALK
    model.WALK_BLOCKS_IN_FLOOR = 0.0 if candidate == "walk-all" else SHIPPED_OFFSET


def held_out(devices: dict, train: list[str], held: str) -> dict[str, float]:
    """Median |error| per decode table of `held`, the decode family fitted on `train`."""
    return fold_table_errors(devices, train, held, "attn_decode", TABLES)


def main(argv: list[str] | None = None) -> int:
    try:
        seed = only_seed(list(argv if argv is not None else sys.argv[1:]))
    except ValueError as err:
        print(err)
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data", seed=seed)
    for outer in devices:
        inner = [n for n in devices if n != outer]
        pick, scores = nested_pick(devices, inner, "attn_decode", TABLES, CANDIDATES, use)
        picked = held_out(devices, inner, outer)
        use("shipped")
        before = held_out(devices, inner, outer)
        inner_text = "  ".join(f"{c} {scores[c]:5.2f}" for c in CANDIDATES)
        print(f"{outer:<22} inner {inner_text}  pick {pick:<17} held-out {picked}  (shipped before: {before})")
    use("walk-beyond-first")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
