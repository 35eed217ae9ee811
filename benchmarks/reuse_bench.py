"""What cross-turn reuse and KV budgets buy in the serving engine, on the shipped multi-turn chat traffic.

Two tables, each one simulate() per row with the same requests (same seed):
1. multiturn-chat-reuse (Qwen2.5-VL-7B, 2x H100, 2 sessions/s) with reuse on/off, by scope and router.
2. multiturn-chat offered 6 sessions/s on one H100 squeezed to 24% of its memory (KV-bound, backlogged): what KV
   budgets do to throughput, preemptions and latency (bigger batches fit, so each step is slower but carries more).

Usage: python benchmarks/reuse_bench.py [--requests N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import time

from lvlmsim.engine.api import simulate
from lvlmsim.specs.scenario import load_scenario


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def _run(doc: dict, seed: int, **kw) -> tuple[dict, float]:
    t = time.perf_counter()
    s = simulate(doc, seed=seed, **kw).summary
    return s, time.perf_counter() - t


def reuse_table(n: int, seed: int) -> None:
    base = load_scenario("multiturn-chat-reuse").model_dump(mode="json")
    base["workload"]["requests"] = n
    rows = [
        ("no reuse", [], "least_outstanding"),
        ("reuse both, round_robin", base["techniques"], "round_robin"),
        ("reuse both, least_outstanding", base["techniques"], "least_outstanding"),
        ("reuse both, session_affinity", base["techniques"], "session_affinity"),
        ("reuse encoder only, session_affinity", ["reuse:scope=encoder,capacity_gib=4"], "session_affinity"),
    ]
    print(f"multiturn-chat-reuse: {n} requests, seed {seed} (2x H100, Qwen2.5-VL-7B, 2 sessions/s)")
    print("| setup | TTFT p50 ms | TTFT p90 ms | TPOT p90 ms | encoder hit | KV hit | prefill tokens saved | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, techs, router in rows:
        doc = dict(base, techniques=techs, serving=dict(base["serving"], router=router))
        s, wall = _run(doc, seed)
        r = s.get("reuse", {})
        print(f"| {name} | {s['ttft_s']['p50'] * 1e3:.1f} | {s['ttft_s']['p90'] * 1e3:.1f} | "
              f"{s['tpot_s']['p90'] * 1e3:.2f} | {_pct(r.get('encoder_cache', {}).get('hit_rate'))} | "
              f"{_pct(r.get('kv_cache', {}).get('hit_rate'))} | {r.get('prefill_tokens_saved', 0):,} | {wall:.2f} |")


def budget_table(n: int, seed: int) -> None:
    base = load_scenario("multiturn-chat").model_dump(mode="json")
    base["workload"]["requests"] = n
    base["serving"]["gpu_memory_utilization"] = 0.24
    rows = [("no budget", []), ("SnapKV 2048", ["kv_budget:tokens=2048"]), ("SnapKV 512", ["kv_budget:tokens=512"]),
            ("H2O 2048", ["kv_budget:tokens=2048,mode=rolling"]),
            ("visual-only 1024", ["kv_budget:tokens=1024,visual_only=true"])]
    print(f"\nmultiturn-chat on 1x H100 at 24% memory (~2 GiB of KV): {n} requests, 6 sessions/s, seed {seed}")
    print("| budget | output tok/s | saturation | preemptions | TTFT p90 s | TPOT p50 ms | TPOT p90 ms | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, techs in rows:
        s, wall = _run(dict(base, techniques=techs), seed, rate=6.0)
        print(f"| {name} | {s['output_tokens_per_s']:.0f} | {s['saturation']['verdict']} | {s['preemptions']} | "
              f"{s['ttft_s']['p90']:.2f} | {s['tpot_s']['p50'] * 1e3:.2f} | {s['tpot_s']['p90'] * 1e3:.2f} | "
              f"{wall:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    reuse_table(a.requests, a.seed)
    budget_table(a.requests, a.seed)


if __name__ == "__main__":
    main()
