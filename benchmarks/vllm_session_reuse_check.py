"""Does vLLM's own KV cache manager reuse a tt sweep's prompts? (issue 13, wave 9: why tt-521 shows no reuse)

tt-521 (gemma-3-4b-it on one A100, comment of 2025-09-03) publishes TTFTs that grow linearly with the prompt, as if
nothing were reused, while lvlmsim reuses the earlier runs' prompts (lvlmsim.engine.prefix). One candidate was
Gemma 3's KV layout: 29 sliding-window layers (1024 tokens) beside 5 global ones, which vLLM V1 serves with its
hybrid KV cache manager (HybridKVCacheCoordinator: a hit on the full-attention layers, then SlidingWindowManager
looks within it for cdiv(window - 1, block_size) contiguous cached blocks; blocks that leave the window are freed
into the pool early). This script settles that candidate by running the release's own code, not a model of it.

It imports vllm.v1.core.kv_cache_manager.KVCacheManager from an unpacked vLLM source tree (the release the sweep ran:
the newest on PyPI at the comment's date, 0.10.1.1 for tt-521; the PyPI sdist vllm-0.10.1.1.tar.gz, with its
pure-Python dependencies importable; no GPU or compiled extension is needed) and drives it as the V1 scheduler
does, one request at a time: get_computed_blocks, allocate_slots per prefill chunk (2048 tokens, V1's A100 default),
one slot per generated token, free. The session is the sweep's rows in bench-runs.yaml (the last row's
session.prior_runs, then its own run), each run preceded by its request 0 sent once (the client's initial test
prompt). Request i's prompt is one token stream per i cut at the run's length (BOS first), as the client gives
(bench-runs.yaml, the session source). The KV groups are built from the model's spec (workloads/models) as vLLM's
_get_kv_cache_config_uniform_page_size builds them: layers grouped by type, groups of min(count per type) layers.
A control runs the same session with every layer global (one group).

Printed: per run, the prefix-cache hit (tokens) of each timed request under both layouts. With vLLM 0.10.1.1 the
two agree for tt-521 (request 0 repeats the test prompt: 112, 112, 1008, 2032, 3056, 4080 tokens; requests 1+
reuse the earlier runs' prompts: 0, 112, 128, 1024, 2048, 3072), so the sliding-window layout does not stop reuse.

    PYTHONPATH=.:/path/to/vllm-0.10.1.1 python benchmarks/vllm_session_reuse_check.py [--sweep tt-521]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvlmsim.bench.validation import load_rows, prior_runs, source_of  # noqa: E402
from lvlmsim.specs.registry import load_model  # noqa: E402

BLOCK_TOKENS = 16  # vLLM's default block size on CUDA
CHUNK_TOKENS = 2048  # V1's max_num_batched_tokens on an A100 (calibration/host/runtimes.yaml server_defaults)
BOS_ID = 2  # Gemma's <bos>; any fixed first token does the same here


def _vllm():
    """vLLM's KV cache classes, or a one-line exit naming what is missing."""
    try:
        import torch
        from vllm.sampling_params import SamplingParams
        from vllm.v1.core.kv_cache_manager import KVCacheManager
        from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
        from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, SlidingWindowSpec
        from vllm.v1.request import Request
    except ImportError as exc:
        sys.exit(f"vllm_session_reuse_check: cannot import vLLM's V1 KV cache manager ({exc}); put an unpacked "
                 "vLLM source tree (e.g. the PyPI sdist of 0.10.1.1) and its Python dependencies on PYTHONPATH")
    import vllm
    return {"torch": torch, "SamplingParams": SamplingParams, "KVCacheManager": KVCacheManager,
            "hasher": get_request_block_hasher, "init_none_hash": init_none_hash, "Full": FullAttentionSpec,
            "Config": KVCacheConfig, "Group": KVCacheGroupSpec, "Sliding": SlidingWindowSpec, "Request": Request,
            "version": getattr(vllm, "__version__", "?")}


def sweep_session(sweep: str) -> tuple[str, list[tuple[int, int, int]]]:
    """(model id, the sweep's runs in the order sent: (input tokens, prompts, output tokens)) from bench-runs.yaml."""
    rows = [r for r in load_rows() if source_of(r["id"]) == sweep]
    if not rows:
        sys.exit(f"vllm_session_reuse_check: --sweep {sweep!r} has no rows in bench-runs.yaml")
    last = rows[-1]
    own = (int(last["args"]["random_input_len"]), int(last["args"]["num_prompts"]),
           int(last["args"]["random_output_len"]))
    return last["conditions"]["model"], [tuple(r) for r in prior_runs(last)] + [own]


