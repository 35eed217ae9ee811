"""`lvlmsim bench` speed: a 1000-prompt run (the target: under 3 s on one core), in a fresh process pinned to one core.

    python benchmarks/bench_speed.py            # the issue's VLM run at 1000 prompts, concurrency 16 and inf
    python benchmarks/bench_speed.py --json

Each case runs in a subprocess (`taskset -c 0` when available, so one core); the wall time covers the whole of
run_bench (scenario, workload, engine, the client's metrics), not interpreter start-up or imports, which are printed
separately as `import_s`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from lvlmsim.bench.run import BenchArgs, run_bench
t1 = time.perf_counter()
args = BenchArgs(**json.loads(sys.argv[1]))
res = run_bench(args)
t2 = time.perf_counter()
r = res.result
print(json.dumps({"import_s": t1 - t0, "wall_s": t2 - t1, "completed": r["completed"], "duration_s": r["duration"],
                  "request_throughput": r["request_throughput"], "mean_ttft_ms": r["mean_ttft_ms"]}))
"""

CASES = {
    "random-image 720p, 1000 prompts, concurrency 16": {
        "model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "dataset_name": "random-image", "image_resolution": "720p",
        "num_prompts": 1000, "max_concurrency": 16, "random_input_len": 512, "random_output_len": 128},
    "random-image 720p, 1000 prompts, rate inf, no cap": {
        "model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "dataset_name": "random-image", "image_resolution": "720p",
        "num_prompts": 1000, "random_input_len": 512, "random_output_len": 128},
}


def run_case(args: dict) -> dict:
    cmd = [sys.executable, "-c", CHILD, json.dumps(args)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    rows = {name: run_case(args) for name, args in CASES.items()}
    if opts.json:
        print(json.dumps(rows, indent=2))
        return
    for name, r in rows.items():
        print(f"{name:<52} wall {r['wall_s']:.2f} s (imports {r['import_s']:.2f} s), {r['completed']} completed, "
              f"simulated {r['duration_s']:.1f} s, {r['request_throughput']:.2f} req/s")


if __name__ == "__main__":
    main()
