"""Why B300's held-out prefill moves 12-22% between subsample seeds (issue 16): the B300 fold's fits side by side.

    python benchmarks/window_seed_diagnosis.py                  # seeds 0-3, ~1.5 min
    python benchmarks/window_seed_diagnosis.py --seeds 0,1      # the good and the bad draw

For each table seed (load_devices, as benchmarks/window_tile_selection.py: the fit's own 800-row draw follows from it)
the prefill family is fitted on A100, H100 and RTX PRO 6000 and priced on B300. Printed per seed: the final training
cost (robust data part and total), the fitted intercepts, linked coefficients and B300's parameters, the held-out
medians on that seed's B300 rows and on seed 0's (so the evaluation sample is fixed); then every model's mean robust
cost per row on every seed's training rows (equal costs: the models differ along a direction the training data do not
see); B300's error by measured-time quintile; and per device, for its fastest fifth of rows, the median share of the
measured time the model gives the floor and the body (compute or memory, equal after the overlap); last, the same
folds fitted on every row read instead of an 800-row draw, and their training cost; and B300's figures over six
800-row draws of each seed's rows (fit seeds 0-5; `lvlmsim validate --leave-one-out --seed s` draws at seed s,
benchmarks/window_tile_selection.py at 0). Needs
../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import ROBUST_SCALE, apply_overlap, cost_model_times, family_data, np_math  # noqa: E402
from lvlmsim.calibrate.general import ROWS_PER_DEVICE, GeneralModel, fit_general  # noqa: E402
from lvlmsim.calibrate.kernels import window_binds, with_kernel_features  # noqa: E402
from lvlmsim.calibrate.loo import held_out_report, load_devices  # noqa: E402
from lvlmsim.calibrate.model import form_for  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

KEY = "attn_prefill"
TABLES = ("context_attention", "context_attention_sliding")
HELD = "b300_sxm"
FIT_DRAWS = 6  # fit seeds per table seed in fit_draws


@contextmanager
def recorded_costs(out: list[tuple[float, float]]) -> Iterator[None]:
    """Within the block every full (not grid-search) joint fit appends (total cost, robust data cost) to `out`."""
    solve = general._Joint.solve

    def recording(self, theta0, max_iter):
        theta, cost, conv = solve(self, theta0, max_iter)
        if max_iter > general.GRID_MAX_ITER:  # the grid search's fits run GRID_MAX_ITER iterations, the final fit more
            n = sum(len(d.data) for d in self.devices)
            r = self.residuals(theta)[:n]
            out.append((cost, float(r @ r)))
        return theta, cost, conv

    general._Joint.solve = recording
    try:
        yield
    finally:
        general._Joint.solve = solve


def prefill_rows(rows: list, unbound_only: bool = False) -> list:
    return [r for r in rows if r.family in TABLES and not (unbound_only and window_binds(r.op))]


def fit_fold(devices: dict, rows_per_device: int = ROWS_PER_DEVICE, fit_seed: int = 0) -> GeneralModel:
    train = {devices[n][0].id: (devices[n][0], prefill_rows(devices[n][1])) for n in devices if n != HELD}
    return fit_general(train, families=[KEY], rows_per_device=rows_per_device, grid_rows=rows_per_device,
                       seed=fit_seed)


def fit_draws(tables: dict) -> None:
    """Per table seed, the fold fitted at fit seeds 0..FIT_DRAWS-1 (other 800-row draws of the same rows): how often a
    draw lands where B300's floor is low (the memory latency carrying small kernels) and what B300 then reads."""
    print(f"\nfit draws 0-{FIT_DRAWS - 1} of each table seed: B300 held out full / windowed (B300's floor, us)")
    for s, devices in tables.items():
        cells, errs = [], []
        for k in range(FIT_DRAWS):
            model = fit_fold(devices, fit_seed=k)
            rep = held_out_report(model, devices[HELD][0], prefill_rows(devices[HELD][1]))[0]
            floor_us = model.profile_for(devices[HELD][0]).families[KEY].params["floor_s"] * 1e6
            errs.append([rep[t]["median_abs_pct_err"] for t in TABLES])
            cells.append(f"{errs[-1][0]:.1f} / {errs[-1][1]:.1f} ({floor_us:.1f})")
        mean = np.mean(errs, axis=0)
        print(f"  table seed {s}: mean {mean[0]:.1f} / {mean[1]:.1f}; " + ", ".join(cells))


def every_row_fits(models: dict, tables: dict) -> None:
    """The same folds fitted on every row read (no fit subsample): whether more rows settle the basin, and which."""
    print("\nfitted on every row read (no 800-row draw): B300 held out full / windowed, B300's b0, pb, floor; mean "
          "robust cost per row x 1e3 on the seed's training rows (the 800-row fit's in parentheses)")
    for s, model in models.items():
        full = fit_fold(tables[s], rows_per_device=10**9)
        rep = held_out_report(full, tables[s][HELD][0], prefill_rows(tables[s][HELD][1]))[0]
        p = full.profile_for(tables[s][HELD][0]).families[KEY].params
        held = " / ".join(f"{rep[t]['median_abs_pct_err']:.1f}" for t in TABLES)
        costs = [robust_cost_per_row(m, tables[s]) * 1e3 for m in (full, model)]
        print(f"  seed {s}: {held}  b0 {p['b0']:.3g} pb {p['pb']:.3g} floor {p['floor_s'] * 1e6:.2f} us  "
              f"cost {costs[0]:.3f} ({costs[1]:.3f})")


