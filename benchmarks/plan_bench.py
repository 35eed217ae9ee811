"""Planner speed: a plan over 200+ candidate configurations of the default scenario (LLaVA-1.5-7B chat).

Candidates: every device in the hardware database x TP 1, 2, 4, 8 x five layouts (colocated, E+PD 1:1 and 1:2,
EP+D 1:1, E+P+D 1:1:2) = 260 for 13 devices, at 20 req/s with p90 TTFT <= 1 s and p90 TPOT <= 50 ms, at most 16 GPUs.
Prints the wall time (target: under 5 minutes on 2 cores), how many candidates the analytic pre-screen removed and
why, and how many discrete-event runs the capacity search needed per searched candidate.

    python benchmarks/plan_bench.py                       # local process pool, 2 workers
    python benchmarks/plan_bench.py --executor ray        # the same on a local Ray
    python benchmarks/plan_bench.py --exact --json        # every capacity to the 5% tolerance; one JSON document
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYOUTS = "agg,E+PD:1:1,E+PD:1:2,EP+D:1:1,E+P+D:1:1:2"
TARGET_WALL_S = 300.0
KINDS = (
    ("TP larger than a node", r"exceeds the \d+ devices"),
    ("TP does not divide the heads", r"does not divide|neither divides"),
    ("does not fit in memory", r"does not fit"),
    ("latency lower bound above the SLO", r"even for a lone request"),
    ("one replica over --max-gpus", r"max_gpus"),
    ("no inter-node network", r"inter-node"),
    ("no compute in the model's dtype", r"has no \w+ compute"),
)


def kind_of(reason: str) -> str:
    return next((name for name, pat in KINDS if re.search(pat, reason)), f"other: {reason[:80]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="llava-chat-h100")
    ap.add_argument("--target-rate", type=float, default=20.0)
    ap.add_argument("--slo", default="ttft_p90=1.0,tpot_p90=0.05")
    ap.add_argument("--hardware", default=None, help="comma-separated ids (default: the whole database)")
    ap.add_argument("--tp", default="1,2,4,8")
    ap.add_argument("--layouts", default=LAYOUTS)
    ap.add_argument("--max-gpus", type=int, default=16)
    ap.add_argument("--executor", default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--exact", action="store_true", help="search every capacity to the tolerance")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from lvlmsim.planner import plan
    from lvlmsim.specs.registry import hardware_ids

    hw = args.hardware.split(",") if args.hardware else hardware_ids()
    t0 = time.perf_counter()
    res = plan(args.scenario, target_rate=args.target_rate, slos=args.slo, hardware=hw, tp=args.tp,
               layouts=args.layouts, max_gpus=args.max_gpus, executor=args.executor, workers=args.workers,
               exact=args.exact)
    wall = time.perf_counter() - t0
    df = res.candidates
    pruned = df[df.status == "pruned"]
    searched = df[df.des_runs.notna() & (df.status != "pruned")]
    runs = searched.des_runs.astype(int)
    by_kind: dict[str, int] = {}
    for r in pruned.reason:
        by_kind[kind_of(r)] = by_kind.get(kind_of(r), 0) + 1
    doc = {
        "scenario": args.scenario, "target_rate": args.target_rate, "slo": args.slo, "hardware": len(hw),
        "executor": args.executor, "workers": args.workers, "exact": args.exact,
        "candidates": len(df), "pruned_by_prescreen": len(pruned), "pruned_by_reason": by_kind,
        "searched": len(searched), "feasible": int((df.status == "feasible").sum()),
        "infeasible_after_search": int((df.status == "infeasible").sum()),
        "over_max_gpus_after_search": int((df.status == "over_max_gpus").sum()),
        "des_runs_total": res.stats["des_runs"],
        "des_runs_per_candidate": {"mean": float(runs.mean()), "median": float(runs.median()), "min": int(runs.min()),
                                   "max": int(runs.max()), "histogram": runs.value_counts().sort_index().to_dict()},
        "verify_runs": res.stats["verify_runs"], "refine_runs": res.stats["refine_runs"],
        "search_cpu_s": float(searched.search_wall_s.sum()),
        "wall_s": wall, "target_wall_s": TARGET_WALL_S, "under_target": wall < TARGET_WALL_S,
        "recommended": res.recommended and {k: res.recommended[k] for k in (
            "candidate", "gpus", "cost_per_hour", "max_rate_meeting_slo", "verified")},
    }
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return
    print(f"plan of {args.scenario} at {args.target_rate:g} req/s ({args.slo}), {len(hw)} devices, tp {args.tp}, "
          f"layouts {args.layouts}, max {args.max_gpus} GPUs; executor {args.executor} x {args.workers}")
    print(f"candidates: {doc['candidates']}; removed by the analytic pre-screen: {doc['pruned_by_prescreen']}")
    for k, n in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {k}")
    print(f"searched with the DES: {doc['searched']} -> {doc['feasible']} feasible, "
          f"{doc['infeasible_after_search']} infeasible, {doc['over_max_gpus_after_search']} over max GPUs")
    d = doc["des_runs_per_candidate"]
    print(f"DES runs: {doc['des_runs_total']} in all; per searched candidate mean {d['mean']:.2f}, median "
          f"{d['median']:.0f}, range {d['min']}-{d['max']}; histogram {d['histogram']}; plus {doc['verify_runs']} "
          f"fleet verification(s), {doc['refine_runs']} refining the recommended capacity")
    print(f"capacity searches: {doc['search_cpu_s']:.1f} s of worker time")
    print(f"recommended: {res.verdict}")
    print(f"wall time: {wall:.1f} s (target < {TARGET_WALL_S:.0f} s: {'met' if doc['under_target'] else 'MISSED'})")


if __name__ == "__main__":
    main()