def layer_groups(model_id: str, hybrid: bool) -> list[tuple[str, list[str]]]:
    """(kind, layer names) of each KV cache group, as vLLM 0.10.1.1's _get_kv_cache_config_uniform_page_size
    forms them: layers by attention type in layer order, each type cut into groups of min(layers per type)
    (its last group shorter, vLLM's padding). Without a local-attention spec, or with `hybrid` False, one group."""
    llm = load_model(model_id).llm
    local = llm.local_attention
    if not hybrid or local is None:
        return [("full", [f"layer.{i}" for i in range(llm.num_layers)])]
    by_type: dict[str, list[str]] = {}
    for i in range(llm.num_layers):
        by_type.setdefault("full" if i in local.global_layers else "sliding", []).append(f"layer.{i}")
    size = min(len(names) for names in by_type.values())
    return [(kind, names[k:k + size]) for kind, names in by_type.items() for k in range(0, len(names), size)]


def kv_config(v: dict, model_id: str, hybrid: bool, num_blocks: int):
    """vLLM's KVCacheConfig for layer_groups(): FullAttentionSpec or SlidingWindowSpec per group, bf16."""
    llm = load_model(model_id).llm
    dtype = v["torch"].bfloat16
    specs = {"full": v["Full"](BLOCK_TOKENS, llm.num_kv_heads, llm.head_dim, dtype, False)}
    if llm.local_attention is not None:
        specs["sliding"] = v["Sliding"](BLOCK_TOKENS, llm.num_kv_heads, llm.head_dim, dtype, False,
                                        sliding_window=llm.local_attention.window_tokens)
    groups = [v["Group"](names, specs[kind]) for kind, names in layer_groups(model_id, hybrid)]
    return v["Config"](num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=groups)


def serve(v: dict, mgr, req, prompt_tokens: int, output_tokens: int, rng: random.Random) -> int:
    """One request through the manager as the V1 scheduler calls it; returns its prefix-cache hit in tokens."""
    blocks, hit = mgr.get_computed_blocks(req)
    left, first = prompt_tokens - hit, True
    while left > 0:  # a new request is allocated with num_computed_tokens 0, then set to its hit (scheduler.py)
        step = min(CHUNK_TOKENS, left)
        got = mgr.allocate_slots(req, step, hit, blocks) if first else mgr.allocate_slots(req, step)
        if got is None:
            sys.exit("vllm_session_reuse_check: the KV pool is too small for one request; raise --num-blocks")
        if first:
            req.num_computed_tokens, first = hit, False
        req.num_computed_tokens += step
        left -= step
    for _ in range(output_tokens):
        req.append_output_token_ids(rng.randrange(1000, 200000))
        mgr.allocate_slots(req, 1)
        req.num_computed_tokens += 1
    mgr.free(req)
    return hit


def replay(v: dict, model_id: str, runs: list[tuple[int, int, int]], hybrid: bool, num_blocks: int) -> list:
    """Per run, the timed requests' hits (each run's request 0 is first sent once untimed, as the client does)."""
    v["init_none_hash"](hash)
    mgr = v["KVCacheManager"](kv_config(v, model_id, hybrid, num_blocks), max_model_len=131072,
                              enable_caching=True)
    rng = random.Random(0)
    longest = max(r[0] for r in runs)
    streams = [[BOS_ID] + [rng.randrange(1000, 200000) for _ in range(longest)] for _ in range(max(r[1] for r in runs))]
    out, n = [], 0
    for prompt_tokens, prompts, output_tokens in runs:
        hits = []
        for k, i in enumerate([0] + list(range(prompts))):
            n += 1
            req = v["Request"](request_id=str(n), prompt_token_ids=streams[i][:prompt_tokens],
                               multi_modal_kwargs=None, multi_modal_hashes=None, multi_modal_placeholders=None,
                               sampling_params=v["SamplingParams"](max_tokens=output_tokens), pooling_params=None,
                               eos_token_id=1, lora_request=None, cache_salt=None,
                               block_hasher=v["hasher"](BLOCK_TOKENS, hash))
            hit = serve(v, mgr, req, prompt_tokens, output_tokens, rng)
            if k > 0:
                hits.append(hit)
        out.append(((prompt_tokens, prompts, output_tokens), hits))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="tt-521", help="a published sweep of bench-runs.yaml (default tt-521)")
    ap.add_argument("--num-blocks", type=int, default=180000,
                    help="KV blocks in vLLM's pool (default 180000: 59 GB of Gemma 3 4B's pages of 5 layers x 16 "
                         "tokens x 4 KV heads x 256 x 2 x 2 bytes = 320 KiB, about what 0.9 of an 80 GB A100 "
                         "leaves beside the weights; the hits do not depend on it once the pool holds the session)")
    a = ap.parse_args()
    v = _vllm()
    model_id, runs = sweep_session(a.sweep)
    print(f"vLLM {v['version']} KVCacheManager, {model_id}, session {runs}, {a.num_blocks} blocks of {BLOCK_TOKENS}")
    for hybrid in (True, False):
        groups = len(kv_config(v, model_id, hybrid, a.num_blocks).kv_cache_groups)
        label = "model's layers (sliding + global)" if hybrid else "control: every layer global"
        print(f"{label}, {groups} KV cache group(s)")
        for run, hits in replay(v, model_id, runs, hybrid, a.num_blocks):
            print(f"    run {run}: hit tokens per timed request {hits}")


if __name__ == "__main__":
    main()
