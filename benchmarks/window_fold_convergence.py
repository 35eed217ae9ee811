"""Why H100's held-out windowed prefill reads 20.5% at seed 2 after wave 8's B300 correction (issue 16, wave 8 round
2; a diagnosis, nothing is chosen from it): one fold of `lvlmsim validate --leave-one-out --seed S` (table subsample
and fit draw both at S), prefill family only, fitted with B300's datasheet before wave 8 (160 SMs, no clock, so the
reference's 1980 MHz) and after (148 SMs, 2032 MHz), side by side.

    python benchmarks/window_fold_convergence.py                          # H100 at seed 2, ~1 min
    python benchmarks/window_fold_convergence.py --held b300_sxm --seed 1
    python benchmarks/window_fold_convergence.py --draws                  # + table seeds 0-3 x fit draws 0-5, ~1 min
    python benchmarks/window_fold_convergence.py --folds                  # + every validate fold at 50 / 400 iterations

Printed: per datasheet the held-out full / windowed prefill median |error|, the final training cost and the held-out
device's fitted parameters; then, with the after datasheet, the same fit with the joint Levenberg-Marquardt solve
allowed more iterations than the 50 it had then (general.FINAL_MAX_ITER, 16000 since calibration/README's round 6:
the rows without a max_iter now run to the solver's own stopping rule) and the same fit started at the
before fit's parameters of the held-out device (`FamilySetup.start`): the same objective on the same rows, so a lower
cost there says the shipped fit stopped short of the objective's minimum rather than the rows preferring another
basin. `--draws` adds the held-out figures at fit draws 0-5 of table seeds 0-3 for both datasheets (how often the
fold lands where it did). `--folds` adds, for every fold of `validate --leave-one-out --seeds 4` (each device held
out at table seeds 0-3, fit draw at the seed), the final training cost and held-out medians at the then shipped 50
iterations and at 400: which folds stop short of their minimum. Needs ../shared/data/measured (never copied into
the project).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from window_seed_diagnosis import recorded_costs  # noqa: E402

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.general import GeneralModel, fit_general  # noqa: E402
from lvlmsim.calibrate.loo import DEVICE_FOLDERS, family_setup, held_out_report, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

KEY = "attn_prefill"
TABLES = ("context_attention", "context_attention_sliding")
ITERATIONS = (50, 100, 200, 400)  # 50 was the final solve's cap before the fit convergence fix (now 16000)
FIT_DRAWS = 6
SHOWN = ("ec_max", "b0", "pb", "cache_boost", "floor_s")


def parse_args(args: list[str]) -> tuple[str, int, set[str]]:
    """(held-out device folder, seed, extra tables: a subset of {'--draws', '--folds'}) from the command line;
    ValueError with a one-line message naming the flag and its allowed values."""
    held, seed, extra, rest = "h100_sxm", 2, set(), list(args)
    while rest:
        flag = rest.pop(0)
        if flag in ("--draws", "--folds"):
            extra.add(flag)
        elif flag in ("--held", "--seed") and rest:
            value = rest.pop(0)
            if flag == "--held" and value not in DEVICE_FOLDERS:
                raise ValueError(f"--held: {value!r} is not a measured device; allowed: {', '.join(DEVICE_FOLDERS)}")
            if flag == "--seed" and not value.isdigit():
                raise ValueError(f"--seed: expected a non-negative integer (table seed and fit draw), got {value!r}")
            held, seed = (value, seed) if flag == "--held" else (held, int(value))
        else:
            raise ValueError(f"unknown or incomplete argument {flag!r}; allowed: --held DEVICE, --seed N, --draws, "
                             "--folds")
    return held, seed, extra


def with_b300_before(devices: dict) -> dict:
    """`devices` with B300's datasheet as it was before wave 8 (160 SMs, boost clock missing): the old features."""
    hw, rows = devices["b300_sxm"]
    return {**devices, "b300_sxm": (hw.model_copy(update={"sm_count": 160, "boost_clock_mhz": None}), rows)}


