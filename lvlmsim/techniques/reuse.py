"""Reuse across turns: an encoder-output cache and image-KV reuse, keyed by image id, bounded, LRU.

`ReuseCache` is standalone (the engine owns one per instance and scope); `ReuseConfig` is the technique: it makes
the caches, sizes their entries, and gives the analytic estimate an expected hit rate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from lvlmsim.cost.memory import GIB, kv_bytes_per_visual_token
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import GraphConfig
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_REUSE, TechniqueConfig, register, schedule_of


class ReuseCache:
    """LRU cache of per-image entries bounded by entry count and/or bytes; pinned entries are never evicted.

    A hit is a lookup of a key that is resident. `access(key, nbytes)` is the usual call: look up, insert on a miss
    (evicting least recently used unpinned entries until it fits). An entry larger than the whole capacity is not
    stored (counted in `rejected`). Pin an entry while a running request uses it (its KV blocks are shared).
    """

    def __init__(self, capacity_entries: int | None = None, capacity_bytes: float | None = None):
        if capacity_entries is None and capacity_bytes is None:
            raise SpecError("reuse: capacity_entries/capacity_gib: give at least one bound (the cache must be finite)")
        if capacity_entries is not None and capacity_entries < 1:
            raise SpecError(f"reuse: capacity_entries: must be >= 1, got {capacity_entries}")
        if capacity_bytes is not None and capacity_bytes <= 0:
            raise SpecError(f"reuse: capacity_gib: must be > 0, got {capacity_bytes / GIB:g} GiB")
        self.capacity_entries = capacity_entries
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[Hashable, float] = OrderedDict()
        self._pins: dict[Hashable, int] = {}
        self.resident_bytes = 0.0
        self.hits = self.misses = self.evictions = self.rejected = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Hashable) -> bool:
        """True (a hit, the entry becomes most recently used) if `key` is resident; counts hits and misses."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return True
        self.misses += 1
        return False

    def _fits(self, extra_bytes: float, extra_entries: int) -> bool:
        ok_n = self.capacity_entries is None or len(self._entries) + extra_entries <= self.capacity_entries
        ok_b = self.capacity_bytes is None or self.resident_bytes + extra_bytes <= self.capacity_bytes + 1e-6
        return ok_n and ok_b

    def insert(self, key: Hashable, nbytes: float) -> list[Hashable]:
        """Store `key` (nbytes), evicting LRU unpinned entries as needed; returns the evicted keys."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        if key in self._entries:
            self.resident_bytes += nbytes - self._entries[key]
            self._entries[key] = nbytes
            self._entries.move_to_end(key)
            return []
        if self.capacity_bytes is not None and nbytes > self.capacity_bytes:
            self.rejected += 1
            return []
        evicted: list[Hashable] = []
        while not self._fits(nbytes, 1):
            victim = next((k for k in self._entries if not self._pins.get(k)), None)
            if victim is None:  # everything resident is pinned: do not store
                self.rejected += 1
                return evicted
            self.resident_bytes -= self._entries.pop(victim)
            self.evictions += 1
            evicted.append(victim)
        self._entries[key] = nbytes
        self.resident_bytes += nbytes
        return evicted

    def access(self, key: Hashable, nbytes: float) -> bool:
        """Look up `key`; on a miss insert it. Returns whether it was a hit."""
        if self.lookup(key):
            return True
        self.insert(key, nbytes)
        return False

    def pin(self, key: Hashable) -> None:
        if key in self._entries:
            self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: Hashable) -> None:
        n = self._pins.get(key, 0)
        if n <= 1:
            self._pins.pop(key, None)
        else:
            self._pins[key] = n - 1

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    def stats(self) -> dict[str, float]:
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate, "evictions": self.evictions,
                "rejected": self.rejected, "entries": len(self._entries), "resident_bytes": self.resident_bytes,
                "pinned": sum(self._pins.values())}


def encoder_entry_bytes(model: ModelSpec, cfg: GraphConfig, tok: ImageTokenization) -> float:
    """Bytes of one image's cached encoder output: its LLM-ready visual embeddings (tokens x LLM hidden x act)."""
    return tok.llm_tokens * model.llm.hidden_size * DTYPE_BYTES[cfg.act_dtype]


def kv_entry_bytes(model: ModelSpec, cfg: GraphConfig, tok: ImageTokenization) -> float:
    """Bytes of one image's cached KV on one device (honours kv_dtype and any in-LLM pruning schedule)."""
    return tok.llm_tokens * kv_bytes_per_visual_token(model, cfg)


