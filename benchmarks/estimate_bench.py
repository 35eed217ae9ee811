"""Wall time of lvlmsim.estimate() for one request (target: < 5 ms median after warm-up).

Reports three figures, because the graph and cost model memoise: `warm` repeats the identical call (memo hits),
`fresh-shape` changes the prompt length every call (new prefill/decode shapes, so the graph and costs are
rebuilt), and `cold` is the very first call (YAML loading included).

    python benchmarks/estimate_bench.py [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lvlmsim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="llava-1.5-7b")
    ap.add_argument("--hardware", default="h100-sxm")
    args = ap.parse_args()
    kw = dict(images=1, image_size=(336, 336), output_tokens=128)

    t0 = time.perf_counter()
    lvlmsim.estimate(args.model, args.hardware, prompt_tokens=64, **kw)
    cold = time.perf_counter() - t0

    warm = []
    for _ in range(args.n):
        t0 = time.perf_counter()
        lvlmsim.estimate(args.model, args.hardware, prompt_tokens=64, **kw)
        warm.append(time.perf_counter() - t0)

    fresh = []
    for i in range(args.n):
        t0 = time.perf_counter()
        lvlmsim.estimate(args.model, args.hardware, prompt_tokens=100 + i, **kw)
        fresh.append(time.perf_counter() - t0)

    print(f"estimate({args.model}, {args.hardware}, 1 image 336x336, 128 output tokens), n={args.n}")
    print(f"  cold first call : {cold * 1e3:8.2f} ms")
    print(f"  warm (same call): median {statistics.median(warm) * 1e3:6.3f} ms  p90 "
          f"{sorted(warm)[int(0.9 * len(warm))] * 1e3:6.3f} ms")
    print(f"  fresh shapes    : median {statistics.median(fresh) * 1e3:6.3f} ms  p90 "
          f"{sorted(fresh)[int(0.9 * len(fresh))] * 1e3:6.3f} ms")


if __name__ == "__main__":
    main()
