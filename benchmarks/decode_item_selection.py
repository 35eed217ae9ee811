"""Nested check of what a decode's per-item setup cost follows across devices (issue 11, decode p90 tails).

    python benchmarks/decode_item_selection.py [--seeds 0 1 2 3]     # ~2 min: shipped against item-bytes
    python benchmarks/decode_item_selection.py --candidates shipped kernel-class   # the second check

The held-out decode p90 tails (benchmarks/decode_tail_map.py) sit where the (sequence, KV head) items are many and the
keys few: B300's rows of > 512 items are priced 1.5-2.2x slow, and held-out H100's rows of 513-4096 items at <= 16
keys 0.79x fast. There the time is the items' fixed cost: DecodeForm's c0, the bytes per item at which bandwidth is
half-saturated, so that a short item costs ~c0 / bandwidth seconds.

Candidates (the c0 links of the attn_decode setup; everything else shipped):
- `shipped`: c0 linked +1 to bandwidth and -1 to the SM count: a fixed TIME per item, spread over the SMs (per-item
  time ~ 1 / SMs).
- `item-bytes`: c0 not linked: a fixed number of BYTES per item at the device's bandwidth (per-item time ~ 1 /
  bandwidth). The argument: what an item costs whatever its keys is memory traffic the kernel issues per item -
  Q and O, the block-table row, the new token's K/V write that the measured call includes, and the first K/V tile or
  page read whole - not SM cycles, and every decode kernel here (FA2, FA3, TRT-LLM-gen) is a memory-bound kernel whose
  SMs wait on those loads.

- `kernel-class` (the second check, run after item-bytes' outcome): the per-item cost follows the kernel's launch
  structure. FA2 (A100, RTX PRO 6000) launches one CTA per item (vllm-project/flash-attention
  `csrc/flash_attn/src/flash_fwd_launch_template.h`: grid (m blocks, batch, heads), the split kernel likewise), and
  each CTA's launch, prologue (Q load, the first K/V tile's round trip) and epilogue (O store) hold one of its SM's
  slots: a fixed time per item over the SMs (the shipped law, c0 linked +1 bandwidth, -1 SMs, on the FA2 devices).
  FA3 (H100; `hopper/flash_fwd_launch_template.h`: `UsePersistentScheduler = Arch >= 90 ? !(Split && !Varlen)`,
  vLLM's decode is varlen) and TRT-LLM-gen (B300; FlashInfer `fmhaKernels.cuh` `computeCtaAndClusterConfig`:
  `TileScheduler::Persistent` when a sequence gets one CTA) run persistent CTAs that loop over items, a producer
  warp loading the next item's tiles while the current one computes, so those latencies overlap and an item costs
  its traffic: a fixed byte count at the bandwidth (c0 unlinked there), at its own level (a persistent-flag
  coefficient on c0, prior 0, learned from whichever persistent device trains). Every outer fold trains on at least
  one device of each class. Distinct from decode_tail_selection.py's `persistent` (which shifted c0's level by that
  flag but kept the per-SM law on every kernel). Also read off the per-item figures below (all four devices'),
  so chosen by the same nested check and criterion, fixed in the commit that adds it, before its outer figures.

Criterion (fixed before any outer figure was seen): per outer device, each candidate's inner score is the mean over
the three training devices (each held out in turn, fitted on the other two) of the mean over its decode tables (full
and windowed, those it has) of (median + p90) / 2 |error| %, averaged over the seeds given (table subsample and fit
seed both = the seed, as the leave-one-out table). The lowest score is the fold's pick, the first listed on a tie.
The candidate ships only if it is picked in at least three of the four outer folds and its nested decode median stays
<= 12% on every device. Printed per outer device: inner scores, pick, and the outer median / p90 of the full and
windowed decode tables under each candidate (mean over seeds; the pick's is the nested figure). Needs
../shared/data/measured (never copied into the project).

Outcome (seeds 0-3, 100 s here): picked in 1 of 4 folds, so nothing ships. Inner scores shipped / item-bytes: A100
fold 33.83 / 40.85, B300 28.70 / 44.00, H100 36.46 / 42.63, RTX PRO 6000 28.34 / 36.64 -> picks shipped, shipped,
shipped, item-bytes. Held-out full decode median / p90 (windowed after the comma), shipped -> item-bytes: A100 11.7
/ 22.7 -> 14.7 / 29.4; B300 10.6 / 63.5, 10.3 / 78.0 -> 6.7 / 30.9, 4.6 / 22.6; H100 8.1 / 26.3, 13.0 / 28.2 -> 8.5
/ 38.0, 13.9 / 37.4; RTX PRO 6000 10.6 / 62.7, 9.8 / 28.1 -> 22.0 / 85.7, 58.4 / 119.0. Per item at 16,384 items
(batch 2048 x 8 KV heads, <= 16 keys) the time x DRAM bandwidth is A100 78 KB (head size 128), H100 70 / 91 KB (64 /
128), B300 72 / 85 KB, RTX PRO 6000 42 / 45 KB: the HBM devices agree within 1.3x, the GDDR7 device runs its items
at half that (per SM: 4.14, 2.76 / 3.58, 1.43 / 1.70, 4.42 / 4.70 us). So each fold has an inner device one of the
two forms misprices: RTX PRO 6000 in the A100, B300 and H100 folds under item-bytes, B300 in RTX PRO 6000's under
the shipped form; the B300 and RTX PRO 6000 folds are sent to the form that misprices their own held-out device
(A100 and H100 are priced better by the shipped form either way). Disclosed: the hypothesis was read off the
per-item figures in calibration/README.md, B300's among them.

Outcome of the second check (`--candidates shipped kernel-class`, 106 s): picked in 3 of 4 folds (inner shipped /
kernel-class: A100 fold 33.83 / 23.47, H100 36.46 / 25.73, RTX PRO 6000 36.64 / 28.95 pick kernel-class; B300 28.70
/ 28.79 keeps shipped, by 0.09), but its nested A100 median is 12.3% (shipped 11.7), above the rule's 12, so it does
not ship either. Held out, shipped -> kernel-class: A100 11.7 / 22.7 -> 12.3 / 23.1; B300 10.6 / 63.5, 10.3 / 78.0 ->
6.7 / 29.1, 4.7 / 24.0 (not the nested figure: its fold keeps shipped); H100 8.1 / 26.3, 13.0 / 28.2 -> 7.9 / 25.1,
11.9 / 27.7; RTX PRO 6000 10.6 / 62.7, 9.8 / 28.1 -> 11.2 / 63.0, 10.1 / 28.5. Nested decode under it: A100 12.3 /
23.1, B300 10.6 / 63.5, H100 7.9 / 25.1, RTX PRO 6000 11.2 / 63.0 (full, median / p90).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, kernels  # noqa: E402
from lvlmsim.calibrate.loo import family_setup, held_out_report, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.errors import SpecError  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402

KEY = "attn_decode"
TABLES = ("generation_attention", "generation_attention_sliding")
CANDIDATES = ("shipped", "item-bytes", "kernel-class")
FIRST_CHECK = ("shipped", "item-bytes")
C0_LINKS = {"shipped": {"log_bw": 1.0, "log_sms": -1.0}, "item-bytes": {},
            "kernel-class": {"log_bw_cta": 1.0, "log_sms_cta": -1.0, "persistent_decode": 0.0}}
PERSISTENT_DECODE = ("fa3", "bw")  # kernel generations whose decode runs a persistent tile scheduler
SHIPPED_FEATURES, SHIPPED_DEVICE_FEATURES = general.FEATURES, general.device_features


def kernel_class_features(hw: HardwareSpec, dtype: str = "bf16") -> dict[str, float]:
    """The shipped device features plus the decode kernel's class: `persistent_decode` (FA3, TRT-LLM-gen) and the
    bandwidth and SM-count log ratios of a one-CTA-per-item kernel (0 on a persistent one)."""
    feats = SHIPPED_DEVICE_FEATURES(hw, dtype)
    kernel = kernels.attention_kernel(hw)
    persistent = kernel in PERSISTENT_DECODE
    one_cta_per_item = kernel is not None and not persistent
    return {**feats, "persistent_decode": 1.0 if persistent else 0.0,
            "log_bw_cta": feats["log_bw"] if one_cta_per_item else 0.0,
            "log_sms_cta": feats["log_sms"] if one_cta_per_item else 0.0}


@contextmanager
def candidate(name: str) -> Iterator[None]:
    """Within the block the decode family is fitted and priced as candidate `name` (features restored after)."""
    setup = candidate_setup(name)
    if name == "kernel-class":
        general.FEATURES = SHIPPED_FEATURES + ("persistent_decode", "log_bw_cta", "log_sms_cta")
        general.device_features = kernel_class_features
    try:
        with family_setup(KEY, setup):
            yield
    finally:
        general.FEATURES, general.device_features = SHIPPED_FEATURES, SHIPPED_DEVICE_FEATURES


def candidate_setup(candidate: str) -> general.FamilySetup:
    """The shipped attn_decode setup with `candidate`'s c0 links."""
    if candidate not in CANDIDATES:
        raise SpecError(f"candidate: '{candidate}'; expected one of {', '.join(CANDIDATES)}")
    shipped = general.FAMILY_SETUPS[KEY]
    links = {p: dict(f) for p, f in shipped.links.items() if p != "c0"}
    if C0_LINKS[candidate]:
        links["c0"] = dict(C0_LINKS[candidate])
    return replace(shipped, links=links)


