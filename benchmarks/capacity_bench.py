"""Does plan's capacity hold under long runs? Capacity per probe length against the throughput a long run sustains.

    python benchmarks/capacity_bench.py [--scenarios llava-chat-h100,qwen2vl-docs-h200,internvl-l40s-tp4]
                                        [--probe-s 5,30,120] [--long 100000]

For each scenario (its own hardware, TP and SLOs at its percentile): the capacity search's answer and bracket at
every probe length, the saturated throughput it measured; then `--long`-request runs at the capacity (should be
stable and meet the SLOs), at the bracket's top (should not) and at 1.25 x the capacity (backlogged: what the
configuration sustains once its KV cache and queue are in steady state; a saturation-limited capacity should be
within 3% of it). Reference figures are in the commit that added this script; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import time

from lvlmsim.engine.api import simulate
from lvlmsim.planner.capacity import SearchSettings, capacity_search, evaluate, slos_of_scenario
from lvlmsim.planner.runs import scenario_payload
from lvlmsim.specs.scenario import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="llava-chat-h100,qwen2vl-docs-h200,internvl-l40s-tp4")
    ap.add_argument("--probe-s", default="5,30,120")
    ap.add_argument("--long", type=int, default=100_000)
    args = ap.parse_args()
    for name in args.scenarios.split(","):
        sc = load_scenario(name)
        slos = slos_of_scenario(sc)
        payload = scenario_payload(sc, seed=sc.seed)
        caps = []
        for ps in (float(x) for x in args.probe_s.split(",")):
            t0 = time.perf_counter()
            res = capacity_search(payload, slos, sc.workload.arrival.rate_rps, SearchSettings(probe_duration_s=ps))
            caps.append(res["capacity_rps"])
            print(f"{name}: probe {ps:g} s -> capacity {res['capacity_rps']:.4g} req/s (bracket "
                  f"{res['bracket_lo_rps']:.4g}-{res['bracket_hi_rps'] or float('nan'):.4g}), saturated "
                  f"{res['saturated_rps']:.4g}, {res['des_runs']} DES runs, {time.perf_counter() - t0:.1f} s",
                  flush=True)
        lo, hi = res["bracket_lo_rps"], res["bracket_hi_rps"]
        for label, rate in (("capacity", lo), ("bracket top", hi), ("1.25 x capacity", 1.25 * lo)):
            if rate is None:
                continue
            t0 = time.perf_counter()
            run = simulate(sc, requests=args.long, rate=rate)
            ok, why, m = evaluate(run.requests, slos, SearchSettings().warmup_fraction)
            sat = run.summary["saturation"]
            p90s = ", ".join(f"{k} {m[k]:.3g}" for k in slos if m.get(k) is not None)
            print(f"{name}: {args.long} requests at {label} {rate:.4g} req/s: {sat['verdict']}, sustains "
                  f"{sat['completion_rate']:.4g} req/s, {'meets' if ok else 'misses'} the SLOs ({p90s}; limits "
                  + ", ".join(f"{k} {v:g}" for k, v in slos.items()) + f") [{time.perf_counter() - t0:.1f} s]",
                  flush=True)
            if label == "1.25 x capacity":
                print(f"{name}: capacity {lo:.4g} vs sustained when overloaded {sat['completion_rate']:.4g}: "
                      f"{lo / sat['completion_rate'] - 1:+.1%} (SLO-limited when well below)", flush=True)
        print(f"{name}: capacity across probe lengths: {', '.join(f'{c:.4g}' for c in caps)}", flush=True)

if __name__ == "__main__":
    main()
