"""Nested check of three kernel / measurement facts behind decode's held-out p90 tails (issue 11). Nothing here is
shipped: the script installs each candidate on the decode family for the length of the check.

    python benchmarks/decode_tail_selection.py      # ~2 min: 4 outer folds x (3 inner fits x 5 candidates + 5)

The tails (held-out decode p90: B300 66.2%, RTX PRO 6000 60.9%):
- B300: batches of 64-2048 at 2-512 keys priced 1.9-2.6x slow. Their time steps with batch x KV heads, whatever the
  keys or query heads (146 us for 16,384 items at head size 64 from 46 MB or 281 MB): a (sequence, KV head) item costs
  one B300 SM 1.4-1.7 us, against 4.1-4.5 us on A100 and RTX PRO 6000 (FA2) and 2.7-3.6 us on H100 (FA3).
- RTX PRO 6000: working sets up to its 128 MB L2, priced 1.5-2.2x slow, and only those: from 1.2 x L2 up its
  held-out ratio is 0.9-1.1. Measured, 0.75-1.25 x L2 of KV streams at up to 3.0 TB/s (median 2.1), above its 1.79
  TB/s GDDR7; no other device's decode passes its DRAM rate at any size (their L2 holds 12-20 us of DRAM traffic,
  RTX PRO 6000's 71 us, so only there is an L2-sized decode bandwidth-bound).

Facts, from source:
- persistent: FA3 (hopper/flash_fwd_launch_template.h: `UsePersistentScheduler = Arch >= 90 ? !(Split && !Varlen)
  : ...`; vLLM's decode is varlen) and FlashInfer's TRT-LLM-gen generation kernels (fmhaKernels.cuh
  computeCtaAndClusterConfig: when a sequence gets one CTA, `TileScheduler::Persistent` "for better performance")
  loop each resident CTA over work items; FA2 launches one CTA per item. Candidate `persistent`: the per-item cost
  c0 also linked to that flag (prior 0, the family's ridge), learned from H100 in B300's fold.
- tiles: each kernel computes whole tiles: FA2 64 query rows (the GQA group swapped into them) x kBlockN keys
  (run_mha_fwd_splitkv_dispatch), FA3 the packed group in its kBlockM x kBlockN tile (hopper/tile_size.h), TRT-LLM-gen
  8 or 16 heads x 128 keys (SwapsMmaAbForGeneration, tileSizeQ / tileSizeKv in FlashInfer's kernelMetaInfo.h; 32
  heads for a group above 16, KeepsMmaAb). Candidate `tiles`: decode compute priced on those padded tiles (at head
  size 128 a tile is 1.45 / 1.68 / 1.12 us of one SM's tensor peak on A100 / RTX PRO 6000 / H100, 0.04 us on B300).
- resident: aiconfigurator's collector (collector/helper.py benchmark_with_power: 3 warm-ups, CUDA-graph capture, 3
  more replays, then the timed replays, no flush; collector/vllm/collect_attn.py passes the same KV cache and
  inputs to every call) re-reads one KV cache back to back, so a KV that fits the L2 is served from it: a fact of
  the measurement, not of serving (where the layer's KV is evicted by the others'). Candidates `resident` /
  `resident-onchip`: memory efficiency x (1 + boost x S), S a fixed step at the L2 capacity (1 / (1 + (bytes /
  L2)^8), the capacity from the datasheet), boost fitted unlinked / linked to on-chip over DRAM bandwidth (prior 1).
  Were it picked, serving would keep S = 0.

Per outer device the candidate is picked by an inner leave-one-out over the other three (mean of their median |error|
on full and windowed decode rows), fitted on the three and priced on the outer one. Printed: inner scores, the pick,
and the outer device's median / p90 |error| on full-attention decode rows under each candidate (the pick's is the
nested figure), then the shipped fold's errors split by whether the KV fits the L2. Needs ../shared/data/measured
(never copied into the project).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, kernels  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import held_out_report, inner_score, load_devices  # noqa: E402
from lvlmsim.calibrate.model import FORM_VARIANTS, Param, SplitDecodeForm  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.errors import SpecError  # noqa: E402
from lvlmsim.ops.op import ATTN_DECODE, Op  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402

TABLES = ("generation_attention", "generation_attention_sliding")
KEY = "attn_decode"
CANDIDATES = ("shipped", "persistent", "tiles", "resident", "resident-onchip")
PERSISTENT_DECODE = ("fa3", "bw")  # kernel generations whose decode runs a persistent tile scheduler
RESIDENT_STEEPNESS = 8.0  # the step at the L2 capacity: 94% resident at 0.7 x L2, 6% at 1.4 x L2
MIB = 2.0**20  # cache capacities are binary: the 128 MB L2 of RTX PRO 6000 holds 128 MiB (a 65,536-key KV of 2 x 256)
SHIPPED_SETUP = general.FAMILY_SETUPS[KEY]
SHIPPED_FEATURES, SHIPPED_DEVICE_FEATURES = general.FEATURES, general.device_features
SHIPPED_TILE_FACTOR, SHIPPED_WITH_FEATURES = kernels.window_tile_factor, kernels.with_kernel_features


def kv_cache_bytes(op: Op) -> float:
    """Bytes of the K and V entries a full-attention decode reads (bf16): the working set the replays re-read."""
    batch, _q, kv, _heads, kv_heads, d = op.shape[:6]
    return 2.0 * batch * kv * kv_heads * d * 2.0


class ResidentDecodeForm(SplitDecodeForm):
    """SplitDecodeForm whose memory efficiency gains (1 + cache_boost) on a KV the L2 holds (a fixed step at the
    datasheet's L2 capacity): the measurement re-reads one KV cache back to back."""

    name = "decode+split+resident"
    core = SplitDecodeForm.core[:-1] + (
        Param("cache_boost", "pos", 0.3, "extra bandwidth share of a KV the L2 holds between replays"),
    ) + SplitDecodeForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*super().features(op, hw), kv_cache_bytes(op) / (hw.l2_cache_mb * MIB))

    def eff(self, xp, p, h, x):
        *base, boost, floor_s = p
        ec, em, floor_s = super().eff(xp, (*base, floor_s), h, x[:-1])
        resident = 1.0 / (1.0 + xp.pw(x[-1], RESIDENT_STEEPNESS))
        return ec, em * (1.0 + boost * resident), floor_s


