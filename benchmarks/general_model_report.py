"""Device-general efficiency model (issue 11): leave-one-device-out table, and (re)writing the shipped model.

    python benchmarks/general_model_report.py            # fit, leave-one-out table next to the flat derate
    python benchmarks/general_model_report.py --write    # also writes calibration/profiles/general/gpu.json

Targets (median |error| per held-out device and family): GEMM <= 8%, decode attention <= 12%, prefill and encoder
attention <= 15%, NCCL <= 15%; p90 <= 35%; never worse than the flat derate. Band coverage: for each held-out
device, the share of its rows inside the p10-p90 band computed from the other devices' held-out residuals (the band
an unseen device gets).
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate.profiles import general_model_path  # noqa: E402
from lvlmsim.calibrate.shipped import build_general_model, measured_dir  # noqa: E402

TARGETS = {"gemm": 8.0, "generation_attention": 12.0, "context_attention": 15.0, "encoder_attention": 15.0,
           "nccl": 15.0, "moe": 15.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write calibration/profiles/general/gpu.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to fit")
        return 1
    t0 = time.perf_counter()
    model, report = build_general_model(measured, seed=args.seed, log=None if args.json else print)
    if args.json:
        print(json.dumps({"leave_one_out": report, "families": {k: f.to_dict() for k, f in model.families.items()}},
                         indent=1))
    else:
        print(f"{'held-out device':<22}{'family':<22}{'n':>6}{'median %':>10}{'p90 %':>8}{'flat %':>8}  verdict")
        for dev, fams in report.items():
            for fam, s in fams.items():
                tgt = TARGETS.get(fam)
                ok = (tgt is None or s["median_abs_pct_err"] <= tgt) and s["p90_abs_pct_err"] <= 35.0
                better = s["median_abs_pct_err"] <= s["roofline_median_abs_pct_err"]
                print(f"{dev:<22}{fam:<22}{s['n']:>6}{s['median_abs_pct_err']:>10.1f}{s['p90_abs_pct_err']:>8.1f}"
                      f"{s['roofline_median_abs_pct_err']:>8.1f}  {'target met' if ok else 'target NOT met'}"
                      f"{'' if better else ', WORSE than flat'}")
        print("\nfamily bands (pooled held-out rows): key, median %, p90 %, p10/p90 of measured/predicted")
        for k, f in model.families.items():
            print(f"  {k:<22}{f.expected_error_pct!s:>8}{f.expected_p90_pct!s:>8}  {f.band}")
        cov = model.meta.get("band_coverage_unseen", {})
        print("\nband coverage on each held-out device, band from the other devices' held-out rows (target ~0.8):")
        for dev, per_key in cov.items():
            print(f"  {dev:<22}" + "  ".join(f"{k} {v:.2f}" for k, v in per_key.items()))
        allv = [v for per_key in cov.values() for v in per_key.values()]
        if allv:
            print(f"  mean over device x family: {sum(allv) / len(allv):.2f}")
        print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if args.write:
        path = model.save(ROOT / "calibration" / "profiles" / "general" / "gpu.json")
        print(f"wrote {path} (registry path {general_model_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
