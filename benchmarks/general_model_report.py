"""Device-general efficiency model (issue 11): leave-one-device-out table, and (re)writing the shipped model.

    python benchmarks/general_model_report.py            # fit, leave-one-out table next to the flat derate
    python benchmarks/general_model_report.py --write    # also writes calibration/profiles/general/gpu.json
    python benchmarks/general_model_report.py --strict   # also the strictly nested band coverage (12 more fits)
    python benchmarks/general_model_report.py --update-coverage-table   # calibration/README.md's, from gpu.json

Targets (median |error| per held-out device and family): GEMM <= 8%, decode attention <= 12%, prefill and encoder
attention <= 15%, NCCL <= 15%; p90 <= 35%; never worse than the flat derate. Band coverage (target ~0.8): for each
held-out device, the share of its held-out rows inside the p10-p90 band derived without its residuals (nested: the
bands of lvlmsim.calibrate.bands from the other folds' residuals only; the band a device nobody measured gets).
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lvlmsim.calibrate.profiles import general_model_path  # noqa: E402
from lvlmsim.calibrate.shipped import build_general_model, measured_dir  # noqa: E402

TARGETS = {"gemm": 8.0, "generation_attention": 12.0, "context_attention": 15.0, "encoder_attention": 15.0,
           "nccl": 15.0, "moe": 15.0}


def print_coverage(cov: dict) -> None:
    """Device x family table of coverage shares (n rows), and the mean over cells."""
    fams = sorted({k for per_key in cov.values() for k in per_key})
    short = {k: k.replace("elementwise/", "ew/") for k in fams}
    w = max([len(s) for s in short.values()] + [4]) + 2
    print(f"  {'device':<21}" + "".join(f"{short[k]:>{w}}" for k in fams))
    for dev, per_key in cov.items():
        print(f"  {dev:<21}" + "".join(f"{per_key[k]['coverage']:>{w}.2f}" if k in per_key else f"{'-':>{w}}"
                                       for k in fams))
    if any(cov.values()):
        print(f"  {coverage_summary(cov)}")


def coverage_summary(cov: dict) -> str:
    """Mean (median) over the device x family cells, and over the cells of families held out on three or more devices
    (a family measured on two devices leaves one in each fold, whose band cannot know the family's between-device
    spread, only the spread pooled over the other families); then the same pooled over rows (every held-out row
    once, as a user pricing kernels meets them: families with large tables weigh more)."""
    from lvlmsim.calibrate.bands import pooled_coverage

    devices_of: dict[str, int] = {}
    for per_key in cov.values():
        for k in per_key:
            devices_of[k] = devices_of.get(k, 0) + 1
    wide_keys = {k for k, n in devices_of.items() if n >= 3}
    allv = sorted(c["coverage"] for per_key in cov.values() for c in per_key.values())
    wide = sorted(c["coverage"] for per_key in cov.values() for k, c in per_key.items() if k in wide_keys)
    n_rows = sum(c["n"] for per_key in cov.values() for c in per_key.values())
    out = (f"Mean over the {len(allv)} device x family cells {sum(allv) / len(allv):.2f} (median "
           f"{allv[len(allv) // 2]:.2f}); {sum(0.65 <= v <= 0.95 for v in allv)} of {len(allv)} within 0.65-0.95; "
           f"pooled over all {n_rows} held-out rows {pooled_coverage(cov):.2f}.")
    if wide and len(wide) < len(allv):
        out += (f" Over the {len(wide)} cells of families measured on three or more devices {sum(wide) / len(wide):.2f}"
                f" (median {wide[len(wide) // 2]:.2f}; rows pooled {pooled_coverage(cov, wide_keys):.2f}); the "
                f"others' bands rest on one other device.")
    return out


COVERAGE_COLUMNS = ("gemm", "gemm.fp8", "gemm.fp4", "attn_prefill", "attn_decode", "attn_encoder", "allreduce",
                    "allreduce/custom")
DEVICE_LABELS = {"a100_sxm": "A100", "h100_sxm": "H100", "b300_sxm": "B300", "rtx_pro_6000_server": "RTX PRO 6000"}


def coverage_table(cov: dict) -> list[str]:
    """calibration/README.md's band coverage table (markdown lines) from a band_coverage_unseen mapping."""
    lines = ["| held-out device | " + " | ".join(COVERAGE_COLUMNS) + " | elementwise (5 roles) |",
             "|---" * (len(COVERAGE_COLUMNS) + 2) + "|"]
    for dev, per_key in cov.items():
        cells = [f"{per_key[k]['coverage']:.2f}" if k in per_key else "-" for k in COVERAGE_COLUMNS]
        ew = [c["coverage"] for k, c in per_key.items() if k.startswith("elementwise")]
        cells.append(f"{min(ew):.2f}-{max(ew):.2f}" if ew else "-")
        lines.append(f"| {DEVICE_LABELS.get(dev, dev)} | " + " | ".join(cells) + " |")
    return lines


def update_coverage_table() -> int:
    """Rewrite the coverage table of calibration/README.md from the shipped gpu.json (no fit)."""
    from loo_tables import replace_table

    cov = json.loads((ROOT / "calibration" / "profiles" / "general" / "gpu.json").read_text())["band_coverage_unseen"]
    lines = coverage_table(cov)
    path = ROOT / "calibration" / "README.md"
    text = re.sub(r"^Mean over the \d+ device x family cells .*$", coverage_summary(cov),
                  replace_table(path.read_text(), lines), count=1, flags=re.M)
    path.write_text(text)
    print("\n".join(lines))
    print_coverage(cov)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write calibration/profiles/general/gpu.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--strict", action="store_true",
                    help="also the strictly nested coverage: each device's band from an inner leave-one-out over the "
                         "other devices only (twelve more fits, a few minutes)")
    ap.add_argument("--update-coverage-table", action="store_true",
                    help="only rewrite calibration/README.md's coverage table from the shipped gpu.json")
    args = ap.parse_args(argv)
    if args.update_coverage_table:
        return update_coverage_table()
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to fit")
        return 1
    t0 = time.perf_counter()
    model, report = build_general_model(measured, seed=args.seed, log=None if args.json else print,
                                        strict_coverage=args.strict)
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
        print("\nfamily bands, p10-p90 of measured/predicted (lvlmsim.calibrate.bands): transfer band (a device the "
              "model was not fitted on), then each fitted device's in-sample band")
        for k, f in model.families.items():
            b = f.band
            own = "  ".join(f"{d} {m['p10_ratio']:.2f}-{m['p90_ratio']:.2f}" for d, m in b.get("measured", {}).items()
                            if "p10_ratio" in m)
            tr = f"{b['p10_ratio']:.2f}-{b['p90_ratio']:.2f}" if "p10_ratio" in b else "n/a"
            print(f"  {k:<20}{f.expected_error_pct!s:>7}%  transfer {tr:<10} ({len(b.get('regimes', {}))} regimes)"
                  f"  {own}")
        cov = model.meta.get("band_coverage_unseen", {})
        print("\nband coverage on held-out rows (target ~0.80): each device's leave-one-out rows against the band "
              "derived WITHOUT its residuals (bands from the other folds only), per family and regime")
        print_coverage(cov)
        if "band_coverage_strict" in model.meta:
            print("\nstrictly nested: each device's band from an inner leave-one-out over the other devices only "
                  "(no model behind it saw the device; families on < 2 other devices have no band)")
            print_coverage(model.meta["band_coverage_strict"])
        print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if args.write:
        path = model.save(ROOT / "calibration" / "profiles" / "general" / "gpu.json")
        print(f"wrote {path} (registry path {general_model_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
