"""Nested leave-one-device-out choice of the GEMM family's SM-rate link (issue 11).

    python benchmarks/gemm_link_selection.py

For each outer held-out device, the prior exponent of the n0/k0 ~ (tensor FLOPs per SM per clock) links is chosen
among CANDIDATES by an inner leave-one-out over the remaining devices only (median |error| over their GEMM rows),
then the family is fitted on those devices with the chosen prior and priced on the outer device. The outer figures are
therefore held out from the choice too. Prints per fold: inner scores, the choice, and the outer GEMM error next to
the flat derate. Needs ../shared/data/measured (never copied into the project).
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
from lvlmsim.cost.profile import DEFAULT_PROFILE  # noqa: E402

FAMILIES = ["gemm", "gemm.fp8", "gemm.fp4"]
CANDIDATES = {"none": None, "0.5": 0.5, "1.0": 1.0}  # prior exponent of the n0/k0 links (none: no link)


def _links(prior: float | None) -> dict:
    gemm = {p: dict(fs) for p, fs in general.LINKS["gemm"].items() if p not in ("n0", "k0")}
    if prior is not None:
        gemm.update({"n0": {"log_sm_rate": prior}, "k0": {"log_sm_rate": prior}})
    return {**general.LINKS, "gemm": gemm}


def _errors(train: dict, hw, rows) -> tuple[np.ndarray, np.ndarray]:
    model = general.fit_general(train, families=FAMILIES)
    meas = np.array([r.measured_s for r in rows])
    pred = cost_model_times(rows, hw, model.profile_for(hw))
    return abs_pct_errors(pred, meas), abs_pct_errors(cost_model_times(rows, hw, DEFAULT_PROFILE), meas)


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    t0 = time.perf_counter()
    devices = load_devices(measured / "aiconfigurator" / "data")
    gemm_rows = {n: (hw, [r for r in rows if r.family == "gemm"]) for n, (hw, rows) in devices.items()}
    saved = general.LINKS
    try:
        print(f"{'outer held-out':<22}{'inner median % per prior':<40}{'chosen':<8}{'outer %':>8}{'p90 %':>7}"
              f"{'flat %':>8}")
        for outer in gemm_rows:
            rest = {n: v for n, v in gemm_rows.items() if n != outer}
            scores = {}
            for label, prior in CANDIDATES.items():
                general.LINKS = _links(prior)
                errs = [_errors({rest[m][0].id: rest[m] for m in rest if m != inner}, *rest[inner])[0]
                        for inner in rest]
                scores[label] = float(np.median(np.concatenate(errs)))
            choice = min(scores, key=scores.get)
            general.LINKS = _links(CANDIDATES[choice])
            err, flat = _errors({v[0].id: v for v in rest.values()}, *gemm_rows[outer])
            inner = "  ".join(f"{k}: {v:.1f}" for k, v in scores.items())
            print(f"{outer:<22}{inner:<40}{choice:<8}{np.median(err):>8.1f}{np.percentile(err, 90):>7.1f}"
                  f"{np.median(flat):>8.1f}")
    finally:
        general.LINKS = saved
    print(f"shipped: prior {general.SM_RATE_PRIOR} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
