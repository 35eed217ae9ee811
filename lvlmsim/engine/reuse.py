"""Cross-turn reuse inside the engine: an encoder-output cache and an image-KV prefix cache per instance.

The technique (`lvlmsim.techniques.reuse.ReuseConfig`) gives the caches (LRU by image id, bounded in entries and/or
GiB); this module decides, when an instance admits a request, what that request reuses:

* image-KV prefix (scope kv/both, self-attention models): the images open the decoder sequence in the engine's
  token order, so image j's KV can be reused only if images 0..j are the same ones in the same order (prefix
  caching, as vLLM's block-hash chain and SGLang's radix tree do). Entry keys are therefore the id prefix
  (ids[0..j]). Only whole KV blocks are shared (vLLM shares full blocks only): the shared prefix is rounded down
  to the block size, the request prefills from there, and the blocks of the shared prefix are not allocated again
  (they sit in the cache's own region, reserved up front; entries in use are pinned so LRU never evicts them).
* encoder outputs (scope encoder/both): an image not wholly covered by the shared KV prefix needs its embeddings;
  an encoder-cache hit gives them without running the vision encoder. Misses are encoded and inserted.

A new image's KV entry is inserted when the request's prefill completes (its KV then exists). Lookups count once
per admission (a request preempted and re-admitted looks up again).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lvlmsim.engine.request import Request
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.techniques.reuse import ReuseCache, ReuseConfig

EntryBytes = Callable[[ImageTokenization], float]


def image_units(r: Request) -> list[tuple[str, tuple[ImageTokenization, ...]]]:
    """(image id, its tokenizations) in sequence order. A trace row that gives one token count for several ids
    yields a single unit keyed by all of them; a video (no id) is never a unit."""
    ids = r.image_ids
    if not ids:
        return []
    img_toks = r.toks[:-1] if r.video_s > 0 and r.toks else r.toks
    if len(img_toks) == len(ids):
        return [(i, (t,)) for i, t in zip(ids, img_toks, strict=True)]
    if not img_toks:
        return []
    return [("+".join(ids), tuple(img_toks))]


class ReusePlan:
    """What an admission would reuse; `commit` makes it happen (the admission may still fail for blocks)."""

    __slots__ = ("shared_tokens", "kv_hits", "encode_toks", "encode_tokens", "enc_hits", "enc_misses", "units")

    def __init__(self, shared_tokens, kv_hits, encode_toks, encode_tokens, enc_hits, enc_misses, units):
        self.shared_tokens = shared_tokens
        self.kv_hits = kv_hits
        self.encode_toks = encode_toks
        self.encode_tokens = encode_tokens
        self.enc_hits = enc_hits
        self.enc_misses = enc_misses
        self.units = units


class ReuseTracker:
    """The reuse caches of one instance and their bookkeeping (hits, tokens and images saved)."""

    def __init__(self, config: ReuseConfig, *, block_size: int, kv: bool, encoder: bool,
                 enc_entry_bytes: EntryBytes, kv_entry_bytes: EntryBytes):
        caches = config.make_caches()
        self.enc: ReuseCache | None = caches.get("encoder") if encoder else None
        self.kv: ReuseCache | None = caches.get("kv") if kv else None
        self.bs = block_size
        self.enc_entry_bytes = enc_entry_bytes
        self.kv_entry_bytes = kv_entry_bytes
        self.prefill_tokens_saved = 0
        self.images_not_encoded = 0
        self.images_seen = 0
        self.requests_with_kv_hit = 0

    def plan(self, r: Request) -> ReusePlan | None:
        """Side-effect free: the shared KV prefix (tokens, block-aligned) and the images still to encode."""
        units = image_units(r)
        if not units:
            return None
        kv_hits = 0
        covered = 0
        if self.kv is not None:
            prefix: tuple[str, ...] = ()
            for uid, toks in units:
                prefix = prefix + (uid,)
                if prefix not in self.kv:
                    break
                kv_hits += 1
                covered += sum(t.llm_tokens for t in toks)
        shared = (covered // self.bs) * self.bs
        encode_toks: list[ImageTokenization] = []
        enc_hits: list[str] = []
        enc_misses: list[tuple[str, tuple[ImageTokenization, ...]]] = []
        pos = 0
        for uid, toks in units:
            end = pos + sum(t.llm_tokens for t in toks)
            if end > shared:  # some of its tokens must be computed: its embeddings are needed
                if self.enc is not None and uid in self.enc:
                    enc_hits.append(uid)
                else:
                    enc_misses.append((uid, toks))
                    encode_toks.extend(toks)
            pos = end
        if r.video_s > 0 and r.toks:  # a video is always encoded
            encode_toks.append(r.toks[-1])
        return ReusePlan(shared, kv_hits, tuple(encode_toks), sum(t.llm_tokens for t in encode_toks), enc_hits,
                         enc_misses, units)

    def commit(self, r: Request, p: ReusePlan) -> None:
        """Count the lookups, pin the shared KV entries, insert the images about to be encoded."""
        self.images_seen += len(p.units)
        if self.kv is not None:
            keys = []
            prefix: tuple[str, ...] = ()
            for j, (uid, _) in enumerate(p.units):
                prefix = prefix + (uid,)
                if j > p.kv_hits:
                    break
                if self.kv.lookup(prefix):  # the first miss is counted, later images are not looked up
                    self.kv.pin(prefix)
                    keys.append(prefix)
            r.reuse_keys = tuple(keys)
            if p.shared_tokens:
                self.requests_with_kv_hit += 1
                self.prefill_tokens_saved += p.shared_tokens
        if self.enc is not None:
            for uid in p.enc_hits:
                self.enc.lookup(uid)
            for uid, toks in p.enc_misses:
                self.enc.lookup(uid)
                self.enc.insert(uid, sum(self.enc_entry_bytes(t) for t in toks))
        self.images_not_encoded += len(p.units) - len(p.enc_misses)

    def prefilled(self, r: Request) -> None:
        """The request's KV now exists: insert the image prefixes it computed (the ones it did not share)."""
        if self.kv is None:
            return
        prefix: tuple[str, ...] = ()
        for uid, toks in image_units(r):
            prefix = prefix + (uid,)
            if prefix not in self.kv:
                self.kv.insert(prefix, sum(self.kv_entry_bytes(t) for t in toks))

    def release(self, r: Request) -> None:
        """The request no longer reads the shared blocks (finished, preempted, or its KV left the instance)."""
        if self.kv is not None:
            for key in r.reuse_keys:
                self.kv.unpin(key)
        r.reuse_keys = ()

    def stats(self) -> dict:
        out: dict = {"images_seen": self.images_seen, "images_not_encoded": self.images_not_encoded,
                     "requests_with_kv_hit": self.requests_with_kv_hit,
                     "prefill_tokens_saved": self.prefill_tokens_saved}
        for name, cache in (("encoder_cache", self.enc), ("kv_cache", self.kv)):
            if cache is not None:
                out[name] = cache.stats()
        return out


def merge_stats(parts: list[dict]) -> dict:
    """Sum the per-instance reuse statistics; hit rates recomputed from the summed hits and misses."""
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            if isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    if kk != "hit_rate":
                        d[kk] = d.get(kk, 0) + vv
            else:
                out[k] = out.get(k, 0) + v
    for k in ("encoder_cache", "kv_cache"):
        if k in out:
            n = out[k]["hits"] + out[k]["misses"]
            out[k]["hit_rate"] = out[k]["hits"] / n if n else math.nan
    return out


__all__ = ["ReusePlan", "ReuseTracker", "image_units", "merge_stats"]
