"""Automatic prefix caching of text prompts (lvlmsim.engine.prefix) and the benchmark sessions that feed it.

Oracles: vLLM V1's hit rule worked by hand (whole 16-token blocks, at most prompt length - 1: KVCacheManager.
get_computed_blocks), numpy's and torch's generators checked for the prefix property the clients rely on, and
physical bounds on a cached prefill (more work than a fresh prompt of the new tokens alone, less than the whole).
"""

from __future__ import annotations

import numpy as np
import pytest

from lvlmsim.bench.run import BenchArgs, bench_scenario, run_bench
from lvlmsim.bench.validation import load_rows, prior_runs, row_args, ttft_floor_s, ttft_floor_with_reuse_s
from lvlmsim.engine.api import simulate
from lvlmsim.engine.prefix import PrefixCache
from lvlmsim.errors import SpecError
from lvlmsim.specs.workload import TextPrefixSpec, WorkloadSpec


@pytest.mark.parametrize(("cached", "prompt", "hit"), [
    (1024, 2048, 1024),   # an earlier 1024-token prompt of the stream: all of it
    (2048, 2048, 2032),   # the whole prompt cached: the last block is recomputed (hit <= 2047, whole blocks)
    (1000, 2048, 992),    # only full blocks are cached: 62 x 16
    (4096, 100, 96),      # a longer cached prompt: the hit stops at this prompt's own last full block below 100
    (0, 2048, 0),
])
def test_hit_is_whole_blocks_of_the_cached_stream_below_the_prompts_last_token(cached, prompt, hit):
    cache = PrefixCache(16, 10**6)
    cache.insert(7, cached)
    assert cache.hit_tokens(7, prompt) == hit
    assert cache.hit_tokens(8, prompt) == 0  # another stream shares nothing
    assert cache.hit_tokens(None, prompt) == 0  # a prompt of its own


def test_the_free_pool_evicts_the_oldest_blocks_first_generated_then_the_prompts_tail():
    """vLLM V1 frees a finished request's blocks in reverse (KVCacheManager.free: "so that the tail blocks are
    evicted first") onto the free queue, and an allocation takes the queue's head: the generated tokens' blocks of
    the request freed longest ago go first, then its prompt from the end, so a stream evicted in part keeps its
    head. Hand-worked in 16-token blocks."""
    cache = PrefixCache(16, 6)
    cache.release(0, 48, 80)  # stream 0: 3 prompt blocks, 2 of generated tokens (5 blocks)
    cache.release(1, 40, 40)  # stream 1: 2 full prompt blocks (the partial third has no hash): 7 > 6, evict 1
    assert (cache.blocks, cache.hit_tokens(0, 64), cache.hit_tokens(1, 64)) == (6, 48, 32)
    cache.fit(3)  # an allocation leaves 3 free blocks: the last generated block, then stream 0's last 2 blocks
    assert (cache.blocks, cache.hit_tokens(0, 64), cache.hit_tokens(1, 64)) == (3, 16, 32)
    cache.took(1, cache.hit_tokens(1, 64))  # a hit: its blocks are the request's, out of the free pool
    assert cache.blocks == 1
    cache.fit(0)
    assert cache.hit_tokens(0, 64) == 0
    assert cache.stats() == {"lookups": 1, "hits": 1, "prefill_tokens_saved": 32, "evictions": 4}


def test_a_replayed_run_evicts_the_oldest_stream_for_the_running_requests_blocks():
    """Three requests of 64 prompt + 32 generated tokens, one at a time, in a pool of 10 blocks: each holds 6 while
    it runs, so at most 4 stay cached beside it; the third evicts stream 0 whole (oldest) and request 1's
    generated blocks."""
    spec = TextPrefixSpec.model_validate({"cached": [{"requests": 3, "tokens": 64, "output_tokens": 32}]})
    cache = PrefixCache.preloaded(16, 10, spec)
    assert [cache.hit_tokens(i, 128) for i in range(3)] == [0, 64, 64]
    assert cache.blocks == 10 and cache.stats()["lookups"] == 0


