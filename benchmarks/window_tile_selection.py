"""Nested check of the windowed-prefill tile pricing on FA3 (issue 16), which is NOT shipped.

    python benchmarks/window_tile_selection.py      # ~30 s: 4 outer folds x (3 inner fits x 2 candidates + 1)

Shipped (`lvlmsim.calibrate.kernels.prefill_tiles`): a windowed prefill is priced in whole tiles on FA2 (64-row query
blocks) and on Blackwell's TRT-LLM-gen context kernels (256-row CTAs, 128-key tiles). The candidate `fa3` adds vLLM's
FA3 with the same physics, from its source: tiles by head size (hopper/tile_size.h tile_size_fwd_sm90, paged KV
without TMA: 192 x 128 causal / 192 x 160 local up to 64, 192 x 128 up to 96, 128 x 128 up to 128, 128 x 96 up to
192, 128 x 80 causal / 128 x 64 local above), the local key loop starting at the window's first key rather than at
its block (hopper/block.h get_n_block_min_max: n_offset), and PackGQA - rows of (token, query head) of one KV head -
where vLLM's FA3 packs under varlen queries (hopper/heuristics.h should_pack_gqa: when the queries fit one block, or
when packing fills the last block better by more than 10%).

It was tried, and left out after looking at the leave-one-device-out table (B300's held-out prefill went 10.5 ->
15.7% and its windowed prefill 12.4 -> 20.1%). This script is the check that choice skipped: per outer device, the
candidate is picked by an inner leave-one-out over the other three (mean over the inner devices of the median
|error| of their full and windowed prefill rows), fitted on the three and priced on the outer one.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, kernels  # noqa: E402
from lvlmsim.calibrate.loo import held_out_report, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.ops.op import ATTN_PREFILL, Op  # noqa: E402

TABLES = ("context_attention", "context_attention_sliding")
SHIPPED_TILE_FACTOR = kernels.window_tile_factor
SHIPPED_KERNELS = kernels.TILED_WINDOWED_PREFILL


def fa3_tiles(head_dim: float, local: bool) -> tuple[int, int]:
    """(kBlockM, kBlockN) of vLLM's FA3 prefill, bf16, paged KV without TMA (hopper/tile_size.h)."""
    if head_dim <= 64:
        return 192, (160 if local else 128)
    if head_dim <= 96:
        return 192, 128
    if head_dim <= 128:
        return 128, 128
    if head_dim <= 192:
        return 128, 96
    return 128, (64 if local else 80)


def packs_gqa(q: int, group: int, block_m: int) -> bool:
    """vLLM's FA3 should_pack_gqa under varlen queries (hopper/heuristics.h)."""
    if q <= block_m:
        return True
    padded = lambda n: -(-n // block_m) * block_m  # noqa: E731
    return q / padded(q) < 0.9 * (q * group) / padded(q * group)


@functools.lru_cache(maxsize=8192)
def pairs_per_useful(q: int, past: int, window: int, block_m: int, block_n: int, group: int) -> float:
    """Pairs FA3's blocks compute per useful pair: rows of (token, head) when packed, keys from the window's first
    key (not its block) to the block of the causal limit, whole key blocks."""
    starts = np.arange(0, q * group, block_m)
    rows = np.minimum(block_m, q * group - starts)
    tok_lo, tok_hi = starts // group, np.minimum((starts + rows - 1) // group + 1, q)
    key_lo = np.maximum(0, tok_lo + past - (window - 1)) if window else np.zeros_like(tok_lo)
    keys = -(-(tok_hi + past - key_lo) // block_n) * block_n
    pos = np.arange(past, past + q) + 1.0
    useful = (np.minimum(pos, window).sum() if window else pos.sum()) * group
    return float((rows * keys).sum() / useful)


def fa3_window_tile_factor(op: Op, kernel: str | None) -> float:
    """The shipped factor, plus FA3's: its windowed blocks' work over its causal blocks' at the same length."""
    if kernel != "fa3":
        return SHIPPED_TILE_FACTOR(op, kernel)
    if op.kind != ATTN_PREFILL or not op.window_tokens or not op.name.endswith(kernels.SLIDING_SUFFIX):
        return 1.0
    q, past = max(int(round(op.shape[1])), 1), int(round(max(op.shape[2] - op.shape[1], 0.0)))
    if past + q <= op.window_tokens:
        return 1.0
    group = max(int(round(op.shape[3] / op.shape[4])), 1) if op.shape[4] else 1
    (lm, ln), (cm, cn) = fa3_tiles(op.shape[5], True), fa3_tiles(op.shape[5], False)
    local = pairs_per_useful(q, past, op.window_tokens, lm, ln, group if packs_gqa(q, group, lm) else 1)
    return local / pairs_per_useful(q, 0, 0, cm, cn, group if packs_gqa(q, group, cm) else 1)


def use(candidate: str) -> None:
    fa3 = candidate == "fa3"
    kernels.window_tile_factor = fa3_window_tile_factor if fa3 else SHIPPED_TILE_FACTOR
    kernels.TILED_WINDOWED_PREFILL = (*SHIPPED_KERNELS, "fa3") if fa3 else SHIPPED_KERNELS


def held_out(devices: dict, train: list[str], held: str) -> dict[str, float]:
    """Median |error| per prefill table of `held`, the prefill family fitted on `train`."""
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES]) for n in train}
    model = general.fit_general(fit_rows, families=["attn_prefill"])
    rows = [r for r in devices[held][1] if r.family in TABLES]
    report = held_out_report(model, devices[held][0], rows)[0]
    return {t: report[t]["median_abs_pct_err"] for t in TABLES if t in report}


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data")
    for outer in devices:
        inner = [n for n in devices if n != outer]
        scores = {}
        for candidate in ("shipped", "fa3"):
            use(candidate)
            scores[candidate] = float(np.mean([np.mean(list(held_out(devices, [n for n in inner if n != i], i)
                                                             .values())) for i in inner]))
        pick = min(scores, key=scores.get)  # the shipped one on a tie
        use(pick)
        picked = held_out(devices, inner, outer)
        use("fa3" if pick == "shipped" else "shipped")
        other = held_out(devices, inner, outer)
        print(f"{outer:<22} inner shipped {scores['shipped']:5.1f}  fa3 {scores['fa3']:5.1f}  pick {pick:<8} "
              f"held-out {picked}  (the other: {other})")
    use("shipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
