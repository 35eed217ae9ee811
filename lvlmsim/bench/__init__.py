"""Benchmark clients in simulation: `vllm bench serve` / `sglang.bench_serving` flags, datasets and result keys."""

from lvlmsim.bench.run import BenchArgs, BenchResult, bench_scenario, compare, read_result, run_bench, summary_block

__all__ = ["BenchArgs", "BenchResult", "bench_scenario", "compare", "read_result", "run_bench", "summary_block"]