def test_preload_inserts_the_earlier_runs_oldest_first():
    spec = TextPrefixSpec.model_validate({"cached": [{"requests": 8, "tokens": 128}, {"requests": 4, "tokens": 1024}]})
    cache = PrefixCache.preloaded(16, 10**6, spec)
    assert [cache.hit_tokens(i, 2048) for i in (0, 3, 4, 7, 8)] == [1024, 1024, 128, 128, 0]


def test_the_clients_generators_keep_each_requests_stream_across_runs():
    """What makes prompt i of one run a prefix of prompt i of a longer run (TextPrefixSpec): vLLM's random dataset
    draws the lengths (nothing at range ratio 0) and then the offsets from one seed, so every run of the same seed
    draws the same offsets whatever its prompt count; tenstorrent's cleaned-random seeds torch with seed + i, and
    torch's CPU randint of a longer sequence starts with the shorter one."""
    torch = pytest.importorskip("torch")

    def offsets(n, length):
        g = np.random.RandomState(0)
        g.randint(length, length + 1, size=n)
        g.randint(128, 129, size=n)
        return g.randint(0, 151643, size=n)

    assert list(offsets(2, 4096)) == list(offsets(8, 128)[:2])
    torch.manual_seed(3)
    short = torch.randint(0, 32000, (127,)).tolist()
    torch.manual_seed(3)
    assert torch.randint(0, 32000, (1023,)).tolist()[:127] == short


def _text_run(prefix_caching: bool, text_prefix: dict | None = None, prompt: int = 2048) -> object:
    workload = {"requests": 4, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": prompt,
                "output_tokens": 4, "images": 0}
    if text_prefix is not None:
        workload["text_prefix"] = text_prefix
    return simulate({"id": "t", "model": "qwen3-vl-2b", "hardware": "a100-sxm-80gb", "seed": 0, "workload": workload,
                     "serving": {"max_num_batched_tokens": 2048, "prefix_caching": prefix_caching}})


def test_a_cached_half_costs_more_than_a_fresh_half_and_less_than_the_whole_prompt():
    """1024 of 2048 tokens cached: the prefill computes 1024 tokens that attend over 2048 keys, more work than a
    fresh 1024-token prompt and less than the 2048-token one; every request saves exactly 1024 tokens."""
    half = {"cached": [{"requests": 4, "tokens": 1024}]}
    hit = _text_run(True, half)
    whole = _text_run(True).requests.ttft_s.to_numpy()
    fresh_half = _text_run(True, prompt=1024).requests.ttft_s.to_numpy()
    ttft = hit.requests.ttft_s.to_numpy()
    assert np.all(fresh_half < ttft) and np.all(ttft < whole)
    assert hit.summary["prefix_cache"] == {"lookups": 4, "hits": 4, "prefill_tokens_saved": 4096, "evictions": 0,
                                           "hit_rate": 1.0}


def test_without_prefix_caching_the_streams_change_nothing():
    """A server without prefix caching (vLLM V0's default, --no-enable-prefix-caching) prefills every prompt whole,
    whatever the session left; prefix caching without token streams (a scenario) changes nothing either."""
    half = {"cached": [{"requests": 4, "tokens": 1024}]}
    plain = _text_run(False).requests.ttft_s.to_numpy()
    assert np.array_equal(_text_run(False, half).requests.ttft_s.to_numpy(), plain)
    assert np.array_equal(_text_run(True).requests.ttft_s.to_numpy(), plain)
    assert "prefix_cache" not in _text_run(False, half).summary


@pytest.mark.parametrize(("extra", "message"), [
    ({"images": 1}, "text_prefix: needs text-only requests"),
    ({"images": 0, "session": {"turns": 2}}, "text_prefix: not with chat sessions"),
])
def test_text_prefix_refuses_prompts_that_are_not_token_streams(extra, message):
    with pytest.raises(ValueError, match=message):
        WorkloadSpec.model_validate({"text_prefix": {"cached": []}, **extra})


BENCH = dict(model="qwen3-vl-2b", hardware="a100-sxm-80gb", num_prompts=4, max_concurrency=1, random_input_len=1024,
             random_output_len=4, random_range_ratio=0.0, ignore_eos=True)


