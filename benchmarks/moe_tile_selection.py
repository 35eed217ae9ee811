"""Choose the MoE model's M tile (lvlmsim.calibrate.moe.TILE_M) by a leave-one-device-out nested in each outer fold.

    python benchmarks/moe_tile_selection.py [--data ../shared/data/measured/aiconfigurator/data] [--fit-rows 3000]

For each held-out device, every candidate tile (TILE_CANDIDATES; 1 = no padding) is scored by an inner
leave-one-device-out over the three training devices only (fit on two, median |error| on the third, averaged); the
best-scoring tile is refitted on the three and reported on the held-out device. The held-out device never takes part
in choosing its own tile, so the outer figures are honest. Prints the inner scores, the choice per fold and the outer
table. The shipped TILE_M (128) is not every fold's choice: after round 2 the A100 fold picks 1 and the B300 fold
64 (docs/moe.md gives the strictly nested figures).
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
from lvlmsim.calibrate.moe import (  # noqa: E402
    TILE_CANDIDATES,
    compare_moe,
    fit_moe,
    load_moe_table,
    predict,
    sample,
)

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo


def median_err(params, data, hw) -> float:
    return float(np.median(np.abs(predict(params, data, hw) / data.measured_s - 1.0)) * 100.0)


def main() -> None:
    ap = moe_parser(__doc__)
    args = ap.parse_args()
    t0 = time.perf_counter()
    hws = device_hardware()
    tables = {(g, t): load_moe_table(Path(args.data) / g, hws[g], tile_m=t) for g in DEVICES for t in TILE_CANDIDATES}
    print(f"loaded {len(tables)} tables in {time.perf_counter() - t0:.0f} s")
    print(f"{'held out':<22}" + "".join(f"{'tile ' + str(t):>10}" for t in TILE_CANDIDATES)
          + f"{'chosen':>8}{'median %':>10}{'p90 %':>8}")
    for held in DEVICES:
        train = [g for g in DEVICES if g != held]
        scores = {}
        for t in TILE_CANDIDATES:
            inner = []
            for val in train:
                fit_on = [(sample(tables[(g, t)], args.fit_rows, args.seed), hws[g]) for g in train if g != val]
                inner.append(median_err(fit_moe(fit_on), tables[(val, t)], hws[val]))
            scores[t] = float(np.mean(inner))
        best = min(scores, key=scores.get)
        params = fit_moe([(sample(tables[(g, best)], args.fit_rows, args.seed), hws[g]) for g in train])
        rep = compare_moe(tables[(held, best)], hws[held], params, "nested")
        print(f"{hws[held].id:<22}" + "".join(f"{scores[t]:>10.2f}" for t in TILE_CANDIDATES)
              + f"{best:>8}{rep['median_abs_pct_err']:>10}{rep['p90_abs_pct_err']:>8}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s; inner scores: mean over the training devices of the median |error| "
          "of a fit on the other two)")


if __name__ == "__main__":
    main()
