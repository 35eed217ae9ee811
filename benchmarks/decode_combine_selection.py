"""Nested check of where the decode form adds the split-KV combine kernel's floor share (issues 11 and 16).

    python benchmarks/decode_combine_selection.py      # ~1 min: 4 outer folds x (3 inner fits x 3 candidates + 1)
    python benchmarks/decode_combine_selection.py --seed 1   # the tables' row subsample at seed 1 (fits at seed 0)

Candidates for `lvlmsim.calibrate.kernels.splits_kv` on a full-attention decode:
- `every`: every kernel that splits pays a combine kernel (the model before this wave's change);
- `not-bw`: not Blackwell's TRT-LLM-gen generation kernels, which reduce their splits inside the kernel;
- `not-bw-fa3` (shipped): nor FA3, which launches its combine under programmatic dependent launch.
Both facts are from source (calibration/README.md), but the FA3 one was looked up after the leave-one-out table showed
H100's fold worsen with `not-bw`. Per outer device the candidate is picked by an inner leave-one-out over the other
three (mean of their median |error| on full and windowed decode rows), fitted on the three and priced on the outer one.
Needs ../shared/data/measured (never copied into the project).
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
SHIPPED = kernels.splits_kv
CANDIDATES = ("every", "not-bw", "not-bw-fa3")


def splits_kv_as(candidate: str):
    """splits_kv under `candidate`: the shipped rule, with FA3 and/or TRT-LLM-gen paying a combine whenever they
    split (as before this change) where the candidate says so."""
    def rule(op: Op, kernel: str | None) -> bool:
        if (kernel == "fa3" and candidate != "not-bw-fa3") or (kernel == "bw" and candidate == "every"):
            return True
        return SHIPPED(op, kernel)
    return rule


def use(candidate: str) -> None:
    model.splits_kv = splits_kv_as(candidate)


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
        inner_text = "  ".join(f"{c} {scores[c]:5.1f}" for c in CANDIDATES)
        print(f"{outer:<22} inner {inner_text}  pick {pick:<11} held-out {held_out(devices, inner, outer)}")
    model.splits_kv = SHIPPED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
