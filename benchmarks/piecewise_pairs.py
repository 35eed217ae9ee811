"""Check 2 of docs/cudagraph-modes.md: published piecewise-vs-full CUDA-graph pairs against lvlmsim's prediction.

Each pair is one published server run twice, once with cudagraph_mode PIECEWISE and once FULL (or
FULL_AND_PIECEWISE, whose pure-decode steps are full graphs). lvlmsim replays the run through `lvlmsim bench` with the
vllm-v1-piecewise host profile and with vllm-v1 (the same host step; only the graph mode differs), so the predicted
gap is the piecewise launch queue's alone. Reported only: nothing is set from these figures.

Pairs lvlmsim can price (model shapes from config.json, a GPU it has):
- vllm-project/vllm issue #47089 (ekagra-ranjan, 2026-06-30, B200, vLLM v0.23.0), Qwen3-0.6B TP1 at batch 1 (the
  sweep's bs1 row: random 1-token input, 1024-token output, max concurrency 1, 20 prompts): median TPOT 3.64 ms
  piecewise, 1.53 ms full.
Pairs found and not priced: the same issue's Qwen3-235B-A22B-FP8 EP2 (13.37 vs 12.70 ms: an FP8 MoE on two GPUs with
expert parallelism, beyond a like-for-like stand-in here); vllm PR #20059's Qwen2.5-1.5B at 1 QPS (5.42 vs 5.09 ms
median TPOT; the GPU is not in the excerpt read); vllm PR #25444's Qwen3-Coder-30B-A3B-FP8 on an H100 (4.07 vs 5.98
req/s for 10 requests sent at once: an FP8 checkpoint).

    python benchmarks/piecewise_pairs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.bench.run import BenchArgs, run_bench  # noqa: E402
from lvlmsim.importers.hf import import_hf_config  # noqa: E402

# Qwen/Qwen3-0.6B config.json fields (as in calibration/host/tiny_model_runs.yaml)
QWEN3_06B = {"_name_or_path": "Qwen/Qwen3-0.6B", "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
             "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
             "tie_word_embeddings": True, "torch_dtype": "bfloat16"}

PAIRS = [
    {"id": "vllm-47089-b200-qwen3-0.6b-bs1", "source": "vllm-project/vllm issue #47089 (2026-06-30, v0.23.0)",
     "config": QWEN3_06B, "hardware": "b200",
     "args": {"dataset_name": "random", "num_prompts": 4, "max_concurrency": 1, "random_input_len": 1,
              "random_output_len": 1024, "random_range_ratio": 0.0, "ignore_eos": True},
     "published_ms": {"piecewise": 3.64, "full": 1.53}, "statistic": "median_tpot_ms"},
]


def predicted_ms(pair: dict, model_path: str, profile: str) -> float:
    """The pair's statistic as lvlmsim prices the run under the host profile `profile`."""
    args = BenchArgs(model=model_path, hardware=pair["hardware"], client="vllm", runtime="vllm",
                     serving={"host_costs": profile}, **pair["args"])
    return run_bench(args).result[pair["statistic"]]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for pair in PAIRS:
            path = Path(tmp) / f"{pair['id']}.yaml"
            path.write_text(yaml.safe_dump(import_hf_config(pair["config"], model_id=pair["id"]), sort_keys=False))
            pw = predicted_ms(pair, str(path), "vllm-v1-piecewise")
            full = predicted_ms(pair, str(path), "vllm-v1")
            pub = pair["published_ms"]
            print(f"{pair['id']}  [{pair['source']}]")
            print(f"    {pair['statistic']:16s} piecewise: published {pub['piecewise']:6.2f}  lvlmsim {pw:6.2f}")
            print(f"    {pair['statistic']:16s} full:      published {pub['full']:6.2f}  lvlmsim {full:6.2f}")
            print(f"    piecewise - full gap:        published {pub['piecewise'] - pub['full']:+6.2f}  "
                  f"lvlmsim {pw - full:+6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