def show_fit(seed: int, model: GeneralModel, cost: tuple[float, float], devices: dict, fixed: dict) -> None:
    fam = model.families[KEY]
    own = held_out_report(model, devices[HELD][0], prefill_rows(devices[HELD][1]))[0]
    at0 = held_out_report(model, fixed[HELD][0], prefill_rows(fixed[HELD][1]))[0]
    b300 = model.profile_for(devices[HELD][0]).families[KEY].params
    own_text, at0_text = (" / ".join(f"{rep[t]['median_abs_pct_err']:.1f}" for t in TABLES) for rep in (own, at0))
    print(f"seed {seed}: training cost {cost[0]:.2f} (data {cost[1]:.2f}), hyper {fam.hyper}; B300 held out "
          f"{own_text} on its rows, {at0_text} on seed 0's")
    print("  intercepts " + ", ".join(f"{k} {v:.3g}" for k, v in fam.z0.items()))
    print("  coefs " + ", ".join(f"{p}.{f} {v:.3g}" for p, fs in fam.coefs.items() for f, v in fs.items()))
    print("  B300 " + ", ".join(f"{k} {v:.4g}" for k, v in b300.items()))


def robust_cost_per_row(model: GeneralModel, devices: dict) -> float:
    """Mean soft-L1 cost (the fit's, ROBUST_SCALE) of `model` on the training devices' unbound prefill rows."""
    d, total, n = ROBUST_SCALE, 0.0, 0
    for name, (hw, rows) in devices.items():
        if name == HELD:
            continue
        rows = prefill_rows(rows, unbound_only=True)
        r = np.log(cost_model_times(rows, hw, with_kernel_features(model.profile_for(hw), hw))
                   / np.array([m.measured_s for m in rows]))
        total, n = total + float((2 * d * d * (np.sqrt(1 + (r / d) ** 2) - 1)).sum()), n + len(rows)
    return total / n


def quintiles(models: dict, fixed: dict) -> None:
    hw, rows = fixed[HELD][0], prefill_rows(fixed[HELD][1])
    meas = np.array([r.measured_s for r in rows])
    pred = {s: cost_model_times(rows, hw, with_kernel_features(m.profile_for(hw), hw)) for s, m in models.items()}
    edges = np.quantile(meas, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    print("\nB300 (seed 0's rows) by measured-time quintile: median |error| % (median log bias %) per model seed")
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (meas >= lo) & (meas <= hi)
        cells = []
        for s, p in pred.items():
            ratio = p[sel] / meas[sel]
            cells.append(f"s{s} {np.median(np.abs(ratio - 1)) * 100:5.1f} ({np.median(np.log(ratio)) * 100:+5.1f})")
        print(f"  {lo * 1e6:8.1f}-{hi * 1e6:8.1f} us  " + "  ".join(cells))


def small_kernel_shares(models: dict, fixed: dict) -> None:
    print("\nfastest fifth of each device's rows (seed 0's): median share of measured time on floor / body")
    for s, model in models.items():
        parts = []
        for name, (hw, rows) in fixed.items():
            rows = prefill_rows(rows, unbound_only=True)
            meas = np.array([r.measured_s for r in rows])
            rows = [r for r, t in zip(rows, meas, strict=True) if t <= np.quantile(meas, 0.2)]
            fam = model.profile_for(hw).families[KEY]
            form = form_for(rows[0].op.kind, fam.variant)
            fd = family_data(rows[0].op.kind, rows, hw, form)
            p = [fam.params[n] for n in form.param_names]
            ec, em, floor_s = form.eff(np_math(), p[: len(form.core)], fam.hyper, fd.x)
            ec, em = apply_overlap(np.clip(ec, 1e-6, 1), np.clip(em, 1e-6, 1), p[-1], fd.compute_s, fd.memory_s)
            body = np.maximum(fd.compute_s / ec, fd.memory_s / em)
            parts.append(f"{name[:4]} {np.median(floor_s / fd.measured_s):.2f} / {np.median(body / fd.measured_s):.2f}")
        print(f"  model seed {s}: " + " | ".join(parts))


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    args = sys.argv[1:]
    seeds = (0, 1, 2, 3)
    if args[:1] == ["--seeds"]:
        if len(args) != 2 or not all(x.isdigit() for x in args[1].split(",")):
            print("--seeds: a comma-separated list of non-negative integers, e.g. --seeds 0,1")
            return 2
        seeds = tuple(int(x) for x in args[1].split(","))
    data = measured / "aiconfigurator" / "data"
    tables = {s: load_devices(data, seed=s) for s in dict.fromkeys((0, *seeds))}
    models, costs = {}, []
    for s in seeds:
        with recorded_costs(costs):
            models[s] = fit_fold(tables[s])
        show_fit(s, models[s], costs[-1], tables[s], tables[0])
    print("\nmean robust cost per row x 1e3 of each model (rows) on each seed's training rows (columns "
          f"{', '.join(map(str, seeds))})")
    for s, model in models.items():
        print(f"  model seed {s}: " + "  ".join(f"{robust_cost_per_row(model, tables[t]) * 1e3:6.3f}" for t in seeds))
    quintiles(models, tables[0])
    small_kernel_shares(models, tables[0])
    every_row_fits(models, tables)
    fit_draws({s: tables[s] for s in seeds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