FORM_VARIANTS[ResidentDecodeForm.name] = ResidentDecodeForm()


def _up(x: float, tile: float) -> float:
    return math.ceil(x / tile) * tile


def decode_tile_factor(op: Op, kernel: str | None) -> float:
    """Padded tile FLOPs of a full-attention decode on `kernel` over the op's own (1 for other ops and kernels)."""
    if op.kind != ATTN_DECODE or op.name.endswith(kernels.SLIDING_SUFFIX) or kernel not in ("fa2", "fa3", "bw"):
        return 1.0
    batch, _q, kv, heads, kv_heads, d = op.shape[:6]
    group = heads / kv_heads if kv_heads else 1.0
    items = batch * kv_heads
    if kernel == "fa2":
        rows, keys = _up(group, kernels.FA2_BLOCK_M), _up(kv, kernels.fa2_key_block(d))
        if heads <= kv_heads:  # MHA: one query row per (sequence, head) CTA, padded to the block
            items, rows = batch * heads, kernels.FA2_BLOCK_M
    elif kernel == "fa3":
        block_m, block_n = kernels.fa3_prefill_tiles(d, False)
        rows, keys = _up(group, block_m), _up(kv, block_n)
    else:
        rows, keys = _up(group, 8 if group <= 8 else (16 if group <= 16 else 32)), _up(kv, 128)
    return max(4.0 * items * rows * keys * d / op.flops, 1.0)


def _tile_factor(op: Op, kernel: str | None) -> float:
    factor = SHIPPED_TILE_FACTOR(op, kernel)
    return factor if factor != 1.0 else decode_tile_factor(op, kernel)


def _with_features(profile, hw: HardwareSpec):
    kernel = kernels.attention_kernel(hw)
    return kernels.KernelFeatureProfile(profile, kernel) if kernel else profile


