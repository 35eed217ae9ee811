"""Fit the MLA family leave-one-device-out on the shared MLA module tables, print the errors, optionally store it.

    python benchmarks/mla_fit.py [--data ../shared/data/measured/aiconfigurator/data] [--write]

For each device with aiconfigurator's mla_context/mla_generation_module_perf tables (H100, B300, RTX PRO 6000), the
MlaFit (lvlmsim.calibrate.mla) is fitted on the OTHER devices and its median / p90 |error| reported on every row of the
held-out one, per phase. A last fit on every device is what `auto` prices MLA cores with on any GPU. --write stores
the folds, that fit, the held-out medians per core kind and the held-out p10/p90 of measured/predicted (the band
`simulate --uncertainty` draws from) in calibration/profiles/general/mla.json.
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

from lvlmsim.calibrate.mla import DEVICE_DIRS, device_rows, fit_mla, load_mla_modules, predict  # noqa: E402
from lvlmsim.calibrate.mla_family import FIT_FORMAT, fit_path  # noqa: E402
from lvlmsim.calibrate.profiles import load_profile_for  # noqa: E402
from lvlmsim.ops.op import ATTN_MLA_DECODE, ATTN_MLA_PREFILL  # noqa: E402
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402


def _params(fit) -> dict:
    return {"overhead_decode_s": fit.overhead_decode_s, "overhead_prefill_s": fit.overhead_prefill_s,
            "e_decode": fit.e_decode, "e_prefill": fit.e_prefill}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    devices = {}
    for folder, hw_id in DEVICE_DIRS.items():
        rows = load_mla_modules(Path(args.data) / folder).rows
        if rows:
            hw = load_hardware(hw_id)
            devices[hw_id] = device_rows(rows, hw, load_profile_for(hw, "auto"))
    folds, ratios = [], {True: [], False: []}
    for held, mine in devices.items():
        fit = fit_mla({k: v for k, v in devices.items() if k != held})
        ratio = mine.measured_s / predict(mine, fit.overhead_decode_s, fit.overhead_prefill_s, fit.e_decode,
                                          fit.e_prefill)
        err = np.abs(1.0 / ratio - 1.0) * 100.0
        for dec in (True, False):
            ratios[dec].append(ratio[mine.decode == dec])
        fold = {"held_out": held, "fit_on": list(fit.fitted_on), "params": _params(fit),
                "held_out_median_abs_pct_err": round(float(np.median(err)), 2),
                "held_out_p90_abs_pct_err": round(float(np.percentile(err, 90)), 2),
                "context_median_abs_pct_err": round(float(np.median(err[~mine.decode])), 2),
                "generation_median_abs_pct_err": round(float(np.median(err[mine.decode])), 2), "n": int(len(err))}
        folds.append(fold)
        print(f"{held:22s} fit on {', '.join(fit.fitted_on):32s} median {fold['held_out_median_abs_pct_err']:5.1f}% "
              f"(context {fold['context_median_abs_pct_err']:.1f}, "
              f"generation {fold['generation_median_abs_pct_err']:.1f})"
              f"  p90 {fold['held_out_p90_abs_pct_err']:.1f}%")
    everything = fit_mla(devices)
    kinds = {True: ATTN_MLA_DECODE, False: ATTN_MLA_PREFILL}
    pooled = {kinds[d]: np.concatenate(r) for d, r in ratios.items()}
    doc = {
        "format": FIT_FORMAT,
        "method": "benchmarks/mla_fit.py: lvlmsim.calibrate.mla.fit_mla (grid search, median |error| of whole MLA "
                  "modules) leave-one-device-out; 'all' is fitted on every device and prices MLA cores under auto",
        "data": "aiconfigurator mla_context_module_perf / mla_generation_module_perf (ai-dynamo/aiconfigurator @ "
                "095f58a5, vLLM 0.24, DeepSeek-V3 MLA)",
        "folds": folds,
        "all": {"fit_on": list(everything.fitted_on), "params": _params(everything)},
        "expected_error_pct": {k: round(float(np.median(np.abs(1.0 / v - 1.0)) * 100.0), 2) for k, v in pooled.items()},
        "band": {k: [round(float(np.percentile(v, 10)), 4), round(float(np.percentile(v, 90)), 4)]
                 for k, v in pooled.items()},
    }
    print("all devices:", doc["all"]["params"], "| held-out median by core:", doc["expected_error_pct"],
          "| band:", doc["band"], f"| {time.perf_counter() - t0:.0f} s")
    if args.write:
        path = fit_path(profiles_dir())
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
