"""Engine speed: simulate 10k and 100k requests of the default scenario at ~80% of its capacity.

Prints, per size: wall time, simulated seconds per wall second, batch steps per second, the wall time of the same
number of steps through a bare SimPy loop of timeouts (the floor any SimPy engine pays) and the ratio, and the peak
RSS of the process that ran it (each size runs in a fresh subprocess so the figures do not mix).

    python benchmarks/engine_bench.py                # 10k and 100k
    python benchmarks/engine_bench.py --sizes 10000  # one size
    python benchmarks/engine_bench.py --json

A second figure isolates the per-step hot path: a decode-only steady state timed around env.run.

Capacity is found first, roughly: the completion rate of a 3000-request run offered 3x the default rate, far past
saturation (the engine then runs at its throughput limit).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import json, resource, sys, time
from lvlmsim.engine.api import simulate
n, rate, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
res = simulate(requests=n, rate=rate, seed=seed)
wall = time.perf_counter() - t
s = res.summary
print(json.dumps({"requests": n, "rate_rps": rate, "wall_s": wall, "span_s": s["span_s"], "steps": s["steps"],
                  "completed": s["completed"], "verdict": s["saturation"]["verdict"],
                  "ttft_p90_s": s["ttft_s"]["p90"], "tpot_mean_s": s["tpot_s"]["mean"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bare_simpy_s(steps: int, dt: float = 0.01) -> float:
    """Wall seconds of `steps` bare `yield env.timeout(dt)` iterations: the floor of any SimPy step loop."""
    import simpy

    env = simpy.Environment()

    def loop(env):
        for _ in range(steps):
            yield env.timeout(dt)

    env.process(loop(env))
    t = time.perf_counter()
    env.run()
    return time.perf_counter() - t


def decode_steady_state(output_tokens: int = 25_000) -> dict:
    """Per-step cost of the engine's hot path alone: four long generations decoding together (no arrivals, no
    prefill, no preemption), timed around env.run and compared with the bare loop of as many steps."""
    import simpy

    from lvlmsim.cost.roofline import CostModel
    from lvlmsim.engine.cluster import Cluster, build_pool
    from lvlmsim.engine.workload import stream
    from lvlmsim.specs.registry import load_hardware, load_model
    from lvlmsim.specs.scenario import load_scenario

    sc = load_scenario({
        "model": "llava-1.5-7b", "hardware": "h100-sxm", "serving": {"max_model_len": 2 * output_tokens},
        "workload": {"requests": 4, "arrival": {"kind": "constant", "rate_rps": 1000}, "prompt_tokens": 50,
                     "output_tokens": output_tokens, "images": 1},
    })
    model, hw = load_model(sc.model), load_hardware(sc.hardware)
    wl = stream(sc.workload, model, sc.seed)  # lazy: the cluster pulls the requests as they arrive
    env = simpy.Environment()
    pools = [build_pool(env, model, p, hw, sc.serving, wl, CostModel(hw)) for p in sc.serving.pool_list()]
    cluster = Cluster(env, model, sc.serving, pools, wl)
    t = time.perf_counter()
    env.run()
    wall = time.perf_counter() - t
    steps = sum(i.stats.nsteps for i in cluster.instances)
    bare = bare_simpy_s(steps)
    return {"steps": steps, "wall_s": wall, "us_per_step": wall / steps * 1e6, "bare_us_per_step": bare / steps * 1e6,
            "ratio_to_bare": wall / bare, "preemptions": sum(r.preemptions for r in wl.requests)}


def capacity_rps(seed: int) -> float:
    from lvlmsim.engine.api import simulate
    from lvlmsim.specs.scenario import load_scenario

    base = load_scenario(None).workload.arrival.rate_rps
    res = simulate(requests=3000, rate=3 * base, seed=seed)
    return res.summary["throughput_rps"] * res.summary["span_s"] / _busy_span(res)


def _busy_span(res) -> float:
    """Time from first arrival to last completion (excludes the idle gap before the first request)."""
    df = res.requests
    return float(df.finish_s.max() - df.arrival_s.min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--load", type=float, default=0.8, help="fraction of capacity offered")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cap = capacity_rps(args.seed)
    rate = round(args.load * cap, 3)
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(rate), str(args.seed)], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        bare = bare_simpy_s(row["steps"])
        row.update({
            "sim_s_per_wall_s": row["span_s"] / row["wall_s"],
            "steps_per_s": row["steps"] / row["wall_s"],
            "us_per_step": row["wall_s"] / row["steps"] * 1e6,
            "bare_simpy_s": bare,
            "bare_us_per_step": bare / row["steps"] * 1e6,
            "ratio_to_bare": row["wall_s"] / bare,
        })
        rows.append(row)
    steady = decode_steady_state()
    doc = {"capacity_rps": cap, "offered_rps": rate, "load": args.load, "runs": rows, "decode_steady_state": steady,
           "bench_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"default scenario capacity ~{cap:.2f} req/s; offered {rate:.2f} req/s ({args.load:.0%})")
    hdr = (f"{'requests':>9} {'wall s':>8} {'sim s':>9} {'sim s/wall s':>12} {'steps':>8} {'steps/s':>9} "
           f"{'us/step':>8} {'bare us/step':>12} {'ratio':>6} {'peak RSS MiB':>12} {'verdict':>9}")
    print(hdr)
    for r in rows:
        print(f"{r['requests']:>9} {r['wall_s']:>8.2f} {r['span_s']:>9.1f} {r['sim_s_per_wall_s']:>12.1f} "
              f"{r['steps']:>8} {r['steps_per_s']:>9.0f} {r['us_per_step']:>8.2f} {r['bare_us_per_step']:>12.2f} "
              f"{r['ratio_to_bare']:>6.2f} {r['peak_rss_mib']:>12.0f} {r['verdict']:>9}")
    print(f"decode-only steady state (the per-step hot path): {steady['steps']} steps, {steady['us_per_step']:.2f} "
          f"us/step vs bare SimPy {steady['bare_us_per_step']:.2f} us/step: ratio {steady['ratio_to_bare']:.2f}")
    print("whole-run us/step includes per-request work (arrival event, the exact-priced mixed prefill step, "
          "finish, request records), about one mixed step per request")


if __name__ == "__main__":
    main()
