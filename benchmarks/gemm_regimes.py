"""Which GEMM regimes carry the held-out error of the device-general model (issue 11), per device and dtype.

    python benchmarks/gemm_regimes.py      # markdown table, ~20 s on the shared machine

Each device folder is held out in turn, the GEMM families (bf16, fp8, NVFP4) are fitted on the other devices with the
shipped setup (the same folds and row samples as `lvlmsim validate --leave-one-out`), and the held-out rows' median /
p90 |error| (%) is printed for all rows, by token count m and for skinny shapes (the smaller of n and k at most 256).
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

KEYS = ["gemm", "gemm.fp8", "gemm.fp4"]
M_BINS = ((1, 16), (17, 256), (257, 4096), (4097, None))


def _cell(err: np.ndarray) -> str:
    return f"{np.median(err):.1f} / {np.percentile(err, 90):.1f}" if len(err) else "-"


def table(devices: dict) -> list[str]:
    """Markdown rows: held-out device, dtype, all, one column per m bin, skinny shapes."""
    head = ["held-out device", "dtype", "all"] + [f"m {lo}-{hi}" if hi else f"m > {lo - 1}" for lo, hi in M_BINS]
    out = ["| " + " | ".join([*head, "min(n, k) <= 256"]) + " |", "|" + "---|" * (len(head) + 1)]
    for held, (hw, rows) in devices.items():
        train = {v[0].id: v for n, v in devices.items() if n != held}
        prof = general.fit_general(train, families=KEYS).profile_for(hw)
        err = abs_pct_errors(cost_model_times(rows, hw, prof), np.array([r.measured_s for r in rows]))
        dtype = np.array([r.op.dtype for r in rows])
        m = np.array([r.op.shape[0] for r in rows])
        skinny = np.array([min(r.op.shape[1], r.op.shape[2]) <= 256 for r in rows])
        for dt in ("bf16", "fp8", "fp4"):
            sel = dtype == dt
            if not sel.any():
                continue
            cells = [_cell(err[sel])]
            cells += [_cell(err[sel & (m >= lo) & (m <= (hi or m.max()))]) for lo, hi in M_BINS]
            cells.append(_cell(err[sel & skinny]))
            out.append(f"| {hw.id} | {dt} | " + " | ".join(cells) + " |")
    return out


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to report")
        return 1
    t0 = time.perf_counter()
    devices = {n: (hw, [r for r in rows if r.family == "gemm"])
               for n, (hw, rows) in load_devices(measured / "aiconfigurator" / "data").items()}
    print("\n".join(table({n: v for n, v in devices.items() if v[1]})))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