def fold_stats(devices: dict, train: list[str], held: str, seed: int) -> dict[str, tuple[float, float]]:
    """{table: (median, p90) |error| %} of `held`'s decode tables, the decode family fitted on `train` at `seed`."""
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES]) for n in train}
    rows = [r for r in devices[held][1] if r.family in TABLES]
    report = held_out_report(general.fit_general(fit_rows, seed=seed, families=[KEY]), devices[held][0], rows)[0]
    return {t: (report[t]["median_abs_pct_err"], report[t]["p90_abs_pct_err"]) for t in TABLES if t in report}


def inner_score(devices: dict, names: list[str], seed: int) -> float:
    """Mean over `names` (each held out, fitted on the others) of the mean over its decode tables of (median + p90)
    / 2: the criterion of this check."""
    per = []
    for held in names:
        stats = fold_stats(devices, [n for n in names if n != held], held, seed)
        per.append(np.mean([(med + p90) / 2.0 for med, p90 in stats.values()]))
    return float(np.mean(per))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(FIRST_CHECK),
                    help="the candidates of one nested check, shipped first (default: the first check's)")
    args = ap.parse_args()
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    by_seed = {s: load_devices(measured / "aiconfigurator" / "data", seed=s) for s in args.seeds}
    names = list(by_seed[args.seeds[0]])
    picks = {}
    for outer in names:
        inner = [n for n in names if n != outer]
        scores, outer_fig = {}, {}
        for name in args.candidates:
            with candidate(name):
                scores[name] = float(np.mean([inner_score(by_seed[s], inner, s) for s in args.seeds]))
                per_seed = [fold_stats(by_seed[s], inner, outer, s) for s in args.seeds]
            outer_fig[name] = {t: tuple(np.mean([p[t] for p in per_seed], axis=0)) for t in per_seed[0]}
        picks[outer] = min(scores, key=scores.get)
        print(f"{outer}: pick {picks[outer]}")
        for c in args.candidates:
            figs = "   ".join(f"{t.removeprefix('generation_attention') or 'full'} {m:5.1f} / {p:5.1f}"
                               for t, (m, p) in outer_fig[c].items())
            print(f"  {c:<11} inner {scores[c]:6.2f}   held-out median / p90: {figs}")
    for name in args.candidates[1:]:
        print(f"{name} picked in {sum(p == name for p in picks.values())} of {len(picks)} folds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
