"""Replay the published benchmark runs of workloads/validation/bench-runs.yaml through `lvlmsim bench` and print the
error of every published figure, then the median |error| per metric over all rows and within each published sweep
(no row was fitted on), and the median over the sweeps of those per-sweep medians. Each summary is printed twice:
with all rows, and without the rows the table flags as physically inconsistent with their stated conditions (a
published TTFT below what the stated prompt needs at the GPU's peak; `inconsistent` in the table).

    python benchmarks/bench_validation.py [--json] [--only PREFIX]

--only keeps the rows whose id starts with PREFIX (a sweep, or `cookbook` for the wave-10 held-out rows) and
summarises them alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvlmsim.bench.validation import (  # noqa: E402
    HEADLINE,
    consistent,
    median_of_sweeps,
    run_validation,
    summarize,
    summarize_by_source,
)

SETS = (("all rows", "all"), ("without the rows flagged physically inconsistent", "consistent"))


def summaries(results) -> dict[str, dict]:
    """The three summaries (per metric, per sweep, over sweeps) of all rows and of the unflagged rows."""
    out = {}
    for _label, key in SETS:
        rows = results if key == "all" else consistent(results)
        by_source = summarize_by_source(rows)
        out[key] = {"summary": summarize(rows), "by_source": by_source, "median_of_sweeps": median_of_sweeps(by_source)}
    return out


def print_rows(results) -> None:
    for r in results:
        c = r.conditions
        print(f"{r.id}  [{c['model']} on {c['tp']}x {c['hardware']}, {c['runtime']} server, {c['client']} client]")
        if r.refused:
            print(f"    refused: {r.refused}")
        if r.ttft_floor_ms is not None:
            share = r.ttft_floor_ms / r.measured["mean_ttft_ms"]
            flag = ": FLAGGED physically inconsistent (see the table)" if r.inconsistent else ""
            print(f"    TTFT floor at the GPU's peak {r.ttft_floor_ms:.1f} ms, {share:.2f}x the published mean{flag}")
        if r.reuse_floor_ms is not None and r.reuse_floor_ms < r.ttft_floor_ms:
            share = r.reuse_floor_ms / r.measured["mean_ttft_ms"]
            print(f"    ... of the tokens left after the session's prefix reuse {r.reuse_floor_ms:.1f} ms, "
                  f"{share:.2f}x")
        for k, v in r.measured.items():
            if k in r.predicted:
                print(f"    {k:<28} published {v:>12.2f}  lvlmsim {r.predicted[k]:>12.2f}  {r.error_pct[k]:+7.1f}%")


def print_summaries(label: str, s: dict) -> None:
    print(f"\n=== {label} ===")
    print("median |error| per metric (rows):")
    for m, v in s["summary"].items():
        flag = "  <- issue target" if m in HEADLINE else ""
        print(f"    {m:<28} {v['median_abs_error_pct']:6.1f}%  ({v['rows']}){flag}")
    print("median |error| of the issue's metrics within each published sweep (rows):")
    for src, summ in s["by_source"].items():
        cells = [f"{m} {summ[m]['median_abs_error_pct']:5.1f}% ({summ[m]['rows']})" for m in HEADLINE if m in summ]
        print(f"    {src:<14} " + "   ".join(cells))
    print("median over the sweeps of the per-sweep medians (sweeps), each sweep weighing the same:")
    for m in HEADLINE:
        if m in s["median_of_sweeps"]:
            v = s["median_of_sweeps"][m]
            print(f"    {m:<28} {v['median_abs_error_pct']:6.1f}%  ({v['sweeps']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", metavar="PREFIX", default="", help="rows whose id starts with PREFIX")
    opts = ap.parse_args()
    results, _ = run_validation()
    results = [r for r in results if r.id.startswith(opts.only)]
    if not results:
        ap.error(f"--only: no row id starts with '{opts.only}'")
    sums = summaries(results)
    if opts.json:
        doc = {"rows": [asdict(r) for r in results], **sums["all"], "without_inconsistent": sums["consistent"]}
        print(json.dumps(doc, indent=2))
        return
    print_rows(results)
    flagged = [r.id for r in results if r.inconsistent]
    print(f"\nflagged physically inconsistent ({len(flagged)}): {', '.join(flagged) or 'none'}")
    for label, key in SETS:
        print_summaries(label, sums[key])


if __name__ == "__main__":
    main()