def test_vllms_test_prompt_leaves_request_0_cached_and_earlier_runs_the_rest():
    """vLLM's client sends input_requests[0] once before the timed run: request 0 reuses all but its last block
    (1024 - 16 tokens). A session's earlier 128-token runs give requests 0-3 their first 128 tokens."""
    alone = run_bench(BenchArgs(**BENCH)).simulation.summary["prefix_cache"]
    assert (alone["hits"], alone["prefill_tokens_saved"]) == (1, 1008)
    swept = run_bench(BenchArgs(**BENCH, prior_runs=((128, 8), (128, 4)))).simulation.summary["prefix_cache"]
    assert (swept["hits"], swept["prefill_tokens_saved"]) == (4, 1008 + 3 * 128)
    sc = bench_scenario(BenchArgs(**BENCH, prior_runs=((128, 8), (128, 4, 1024))))
    assert sc["serving"]["prefix_caching"] is True
    assert sc["workload"]["text_prefix"] == {"cached": [
        {"requests": 8, "tokens": 128, "output_tokens": 0}, {"requests": 4, "tokens": 128, "output_tokens": 1024},
        {"requests": 1, "tokens": 1024, "output_tokens": 4}]}  # the test prompt generates the run's output length


def test_a_server_set_without_prefix_caching_reuses_nothing():
    r = run_bench(BenchArgs(**BENCH, prior_runs=((128, 8),), serving={"prefix_caching": False}))
    assert "prefix_cache" not in r.simulation.summary


@pytest.mark.parametrize(("changes", "message"), [
    ({"random_range_ratio": 0.5, "prior_runs": ((128, 8),)}, "prior_runs: needs --random-range-ratio 0"),
    ({"dataset_name": "random-image", "prior_runs": ((128, 8),)}, "prior_runs: earlier runs share prompt prefixes"),
    ({"prior_runs": ((128,),)}, r"prior_runs\[0\]: expected \(random input len, num prompts\[, random output len"),
    ({"prior_runs": ((128, 8, 0),)}, r"prior_runs\[0\]: expected"),
])
def test_bad_prior_runs_are_one_line_errors(changes, message):
    with pytest.raises(SpecError, match=message):
        bench_scenario(BenchArgs(**{**BENCH, **changes}))


def test_validation_sessions_name_their_source_and_parse():
    rows = load_rows()
    sessions = [r for r in rows if r.get("session")]
    assert sessions and all(r["session"]["source"] for r in sessions)
    assert row_args(next(r for r in rows if r["id"] == "tt-340-vllm-a100-qwen3-30b-a3b-in2048-out128")).prior_runs == (
        (128, 8, 128), (128, 4, 1024), (1024, 4, 128))
    bad = {**sessions[0], "session": {"prior_runs": [[128, 8]]}}
    with pytest.raises(SpecError, match="session: expected"):
        prior_runs(bad)


def test_every_flagged_row_is_consistent_once_its_session_is_counted():
    """The rows flagged below their stated prompt's FLOP floor (bench-runs.yaml `inconsistent`) are above the floor
    of the tokens the session leaves to compute: the cached prompt prefixes explain them."""
    flagged = [r for r in load_rows() if r.get("inconsistent")]
    assert flagged
    for row in flagged:
        reuse = ttft_floor_with_reuse_s(row)
        assert reuse is not None and reuse < ttft_floor_s(row), row["id"]
        assert reuse * 1e3 < row["measured"]["mean_ttft_ms"], row["id"]


def test_prefix_hits_under_preemption_keep_every_request_and_the_kv_pool_whole():
    """A KV pool too small for the load: requests are preempted (recompute) and re-admitted, now finding their own
    prompt cached; every request completes, none is lost or counted twice, the pool is never over-full, and the
    preloaded streams are evicted to fit the pool."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_invariants import conserved, scenario

    sc = scenario(serving={"gpu_memory_utilization": 0.27, "prefix_caching": True},
                  workload={"images": 0, "prompt_tokens": 1024, "text_prefix": {"cached": [{"requests": 300,
                                                                                           "tokens": 512}]}})
    res = simulate(sc, requests=300, seed=1, rate=40)
    conserved(res)
    s = res.summary
    assert s["preemptions"] > 0 and s["completed"] == s["requests"] and s["peak_kv_occupancy"] <= 1.0
    assert s["prefix_cache"]["hits"] > 0 and s["prefix_cache"]["evictions"] > 0
