"""Wall time of lvlmsim.estimate() for one request (target: < 5 ms median after warm-up).

Reports three figures, because the graph and cost model memoise: `warm` repeats the identical call (memo hits),
`fresh-shape` changes the prompt length every call (new prefill/decode shapes, so the graph and costs are
rebuilt), and `cold` is the very first call (YAML loading included).

    python benchmarks/estimate_bench.py [--n 200]
    python benchmarks/estimate_bench.py --all-models [--n 30]   # one line per zoo model (warm and fresh medians)
    python benchmarks/estimate_bench.py --model qwen3-vl-235b-a22b --hardware h200-sxm --tp 8 --ep 8   # MoE + EP
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
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--ep", type=int, default=1, help="expert-parallel degree (MoE models)")
    ap.add_argument("--all-models", action="store_true", help="every zoo model, one line each")
    args = ap.parse_args()
    if args.all_models:
        return zoo_table(args.hardware, args.n)
    kw = dict(images=1, image_size=(336, 336), output_tokens=128, tp=args.tp, ep=args.ep)

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

    print(f"estimate({args.model}, {args.hardware}, tp={args.tp}, ep={args.ep}, 1 image 336x336, 128 output "
          f"tokens), n={args.n}")
    print(f"  cold first call : {cold * 1e3:8.2f} ms")
    # p10 next to the median: on a loaded machine (other processes on the cores) the median carries their noise
    print(f"  warm (same call): median {statistics.median(warm) * 1e3:6.3f} ms  p10 "
          f"{sorted(warm)[int(0.1 * len(warm))] * 1e3:6.3f} ms  p90 {sorted(warm)[int(0.9 * len(warm))] * 1e3:6.3f} ms")
    print(f"  fresh shapes    : median {statistics.median(fresh) * 1e3:6.3f} ms  p10 "
          f"{sorted(fresh)[int(0.1 * len(fresh))] * 1e3:6.3f} ms  p90 "
          f"{sorted(fresh)[int(0.9 * len(fresh))] * 1e3:6.3f} ms")


def zoo_table(hardware: str, n: int) -> None:
    """Warm and fresh-shape medians of estimate() for every zoo model (its smallest TP that fits)."""
    from lvlmsim.errors import LvlmsimError
    from lvlmsim.specs.registry import model_ids

    kw = dict(images=1, image_size=(1280, 720), output_tokens=128)
    print(f"estimate(<model>, {hardware}, 1 image 1280x720, 128 output tokens), n={n} per model")
    print(f"  {'model':<24}{'tp':>4}{'warm ms':>10}{'fresh ms':>10}{'fresh cpu ms':>14}")
    for mid in model_ids():
        for tp in (1, 2, 4, 8):
            try:
                lvlmsim.estimate(mid, hardware, prompt_tokens=64, tp=tp, **kw)
                break
            except LvlmsimError:
                continue
        else:
            print(f"  {mid:<24}  does not fit on 8 x {hardware}")
            continue
        warm, fresh, cpu = [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            lvlmsim.estimate(mid, hardware, prompt_tokens=64, tp=tp, **kw)
            warm.append(time.perf_counter() - t0)
            t0, c0 = time.perf_counter(), time.process_time()
            lvlmsim.estimate(mid, hardware, prompt_tokens=100 + i, tp=tp, **kw)
            fresh.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # CPU time: robust when the machine is shared
        print(f"  {mid:<24}{tp:>4}{statistics.median(warm) * 1e3:>10.3f}{statistics.median(fresh) * 1e3:>10.3f}"
              f"{statistics.median(cpu) * 1e3:>14.3f}")


if __name__ == "__main__":
    main()
