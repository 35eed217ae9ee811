"""What a scheduler policy is: one method, `plan(inst)`, that forms the next batch step of an LLM instance from its
waiting queue and its running set and returns a StepPlan (or None when nothing can run now).

The base class is vLLM's v1 scheduler, continuous batching under `max_num_seqs` and a per-step token budget:

1. sequences handed over from a prefill instance (`ready`) join the decode set;
2. the decode step reserves the blocks its sequences cross into, preempting `victim()`s when blocks run out;
3. running prefills continue, oldest first, in chunks under the token budget (or, with chunking off, v0's
   prefill-only steps of whole prompts; with `mixed_batches` off, SGLang's default: prefill first, a step of
   prefill chunks alone whenever one can run, else a decode step, never both);
4. waiting requests are admitted in `queue` order, never skipping the head: KV pulls of a disaggregated decode pool,
   then new prefills, each with its encoder work in the same step (`co_batch`) under the encoder budget and cache;
5. with `encoder_policy: encode_ahead`, leftover encoder budget encodes requests still waiting for blocks, in queue
   order, so their images are ready when they are admitted (FIFO policies only: a reordered queue could strand the
   encoder cache on requests that are overtaken).

A policy changes what it needs and inherits the rest: the queue order (`make_queue`), the step's token budget
(`token_budget`), and whom to preempt (`victim`). Mechanisms (allocating blocks, preempting, pricing the step) are
the instance's; a policy never prices anything itself.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from lvlmsim.engine.request import DECODE, PREFILL, Request

if TYPE_CHECKING:
    from lvlmsim.engine.instance import LlmInstance
    from lvlmsim.specs.serving import ServingSpec


@dataclass(slots=True)
class StepPlan:
    """One batch step: prefill chunks (request, new tokens), whether the decode set advances, the requests whose
    encoder runs in it, and (filled in by LlmInstance.price) its seconds."""

    budget: int  # tokens still free in this step while it is being formed
    chunks: list[tuple[Request, int]] = field(default_factory=list)
    decode: bool = False
    encoded: list[Request] = field(default_factory=list)
    encode_tokens: int = 0
    transfer_s: float = 0.0  # KV swapped to or from host memory in this step (swap preemption)
    n_dec: int = 0
    encode_s: float = 0.0
    seconds: float = 0.0

    @property
    def batch_size(self) -> int:
        return self.n_dec + len(self.chunks)


class KeyedQueue:
    """A waiting queue served in key order (lowest first, FIFO among equal keys): the deque interface the engine
    uses (append, appendleft, [0], popleft, len, iteration), over a heap. `appendleft` (a preempted request going
    back) goes ahead of requests with an equal key."""

    __slots__ = ("_heap", "_key", "_seq")

    def __init__(self, key: Callable[[Request], float | tuple]):
        self._heap: list[tuple] = []
        self._key = key
        self._seq = itertools.count()

    def append(self, r: Request) -> None:
        heapq.heappush(self._heap, (self._key(r), next(self._seq), r))

    def appendleft(self, r: Request) -> None:
        heapq.heappush(self._heap, (self._key(r), -next(self._seq), r))

    def __getitem__(self, i: int) -> Request:
        if i != 0:
            raise IndexError("a keyed queue exposes only its head")
        return self._heap[0][2]

    def popleft(self) -> Request:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (e[2] for e in sorted(self._heap, key=lambda e: e[:2]))


class SchedulerPolicy:
    """vLLM v1's batch formation with first-come-first-served order; subclasses change order, budget or victim."""

    name: ClassVar[str] = "fcfs"

    def __init__(self, serving: ServingSpec):
        self.max_num_seqs = serving.max_num_seqs
        self.max_num_batched_tokens = serving.max_num_batched_tokens
        self.chunked = serving.chunked_prefill
        self.mixed = serving.mixed_batches
        self.encode_ahead = serving.encoder_policy == "encode_ahead"

    # what a policy chooses ------------------------------------------------------------------------------------------
    def make_queue(self):
        """The waiting queue of an instance: FIFO, preempted requests back at the head."""
        return deque()

    def token_budget(self) -> int:
        """New tokens one step may process (decode tokens count one each)."""
        return self.max_num_batched_tokens

    def victim(self, inst: LlmInstance) -> Request | None:
        """Whom to preempt when blocks run out: the newest running request that holds blocks (vLLM)."""
        for r in reversed(inst.running):
            if r.state == DECODE or r.state == PREFILL:
                return r
        return None

    # the step ---------------------------------------------------------------------------------------------------------
    def plan(self, inst: LlmInstance) -> StepPlan | None:
        inst.start_ready()
        step = StepPlan(budget=self.token_budget())
        if self.chunked and not self.mixed:
            return self._plan_prefill_first(inst, step)
        # v0 without chunking: a step of whole waiting prompts when one fits, else a decode step
        prefill_only = not self.chunked and self._head_admissible(inst)
        if inst.decodes.n and not prefill_only:
            self._reserve_decode(inst, step)
        if inst.prefilling and not prefill_only:
            self._continue_prefills(inst, step)
        self._admit(inst, step, prefill_only)
        if self.encode_ahead:
            self._encode_ahead(inst, step)
        if not step.chunks and not step.decode and not step.encoded:
            return None
        return inst.price(step)

    def _plan_prefill_first(self, inst: LlmInstance, step: StepPlan) -> StepPlan | None:
        """SGLang without --enable-mixed-chunk (Scheduler.get_next_batch_to_run: "Run prefill first if possible"):
        running prefills continue and waiting requests are admitted in a step of prefill chunks alone; only when
        no chunk can run does the decode set advance (with the KV pulls and swap-ins a decode step admits)."""
        if inst.prefilling:
            self._continue_prefills(inst, step)
        self._admit(inst, step, prefill_only=True)
        if not step.chunks:
            if inst.decodes.n:
                self._reserve_decode(inst, step)
            self._admit_residents(inst, step)
        if self.encode_ahead:
            self._encode_ahead(inst, step)
        if not step.chunks and not step.decode and not step.encoded:
            return None
        return inst.price(step)

    def _admit_residents(self, inst: LlmInstance, step: StepPlan) -> None:
        """A decode step's admissions: KV pulls of a disaggregated decode pool and swapped-out requests at the head
        of the queue, which join the decode set without a prefill chunk."""
        waiting = inst.waiting
        while waiting and len(inst.running) < self.max_num_seqs:
            r = waiting[0]
            if r.pull_src is None and not r.swapped:
                break
            if not inst.admit_resident(r, step):
                break

    def _head_admissible(self, inst: LlmInstance) -> bool:
        """v0 (no chunking): can the head of the queue start a whole-prompt prefill now?"""
        if not inst.waiting or len(inst.running) >= self.max_num_seqs:
            return False
        r = inst.waiting[0]
        if r.pull_src is not None or r.swapped:
            return False
        return inst.kv.blocks_for(r.target + r.extra_slots) <= inst.kv.free

    def _reserve_decode(self, inst: LlmInstance, step: StepPlan) -> None:
        """Blocks for the decode step; preempt until they fit (a victim that would cross a boundary needs none)."""
        ds, kv = inst.decodes, inst.kv
        cls = ds.step % ds.bs
        need = ds.cls_count[cls]
        while need > kv.free:
            v = self.victim(inst)
            if v is None:
                break
            if v.state == DECODE and v.cls == cls:
                need -= 1
            inst.preempt(v, step, decodes_planned=False)
        kv.free -= need
        step.budget -= ds.n
        step.decode = ds.n > 0

    def _continue_prefills(self, inst: LlmInstance, step: StepPlan) -> None:
        kv = inst.kv
        for r in list(inst.prefilling):
            if r.state != PREFILL:
                continue
            if step.budget <= 0:
                break
            n = min(r.target - r.computed, step.budget)
            nb = kv.blocks_for(r.computed + n + r.extra_slots) - r.shared_blocks - r.blocks
            while nb > kv.free:
                v = self.victim(inst)
                if v is None:
                    break
                inst.preempt(v, step, decodes_planned=step.decode)
                if v is r:
                    break
            if r.state != PREFILL or nb > kv.free:
                continue
            kv.free -= nb
            r.blocks += nb
            step.chunks.append((r, n))
            step.budget -= n

    def _admit(self, inst: LlmInstance, step: StepPlan, prefill_only: bool) -> None:
        """Admit from the head of the queue while the head fits (never skip it)."""
        waiting = inst.waiting
        while waiting and len(inst.running) < self.max_num_seqs:
            r = waiting[0]
            if r.pull_src is not None or r.swapped:
                if prefill_only or not inst.admit_resident(r, step):
                    break
                continue
            if step.budget <= 0 or not self._admit_prefill(inst, r, step):
                break

    def _admit_prefill(self, inst: LlmInstance, r: Request, step: StepPlan) -> bool:
        """Admit the head `r` for prefill if its first chunk, encoder work and blocks fit; False stops admission."""
        kv = inst.kv
        reuse = inst.reuse.plan(r) if inst.reuse is not None and not r.computed else None
        shared = reuse.shared_tokens if reuse is not None else 0
        # a text prompt's cached stream prefix (serving.prefix_caching): its blocks are the request's own from here;
        # cached blocks are free blocks, so what earlier allocations took is evicted first
        if inst.prefix is not None:
            inst.prefix.fit(kv.free)
        hit = (inst.prefix.hit_tokens(r.prefix_key, r.target) if inst.prefix is not None and reuse is None
               and not r.computed else 0)
        remaining = r.target - max(r.computed, shared, hit)
        if remaining <= 0:  # the whole prompt is cached image KV: recompute its last token (vLLM does too)
            shared = max(0, shared - kv.size)
            remaining = r.target - shared
        if self.chunked:
            n = min(remaining, step.budget)
        else:
            if remaining > step.budget and step.budget < self.token_budget():
                return False
            n = remaining  # a prompt longer than the whole budget runs alone
        enc = 0
        if not r.encoded:
            enc = reuse.encode_tokens if reuse is not None else r.visual_tokens
            # encode-ahead holds cache for waiting requests: a preempted one re-encodes past the cache bound
            if not inst.encoder.fits(enc, step, check_cache=not self.encode_ahead):
                return False
        nb = kv.blocks_for(max(r.computed, shared, hit) + n + r.extra_slots) - shared // kv.size - r.blocks
        if nb > kv.free:
            return False
        inst.start_prefill(r, nb, reuse, shared, enc, step)
        if inst.prefix is not None and reuse is None and not r.computed:
            inst.prefix.took(r.prefix_key, hit)
            r.computed = hit
        step.chunks.append((r, n))
        step.budget -= n
        return True

    def _encode_ahead(self, inst: LlmInstance, step: StepPlan) -> None:
        """Encode requests still waiting (in queue order) with the encoder budget and cache the step left."""
        for r in inst.waiting:
            if r.encoded or r.pull_src is not None:
                continue
            if not inst.encoder.fits(r.visual_tokens, step):
                break
            inst.encode_early(r, step)


__all__ = ["KeyedQueue", "SchedulerPolicy", "StepPlan"]