@register
class ReuseConfig(TechniqueConfig):
    """Encoder-output cache and image-KV reuse across turns (vLLM's multimodal encoder cache and automatic prefix
    caching with image hashes; SGLang RadixAttention, Zheng et al., arXiv 2312.07104).

    A request whose image id is resident skips the encoder (scope encoder/both) and, when the image opens the
    prompt, the prefill of its tokens (scope kv/both: prefill then computes only the text on top of the cached
    image KV). Capacity in entries and/or GiB, LRU eviction. In the analytic estimate, `hit_rate` is the expected
    fraction of requests that hit (give it: lvlmsim does not guess traffic); the cache's capacity is held as memory.
    In the engine hits come from the trace's image ids.
    """

    kind: Literal["reuse"] = "reuse"
    scope: Literal["encoder", "kv", "both"] = Field("both", description="what is cached")
    capacity_entries: PositiveInt | None = Field(None, description="images held per cache")
    capacity_gib: PositiveFloat | None = Field(None, description="GiB held per cache")
    hit_rate: float = Field(0.0, ge=0.0, le=1.0, description="estimate only: expected fraction of requests that hit")

    citation: ClassVar[str] = ("vLLM encoder cache + automatic prefix caching (docs.vllm.ai); Zheng et al., SGLang "
                               "RadixAttention (arXiv 2312.07104); Singh et al., EPD disaggregation MM-token cache "
                               "(arXiv 2501.05460)")
    stage: ClassVar[str] = "encode + prefill (skipped on a hit) + memory (cache held)"
    acts_on: ClassVar[str] = "engine behaviour: ReuseCache (LRU by image id); estimate: expected hit rate"
    order: ClassVar[int] = ORDER_REUSE

    def caches_encoder(self) -> bool:
        return self.scope in ("encoder", "both")

    def admission_cache(self) -> ReuseConfig:
        return self

    def engine_refusal(self, others, model: ModelSpec) -> str | None:
        if not self.caches_kv():
            return None
        if model.image_tokens_in_kv_of_cross_attention:
            return (f"'reuse' with scope={self.scope} on {model.id}: its image KV lives in cross-attention layers, "
                    "which the simulator's prefix cache does not model; use scope=encoder")
        schedule = schedule_of(others)
        if schedule is not None:
            return (f"'reuse' with scope={self.scope} and '{schedule.kind}': in-LLM pruning keeps the visual tokens "
                    "the question attends to, so pruned image KV cannot be reused by another turn; use scope=encoder")
        if any(t.kind == "kv_budget" for t in others):
            return (f"'reuse' with scope={self.scope} and 'kv_budget': a budget evicts each sequence's own KV while "
                    "a prefix cache shares it between sequences; the simulator models one or the other")
        return None

    def caches_kv(self) -> bool:
        return self.scope in ("kv", "both")

    def make_caches(self) -> dict[str, ReuseCache]:
        """One ReuseCache per scope cached ('encoder', 'kv'); each gets the configured capacity."""
        cap_b = self.capacity_gib * GIB if self.capacity_gib else None
        if self.capacity_entries is None and cap_b is None:
            raise SpecError("technique 'reuse': capacity_entries/capacity_gib: give a capacity to build the cache")
        scopes = [s for s, on in (("encoder", self.caches_encoder()), ("kv", self.caches_kv())) if on]
        return {s: ReuseCache(self.capacity_entries, cap_b) for s in scopes}

    def held_bytes(self, model: ModelSpec, cfg: GraphConfig, toks: list[ImageTokenization]) -> float:
        """Memory the caches hold at capacity, for one device (entries sized like this request's images)."""
        total = 0.0
        for scope, on in (("encoder", self.caches_encoder()), ("kv", self.caches_kv())):
            if not on:
                continue
            per = sum((encoder_entry_bytes if scope == "encoder" else kv_entry_bytes)(model, cfg, t) for t in toks)
            caps = []
            if self.capacity_gib is not None:
                caps.append(self.capacity_gib * GIB)
            if self.capacity_entries is not None:
                caps.append(self.capacity_entries * per)
            total += min(caps) if caps else 0.0
        return total

    def notes(self, model: ModelSpec) -> list[str]:
        parts = [f"reuse ({self.scope}): expected hit rate {self.hit_rate:.0%} (given); TTFT is the expectation"
                 " over hits and misses"]
        if self.caches_kv():
            parts.append("reuse: image-KV hits assume the image opens the prompt (prefix caching)")
        return parts
