"""Fit the device-general MoE layer model leave-one-device-out on the shared moe_perf tables, print the errors.

    python benchmarks/moe_fit.py [--data ../shared/data/measured/aiconfigurator/data] [--write]
                                 [--device a100_sxm=a100-sxm-80gb ...] [--fit-rows 6000]
                                 [--per-family floor_s]

For each measured device, the model is fitted on the OTHER devices (at most --fit-rows rows each, seeded sample) and
its median / p90 |error| is reported on every row of the held-out device, next to the flat roofline default. A last
fit on every device is what `auto` prices MoE layers with on every GPU (lvlmsim.calibrate.moe_family); "band" is the
(p10, p90) of measured / predicted pooled over the held-out devices. --write stores all folds in
calibration/profiles/general/moe.json (read by `lvlmsim validate`, which reports each device with the fold
that held it out). A device whose hardware id (or YAML path) is not available is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate.moe import (  # noqa: E402
    FIT_FORMAT,
    GROUPS,
    PARAM_NAMES,
    PER_FAMILY,
    MoEData,
    compare_moe,
    fit_file,
    fit_moe,
    load_moe_table,
    predict,
)
from lvlmsim.errors import LvlmsimError  # noqa: E402
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402

DEVICES = {"a100_sxm": "a100-sxm-80gb", "h100_sxm": "h100-sxm", "b300_sxm": "b300",
           "rtx_pro_6000_server": "rtx-pro-6000-server"}


def sample(d: MoEData, n: int, seed: int) -> MoEData:
    if len(d) <= n:
        return d
    return d.take(np.sort(np.random.default_rng(seed).choice(len(d), n, replace=False)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--device", action="append", default=[], help="gpu_dir=hardware id or YAML path")
    ap.add_argument("--fit-rows", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-family", default=",".join(PER_FAMILY),
                    help="parameter groups fitted per kernel family, comma-separated among ec, em, floor_s "
                         f"(default '{','.join(PER_FAMILY)}': all shared)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    per_family = tuple(g for g in args.per_family.split(",") if g)
    if set(per_family) - set(GROUPS):
        ap.error(f"--per-family: unknown group(s) {', '.join(sorted(set(per_family) - set(GROUPS)))}; "
                 f"allowed: {', '.join(GROUPS)}")
    devices = dict(DEVICES)
    devices.update(dict(d.split("=", 1) for d in args.device))
    loaded = {}
    for gpu, ref in devices.items():
        try:
            hw = load_hardware(ref)
        except LvlmsimError as exc:
            print(f"skip {gpu}: {exc}")
            continue
        t0 = time.perf_counter()
        data = load_moe_table(Path(args.data) / gpu, hw)
        loaded[gpu] = (data, hw)
        print(f"{gpu} ({hw.id}): {len(data)} configurations in {time.perf_counter() - t0:.1f} s; "
              f"skipped {sum(data.skipped.values())}")
    folds, ratios = [], []
    print(f"\n{'held out':<22}{'n':>7}{'median %':>10}{'p90 %':>8}{'roofline median %':>19}  fitted on")
    for gpu, (data, hw) in loaded.items():
        others = [(sample(d, args.fit_rows, args.seed), h) for g, (d, h) in loaded.items() if g != gpu]
        params = fit_moe(others, per_family)
        fit_on = [h.id for g, (_, h) in loaded.items() if g != gpu]
        rep = compare_moe(data, hw, params, "fold")
        ratios.append(data.measured_s / predict(params, data, hw))
        print(f"{hw.id:<22}{rep['n']:>7}{rep['median_abs_pct_err']:>10}{rep['p90_abs_pct_err']:>8}"
              f"{rep['roofline_median_abs_pct_err']:>19}  {', '.join(fit_on)}")
        folds.append({"held_out": hw.id, "fit_on": fit_on, "params": dict(zip(PARAM_NAMES, params, strict=True)),
                      "held_out_median_abs_pct_err": rep["median_abs_pct_err"],
                      "held_out_p90_abs_pct_err": rep["p90_abs_pct_err"],
                      "roofline_median_abs_pct_err": rep["roofline_median_abs_pct_err"]})
    every = fit_moe([(sample(d, args.fit_rows, args.seed), h) for d, h in loaded.values()], per_family)
    doc = {"format": FIT_FORMAT, "method": "benchmarks/moe_fit.py: leave-one-device-out Nelder-Mead on the mean over "
           "devices of each device's mean |log(pred/measured)|, fastest kernel per configuration, --fit-rows sample "
           "per fitting device",
           "data": "aiconfigurator moe_perf tables (ai-dynamo/aiconfigurator @ 095f58a5, vLLM 0.14/0.24)",
           "band": [round(float(q), 4) for q in np.quantile(np.concatenate(ratios), (0.1, 0.9))]
           if ratios else None,
           "fit_rows": args.fit_rows, "per_family": list(per_family), "seed": args.seed, "folds": folds,
           "all": {"fit_on": [h.id for _, h in loaded.values()],
                   "params": dict(zip(PARAM_NAMES, every, strict=True))}}
    if args.write:
        path = fit_file(profiles_dir())
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