def _device_features(hw: HardwareSpec, dtype: str = "bf16") -> dict[str, float]:
    return {**SHIPPED_DEVICE_FEATURES(hw, dtype),
            "persistent_decode": 1.0 if kernels.attention_kernel(hw) in PERSISTENT_DECODE else 0.0}


def use(candidate: str) -> None:
    """Install `candidate` where the fitter and the pricing read it (shipped everywhere else)."""
    if candidate not in CANDIDATES:
        raise SpecError(f"candidate: '{candidate}'; expected one of {', '.join(CANDIDATES)}")
    links = {p: dict(f) for p, f in SHIPPED_SETUP.links.items()}
    setup = SHIPPED_SETUP
    general.FEATURES, general.device_features = SHIPPED_FEATURES, SHIPPED_DEVICE_FEATURES
    kernels.window_tile_factor, kernels.with_kernel_features = SHIPPED_TILE_FACTOR, SHIPPED_WITH_FEATURES
    if candidate == "persistent":
        general.FEATURES, general.device_features = SHIPPED_FEATURES + ("persistent_decode",), _device_features
        links["c0"] = {**links["c0"], "persistent_decode": 0.0}
        setup = replace(SHIPPED_SETUP, links=links)
    elif candidate == "tiles":
        kernels.window_tile_factor, kernels.with_kernel_features = _tile_factor, _with_features
    elif candidate.startswith("resident"):
        if candidate == "resident-onchip":
            links["cache_boost"] = {"log_onchip": 1.0}
        setup = replace(SHIPPED_SETUP, variant=ResidentDecodeForm.name, links=links)
    general.FAMILY_SETUPS[KEY] = setup


def outer_stats(devices: dict, train: list[str], held: str) -> tuple[float, float]:
    """(median, p90) |error| % of `held`'s full-attention decode rows, the family fitted on `train`."""
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES]) for n in train}
    rows = [r for r in devices[held][1] if r.family == TABLES[0]]
    stats = held_out_report(general.fit_general(fit_rows, families=[KEY]), devices[held][0], rows)[0][TABLES[0]]
    return stats["median_abs_pct_err"], stats["p90_abs_pct_err"]


def residency_split(devices: dict, train: list[str], held: str) -> str:
    """The shipped fold's errors on `held`'s full-attention decode rows, split by whether the KV cache the row reads
    fits the L2 (<= the datasheet L2: resident between the collector's replays) or not."""
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES]) for n in train}
    hw, rows = devices[held][0], [r for r in devices[held][1] if r.family == TABLES[0]]
    profile = kernels.with_kernel_features(general.fit_general(fit_rows, families=[KEY]).profile_for(hw), hw)
    ratio = cost_model_times(rows, hw, profile) / np.array([r.measured_s for r in rows])
    fits = np.array([kv_cache_bytes(r.op) <= hw.l2_cache_mb * MIB for r in rows])
    parts = []
    for label, sel in (("KV <= L2", fits), ("KV > L2", ~fits)):
        err = np.abs(ratio[sel] - 1.0) * 100.0
        parts.append(f"{label}: n {sel.sum()}, median / p90 {np.median(err):.1f} / {np.percentile(err, 90):.1f}, "
                     f"median predicted / measured {np.median(ratio[sel]):.2f}")
    return "; ".join(parts)


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data")
    try:
        for outer in devices:
            inner = [n for n in devices if n != outer]
            scores, outer_fig = {}, {}
            for candidate in CANDIDATES:
                use(candidate)
                scores[candidate] = inner_score(devices, inner, KEY, TABLES)
                outer_fig[candidate] = outer_stats(devices, inner, outer)
            pick = min(scores, key=scores.get)
            print(f"{outer}: pick {pick}")
            for c in CANDIDATES:
                med, p90 = outer_fig[c]
                print(f"  {c:<16} inner {scores[c]:6.2f}   held-out median / p90 {med:5.1f} / {p90:5.1f}")
            use("shipped")
            print(f"  shipped, split: {residency_split(devices, inner, outer)}")
    finally:
        use("shipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
