"""Nested leave-one-device-out check of the NCCL all-reduce family's latency links after B300's corrected features
(issue 11, wave 8 round 2).

    python benchmarks/nccl_link_selection.py            # seeds 0-3 (a minute or two on the shared machine)
    python benchmarks/nccl_link_selection.py --seeds 1  # seed 0 only
    python benchmarks/nccl_link_selection.py --explain  # H100's fold with B300's old and new SM count / clock

Why (calibration/README.md, "NCCL all-reduce after B300's corrected clock"): the shipped links price the small-message
latency a0, a1 ~ 1 / SM clock (prior -1) and by the datacenter-Blackwell flag (prior log(3.0 / 2.3), NVIDIA/nccl#1940).
NCCL's own cost model (src/graph/tuning.cc, ncclTopoTuneModel) has no clock and no SM-count term: latency = a base
latency per algorithm and protocol + steps x a per-hop latency per link type (NVLink, PCI, network), and the
architecture enters through per-compute-capability tables (per-channel bandwidth caps, LL caps, NVLS efficiency 0.85
Hopper / 0.74 Blackwell); nccl-tests' small-message time without CUDA graphs also carries the kernel launch
(NVIDIA/nccl#1984: ~3.5 us eager against ~0.5 us graphed), and the highest-clocked measured part (B300, 2032 MHz)
has a higher small-message latency than H100 (1980 MHz). So the sources argue for an architecture constant and do
not establish a clock dependence. Candidates (at most two alternatives; one is argued):
- shipped: a0, a1 by log_clock (prior -1) and arch_sm100 (prior log(3.0 / 2.3)) (general.ALLREDUCE_LATENCY_LINKS);
- sm100: a0, a1 by arch_sm100 alone (same prior): an architecture constant, no clock (the custom all-reduce's set).
b0 by log_link (prior 1) in both. The SM count is linked by neither: NCCL runs a few channels (one CTA each, at most
32 on these parts) whatever the SM count, and NVLS does the reduction in the switch.

Rule, fixed before any figure of this script was seen:
- per outer held-out device (A100, B300, H100; RTX PRO 6000 has no NCCL table), each candidate's inner score is the
  median |error| over the NCCL rows of the two training devices, each priced by the family fitted on the other one
  (both ways, pooled), mean over table seeds 0-3;
- the fold picks the lower inner score; an alternative within 0.1 point of the shipped set's leaves the shipped set;
- the alternative ships only if picked in >= 2 of the 3 outer folds AND it breaks no met target (common brief: held
  out with `lvlmsim validate --leave-one-out --seeds 4`, no cell that meets its target in main at 0b05ebe misses it).
The outer figure of each fold's pick (fitted on both training devices, priced on the held-out one) is printed as the
nested estimate; it is not part of the rule.
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
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

TIE_POINTS = 0.1  # an alternative must beat the shipped set's inner score by more than this
SHIPPED = "shipped"
CANDIDATES: dict[str, dict[str, float]] = {
    SHIPPED: dict(general.ALLREDUCE_LATENCY_LINKS),
    "sm100": {"arch_sm100": general.ALLREDUCE_LATENCY_LINKS["arch_sm100"]},
}


def candidate_links(latency: dict[str, float]) -> dict[str, dict[str, float]]:
    """The all-reduce form's links with `latency` on a0 and a1 (b0 and every other link as shipped)."""
    links = {p: dict(fs) for p, fs in general.LINKS["allreduce"].items()}
    links.update({"a0": dict(latency), "a1": dict(latency)})
    return links


def held_out_errors(devices: dict, train: list[str], held: str, latency: dict[str, float]) -> np.ndarray:
    """|error| % of `held`'s NCCL rows priced by the family fitted on the `train` devices with `latency` links."""
    saved = general.LINKS
    general.LINKS = {**saved, "allreduce": candidate_links(latency)}
    try:
        fit = {devices[n][0].id: devices[n] for n in train}
        model = general.fit_general(fit, families=["allreduce"])
    finally:
        general.LINKS = saved
    hw, rows = devices[held]
    meas = np.array([r.measured_s for r in rows])
    return abs_pct_errors(cost_model_times(rows, hw, model.profile_for(hw)), meas)


def nccl_rows(devices: dict) -> dict:
    """Only the NCCL table's rows, only the devices that have one."""
    out = {n: (hw, [r for r in rows if r.family == "nccl"]) for n, (hw, rows) in devices.items()}
    return {n: v for n, v in out.items() if v[1]}


def fold_scores(devices: dict, outer: str) -> dict[str, tuple[float, float, float]]:
    """candidate -> (inner score, outer median, outer p90) for one outer fold at one seed."""
    rest = [n for n in devices if n != outer]
    out = {}
    for label, latency in CANDIDATES.items():
        inner = np.concatenate([held_out_errors(devices, [a], b, latency) for a in rest for b in rest if a != b])
        outer_err = held_out_errors(devices, rest, outer, latency)
        out[label] = (float(np.median(inner)), float(np.median(outer_err)), float(np.percentile(outer_err, 90)))
    return out


