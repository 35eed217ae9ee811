"""Choose the MoE model's fixed cost: one per layer call, or one per kernel launch times the kernels each MoE library
launches per layer call (lvlmsim.calibrate.moe.kernel_launches, counted from source), by a leave-one-device-out
nested in each outer fold.

    python benchmarks/moe_launch_selection.py [--data ../shared/data/measured/aiconfigurator/data] [--fit-rows 3000]

Candidates (lvlmsim.calibrate.moe.FLOOR_MODES): `layer` (the shipped model: one fitted fixed cost per layer call),
`launch` (one fitted cost per kernel launch, shared by all devices, times the row's launches; no new parameter) and
`runtime` (the CUDA-graph runtimes' per-kernel floor, 2.7 us from lvlmsim.cost.runtime, times the launches; one
parameter fewer). For each held-out device every candidate is scored by an inner leave-one-device-out over the three
training devices only (fit on two, median |error| on the third, averaged); the best-scoring one is refitted on the
three and reported on the held-out device, which never takes part in choosing. Prints the inner scores and choice
per fold, the outer table of every candidate (for reference: choosing from it would leak), and each held-out
device's every-kernel rows per kernel_source under each candidate's outer fold.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moe_nested import device_hardware, moe_parser  # noqa: E402

from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import FLOOR_MODES, fit_moe, load_moe_table, predict, sample  # noqa: E402

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo


def abs_err_pct(params, data, hw, floor: str) -> np.ndarray:
    return np.abs(predict(params, data, hw, floor) / data.measured_s - 1.0) * 100.0


def fit_on(tables, hws, names, floor: str, fit_rows: int, seed: int) -> list[float]:
    return fit_moe([(sample(tables[g], fit_rows, seed), hws[g]) for g in names], floor=floor)


def main() -> None:
    ap = moe_parser(__doc__)
    args = ap.parse_args()
    t0 = time.perf_counter()
    hws = device_hardware()
    tables = {g: load_moe_table(Path(args.data) / g, hws[g]) for g in DEVICES}
    every = {g: load_moe_table(Path(args.data) / g, hws[g], every_kernel=True) for g in DEVICES}
    print(f"loaded in {time.perf_counter() - t0:.0f} s")
    print(f"{'held out':<22}" + "".join(f"{'inner ' + m:>15}" for m in FLOOR_MODES)
          + f"{'chosen':>9}{'median %':>10}{'p90 %':>8}")
    outer: dict[tuple[str, str], list[float]] = {}
    for held in DEVICES:
        train = [g for g in DEVICES if g != held]
        scores = {m: float(np.mean([np.median(abs_err_pct(fit_on(tables, hws, [g for g in train if g != val], m,
                                                                 args.fit_rows, args.seed),
                                                          tables[val], hws[val], m)) for val in train]))
                  for m in FLOOR_MODES}
        best = min(scores, key=scores.get)
        for m in FLOOR_MODES:
            outer[(held, m)] = fit_on(tables, hws, train, m, args.fit_rows, args.seed)
        err = abs_err_pct(outer[(held, best)], tables[held], hws[held], best)
        print(f"{hws[held].id:<22}" + "".join(f"{scores[m]:>15.2f}" for m in FLOOR_MODES)
              + f"{best:>9}{np.median(err):>10.2f}{np.percentile(err, 90):>8.2f}", flush=True)
    print("\nouter table of every candidate (median / p90 %; reference only) and each fold's floor_s (us)")
    for held in DEVICES:
        cells = []
        for m in FLOOR_MODES:
            err = abs_err_pct(outer[(held, m)], tables[held], hws[held], m)
            floor_us = outer[(held, m)][-1] * 1e6
            cells.append(f"{m} {np.median(err):5.2f} / {np.percentile(err, 90):5.1f} ({floor_us:.2f})")
        print(f"{hws[held].id:<22}" + "   ".join(cells))
    print("\nevery kernel's rows per kernel_source, held out, median % per candidate")
    for held in DEVICES:
        d = every[held]
        errs = {m: abs_err_pct(outer[(held, m)], d, hws[held], m) for m in FLOOR_MODES}
        for src in sorted(set(d.source)):
            sel = d.source == src
            small = sel & (d.tokens <= 4)
            print(f"{hws[held].id:<22}{src[:72]:<74}{int(sel.sum()):>6}"
                  + "".join(f"{m:>9} {np.median(errs[m][sel]):5.1f}" for m in FLOOR_MODES)
                  + "   1-4 tokens " + " ".join(f"{np.median(errs[m][small]):5.1f}" if small.any() else "  -"
                                               for m in FLOOR_MODES))
    print(f"({time.perf_counter() - t0:.0f} s; inner scores: mean over the training devices of the median |error| "
          "of a fit on the other two)")


if __name__ == "__main__":
    main()
