"""How far the operator graph's all-to-all (expert-parallel dispatch / combine, and its all-gather) is from measured
NCCL all-to-all and all-gather, per device, under a profile (default: the flat roofline derate).

    python benchmarks/alltoall_check.py [--data ../shared/data/measured/aiconfigurator/data] [--profile default|auto]

The graph prices an all-to-all of B bytes per device over n GPUs as cost.roofline.alltoall_s: (n-1)/n x B over the
link at the profile's memory efficiency, plus the link latency and the family floor. `--profile default` (the
default) is the flat roofline derate (0.8 of the link, 8 us floor, source `roofline-default`); `--profile auto` is
what the device is priced with, the device-general model's `alltoall` family (source `general:general-gpu:alltoall`),
fitted on these very rows, so its figures here are in-sample: the held-out ones are `lvlmsim validate --leave-one-out`
(calibration/README.md). aiconfigurator's nccl_perf.csv (nccl-tests, one NVLink node) times `alltoall` and
`all_gather` at 2, 4 and 8 GPUs; `message_size` is an element count (x 2 B for half, x 1 for int8, README of the
shared data), the per-device message of both ops. The all-gather rows are not fitted (validate skips them): the graph
prices an all-gather as an all-to-all. Prints, per device and op: rows, median and p90 |error| %, median signed
error % (+ = priced slow), and the median |error| below and from 1 MiB. About 2 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate.profiles import load_profile_for  # noqa: E402
from lvlmsim.cost.roofline import CostModel  # noqa: E402
from lvlmsim.ops.graph import collective  # noqa: E402
from lvlmsim.ops.op import ALLTOALL, GraphConfig  # noqa: E402
from lvlmsim.specs import load_hardware  # noqa: E402

DEVICES = {"a100_sxm": "a100-sxm-80gb", "h100_sxm": "h100-sxm", "b300_sxm": "b300", "rtx_pro_6000_server":
           "rtx-pro-6000-server"}
ELEMENT_BYTES = {"half": 2, "int8": 1}
MiB = 1 << 20


def signed_errors_pct(df: pd.DataFrame, cm: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """(predicted / measured - 1 in %, message bytes) of every row."""
    cfg = GraphConfig()
    err, size = [], []
    for dtype, gpus, elements, latency_ms in zip(df.nccl_dtype, df.num_gpus, df.message_size, df.latency,
                                                 strict=True):
        nbytes = float(elements) * ELEMENT_BYTES[str(dtype)]
        op = collective("alltoall", ALLTOALL, "decode", nbytes, int(gpus), cfg, 1, (0, 1), 0.0)
        err.append((cm.cost(op).time_s / (float(latency_ms) * 1e-3) - 1.0) * 100.0)
        size.append(nbytes)
    return np.asarray(err), np.asarray(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--profile", default="default", help="default (the flat derate) or auto (the shipped model)")
    args = ap.parse_args()
    print(f"{'device':<22}{'op':<12}{'rows':>5}{'median %':>10}{'p90 %':>8}{'signed %':>10}{'< 1 MiB':>9}"
          f"{'>= 1 MiB':>10}  source")
    for folder, hid in DEVICES.items():
        tables = sorted(Path(args.data, folder).glob("comm/nccl/*/nccl_perf.csv"))
        if not tables:
            continue
        hw = load_hardware(hid)
        cm = CostModel(hw, load_profile_for(hw, args.profile))
        df = pd.read_csv(tables[-1])
        df = df[df.nccl_dtype.astype(str).isin(ELEMENT_BYTES) & (df.latency > 0)]
        for name in ("alltoall", "all_gather"):
            err, size = signed_errors_pct(df[df.op_name == name], cm)
            if not len(err):
                continue
            a = np.abs(err)
            source = cm.cost(collective("x", ALLTOALL, "decode", 1.0, 2, GraphConfig(), 1, (0, 1), 0.0)).source
            print(f"{folder:<22}{name:<12}{len(a):>5}{np.median(a):>10.1f}{np.percentile(a, 90):>8.1f}"
                  f"{np.median(err):>+10.1f}{np.median(a[size < MiB]):>9.1f}{np.median(a[size >= MiB]):>10.1f}  "
                  f"{source}")


if __name__ == "__main__":
    main()