def prefill(rows: list) -> list:
    return [r for r in rows if r.family in TABLES]


def fit_fold(devices: dict, held: str, seed: int, start: dict | None = None,
             max_iter: int | None = None) -> tuple[GeneralModel, float]:
    """(the prefill family fitted on every device but `held` at fit draw `seed`, its final training cost)."""
    costs: list[tuple[float, float]] = []
    train = {devices[n][0].id: (devices[n][0], prefill(devices[n][1])) for n in devices if n != held}
    fit_family = general.fit_general_family
    if max_iter is not None:
        general.fit_general_family = lambda *a, **k: fit_family(*a, **{**k, "max_iter": max_iter})
    try:
        with recorded_costs(costs), family_setup(KEY, replace(general.FAMILY_SETUPS[KEY], start=start or {})):
            model = fit_general(train, families=[KEY], seed=seed)
    finally:
        general.fit_general_family = fit_family
    return model, costs[-1][0]


def describe(model: GeneralModel, devices: dict, held: str) -> str:
    rep = held_out_report(model, devices[held][0], prefill(devices[held][1]))[0]
    p = model.profile_for(devices[held][0]).families[KEY].params
    return (" / ".join(f"{rep[t]['median_abs_pct_err']:5.2f}" for t in TABLES if t in rep) + "  "
            + ", ".join(f"{k} {p[k] * (1e6 if k == 'floor_s' else 1):.3g}" for k in SHOWN)
            + " (floor in us)")


def fold(devices: dict, held: str, seed: int) -> None:
    before, after = with_b300_before(devices), devices
    print(f"{held} held out, table seed and fit draw {seed}: full / windowed prefill median |error| %, "
          f"{held}'s parameters, final training cost")
    m_before, c_before = fit_fold(before, held, seed)
    print(f"  B300 before wave 8 (160 SMs, no clock): {describe(m_before, before, held)}; cost {c_before:.3f}")
    for it in ITERATIONS:
        model, cost = fit_fold(after, held, seed, max_iter=it)
        print(f"  B300 after (148 SMs, 2032 MHz), max_iter {it:3d}: {describe(model, after, held)}; cost {cost:.3f}")
    start = dict(m_before.profile_for(before[held][0]).families[KEY].params)
    model, cost = fit_fold(after, held, seed, start=start)
    print(f"  B300 after, started at the before fit's {held} parameters: {describe(model, after, held)}; "
          f"cost {cost:.3f}")


def draws(data: Path, held: str) -> None:
    print(f"\n{held} held out at table seeds 0-3 x fit draws 0-{FIT_DRAWS - 1}: full / windowed (before | after)")
    for s in range(4):
        devices = load_devices(data, seed=s)
        for k in range(FIT_DRAWS):
            cells = [describe(fit_fold(d, held, k)[0], d, held) for d in (with_b300_before(devices), devices)]
            print(f"  table seed {s} draw {k}: {cells[0]} | {cells[1]}", flush=True)


def every_fold(data: Path) -> None:
    print(f"\nevery validate fold (after): held-out full / windowed at max_iter 50 | {ITERATIONS[-1]}, final cost")
    for s in range(4):
        devices = load_devices(data, seed=s)
        for held in devices:
            cells = []
            for it in (50, ITERATIONS[-1]):
                model, cost = fit_fold(devices, held, s, max_iter=it)
                rep = held_out_report(model, devices[held][0], prefill(devices[held][1]))[0]
                cells.append(" / ".join(f"{rep[t]['median_abs_pct_err']:5.2f}" for t in TABLES if t in rep)
                             + f" cost {cost:.3f}")
            print(f"  seed {s} {held:<20} {cells[0]} | {cells[1]}", flush=True)


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    try:
        held, seed, extra = parse_args(sys.argv[1:])
    except ValueError as err:
        print(err)
        return 2
    data = measured / "aiconfigurator" / "data"
    fold(load_devices(data, seed=seed), held, seed)
    if "--draws" in extra:
        draws(data, held)
    if "--folds" in extra:
        every_fold(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
