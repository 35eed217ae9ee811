"""Checks of the transfer-band estimator (lvlmsim.calibrate.bands, issue 11) that do not rest on the coverage table.

    python benchmarks/band_estimator_check.py --sim        # synthetic residual sets with a known truth (seconds)
    python benchmarks/band_estimator_check.py --nested     # nested choice of estimator on the measured folds

--sim: residual sets drawn as leave-one-device-out makes them - each device's true offset u_D ~ N(0, tau), its held-out
offset u_D minus the mean of the other devices' (the model fitted the family's level on them), rows with N(0, sigma)
noise - then every device judged by the band derived without it (bands.nested_coverage), for the shipped hierarchical
centre and the unshrunk one (bias_var = inf, the estimator before it). A calibrated estimator gives about 0.80.

--nested: for each measured device, the choice between the two estimators made by an inner leave-one-out over the
other three devices' held-out residuals (the one whose cells sit closer to 0.80, mean |coverage - 0.80|), then the
held-out device judged by the chosen one: the coverage a nested choice of estimator gives. Needs
../shared/data/measured.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lvlmsim.calibrate import bands as B  # noqa: E402

ESTIMATORS = {"hierarchical": None, "unshrunk": math.inf}  # bias_var passed to bands.transfer_bands
DEVICES = ("A", "B", "C", "D")


def synthetic_residuals(rng: np.random.Generator, *, tau: float, sigma: float, two_device_tau: float,
                        families: int = 8, two_device_families: int = 0, rows: int = 200) -> dict:
    """{device: {family: held-out log residuals}} as leave-one-device-out makes them (module docstring); the first
    `two_device_families` families are measured on devices A and B only, with offset spread `two_device_tau`."""
    res: dict[str, dict[str, list[float]]] = {d: {} for d in DEVICES}
    for f in range(families):
        two = f < two_device_families
        devs = DEVICES[:2] if two else DEVICES
        u = {d: rng.normal(0.0, two_device_tau if two else tau) for d in devs}
        for d in devs:
            held = u[d] - float(np.mean([u[x] for x in devs if x != d]))
            res[d][f"{'two' if two else 'four'}{f}"] = (held + rng.normal(0.0, sigma, rows)).tolist()
    return res


def simulate(runs: int) -> None:
    scenarios = [  # (tau, sigma, two-device families, their tau)
        (0.15, 0.20, 0, 0.15), (0.20, 0.05, 0, 0.20), (0.05, 0.20, 0, 0.05),
        (0.15, 0.20, 3, 0.15), (0.15, 0.15, 3, 0.30), (0.10, 0.15, 5, 0.25),
    ]
    print(f"{'tau':>5}{'sigma':>7}{'2-dev fams':>11}{'their tau':>10}   mean cell coverage, four-device / two-device "
          f"families ({runs} seeded sets each)")
    for tau, sigma, n_two, tau_two in scenarios:
        line = f"{tau:>5.2f}{sigma:>7.2f}{n_two:>11}{tau_two:>10.2f}"
        for name, bias_var in ESTIMATORS.items():
            four, two = [], []
            for seed in range(runs):
                res = synthetic_residuals(np.random.default_rng(seed), tau=tau, sigma=sigma, two_device_tau=tau_two,
                                          two_device_families=n_two)
                for per_key in B.nested_coverage(res, bias_var=bias_var).values():
                    for key, c in per_key.items():
                        (two if key.startswith("two") else four).append(c["coverage"])
            line += f"   {name} {np.mean(four):.2f}" + (f" / {np.mean(two):.2f}" if two else "")
        print(line)


def nested_choice() -> int:
    from general_model_report import coverage_summary

    from lvlmsim.calibrate.loo import leave_one_out_devices
    from lvlmsim.calibrate.shipped import general_rows, measured_dir

    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices, _files = general_rows(measured, seed=0)
    _report, residuals = leave_one_out_devices(devices, seed=0)
    out = {}
    for dev in residuals:
        inner = {d: pk for d, pk in residuals.items() if d != dev}
        score = {}
        for name, bias_var in ESTIMATORS.items():
            cells = [c["coverage"] for pk in B.nested_coverage(inner, bias_var=bias_var).values() for c in pk.values()]
            score[name] = float(np.mean(np.abs(np.asarray(cells) - 0.8)))
        pick = min(score, key=score.get)
        out[dev] = B.coverage(residuals[dev], B.transfer_bands(inner, bias_var=ESTIMATORS[pick]))
        print(f"{dev:<22} inner mean |coverage - 0.80|: " + ", ".join(f"{k} {v:.3f}" for k, v in score.items())
              + f" -> {pick}")
    print("held-out devices judged by the estimator their inner folds chose:")
    print(coverage_summary(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", action="store_true")
    ap.add_argument("--nested", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    if not (args.sim or args.nested):
        ap.error("choose --sim and/or --nested")
    if args.sim:
        simulate(args.runs)
    return nested_choice() if args.nested else 0


if __name__ == "__main__":
    raise SystemExit(main())
