"""Replay the published benchmark runs of workloads/validation/bench-runs.yaml through `lvlmsim bench` and print the
error of every published figure, then the median |error| per metric over all rows and within each published sweep
(no row was fitted on), and the median over the sweeps of those per-sweep medians.

    python benchmarks/bench_validation.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvlmsim.bench.validation import HEADLINE, median_of_sweeps, run_validation, summarize_by_source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    results, summary = run_validation()
    by_source = summarize_by_source(results)
    over_sweeps = median_of_sweeps(by_source)
    if opts.json:
        print(json.dumps({"rows": [asdict(r) for r in results], "summary": summary, "by_source": by_source,
                          "median_of_sweeps": over_sweeps}, indent=2))
        return
    for r in results:
        c = r.conditions
        print(f"{r.id}  [{c['model']} on {c['tp']}x {c['hardware']}, {c['runtime']} server, {c['client']} client]")
        if r.refused:
            print(f"    refused: {r.refused}")
        for k, v in r.measured.items():
            if k in r.predicted:
                print(f"    {k:<28} published {v:>12.2f}  lvlmsim {r.predicted[k]:>12.2f}  {r.error_pct[k]:+7.1f}%")
    print("\nmedian |error| per metric (rows):")
    for m, s in summary.items():
        flag = "  <- issue target" if m in HEADLINE else ""
        print(f"    {m:<28} {s['median_abs_error_pct']:6.1f}%  ({s['rows']}){flag}")
    print("\nmedian |error| of the issue's metrics within each published sweep (rows):")
    for src, summ in by_source.items():
        cells = [f"{m} {summ[m]['median_abs_error_pct']:5.1f}% ({summ[m]['rows']})" for m in HEADLINE if m in summ]
        print(f"    {src:<14} " + "   ".join(cells))
    print("\nmedian over the sweeps of the per-sweep medians (sweeps), each sweep weighing the same:")
    for m in HEADLINE:
        if m in over_sweeps:
            print(f"    {m:<28} {over_sweeps[m]['median_abs_error_pct']:6.1f}%  ({over_sweeps[m]['sweeps']})")


if __name__ == "__main__":
    main()
