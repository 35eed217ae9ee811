"""Nested leave-one-device-out check of pricing NCCL's NVLS all-reduce bytes (issue 11, wave 11): the one structural
candidate of this wave for the NCCL all-reduce family. Rule committed (this file, its first commit) before any figure
of it was computed.

    python benchmarks/nvls_selection.py     # about 10 s; needs ../shared/data/measured

Fact (hardware_specs, `intra_node_link.in_switch_reduction`, with sources): the NVSwitch of HGX H100/H200 (third
generation) and of HGX B200/B300 (fourth generation) performs the all-reduce's reduction in the switch (NVLink SHARP,
multimem loads/stores); A100's second-generation NVSwitch does not. NCCL's NVLS all-reduce on such a switch moves about
(n+1)/n of the message over each GPU's link (each GPU sends its whole buffer to the switch's reducing loads and
multicasts back its reduced 1/n share), where the ring moves 2(n-1)/n (lvlmsim.cost.roofline.allreduce_s). NCCL enables
NVLS by default (NCCL_NVLS_ENABLE=2: on when the driver reports multicast support) and picks it per message by its own
tuning model (NVLS only with the Simple protocol; small messages run ring/tree LL); nccl-tests, as aiconfigurator's
collector runs it (collector/collect_nccl.py: no NCCL_ALGO, no CUDA graph), leaves that choice to NCCL. Which messages
of the tables ran NVLS is therefore not established by a source, so the bytes NVLS moves are a candidate, not a fact.

Candidate `nvls`: on a device whose switch reduces in the network, NCCL all-reduce rows at more than 2 GPUs are priced
with (n+1)/n of the message per GPU instead of the ring's 2(n-1)/n (at every message size: the fitted byte saturation
and latency floor stay as they are); 2-GPU groups stay ring (ncclNvlsInit returns without NVLS at gpuCount <= 2 in
the NCCL sources read; the newest reads gpuCount < 2, and at 2 GPUs NVLS's 3/2 of the message is more than the ring's
1, so NCCL's tuner keeps the ring there either way). Baseline `ring`: as shipped.

Rule:
- per outer held-out device (A100, B300, H100: the NCCL tables), each candidate's inner score is the median |error|
  over the NCCL all-reduce rows of the two training devices, each priced by the family fitted on the other one (both
  ways, pooled); seed 0 only (126 rows a device, below every subsample: seeds do not move these figures, wave 8);
- the fold picks the lower inner score; `nvls` within 0.1 point of `ring` leaves `ring`;
- `nvls` ships only if picked in >= 2 of the 3 outer folds AND, held out (fitted on the other two devices), no NCCL
  cell that meets its target now (median <= 15%, p90 <= 35%: A100 10.4 / 21.0, B300 11.9 / 21.6) misses it.
The outer figures (median / p90 |error| and signed median of each held-out device, both candidates) are printed
whatever the pick; they are not part of the pick. Custom all-reduce and all-to-all are untouched by the candidate
(vLLM's custom kernel reads its peers' buffers over NVLink, no multimem; NCCL's all-to-all has no reduction).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.measured import allreduce_op  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

TIE_POINTS = 0.1
TARGET_MEDIAN, TARGET_P90 = 15.0, 35.0
def nvls_rows(hw, rows: list) -> list:
    """`rows` with each NCCL all-reduce at > 2 GPUs on an in-switch-reducing device (the datasheet fact,
    hardware_specs `intra_node_link.in_switch_reduction`: A100 false, H100 and B300 true) re-expressed so that the
    ring's byte factor 2(n-1)/n prices NVLS's (n+1)/n: the message scaled by (n+1) / (2(n-1))."""
    if not hw.intra_node_link.in_switch_reduction:
        return rows
    out = []
    for r in rows:
        n = r.op.devices
        if n > 2:
            r = dataclasses.replace(r, op=allreduce_op(r.op.bytes_read * (n + 1) / (2 * (n - 1)), n))
        out.append(r)
    return out


def candidate_devices(devices: dict, label: str) -> dict:
    return {n: (hw, nvls_rows(hw, rows) if label == "nvls" else rows) for n, (hw, rows) in devices.items()}


def held_out(devices: dict, train: list[str], held: str) -> np.ndarray:
    """Signed error % of `held`'s rows priced by the family fitted on `train`."""
    model = general.fit_general({devices[n][0].id: devices[n] for n in train}, families=["allreduce"])
    hw, rows = devices[held]
    meas = np.array([r.measured_s for r in rows])
    return (cost_model_times(rows, hw, model.profile_for(hw)) / meas - 1.0) * 100.0


def pick(inner: dict[str, float]) -> str:
    """The rule's pick from one fold's inner scores: `nvls` only if it beats `ring` by more than TIE_POINTS."""
    return "nvls" if inner["nvls"] < inner["ring"] - TIE_POINTS else "ring"


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args:
        print(f"unknown arguments {' '.join(args)!r}; this script takes none")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    loaded = load_devices(measured / "aiconfigurator" / "data")
    base = {n: (hw, [r for r in rows if r.family == "nccl"]) for n, (hw, rows) in loaded.items()}
    base = {n: v for n, v in base.items() if v[1]}
    cands = {label: candidate_devices(base, label) for label in ("ring", "nvls")}
    picks, breaks = {}, []
    print(f"{'outer held-out':<16}{'inner ring':>11}{'inner nvls':>11}{'pick':>6}   outer ring (median/p90/signed)"
          "   outer nvls")
    for outer in base:
        rest = [n for n in base if n != outer]
        inner, outer_fig = {}, {}
        for label, devs in cands.items():
            pooled = np.concatenate([np.abs(held_out(devs, [a], b)) for a in rest for b in rest if a != b])
            inner[label] = float(np.median(pooled))
            err = held_out(devs, rest, outer)
            outer_fig[label] = (float(np.median(np.abs(err))), float(np.percentile(np.abs(err), 90)),
                                float(np.median(err)))
        picks[outer] = pick(inner)
        r, v = outer_fig["ring"], outer_fig["nvls"]
        if r[0] <= TARGET_MEDIAN and r[1] <= TARGET_P90 and not (v[0] <= TARGET_MEDIAN and v[1] <= TARGET_P90):
            breaks.append(outer)
        print(f"{outer:<16}{inner['ring']:>11.2f}{inner['nvls']:>11.2f}{picks[outer]:>6}   "
              f"{r[0]:6.1f} / {r[1]:5.1f} / {r[2]:+6.1f}        {v[0]:6.1f} / {v[1]:5.1f} / {v[2]:+6.1f}")
    n_nvls = sum(p == "nvls" for p in picks.values())
    ships = n_nvls >= 2 and not breaks
    print(f"nvls picked in {n_nvls} of {len(picks)} folds; met targets it breaks: {breaks or 'none'}; "
          f"{'ships' if ships else 'does not ship'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
