"""Memory soak: simulate N requests of the default scenario with streaming summaries, print wall time and peak RSS.

Each size runs in a fresh subprocess (its peak RSS alone, from resource.getrusage(RUSAGE_SELF).ru_maxrss) through the
same path as `lvlmsim simulate -n N` without --out: streaming summaries above lvlmsim.engine.api.STREAM_THRESHOLD
(or always with --stream), the exact per-request path otherwise (--exact forces it, for comparison).

    python benchmarks/soak.py                          # 1M requests, streaming
    python benchmarks/soak.py --sizes 100000 1000000   # several sizes
    python benchmarks/soak.py --sizes 100000 --exact   # the per-request path, for the memory it costs
    python benchmarks/soak.py --json

Figures, never assertions: the bound is read off the printed RSS across sizes (flat = independent of the count).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from lvlmsim.engine.api import simulate
n, keep = int(sys.argv[2]), json.loads(sys.argv[3])
t0 = time.perf_counter()
res = simulate(requests=n, keep_requests=keep)
wall = time.perf_counter() - t0
s = res.summary
print(json.dumps({"requests": n, "mode": s.get("summary_mode", {}).get("mode", "exact"), "wall_s": wall,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                  "completed": s["completed"], "ttft_p90_s": s["ttft_s"]["p90"], "tpot_p90_s": s["tpot_s"]["p90"],
                  "throughput_rps": s["throughput_rps"], "saturation": s["saturation"]["verdict"]}))
"""


def run_one(n: int, keep: bool | None) -> dict:
    """One size in a fresh interpreter (its own peak RSS)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n), json.dumps(keep)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stream", action="store_true", help="streaming at every size")
    mode.add_argument("--exact", action="store_true", help="the per-request path at every size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep = False if args.stream else (True if args.exact else None)
    rows = []
    for n in args.sizes:
        row = run_one(n, keep)
        rows.append(row)
        if not args.json:
            print(f"{row['requests']:>10} requests  {row['mode']:<9}  wall {row['wall_s']:8.1f} s  peak RSS "
                  f"{row['peak_rss_mib']:7.0f} MiB  ({row['wall_s'] / n * 1e6:.1f} us/request; TTFT p90 "
                  f"{row['ttft_p90_s']:.4g} s, {row['throughput_rps']:.2f} req/s, {row['saturation']})", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
