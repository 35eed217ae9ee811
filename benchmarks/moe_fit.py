"""Fit the device-general MoE layer model leave-one-device-out on the shared moe_perf tables, print the errors.

    python benchmarks/moe_fit.py [--data ../shared/data/measured/aiconfigurator/data] [--write]
                                 [--device a100_sxm=a100-sxm-80gb ...] [--fit-rows 3000] [--by-kernel] [--cache off|l2]

For each measured device, the model is fitted on the OTHER devices (at most --fit-rows rows each, seeded sample) and
its median / p90 |error| is reported on every row of the held-out device, next to the flat roofline default
(lvlmsim.calibrate.moe.leave_one_device_out: the same folds `lvlmsim validate --leave-one-out` prints). A last fit
on every device is what `auto` prices MoE layers with on every GPU (lvlmsim.calibrate.moe_family); "band" is the
(p10, p90) of measured / predicted on an unseen device from the held-out folds (lvlmsim.calibrate.bands: device
offset plus row scatter, as the general model's families). --write stores all folds in
calibration/profiles/general/moe.json (read by `lvlmsim validate`, which reports each device with the fold that held
it out). --by-kernel also scores each held-out device on EVERY kernel's rows (not only the fastest per
configuration), per kernel_source, with the fold that held it out. A device whose hardware id (or YAML path) is not
available is skipped with a note.
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

from lvlmsim.calibrate.bands import nested_coverage, transfer_bands  # noqa: E402
from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import (  # noqa: E402
    CACHE,
    CACHE_MODES,
    CACHE_PARAM_NAMES,
    FIT_FORMAT,
    FIT_ROWS,
    FLOOR,
    PARAM_NAMES,
    TACTIC,
    TILE_M,
    fit_file,
    fit_moe,
    leave_one_device_out,
    load_moe_table,
    predict,
    sample,
)
from lvlmsim.errors import LvlmsimError  # noqa: E402
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo


def moe_band(folds: list[dict]) -> list[float] | None:
    """(p10, p90) of measured / predicted layer time on a device the fit never saw: lvlmsim.calibrate.bands'
    transfer band (each held-out device's offset plus its rows' scatter around it) over the folds' residuals."""
    band = transfer_bands({f["held_out"]: {"moe": (-np.log(f["ratios"])).tolist()} for f in folds}).get("moe")
    return list(band) if band else None


def by_kernel_source(folds: list[dict], loaded: dict, data_root: Path, cache: str = CACHE) -> None:
    """Each held-out device on every kernel's rows, per kernel_source, with its fold's parameters."""
    print(f"\n{'held out':<22}{'kernel_source':<80}{'n':>7}{'median %':>10}{'p90 %':>8}")
    for fold in folds:
        _, hw = loaded[fold["folder"]]
        data = load_moe_table(data_root / fold["folder"], hw, every_kernel=True)
        err = np.abs(predict(fold["params"], data, hw, cache=cache) / data.measured_s - 1.0) * 100.0
        for src in sorted(set(data.source)):
            e = err[data.source == src]
            print(f"{fold['held_out']:<22}{src:<80}{len(e):>7}{np.median(e):>10.1f}{np.percentile(e, 90):>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--device", action="append", default=[], help="gpu_dir=hardware id or YAML path")
    ap.add_argument("--fit-rows", type=int, default=FIT_ROWS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--by-kernel", action="store_true", help="also score every kernel's rows per kernel_source")
    ap.add_argument("--cache", choices=CACHE_MODES, default=CACHE,
                    help=f"L2 residency term of the measured replays (moe.CACHE_MODES; shipped: {CACHE})")
    args = ap.parse_args()
    if args.write and args.cache != CACHE:
        ap.error(f"--write stores the shipped model (cache '{CACHE}'), not --cache {args.cache}")
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
              f"skipped {sum(data.skipped.values())}; not fitted (slower than bf16) {int(data.fit_excluded.sum())}")
    t0 = time.perf_counter()
    folds = leave_one_device_out(loaded, fit_rows=args.fit_rows, seed=args.seed, cache=args.cache)
    print(f"\n{'held out':<22}{'n':>7}{'median %':>10}{'p90 %':>8}{'roofline median %':>19}"
          f"{'median % (fitted kernels)':>27}  fitted on")
    for fold in folds:
        rep = fold["report"]
        data, _ = loaded[fold["folder"]]
        kept = np.abs(fold["ratios"][~data.fit_excluded] ** -1 - 1) * 100
        print(f"{fold['held_out']:<22}{rep['n']:>7}{rep['median_abs_pct_err']:>10}{rep['p90_abs_pct_err']:>8}"
              f"{rep['roofline_median_abs_pct_err']:>19}{float(np.median(kept)):>27.2f}  {', '.join(fold['fit_on'])}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.by_kernel:
        by_kernel_source(folds, loaded, Path(args.data), args.cache)
    every = fit_moe([(sample(d, args.fit_rows, args.seed), h) for d, h in loaded.values()], cache=args.cache)
    names = (*PARAM_NAMES, *CACHE_PARAM_NAMES) if args.cache == "l2" else PARAM_NAMES
    doc = {"format": FIT_FORMAT, "method": "benchmarks/moe_fit.py: leave-one-device-out Nelder-Mead on the mean over "
           "devices of each device's mean |log(pred/measured)|, fastest kernel per configuration, --fit-rows sample "
           "per fitting device, routing load from the tables' own generators, M tile "
           f"{TILE_M}; fixed cost floor_s per kernel launch times each row's launches (floor '{FLOOR}'); rows of an "
           f"untuned library's first tactic on its tile's share of the ceiling (tactic '{TACTIC}'); quantized "
           "kernels slower than their device's bf16 kernel reported, not fitted",
           "tactic": TACTIC,
           "floor": FLOOR,
           "data": "aiconfigurator moe_perf tables (ai-dynamo/aiconfigurator @ 095f58a5, vLLM 0.14/0.24)",
           "band": moe_band(folds),
           "fit_rows": args.fit_rows, "seed": args.seed,
           "folds": [{"held_out": f["held_out"], "fit_on": f["fit_on"],
                      "params": dict(zip(names, f["params"], strict=True)),
                      "held_out_median_abs_pct_err": f["report"]["median_abs_pct_err"],
                      "held_out_p90_abs_pct_err": f["report"]["p90_abs_pct_err"],
                      "roofline_median_abs_pct_err": f["report"]["roofline_median_abs_pct_err"]} for f in folds],
           "all": {"fit_on": [h.id for _, h in loaded.values()],
                   "params": dict(zip(names, every, strict=True))}}
    print("all devices:", {k: round(v, 6) for k, v in doc["all"]["params"].items()}, "band", doc["band"])
    cov = nested_coverage({f["held_out"]: {"moe": (-np.log(f["ratios"])).tolist()} for f in folds})
    print("band coverage of each held-out device's rows, band derived without it (target ~0.80):",
          {d: c["moe"]["coverage"] for d, c in cov.items()})
    if args.write:
        path = fit_file(profiles_dir())
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
