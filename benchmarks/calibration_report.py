"""Calibration accuracy report (issue 5): held-out error of the fitted profiles against measured kernel times.

    python benchmarks/calibration_report.py                 # H100 fit/holdout, A100 transfer, CPU profile summary
    python benchmarks/calibration_report.py --write-profile # also (re)writes calibration/profiles/h100-sxm.json
    python benchmarks/calibration_report.py --cpu-quick     # also times `calibrate --device cpu --quick`

Targets: fitted on a random half of the H100 rows and checked on the other half, median |error| <= 8% GEMM,
<= 10% decode attention, <= 12% prefill and encoder attention; the H100 profile transferred to the A100 data by
datasheet numbers only, <= 15% median. Every figure is printed next to the uncalibrated roofline default.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times  # noqa: E402
from lvlmsim.calibrate.measured import load_vidur_dir  # noqa: E402
from lvlmsim.calibrate.shipped import build_gpu_profile, gpu_rows, measured_dir  # noqa: E402
from lvlmsim.calibrate.validate import compare  # noqa: E402
from lvlmsim.cost.profile import DEFAULT_PROFILE  # noqa: E402
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402

TARGETS = {"gemm": 8.0, "generation_attention": 10.0, "context_attention": 12.0, "encoder_attention": 12.0}
TRANSFER_TARGET = 15.0


def _line(name: str, e: dict, target: float | None = None) -> str:
    mark = ""
    if target is not None and e["median_abs_pct_err"] is not None:
        mark = f"  target <= {target:g}%: {'met' if e['median_abs_pct_err'] <= target else 'NOT met'}"
    return (f"  {name:<24} n={e['n']:>6}  median {e['median_abs_pct_err']:>6.1f}%  p90 {e['p90_abs_pct_err']:>6.1f}%"
            f"   | roofline default median {e['roofline_median_abs_pct_err']:>6.1f}%  p90 "
            f"{e['roofline_p90_abs_pct_err']:>6.1f}%{mark}")


def _write_bands(measured: Path) -> int:
    """The held-out half's p10/p90 of measured / predicted per family, written into the shipped H100 profile."""
    from lvlmsim.calibrate.profiles import load_profile_file
    from lvlmsim.calibrate.shipped import attach_holdout_bands

    h100, path = load_hardware("h100-sxm"), profiles_dir() / "h100-sxm.json"
    prof = load_profile_file(path)
    rows = [r for r in gpu_rows(measured, h100.id).rows if not r.family.endswith("_sliding")]
    left = attach_holdout_bands(prof, rows, h100)
    for key, fam in prof.families.items():
        print(f"  {key:<22}" + (f"{fam.band_p10_ratio:.3f}-{fam.band_p90_ratio:.3f}" if key not in left
                                else "left as it was (held-out split not reproduced)"))
    prof.save(path)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-profile", action="store_true", help="write calibration/profiles/h100-sxm.json")
    ap.add_argument("--cpu-quick", action="store_true", help="time `calibrate --device cpu --quick` here")
    ap.add_argument("--write-bands", action="store_true",
                    help="only give the shipped h100-sxm.json each family's held-out p10/p90 band (parameters kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-fit-rows", type=int, default=20000, help="subsample of the fit half per family")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {}
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: GPU figures skipped")
    elif args.write_bands:
        return _write_bands(measured)
    else:
        h100 = load_hardware("h100-sxm")
        t0 = time.perf_counter()
        prof, res, mask = build_gpu_profile(measured, h100, seed=args.seed, max_fit_rows=args.max_fit_rows)
        fit_s = time.perf_counter() - t0
        if args.write_profile:
            path = prof.save(profiles_dir() / "h100-sxm.json")
            print(f"wrote {path}")
        held = [r for r, h in zip(res.rows, mask, strict=True) if h]
        rep = compare(held, h100, prof)
        out["h100_holdout"] = rep
        print(f"H100: fitted on a random half (seed {args.seed}) of {len(res.rows)} rows in {fit_s:.0f} s; "
              f"held-out half:")
        for fam, e in rep.items():
            print(_line(fam, e, TARGETS.get(fam)))
            for lab, r in e["regimes"].items():
                print(_line("  " + lab, r))
        vid = [r for r in load_vidur_dir(measured / "vidur" / "data" / "profiling", "h100").rows if r.family == "gemm"]
        if vid:
            meas = np.array([r.measured_s for r in vid])
            e = abs_pct_errors(cost_model_times(vid, h100, prof), meas)
            b = abs_pct_errors(cost_model_times(vid, h100, DEFAULT_PROFILE), meas)
            out["h100_vidur_gemm"] = {"n": len(vid), "median_abs_pct_err": round(float(np.median(e)), 2),
                                      "roofline_median_abs_pct_err": round(float(np.median(b)), 2)}
            print(f"  cross-check, Vidur H100 fp16 GEMMs (kernel time only, not fitted): n={len(vid)} median "
                  f"{np.median(e):.1f}% | roofline default {np.median(b):.1f}%")
        a100 = load_hardware("a100-sxm-80gb")
        ares = gpu_rows(measured, "a100-sxm-80gb", with_vidur=False)
        trep = compare(ares.rows, a100, prof)
        out["a100_transfer"] = trep
        all_err = abs_pct_errors(cost_model_times(ares.rows, a100, prof), np.array([r.measured_s for r in ares.rows]))
        out["a100_transfer_all_median_abs_pct_err"] = round(float(np.median(all_err)), 2)
        print(f"A100: the H100 profile applied through the A100 datasheet only (no A100 fit), {len(ares.rows)} rows:")
        for fam, e in trep.items():
            print(_line(fam, e, TRANSFER_TARGET))
        print(f"  all A100 rows together: median {np.median(all_err):.1f}%")
    cpu_json = profiles_dir() / "cpu-generic.json"
    if cpu_json.exists():
        cpu = json.loads(cpu_json.read_text())
        out["cpu_generic"] = {k: {"median": f["holdout_median_abs_pct_err"], "p90": f["holdout_p90_abs_pct_err"],
                                  "roofline": f["roofline_default_holdout_median_abs_pct_err"], "n": f["n_holdout"]}
                              for k, f in cpu["families"].items()}
        env = cpu.get("environment", {})
        print(f"CPU profile {cpu_json.name}: {env.get('device_name')}, {env.get('threads')} threads, "
              f"torch {env.get('torch_version')}, full suite {cpu.get('timing_s', {}).get('total')} s; held-out:")
        for k, f in cpu["families"].items():
            print(f"  {k:<24} n={f['n_holdout']:>4}  median {f['holdout_median_abs_pct_err']:>6.1f}%  p90 "
                  f"{f['holdout_p90_abs_pct_err']:>6.1f}%   | roofline default median "
                  f"{f['roofline_default_holdout_median_abs_pct_err']:>6.1f}%")
    if args.cpu_quick:
        from lvlmsim.calibrate.run import calibrate

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            prof = calibrate("cpu", Path(tmp) / "quick.json", quick=True, threads=1)
            dt = time.perf_counter() - t0
        out["cpu_quick_seconds"] = round(dt, 1)
        print(f"calibrate --device cpu --quick: {dt:.1f} s (1 thread); held-out median: " + ", ".join(
            f"{k} {f.holdout_median_abs_pct_err}%" for k, f in prof.families.items()))
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
