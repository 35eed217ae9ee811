"""Automatic prefix caching of text prompts (serving.prefix_caching), for prompts that are prefixes of token streams.

A benchmark client's random dataset makes request i's prompt the first L tokens of a token stream fixed by i and the
seed (lvlmsim.specs.workload.TextPrefixSpec), so a later prompt of the same stream shares the earlier one's tokens.
vLLM V1 (vllm/v1/core/kv_cache_manager.py, KVCacheManager.get_computed_blocks) reuses the KV of the longest chain of
FULL blocks (block_size tokens, hashed with their parent block) that a cached sequence shares with the new prompt,
and caps the hit at prompt_length - 1 so that the last prompt token is computed to get the logits; the hit is then a
whole number of blocks. So a prompt of N tokens whose stream holds C cached tokens starts its prefill at
floor(min(C, N - 1) / block_size) x block_size.

Where cached blocks live, as in vLLM V1 (vllm/v1/core/block_pool.py, kv_cache_manager.py): a finished request's
blocks go back to the FREE pool keeping their hashes, so they stay cached only while no allocation needs them.
KVCacheManager.free returns them "in reverse order so that the tail blocks are evicted first": the full blocks of
its generated tokens (which no later prompt matches: they continue the stream differently from a longer prompt),
then its prompt's blocks from the last to the first; a new allocation takes the free queue's head, the blocks freed
longest ago. So the cache is an LRU queue of block runs, bounded by the free blocks of the pool (`fit`): a request
admitted with blocks of its own shortens it from the oldest end, tail blocks first, and a stream evicted in part
keeps its first tokens. A hit's blocks leave the free pool (the request owns them; the engine charges them to it as
if it had computed them) and come back, with the rest of the request's blocks, when it finishes or is preempted.
"""

from __future__ import annotations

from collections import OrderedDict

from lvlmsim.specs.workload import TextPrefixSpec


class PrefixCache:
    """Cached tokens per token stream of one instance, in the free pool's eviction order (oldest first).

    `held` maps a stream (its int key) or an anonymous run of generated-token blocks (key ("out", n)) to its cached
    tokens, whole blocks; `blocks` is their sum in blocks, at most `capacity_blocks` and, through `fit`, at most the
    pool's free blocks."""

    __slots__ = ("block_size", "capacity_blocks", "held", "blocks", "lookups", "hits", "tokens_saved", "evictions",
                 "_runs")

    def __init__(self, block_size: int, capacity_blocks: int):
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self.held: OrderedDict[object, int] = OrderedDict()
        self.blocks = 0
        self.lookups = 0
        self.hits = 0
        self.tokens_saved = 0
        self.evictions = 0
        self._runs = 0  # anonymous generated-token runs made so far (their keys)

    @classmethod
    def preloaded(cls, block_size: int, capacity_blocks: int, spec: TextPrefixSpec | None) -> PrefixCache:
        """A cache holding what `spec.cached` says the server held when the run started: each earlier run's
        requests replayed oldest first, one at a time (the sweeps' runs are sequential, concurrency 1: each request
        takes its stream's cached prefix, holds its prompt and generated tokens' blocks while it runs, which evicts
        the oldest cached blocks beyond the rest of the pool, then frees them)."""
        cache = cls(block_size, capacity_blocks)
        for run in (spec.cached if spec is not None else ()):
            total = run.tokens + run.output_tokens
            own = -(-total // block_size)
            for key in range(run.requests):
                cache.took(key, cache.hit_tokens(key, run.tokens), count=False)
                cache.fit(capacity_blocks - own)
                cache.release(key, run.tokens, total)
        return cache

    def hit_tokens(self, key: int | None, prompt_tokens: int) -> int:
        """Tokens of a `prompt_tokens`-token prompt of stream `key` whose KV is cached (block-aligned, at most
        prompt_tokens - 1). Side-effect free; `took` records the hit once the request is admitted."""
        if key is None or prompt_tokens < 2:
            return 0
        usable = min(self.held.get(key, 0), prompt_tokens - 1)
        return (usable // self.block_size) * self.block_size

    def took(self, key: int | None, tokens: int, count: bool = True) -> None:
        """A request of stream `key` was admitted reusing `tokens` cached tokens (0: a miss): the stream's cached
        blocks leave the free pool with it (`count` False: a replayed earlier request, not a lookup of this run).
        All of them: a stream cached beyond the new prompt loses its blocks past the hit, which vLLM would leave
        cached at their old place in the queue; a simplification that no sweep meets (their prompts only grow)."""
        if key is None:
            return
        if count:
            self.lookups += 1
        if tokens > 0:
            if count:
                self.hits += 1
                self.tokens_saved += tokens
            self.blocks -= self.held.pop(key, 0) // self.block_size

    def release(self, key: int | None, prompt_tokens: int, total_tokens: int) -> None:
        """A request of stream `key` freed its blocks after computing `prompt_tokens` of its prompt and holding
        `total_tokens` in all: its generated tokens' full blocks, then its prompt's, join the newest end (freed in
        reverse, so evicted before the prompt's). Partial blocks have no hash and are not cached."""
        if key is None:
            return
        bs = self.block_size
        prompt_blocks = prompt_tokens // bs
        out_blocks = total_tokens // bs - prompt_blocks
        if out_blocks > 0:
            self.held[("out", self._runs)] = out_blocks * bs
            self._runs += 1
            self.blocks += out_blocks
        old = self.held.get(key, 0) // bs
        if prompt_blocks > old:
            self.held[key] = prompt_blocks * bs
            self.blocks += prompt_blocks - old
        if key in self.held:
            self.held.move_to_end(key)
        self.fit(self.capacity_blocks)

    def insert(self, key: int | None, prompt_tokens: int) -> None:
        """Stream `key`'s first `prompt_tokens` tokens were computed and freed: their full blocks are cached."""
        self.release(key, prompt_tokens, prompt_tokens)

    def fit(self, free_blocks: int) -> None:
        """Evict until the cached blocks fit in `free_blocks`: the oldest run first, its last blocks first."""
        while self.blocks > max(free_blocks, 0) and self.held:
            key, tokens = next(iter(self.held.items()))
            drop = min(self.blocks - max(free_blocks, 0), tokens // self.block_size)
            self.blocks -= drop
            self.evictions += 1
            if drop * self.block_size >= tokens:
                del self.held[key]
            else:
                self.held[key] = tokens - drop * self.block_size

    def stats(self) -> dict:
        return {"lookups": self.lookups, "hits": self.hits, "prefill_tokens_saved": self.tokens_saved,
                "evictions": self.evictions}


def merge_prefix_stats(parts: list[dict]) -> dict:
    """The instances' prefix-cache statistics summed, with the hit rate over the summed lookups."""
    out = {k: sum(p[k] for p in parts) for k in ("lookups", "hits", "prefill_tokens_saved", "evictions")}
    out["hit_rate"] = out["hits"] / out["lookups"] if out["lookups"] else float("nan")
    return out


__all__ = ["PrefixCache", "merge_prefix_stats"]
