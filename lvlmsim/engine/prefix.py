"""Automatic prefix caching of text prompts (serving.prefix_caching), for prompts that are prefixes of token streams.

A benchmark client's random dataset makes request i's prompt the first L tokens of a token stream fixed by i and the
seed (lvlmsim.specs.workload.TextPrefixSpec), so a later prompt of the same stream shares the earlier one's tokens.
vLLM V1 (vllm/v1/core/kv_cache_manager.py, KVCacheManager.get_computed_blocks) reuses the KV of the longest chain of
FULL blocks (block_size tokens, hashed with their parent block) that a cached sequence shares with the new prompt,
and caps the hit at prompt_length - 1 so that the last prompt token is computed to get the logits; the hit is then a
whole number of blocks. So a prompt of N tokens whose stream holds C cached tokens starts its prefill at
floor(min(C, N - 1) / block_size) x block_size.

What a request leaves cached: the full blocks of its prompt (its generated tokens continue the stream differently
from a later, longer prompt, so they never match one). Cached blocks live in the free part of the KV pool and are
evicted least recently used first; here the cache is bounded by the whole pool (`capacity_blocks`): an upper bound,
as vLLM also evicts them earlier when running requests need the free blocks. A hit's blocks are the request's own
from then on (they leave the free pool), so the engine charges them to the request as if it had computed them.
"""

from __future__ import annotations

from collections import OrderedDict

from lvlmsim.specs.workload import TextPrefixSpec


class PrefixCache:
    """Cached tokens per token stream of one instance, LRU within `capacity_blocks` blocks of `block_size`."""

    __slots__ = ("block_size", "capacity_blocks", "held", "blocks", "lookups", "hits", "tokens_saved", "evictions")

    def __init__(self, block_size: int, capacity_blocks: int):
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self.held: OrderedDict[int, int] = OrderedDict()  # stream -> cached tokens (whole blocks), oldest first
        self.blocks = 0
        self.lookups = 0
        self.hits = 0
        self.tokens_saved = 0
        self.evictions = 0

    @classmethod
    def preloaded(cls, block_size: int, capacity_blocks: int, spec: TextPrefixSpec | None) -> PrefixCache:
        """A cache holding what `spec.cached` says the server held when the run started, inserted oldest first."""
        cache = cls(block_size, capacity_blocks)
        for run in (spec.cached if spec is not None else ()):
            for key in range(run.requests):
                cache.insert(key, run.tokens)
        return cache

    def hit_tokens(self, key: int | None, prompt_tokens: int) -> int:
        """Tokens of a `prompt_tokens`-token prompt of stream `key` whose KV is cached (block-aligned, at most
        prompt_tokens - 1). Side-effect free; `took` records the hit once the request is admitted."""
        if key is None or prompt_tokens < 2:
            return 0
        usable = min(self.held.get(key, 0), prompt_tokens - 1)
        return (usable // self.block_size) * self.block_size

    def took(self, key: int | None, tokens: int) -> None:
        """A request of stream `key` was admitted reusing `tokens` cached tokens (0: a miss)."""
        if key is None:
            return
        self.lookups += 1
        if tokens > 0:
            self.hits += 1
            self.tokens_saved += tokens
            self.held.move_to_end(key)

    def insert(self, key: int | None, prompt_tokens: int) -> None:
        """Stream `key`'s first `prompt_tokens` tokens were computed: their full blocks are cached."""
        if key is None:
            return
        tokens = (prompt_tokens // self.block_size) * self.block_size
        old = self.held.get(key, 0)
        if tokens > old:
            self.held[key] = tokens
            self.blocks += (tokens - old) // self.block_size
        if key in self.held:
            self.held.move_to_end(key)
        while self.blocks > self.capacity_blocks and self.held:
            _, dropped = self.held.popitem(last=False)
            self.blocks -= dropped // self.block_size
            self.evictions += 1

    def stats(self) -> dict:
        return {"lookups": self.lookups, "hits": self.hits, "prefill_tokens_saved": self.tokens_saved,
                "evictions": self.evictions}


def merge_prefix_stats(parts: list[dict]) -> dict:
    """The instances' prefix-cache statistics summed, with the hit rate over the summed lookups."""
    out = {k: sum(p[k] for p in parts) for k in ("lookups", "hits", "prefill_tokens_saved", "evictions")}
    out["hit_rate"] = out["hits"] / out["lookups"] if out["lookups"] else float("nan")
    return out


__all__ = ["PrefixCache", "merge_prefix_stats"]
