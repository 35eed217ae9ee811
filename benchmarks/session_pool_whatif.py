"""What the KV pool does to a published sweep's prefix reuse (issue 13, wave 6): tt-143's Qwen2.5-72B on 2x H100
replayed at the two memory settings its unstated server flags allow, with the session's earlier runs cached.

vLLM V1 keeps a finished request's blocks cached in the free pool and evicts them oldest first, tail first
(lvlmsim.engine.prefix), so whether a sweep's later runs reuse the earlier prompts depends on the pool against the
sweep's working set (8 prompts of up to 8192 tokens). A 72B model in bf16 leaves each 80 GB GPU little room, and at
vLLM's defaults (gpu_memory_utilization 0.9, max_model_len 32768) the server refuses to start (the pool holds less
than one 32768-token sequence; vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory), so the author set at
least one of them; which is not stated. 0.95 is the row's setting (the same author's 2x H100 Qwen2.5-VL-72B server
of tt-inference-server #235 ran 0.95 with --max-model-len 16384); 0.90 with a shorter max_model_len is the other
reading. This prints, per row and setting, lvlmsim's pool in tokens, the mean TTFT against the published one and
the prefix cache's hits. A what-if: nothing is fitted, and the table keeps 0.95.

    PYTHONPATH=. python benchmarks/session_pool_whatif.py [--sweep tt-143] [--utilisations 0.9,0.95]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvlmsim.bench.run import run_bench  # noqa: E402
from lvlmsim.bench.validation import load_rows, row_args, source_of  # noqa: E402


def replay(row: dict, utilisation: float) -> tuple[int, float, dict]:
    """(KV pool in tokens, mean TTFT in ms, prefix-cache statistics) of `row` at `utilisation`."""
    a = row_args(row)
    a.serving["gpu_memory_utilization"] = utilisation
    res = run_bench(a)
    inst = res.simulation.summary["instances"][0]
    pool_tokens = inst["kv_blocks"] * res.simulation.scenario.serving.block_size
    return pool_tokens, res.result["mean_ttft_ms"], res.simulation.summary.get("prefix_cache", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="tt-143")
    ap.add_argument("--utilisations", default="0.9,0.95")
    opts = ap.parse_args()
    rows = [r for r in load_rows() if source_of(r["id"]) == opts.sweep and "mean_ttft_ms" in r["measured"]]
    for u in (float(x) for x in opts.utilisations.split(",")):
        print(f"\n{opts.sweep} at gpu_memory_utilization {u}")
        print(f"  {'row':<44} {'pool tok':>9} {'published':>10} {'lvlmsim':>9} {'error':>7}  hits  saved tok")
        for row in rows:
            pool, ttft, pc = replay(row, u)
            pub = row["measured"]["mean_ttft_ms"]
            print(f"  {row['id']:<44} {pool:>9} {pub:>10.1f} {ttft:>9.1f} {(ttft / pub - 1) * 100:>+6.1f}%"
                  f"  {pc.get('hits', 0)}/{pc.get('lookups', 0)}  {pc.get('prefill_tokens_saved', 0)}")


if __name__ == "__main__":
    main()