def pick(inner: dict[str, float]) -> str:
    """The rule's pick from mean inner scores: the best alternative only if it beats the shipped set by > TIE_POINTS."""
    best = min((k for k in inner if k != SHIPPED), key=inner.get)
    return best if inner[best] < inner[SHIPPED] - TIE_POINTS else SHIPPED


B300_FEATURES = {"148 SMs, 2032 MHz (shipped)": {}, "160 SMs, 2032 MHz": {"sm_count": 160},
                 "148 SMs, no clock (1980 MHz)": {"boost_clock_mhz": None},
                 "160 SMs, no clock (before wave 8)": {"sm_count": 160, "boost_clock_mhz": None}}
SMALL_BYTES = 256 * 1024  # the messages NCCL's latency prices (LL / LL128 protocols)


def explain(devices: dict) -> None:
    """H100's fold (the family fitted on A100 and B300, shipped links) with B300's SM count and clock as shipped and
    as they were: fitted latency coefficients, intercepts and H100's signed error by message size. Not a selection."""
    a100, (b_hw, b_rows), (h_hw, h_rows) = devices["a100_sxm"], devices["b300_sxm"], devices["h100_sxm"]
    meas = np.array([r.measured_s for r in h_rows])
    small = np.array([r.op.bytes_read <= SMALL_BYTES for r in h_rows])
    for label, change in B300_FEATURES.items():
        hw = b_hw.model_copy(update=change)
        model = general.fit_general({a100[0].id: a100, hw.id: (hw, b_rows)}, families=["allreduce"])
        fam = model.families["allreduce"]
        signed = (cost_model_times(h_rows, h_hw, model.profile_for(h_hw)) - meas) / meas * 100
        print(f"B300 at {label}: log_clock {general.device_features(hw)['log_clock']:+.4f}")
        print(f"  a0 intercept {fam.z0['a0']:.3f}, coefficients {fam.coefs['a0']}; e2 / e4 / e8 intercepts "
              f"{fam.z0['e2']:.3f} / {fam.z0['e4']:.3f} / {fam.z0['e8']:.3f}")
        print(f"  H100 held out: median {np.median(np.abs(signed)):.2f}%, p90 {np.percentile(np.abs(signed), 90):.2f}%;"
              f" signed median <= 256 KiB {np.median(signed[small]):+.1f}%, larger {np.median(signed[~small]):+.1f}%")


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    n_seeds = 4
    if args == ["--explain"]:
        measured = measured_dir(ROOT)
        if measured is None:
            print("shared/data/measured not found next to the checkout: nothing to explain")
            return 1
        explain(nccl_rows(load_devices(measured / "aiconfigurator" / "data")))
        return 0
    if args:
        if len(args) != 2 or args[0] != "--seeds" or not args[1].isdigit() or int(args[1]) < 1:
            print(f"unknown arguments {' '.join(args)!r}; allowed: --seeds N (a positive integer, default 4) "
                  "or --explain")
            return 2
        n_seeds = int(args[1])
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    t0 = time.perf_counter()
    per_seed = []
    for seed in range(n_seeds):
        devices = nccl_rows(load_devices(measured / "aiconfigurator" / "data", seed=seed))
        per_seed.append({outer: fold_scores(devices, outer) for outer in devices})
    folds = list(per_seed[0])
    picks = {}
    print(f"seeds 0-{n_seeds - 1}; inner = median |error| % over the two training devices, each fitted on the other")
    print(f"{'outer held-out':<22}" + "".join(f"{'inner ' + k:>14}" for k in CANDIDATES) + f"{'pick':>10}"
          + "".join(f"{'outer ' + k:>20}" for k in CANDIDATES))
    for outer in folds:
        mean = {k: [float(np.mean([s[outer][k][i] for s in per_seed])) for i in range(3)] for k in CANDIDATES}
        picks[outer] = pick({k: v[0] for k, v in mean.items()})
        print(f"{outer:<22}" + "".join(f"{v[0]:>14.2f}" for v in mean.values()) + f"{picks[outer]:>10}"
              + "".join(f"{v[1]:>12.1f} / {v[2]:<5.1f}" for v in mean.values()))
    counts = {k: sum(p == k for p in picks.values()) for k in CANDIDATES}
    winner = max((k for k in CANDIDATES if k != SHIPPED), key=counts.get)
    ships = counts[winner] >= 2
    verdict = ("is picked in >= 2 folds: check the held-out targets before shipping" if ships
               else "is not picked in >= 2 folds: the shipped links stay")
    print(f"picked: {counts}; {winner} {verdict}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
