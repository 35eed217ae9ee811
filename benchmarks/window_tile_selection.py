"""Nested check of how windowed prefill is priced (issue 16): FA3's tiles, and the key loop a window leaves.

    python benchmarks/window_tile_selection.py      # ~35 s: 4 outer folds x 4 candidates x (3 inner fits + 1)
    python benchmarks/window_tile_selection.py shipped fa3 none none+keyloop    # candidates by name

Shipped (`lvlmsim.calibrate.kernels.TILED_WINDOWED_PREFILL`): a windowed prefill is priced in whole tiles on FA2
(64-row query blocks) and on Blackwell's TRT-LLM-gen context kernels (256-row CTAs, 128-key tiles). Candidates:

* `fa3`: vLLM's FA3 with the same physics (`kernels.tile_work_factor`: hopper/tile_size.h tiles for paged KV read
  without TMA, which a window always takes; the GQA group always packed on that path (flash_api.cpp get_pack_gqa,
  run_mha_fwd's PackGQA = PackGQA_ || PagedKVNonTMA); the key loop from the window's first key, block.h n_offset).
  An earlier version of this check packed only where should_pack_gqa's heuristic would, which that path never asks.
* `keyloop` (with either tile set): a windowed row's efficiency read at the causal length with the same mean key
  loop per query (2 x useful pairs per query - 1: about 2w - 1 once the window binds) instead of its query count,
  and its tile factor taken against the causal kernel's tiles at that length. Argued from what a CTA does (a 128-row
  block under a 128-key window runs 1-3 key tiles, like a causal block of a 256-token sequence), and measured on
  the three windowed tables: a 128-key windowed row of >= 2048 tokens costs per useful pair 1.02-1.29 x a causal
  row of 256 tokens with the same batch x tokens (H100 1.02-1.11, B300 1.20-1.24, RTX PRO 6000 1.05-1.29).

Per outer device, the candidate is picked by an inner leave-one-out over the other three (mean over the inner
devices of the mean of their full and windowed prefill medians |error|), fitted on the three and priced on the outer
one. The last line applies the same selection to all four devices (leave-one-out over the four): that is what
ships, and the nested figures are the honest held-out estimate of that procedure.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import kernels  # noqa: E402
from lvlmsim.calibrate import model as forms  # noqa: E402
from lvlmsim.calibrate.loo import fold_table_errors, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.ops.graph import local_pairs  # noqa: E402
from lvlmsim.ops.op import ATTN_PREFILL, Op  # noqa: E402

TABLES = ("context_attention", "context_attention_sliding")
CANDIDATES = ("shipped", "fa3", "shipped+keyloop", "fa3+keyloop")  # or name them: shipped|fa3|none[+keyloop]
SHIPPED_KERNELS = kernels.TILED_WINDOWED_PREFILL
SHIPPED_TILE_WORK = kernels.tile_work_factor
SHIPPED_FEATURES = forms.AttentionForm.features


def key_loop_length(op: Op) -> float:
    """The causal length whose mean keys per query equal this windowed row's (its own q where no window binds)."""
    q = op.shape[1]
    if op.kind != ATTN_PREFILL or not op.window_tokens or not op.name.endswith(kernels.SLIDING_SUFFIX):
        return q
    past = max(op.shape[2] - q, 0.0)
    return min(q, max(2.0 * local_pairs(past, q, op.window_tokens, "sliding") / max(q, 1.0) - 1.0, 1.0))


def keyloop_features(self, op: Op, hw) -> tuple[float, ...]:
    batch, q, _kv, heads, _kvh, d = op.shape[:6]
    return (float(key_loop_length(op)), float(batch) * heads * max(float(q), 1.0), float(d), op.bytes)


def keyloop_tile_work(op: Op, kernel: str | None) -> float:
    """The windowed tiles per useful pair over the causal tiles at the key-loop length the efficiency now reads."""
    factor = SHIPPED_TILE_WORK(op, kernel)
    q_eq = max(int(round(key_loop_length(op))), 1)
    if factor == 1.0 or q_eq >= op.shape[1]:
        return factor
    d, q = op.shape[5], max(int(round(op.shape[1])), 1)
    if kernel == "fa3":
        group = max(int(round(op.shape[3] / op.shape[4])), 1) if op.shape[4] else 1
        m, n = kernels.fa3_prefill_tiles(d, False)
        causal = kernels._packed_keys_per_pair
        return factor * causal(q, 0, 0, m, n, group) / causal(q_eq, 0, 0, m, n, group)
    m, n = kernels.prefill_tiles(kernel, d)
    causal = kernels._tile_keys_per_pair
    return factor * causal(q, 0, 0, n, m) / causal(q_eq, 0, 0, n, m)


def use(candidate: str) -> None:
    tiles, _, keyloop = candidate.partition("+")
    kernels.TILED_WINDOWED_PREFILL = {"fa3": (*SHIPPED_KERNELS, "fa3"), "none": ()}.get(tiles, SHIPPED_KERNELS)
    kernels.tile_work_factor = keyloop_tile_work if keyloop else SHIPPED_TILE_WORK
    forms.AttentionForm.features = keyloop_features if keyloop else SHIPPED_FEATURES


def held_out(devices: dict, train: list[str], held: str) -> dict[str, float]:
    """Median |error| per prefill table of `held`, the prefill family fitted on `train`."""
    return fold_table_errors(devices, train, held, "attn_prefill", TABLES)


def loo_score(devices: dict, names: list[str]) -> tuple[float, dict[str, dict[str, float]]]:
    """Mean over `names` of each one's mean prefill median |error|, each fitted on the others of `names`."""
    per = {i: held_out(devices, [n for n in names if n != i], i) for i in names}
    return float(np.mean([np.mean(list(v.values())) for v in per.values()])), per


def fmt(tables: dict[str, float]) -> str:
    return " / ".join(f"{tables[t]:4.1f}" for t in TABLES if t in tables)


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data")
    candidates = tuple(sys.argv[1:]) or CANDIDATES
    bad = [c for c in candidates if c.partition("+")[0] not in ("shipped", "fa3", "none")
           or c.partition("+")[2] not in ("", "keyloop")]
    if bad:
        print(f"candidate(s) {', '.join(bad)}: must be shipped, fa3 or none, optionally +keyloop")
        return 2
    print("held-out prefill / windowed prefill median |error| %; inner: mean of the inner folds")
    for outer in devices:
        inner = [n for n in devices if n != outer]
        scores, outs = {}, {}
        for candidate in candidates:
            use(candidate)
            scores[candidate] = loo_score(devices, inner)[0]
            outs[candidate] = held_out(devices, inner, outer)
        pick = min(scores, key=scores.get)  # the first (shipped) on a tie
        print(f"{outer:<20} pick {pick:<16} held-out {fmt(outs[pick])}")
        for candidate in candidates:
            print(f"    {candidate:<16} inner {scores[candidate]:5.2f}  held-out {fmt(outs[candidate])}")
    full = {}
    for candidate in candidates:
        use(candidate)
        full[candidate], per = loo_score(devices, list(devices))
        folds = ", ".join(f"{n} {fmt(v)}" for n, v in per.items())
        print(f"all four, {candidate:<16} {full[candidate]:5.2f}  {folds}")
    print(f"ships (leave-one-out over all four): {min(full, key=full.get)}")
    use("shipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
