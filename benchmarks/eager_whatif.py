"""How lvlmsim prices a server run without CUDA graphs (serving.enforce_eager, issue 13), checked against the measured
eager rows, and what the enforce_eager rows of workloads/validation/bench-runs.yaml (tt-379's V0 Llama 3.2 90B Vision
on 4x H100, SGLang #9812's vLLM -O0 burst) read under each composition and each measured host.

Since wave 5 lvlmsim prices an eager step by the launch queue (lvlmsim.cost.runtime.launch_queue_s): the host issues
a kernel every h seconds and runs ahead of the GPU until the step's sync, so a step costs about the GPU's sum when
its kernels are long and the dispatch sum when they are short. Until then an eager op was its body plus h (the
additive composition). aiconfigurator measured the same custom all-reduce under eager launches (`vllm_eager`) and
CUDA-graph replay (`vllm_graph`), a loop of one op whose steady state under the launch queue is max(graph time, h).
Part 1 prints, per device and group size, the median |error| of the two compositions against the measured eager time:

    additive   t_graph - t_graph(smallest message) + h      (the graph time with its fixed part swapped for h)
    overlap    max(t_graph, h)                              (the launch queue's steady state for a loop of one op)

where h is the median eager time at 8192 elements or fewer on 2 GPUs (that host's per-op dispatch), over the messages
where the two differ (graph time at least 2 us above the group's smallest), up to 2^20 elements (above that the eager
path's extra copy of the input into vLLM's IPC buffer, all_reduce(registered=False), grows with the message and
neither composition has it), and only where the custom kernel runs (vLLM 0.24 on sm90 hands 6- and 8-GPU messages of
512 / 256 KiB and more to another algorithm). Part 2 replays the enforce_eager rows with the launch queue (shipped)
and the additive composition (before), each with h of each measured host (H100 host, vLLM 0.24: lvlmsim's constant;
A100 host, vLLM 0.14), and prints every published figure's error. The rows' host CPU is not stated, so the two
measured hosts bracket it; nothing here is fitted to a row. It reads the measured tables from ../shared (they stay
there).

    PYTHONPATH=. python benchmarks/eager_whatif.py
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import lvlmsim.cost.runtime as rt  # noqa: E402
import lvlmsim.engine.stepcost as stepcost  # noqa: E402
from lvlmsim.bench.run import run_bench  # noqa: E402
from lvlmsim.bench.validation import load_rows, row_args  # noqa: E402

MEASURED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "measured" / "aiconfigurator" / "data"
TABLES = {"H100 host, vLLM 0.24": MEASURED / "h100_sxm" / "comm" / "vllm" / "0.24.0" / "custom_allreduce_perf.csv",
          "A100 host, vLLM 0.14": MEASURED / "a100_sxm" / "comm" / "vllm" / "0.14.0" / "custom_allreduce_perf.csv"}
SMALL_ELEMENTS = 8192  # messages whose eager time is the host's per-op dispatch (the runtime module's definition)
COPY_FREE_ELEMENTS = 2**20  # above this the eager path's input copy grows with the message
# vLLM 0.24 on sm90 runs the custom kernel only below 512 / 256 KiB at 6 / 8 GPUs (all_reduce_utils
# CUSTOM_ALL_REDUCE_MAX_SIZES, calibration/collectives.yaml); larger messages take another algorithm, not compared here
KERNEL_BELOW_BYTES = {"H100 host, vLLM 0.24": {6: 512 * 1024, 8: 256 * 1024}}
BODY_MS = 2e-3  # a graph time this far above the smallest message's: the kernel's size-dependent part shows


def eager_graph_pairs(path: Path) -> pd.DataFrame:
    """Measured eager and graph ms of the same all-reduce (group size, message elements), one row per pair."""
    d = pd.read_csv(path).drop_duplicates()
    piv = d.pivot_table(index=["num_gpus", "message_size"], columns="backend", values="latency", aggfunc="median")
    return piv.dropna(subset=["vllm_eager", "vllm_graph"]).reset_index()


def host_dispatch_ms(pairs: pd.DataFrame) -> float:
    """h: the median eager time of the small messages on 2 GPUs, where the kernel itself takes a few us (the
    runtime module's definition of its eager floor)."""
    small = (pairs.message_size <= SMALL_ELEMENTS) & (pairs.num_gpus == 2)
    return float(pairs.loc[small, "vllm_eager"].median())


def custom_kernel_rows(pairs: pd.DataFrame, host: str) -> pd.DataFrame:
    """The pairs the custom kernel ran without the eager path's growing input copy (bf16: 2 bytes an element)."""
    limits = KERNEL_BELOW_BYTES.get(host, {})
    below = pairs.apply(lambda r: 2 * r.message_size < limits.get(int(r.num_gpus), float("inf")), axis=1)
    return pairs[(pairs.message_size <= COPY_FREE_ELEMENTS) & below]


def composition_errors(pairs: pd.DataFrame, h_ms: float) -> dict[int, tuple[float, float, int]]:
    """group size -> (median |error| % of additive, of overlap, rows) against the measured eager time, over the
    messages whose graph time exceeds the group's smallest by at least BODY_MS (where the two compositions differ;
    below it both are h)."""
    out = {}
    for n, g in pairs.groupby("num_gpus"):
        graph, eager = g.vllm_graph.to_numpy(), g.vllm_eager.to_numpy()
        body = graph - graph.min()
        keep = body >= BODY_MS
        additive = body + h_ms
        overlap = np.maximum(graph, h_ms)
        if keep.any():
            out[int(n)] = (float(np.median(np.abs(additive[keep] / eager[keep] - 1))) * 100,
                           float(np.median(np.abs(overlap[keep] / eager[keep] - 1))) * 100, int(keep.sum()))
    return out


def size_table(pairs: pd.DataFrame, h_ms: float, n: int) -> list[str]:
    """Per message size on `n` GPUs: measured graph and eager us, and the two compositions."""
    g = pairs[(pairs.num_gpus == n) & (pairs.message_size >= SMALL_ELEMENTS)]
    g_min = pairs.loc[pairs.num_gpus == n, "vllm_graph"].min()
    lines = []
    for r in g.itertuples():
        additive, overlap = r.vllm_graph - g_min + h_ms, max(r.vllm_graph, h_ms)
        lines.append(f"      {int(r.message_size):>8} elements: graph {r.vllm_graph * 1e3:6.1f}  eager "
                     f"{r.vllm_eager * 1e3:6.1f}  additive {additive * 1e3:6.1f}  overlap {overlap * 1e3:6.1f} us")
    return lines


@contextlib.contextmanager
def priced_as(composition: str, h_s: float) -> Iterator[None]:
    """Within the block, enforce_eager servers dispatch an op in `h_s`; `composition` 'additive' prices their steps
    op by op (body + h, lvlmsim before wave 5), 'queue' by the launch queue (as shipped)."""
    eager, queue_profile = rt.RUNTIMES["eager"], stepcost.launch_queue_profile
    rt.RUNTIMES["eager"] = dataclasses.replace(eager, kernel_floor_s=h_s)
    if composition == "additive":
        stepcost.launch_queue_profile = lambda profile: None
    try:
        yield
    finally:
        rt.RUNTIMES["eager"], stepcost.launch_queue_profile = eager, queue_profile


def replay_eager_rows(hosts: dict[str, float]) -> None:
    """Each published figure of each enforce_eager row under (composition, host h); the first column is as shipped."""
    rows = [r for r in load_rows() if (r.get("serving") or {}).get("enforce_eager")]
    cases = [(c, h) for c in ("queue", "additive") for h in hosts]
    print("\nenforce_eager rows, lvlmsim (error %) per composition and host h; the first column is as shipped")
    head = "".join(f"{c + ', ' + h.split(',')[0]:>24}" for c, h in cases)
    for row in rows:
        got = {}
        for comp, host in cases:
            with priced_as(comp, hosts[host] * 1e-3):
                got[(comp, host)] = run_bench(row_args(row)).result
        print(f"\n{row['id']}")
        print(f"  {'metric':<22} {'published':>10}{head}")
        for metric, pub in row["measured"].items():
            if not isinstance(pub, (int, float)) or not pub or metric.startswith("total_"):
                continue
            cells = "".join(f"{got[c][metric]:>12.2f} ({(got[c][metric] / pub - 1) * 100:+6.1f}%)" for c in cases)
            print(f"  {metric:<22} {pub:>10.2f}{cells}")


def main() -> None:
    missing = [p for p in TABLES.values() if not p.is_file()]
    if missing:
        print(f"skipped: the measured tables are not here ({missing[0]}); they live in ../shared")
        return
    hosts = {}
    print("aiconfigurator custom all-reduce, eager vs CUDA-graph replay of the same kernel: median |error| of each")
    print(f"composition against the measured eager time, messages <= {COPY_FREE_ELEMENTS} elements whose graph time")
    print(f"is >= {BODY_MS * 1e3:.0f} us above the group's smallest (below that both compositions give h)")
    for host, path in TABLES.items():
        pairs = custom_kernel_rows(eager_graph_pairs(path), host)
        h = host_dispatch_ms(pairs)
        hosts[host] = h
        print(f"  {host}: h = {h * 1e3:.1f} us")
        for n, (add, ovl, k) in composition_errors(pairs, h).items():
            print(f"    {n} GPUs ({k:>2} sizes): additive {add:5.1f}%   overlap {ovl:5.1f}%")
        print("    4 GPUs (tt-379's group) by message size:")
        print("\n".join(size_table(pairs, h, 4)))
    replay_eager_rows(hosts)


if __name__ == "__main__":
    main()
