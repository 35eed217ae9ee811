"""One serving instance (a tensor-parallel group running one engine) as a SimPy process, assembled from parts:

* a BlockManager (lvlmsim.engine.blocks): paged KV blocks, allocated lazily as tokens are computed;
* a DecodeSet (lvlmsim.engine.decodeset): the decoding sequences as O(1) aggregates, with the decode-only fast path;
* InstanceStats (lvlmsim.engine.stats): busy time, steps, queue integral, time series, inter-token gaps;
* a SchedulerPolicy (lvlmsim.engine.schedulers, chosen by `serving.scheduler`): forms each batch step.

LlmInstance holds the mechanisms the policy calls (admit, preempt by recompute or by swap to host memory, price a
step) and the step loop. EncoderInstance is an encode-only worker of a disaggregated E pool.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from lvlmsim.engine.blocks import BlockManager
from lvlmsim.engine.decodeset import DecodeSet
from lvlmsim.engine.encoder_cache import EncoderCache
from lvlmsim.engine.preemption import Preemption, SwapTime
from lvlmsim.engine.request import COMPLETED, DONE, ENCODING, PARKED, PREFILL, PULLING, WAITING, Request
from lvlmsim.engine.stats import InstanceStats
from lvlmsim.engine.stepcost import StepCost

if TYPE_CHECKING:
    import simpy

    from lvlmsim.engine.cluster import Cluster
    from lvlmsim.engine.prefix import PrefixCache
    from lvlmsim.engine.reuse import ReuseTracker
    from lvlmsim.engine.schedulers import SchedulerPolicy, StepPlan
    from lvlmsim.techniques.kv_budget import KVBudgetPolicy

class _Base:
    """What every instance has: identity, queue, wake-up, statistics, KV blocks (none for an encoder)."""

    kind = "base"

    def __init__(self, env: simpy.Environment, name: str, pool: str, cluster: Cluster, overhead_s: float):
        self.env = env
        self.name = name
        self.pool = pool
        self.cluster = cluster
        self.overhead_s = overhead_s
        self.waiting = deque()
        self._wake = None
        self.outstanding = 0
        self.stats = InstanceStats()
        self.kv = BlockManager(0, 1)
        self.link = None  # simpy.Resource for transfers out of this instance (disaggregated pools only)
        # start of the step (or decode stretch) in flight, inf when idle: stats.busy_s counts up to it
        self.busy_since = math.inf

    def open_window(self, now: float) -> None:
        """Warm-up is over: the statistics measure from `now` on (a step in flight counts from `now`)."""
        self.stats.open_window(self.stats.busy_s + max(0.0, now - self.busy_since), now, len(self.waiting))

    def queue_touch(self) -> None:
        self.stats.queue_touch(self.env.now, len(self.waiting))

    def submit(self, r: Request) -> None:
        self.queue_touch()
        r.state = WAITING
        r.wait_since = self.env.now
        r.path.append(self.name)
        if not r.pools or r.pools[-1] != self.pool:
            r.pools.append(self.pool)
        self.outstanding += 1
        self.waiting.append(r)
        self.wake()

    def dequeue(self) -> Request:
        """Take the head of the queue; it stops waiting now."""
        self.queue_touch()
        r = self.waiting.popleft()
        r.waited(self.env.now)
        return r

    def wake(self) -> None:
        ev = self._wake
        if ev is not None:
            self._wake = None
            ev.succeed()

    def sample(self, batch: int) -> None:
        self.stats.sample(self.env.now, batch, len(self.waiting), self.kv.utilisation)

    @property
    def kv_utilisation(self) -> float:
        return self.kv.utilisation


class EncoderInstance(_Base):
    """Encode-only worker: FCFS batches of whole requests under the encoder token budget."""

    kind = "encode"

    def __init__(self, env, name, pool, cluster, coster: StepCost, budget_tokens: int, overhead_s: float,
                 reuse: ReuseTracker | None = None):
        super().__init__(env, name, pool, cluster, overhead_s)
        self.coster = coster
        self.budget = budget_tokens
        self.reuse = reuse  # encoder-output cache across turns (techniques: reuse)
        self.process = env.process(self.run())

    def _take_batch(self) -> tuple[list[Request], list[Request], int]:
        """(requests to encode, requests whose images are all cached, visual tokens to encode)."""
        batch: list[Request] = []
        cached: list[Request] = []
        tok = 0
        now = self.env.now
        reuse = self.reuse
        self.queue_touch()
        while self.waiting:
            r = self.waiting[0]
            plan = reuse.plan(r) if reuse is not None else None
            enc = plan.encode_tokens if plan is not None else r.visual_tokens
            if batch and tok + enc > self.budget:
                break
            self.waiting.popleft()
            r.waited(now)
            r.state = ENCODING
            r.encode_started(now)
            if plan is not None:
                reuse.commit(r, plan)
                r.enc_toks, r.enc_tokens = plan.encode_toks, enc
                if not plan.encode_toks:  # every image's embeddings are cached: nothing to run
                    cached.append(r)
                    continue
            batch.append(r)
            tok += enc
        return batch, cached, tok

    def _encoded(self, r: Request) -> None:
        r.encode_ended(self.env.now)
        r.encoded = True
        self.outstanding -= 1
        self.cluster.on_encoded(r, self)

    def run(self):
        env = self.env
        while True:
            if not self.waiting:
                self._wake = env.event()
                yield self._wake
                continue
            batch, cached, tok = self._take_batch()
            for r in cached:
                self._encoded(r)
            if not batch:
                continue
            dt = self.coster.encode_requests_s(batch, tok) + self.overhead_s
            if not self.stats.nsteps & self.stats.ts_mask:
                self.sample(len(batch))
            self.busy_since = env.now
            yield env.timeout(dt)
            self.stats.step_done(dt)
            self.busy_since = math.inf
            for r in batch:
                self._encoded(r)


class LlmInstance(_Base):
    """A vLLM-style engine running some of encode, prefill and decode for the requests routed to it."""

    kind = "llm"
    use_fast_path = True  # decode-only stretches through DecodeSet.fast_steps (tests compare it with the general path)

    def __init__(
        self, env, name: str, pool: str, cluster: Cluster, coster: StepCost, *, total_blocks: int, block_size: int,
        policy: SchedulerPolicy, encoder_budget: int, encoder_cache: int, does_encode: bool, handoff: bool,
        overhead_s: float, reuse: ReuseTracker | None = None, kv_policy: KVBudgetPolicy | None = None,
        swap_s: SwapTime | None = None, prefix: PrefixCache | None = None,
    ):
        super().__init__(env, name, pool, cluster, overhead_s)
        self.coster = coster
        self.kv = BlockManager(total_blocks, block_size)
        self.policy = policy
        self.waiting = policy.make_queue()
        self.encoder = EncoderCache(encoder_budget, encoder_cache)
        self.does_encode = does_encode
        self.handoff = handoff  # exits after the first token (a P pool feeding a separate D pool)
        self.running: dict[Request, None] = {}  # holders of a batch slot, in admission order
        self.prefilling: list[Request] = []
        self.ready: list[Request] = []  # KV pulled from a prefill instance or swapped in: decode from the next step
        # techniques acting on sequences (lvlmsim.engine.reuse, KVBudgetPolicy): a reuse cache consulted at admission,
        # and a KV budget applied when a sequence starts decoding (a rolling one stops its KV growing at the budget)
        self.reuse = reuse
        self.kv_policy = kv_policy
        self.prefix = prefix  # automatic prefix caching of text prompts (serving.prefix_caching, workload.text_prefix)
        self.decodes = DecodeSet.for_instance(block_size, coster, kv_policy)
        self.preemption = Preemption(swap_s, keep_encoded=policy.encode_ahead)
        self.process = env.process(self.run())

    def kv_after_prefill(self, r: Request) -> tuple[int, int]:
        """(KV tokens, of which visual) a sequence keeps once its prefill is done: all it computed, or what a KV
        budget leaves (SnapKV compresses right after prefill; H2O keeps the most recent budget)."""
        if self.kv_policy is None:
            return r.computed, min(r.vis_in_seq, r.computed)
        kept, kept_vis = self.kv_policy.kept(r.seq_tokens, r.vis_in_seq, max(0, r.computed - r.seq_tokens))
        return min(kept, r.computed), kept_vis

    # entry points used by the cluster ------------------------------------------------------------------------------
    def submit_pull(self, r: Request, src: LlmInstance) -> None:
        """A request whose prefill ran on `src`: it waits here for KV blocks, then its KV is pulled over the link."""
        r.pull_src = src
        self.submit(r)

    def pulled(self, r: Request) -> None:
        r.pull_src = None
        self.ready.append(r)
        self.wake()

    def release(self, r: Request, blocks: int) -> None:
        """The KV of a parked (handed-off) request reached the decode instance: free its `blocks` here."""
        self.kv.free += blocks
        self.cache_freed(r, r.target)
        if self.reuse is not None:
            self.reuse.release(r)
        self.wake()

    def cache_freed(self, r: Request, held_tokens: int) -> None:
        """`r` freed the blocks of its first `held_tokens` tokens: with a prefix cache, its computed prompt's full
        blocks (and its generated tokens') stay cached in the free pool (lvlmsim.engine.prefix)."""
        if self.prefix is not None:
            self.prefix.release(r.prefix_key, min(r.computed, r.prompt_tokens), held_tokens)

    # mechanisms the scheduler policy calls -----------------------------------------------------------------------
    def start_ready(self) -> None:
        """Sequences whose KV arrived (pulled or swapped in) join the decode set."""
        if self.ready:
            for r in self.ready:
                self.start_decode(r)
            self.ready.clear()

    def start_decode(self, r: Request) -> None:
        past = r.computed
        if r.swapped:
            r.swapped = 0
        elif self.kv_policy is not None:
            past = self.kv_after_prefill(r)[0]
            own = self.kv.blocks_for(past + r.extra_slots) - r.shared_blocks
            if own < r.blocks:  # the budget evicts KV right after prefill: its blocks go back
                self.kv.free += r.blocks - own
                r.blocks = own
        self.decodes.start(r, past)

    def encode_early(self, r: Request, step: StepPlan) -> None:
        """Encode-ahead: run the encoder for a request still waiting; its outputs wait in the encoder cache."""
        r.enc_tokens = r.visual_tokens
        self.encoder.take(r, r.visual_tokens, step)

    def start_prefill(self, r: Request, nb: int, reuse, shared: int, enc: int, step: StepPlan) -> None:
        """Admit the head of the queue for prefill with `nb` new blocks, reusing `shared` cached tokens."""
        self.dequeue()
        self.kv.free -= nb
        r.blocks += nb
        r.state = PREFILL
        self.running[r] = None
        self.prefilling.append(r)
        if reuse is not None:
            self.reuse.commit(r, reuse)
            r.computed = shared
            r.shared_blocks = shared // self.kv.size
            if not r.encoded:
                r.enc_toks, r.enc_tokens = reuse.encode_toks, enc
                if not enc:  # every image's embeddings are cached (or its KV is): no encoder work
                    r.encoded = True
        if enc:
            self.encoder.take(r, enc, step)

    def admit_resident(self, r: Request, step: StepPlan) -> bool:
        """Admit the head whose KV exists elsewhere: pulled from a prefill instance or swapped out to host memory.
        False when its blocks do not fit now."""
        kv = self.kv
        tokens = r.swapped if r.swapped else self.kv_after_prefill(r)[0]
        nb = kv.blocks_for(tokens + r.extra_slots)
        if nb > kv.free:
            return False
        self.dequeue()
        kv.free -= nb
        self.running[r] = None
        if r.swapped:  # back over the host link; it decodes from the next step
            r.blocks = nb
            self.preemption.swap_in(r, step)
            self.ready.append(r)
            return True
        src_blocks, r.blocks, r.shared_blocks = r.blocks, nb, 0  # a full copy here, shared or not there
        r.state = PULLING
        self.cluster.start_pull(r, r.pull_src, self, src_blocks)
        return True

    def preempt(self, v: Request, step: StepPlan, *, decodes_planned: bool) -> None:
        self.preemption.preempt(self, v, step, decodes_planned)

    def price(self, step: StepPlan) -> StepPlan:
        """Fill in the step's seconds: its encoder work, then the LLM pass over decodes and prefill chunks."""
        step.encode_s = self.coster.encode_requests_s(step.encoded, step.encode_tokens)
        step.n_dec = self.decodes.n if step.decode else 0
        step.seconds = step.encode_s + self.coster.batch_s(step.chunks, self.decodes, step.decode) + self.overhead_s
        if step.transfer_s:
            step.seconds += step.transfer_s
        return step

    # what happens after a step -----------------------------------------------------------------------------------
    def retire(self, r: Request, past: int) -> None:
        """A decoding sequence emitted its last token: free its blocks and record it."""
        self.kv.free += self.kv.blocks_for(past + r.extra_slots) - r.shared_blocks
        self.cache_freed(r, past)
        self._finish(r)

    def _finish(self, r: Request) -> None:
        r.state = DONE
        r.status = COMPLETED
        r.finish_s = self.env.now
        r.generated = r.output_tokens
        del self.running[r]
        self.outstanding -= 1
        if self.reuse is not None:
            self.reuse.release(r)
        r.shared_blocks = 0
        self.cluster.on_finished(r)

    def _after_chunks(self, chunks: list[tuple[Request, int]]) -> None:
        now = self.env.now
        for r, n in chunks:
            if r.state != PREFILL:
                continue
            r.computed += n
            if r.computed < r.target:
                continue
            self.prefilling.remove(r)
            self.encoder.release(r)
            if self.reuse is not None:
                self.reuse.prefilled(r)
            r.generated += 1
            if r.first_token_s != r.first_token_s:  # NaN: the first time this request emits
                r.first_token_s = now
            if r.generated >= r.output_tokens:
                self.kv.free += r.blocks
                r.blocks = 0
                self.cache_freed(r, r.target)
                self._finish(r)
            elif self.handoff:
                r.state = PARKED
                del self.running[r]
                self.outstanding -= 1
                self.cluster.on_prefilled(r, self)
            else:
                r.blocks = self.kv.blocks_for(r.computed + r.extra_slots) - r.shared_blocks
                self.start_decode(r)

    def _after_decode(self, dt: float, n_dec: int) -> None:
        """Inter-token gaps of the sequences that decoded, then advance the decode set."""
        ds = self.decodes
        now = self.env.now
        self.stats.decode_gaps(now - ds.last_end, dt, n_dec, min(ds.n_new, n_dec))
        ds.n_new = 0
        ds.last_end = now
        ds.advance(self.retire)

    def run(self):
        env = self.env
        ds = self.decodes
        st = self.stats
        # rolling KV budgets stop sequences growing, which the fast path does not track
        fast_ok = self.use_fast_path and self.coster.simple_decode and ds.rolling_budget is None
        while True:
            if fast_ok and ds.n and not self.waiting and not self.prefilling and not self.ready and not ds.n_new:
                starved = yield from ds.fast_steps(self)
                if not starved:
                    continue
            step = self.policy.plan(self)
            if step is None:
                self._wake = env.event()
                yield self._wake
                continue
            start = env.now
            for r in step.encoded:
                r.encode_started(start)
                r.encode_ended(start + step.encode_s)
            if not st.nsteps & st.ts_mask:
                self.sample(step.batch_size)
            self.kv.note_peak()
            dt = step.seconds
            self.busy_since = start
            yield env.timeout(dt)
            st.step_done(dt)
            self.busy_since = math.inf
            if step.decode:
                self._after_decode(dt, step.n_dec)
            if step.chunks:
                self._after_chunks(step.chunks)


__all__ = ["EncoderInstance", "LlmInstance"]
