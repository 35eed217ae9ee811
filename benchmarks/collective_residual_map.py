"""Signed residual map of the collective families held out per device (issue 11, wave 11): NCCL all-reduce (`nccl`
rows, family `allreduce`), vLLM's custom all-reduce (`custom_allreduce` rows, family `allreduce/custom`) and NCCL
all-to-all (`alltoall` rows, family `alltoall`). Each held-out device's rows are priced by the family fitted on the
other devices (leave-one-device-out, seed 0: the tables have 126 / 45 rows a device, below every subsample).

    python benchmarks/collective_residual_map.py                 # H100 held out (the weak fold of all three)
    python benchmarks/collective_residual_map.py --held all      # every device with rows

Prints, per family and held-out device: median / p90 |error| %, median signed error % (+ = priced slow) by GPU count
x message size band, and by dtype (NCCL's half / int8 rows). About a minute. Needs ../shared/data/measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

FAMILIES = {"nccl": "allreduce", "custom_allreduce": "allreduce/custom", "alltoall": "alltoall"}
BANDS = [(0, 64 << 10, "<64K"), (64 << 10, 1 << 20, "64K-1M"), (1 << 20, 32 << 20, "1M-32M"),
         (32 << 20, float("inf"), ">=32M")]


def signed_errors(devices: dict, table: str, held: str) -> tuple[np.ndarray, list]:
    """(predicted / measured - 1 in %, rows) of `held`'s `table` rows, the family fitted on the other devices."""
    train = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family == table])
             for n in devices if n != held}
    train = {k: v for k, v in train.items() if v[1]}
    model = general.fit_general(train, families=[FAMILIES[table]])
    hw, rows = devices[held]
    rows = [r for r in rows if r.family == table]
    meas = np.array([r.measured_s for r in rows])
    return (cost_model_times(rows, hw, model.profile_for(hw)) / meas - 1.0) * 100.0, rows


def cell(err: np.ndarray) -> str:
    return f"{np.median(err):+6.1f} ({len(err):>2})" if len(err) else f"{'-':>6} (  )"


def report(devices: dict, table: str, held: str) -> None:
    err, rows = signed_errors(devices, table, held)
    if not len(rows):
        return
    a = np.abs(err)
    nbytes = np.array([r.op.bytes_read for r in rows])
    gpus = np.array([r.op.devices for r in rows])
    tags = np.array([r.tag for r in rows])
    print(f"\n{table} held out on {held}: median |err| {np.median(a):.1f}%, p90 {np.percentile(a, 90):.1f}%, "
          f"signed median {np.median(err):+.1f}% (n {len(a)})")
    print(f"  {'GPUs':<6}" + "".join(f"{label:>14}" for _, _, label in BANDS) + f"{'all':>14}")
    for g in sorted(set(gpus)):
        sel = gpus == g
        print(f"  {g:<6}" + "".join(f"{cell(err[sel & (nbytes >= lo) & (nbytes < hi)]):>14}" for lo, hi, _ in BANDS)
              + f"{cell(err[sel]):>14}")
    if len(set(tags)) > 1:
        print("  by dtype: " + ", ".join(f"{t} {np.median(err[tags == t]):+.1f}% (|{np.median(a[tags == t]):.1f}|)"
                                         for t in sorted(set(tags))))


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args not in ([], ["--held", "all"]):
        print(f"unknown arguments {' '.join(args)!r}; allowed: --held all")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to map")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data")
    held = list(devices) if args else ["h100_sxm"]
    print("signed median error % (+ = priced slow) (rows) by GPU count x message bytes per device")
    for table in FAMILIES:
        for name in held:
            report(devices, table, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
