"""One serving instance (a tensor-parallel group running one engine): its scheduler and its SimPy process.

LlmInstance follows vLLM's v1 scheduler: an FCFS waiting queue, continuous batching under max_num_seqs and
max_num_batched_tokens, chunked prefill (or, with chunking off, v0's prefill-only steps of whole prompts), paged KV
blocks allocated lazily as tokens are computed, preemption by recompute of the newest running request when blocks
run out, and an encoder step in the same batch step as a request's first prefill chunk, under an encoder token
budget and an encoder cache. EncoderInstance is an encode-only worker of a disaggregated E pool.

Performance: decoding sequences are never iterated per step. The scheduler keeps aggregates (count, sum of past
tokens, sequences per block-boundary residue class) and a heap of finish steps, so a decode-only step is O(1) plus
one dict lookup for its price (see stepcost).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING

from lvlmsim.engine.request import COMPLETED, DECODE, DONE, ENCODING, PARKED, PREFILL, PULLING, WAITING, Request
from lvlmsim.engine.stepcost import DECODE_KEY_STRIDE, INV_LOG_Q, StepCost
from lvlmsim.ops.graph import visual_tokens_kept

if TYPE_CHECKING:
    import simpy

    from lvlmsim.engine.cluster import Cluster
    from lvlmsim.engine.reuse import ReuseTracker
    from lvlmsim.techniques.kv_budget import KVBudgetPolicy

TS_CAP = 4096  # time-series points kept per instance; beyond, every other point is dropped and the stride doubles


class _Base:
    """What every instance has: identity, queue, wake-up, counters, time series."""

    kind = "base"

    def __init__(self, env: simpy.Environment, name: str, pool: str, cluster: Cluster, overhead_s: float):
        self.env = env
        self.name = name
        self.pool = pool
        self.cluster = cluster
        self.overhead_s = overhead_s
        self.waiting: deque[Request] = deque()
        self._wake = None
        self.outstanding = 0
        self.busy_s = 0.0
        self.max_step_s = 0.0
        self.nsteps = 0
        self.q_area = 0.0  # integral of the waiting-queue length over time (Little's law)
        self.q_last = 0.0
        self.ts_t: list[float] = []
        self.ts_batch: list[int] = []
        self.ts_queue: list[int] = []
        self.ts_kv: list[float] = []
        self.ts_mask = 0
        self.itl_dt: list[float] = []
        self.itl_n: list[int] = []
        self.link = None  # simpy.Resource for transfers out of this instance (disaggregated pools only)
        self.total_blocks = 0
        self.free = 0
        self.peak_used = 0

    # queue bookkeeping -----------------------------------------------------------------------------------------
    def _q_touch(self) -> None:
        now = self.env.now
        self.q_area += len(self.waiting) * (now - self.q_last)
        self.q_last = now

    def submit(self, r: Request) -> None:
        self._q_touch()
        r.state = WAITING
        r.wait_since = self.env.now
        r.instance = self
        r.path.append(self.name)
        if not r.pools or r.pools[-1] != self.pool:
            r.pools.append(self.pool)
        self.outstanding += 1
        self.waiting.append(r)
        self.wake()

    def wake(self) -> None:
        ev = self._wake
        if ev is not None:
            self._wake = None
            ev.succeed()

    def _sample(self, batch: int) -> None:
        self.ts_t.append(self.env.now)
        self.ts_batch.append(batch)
        self.ts_queue.append(len(self.waiting))
        self.ts_kv.append((self.total_blocks - self.free) / self.total_blocks if self.total_blocks else 0.0)
        if len(self.ts_t) >= TS_CAP:
            for lst in (self.ts_t, self.ts_batch, self.ts_queue, self.ts_kv):
                del lst[1::2]
            self.ts_mask = self.ts_mask * 2 + 1

    @property
    def kv_utilisation(self) -> float:
        return (self.total_blocks - self.free) / self.total_blocks if self.total_blocks else 0.0


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

    def run(self):
        env = self.env
        while True:
            if not self.waiting:
                self._wake = env.event()
                yield self._wake
                continue
            self._q_touch()
            batch: list[Request] = []
            tok = 0
            lens: list[int] = []
            proj = 0
            now = env.now
            reuse = self.reuse
            cached: list[Request] = []
            while self.waiting:
                r = self.waiting[0]
                plan = reuse.plan(r) if reuse is not None else None
                enc = plan.encode_tokens if plan is not None else r.visual_tokens
                if batch and tok + enc > self.budget:
                    break
                self.waiting.popleft()
                r.queue_s += now - r.wait_since
                r.state = ENCODING
                r.encode_start_s = now
                if plan is not None:
                    reuse.commit(r, plan)
                    r.enc_toks, r.enc_tokens = plan.encode_toks, enc
                    if not plan.encode_toks:  # every image's embeddings are cached: nothing to run
                        cached.append(r)
                        continue
                batch.append(r)
                tok += enc
                lens.extend(r.vit_seq_lens)
                proj += r.projector_in_tokens
            for r in cached:
                r.encode_end_s = now
                r.encoded = True
                self.outstanding -= 1
                self.cluster.on_encoded(r, self)
            if not batch:
                continue
            if self.coster.comp is not None:
                dt = self.coster.encode_toks_s([t for r in batch for t in r.toks_to_encode]) + self.overhead_s
            else:
                dt = self.coster.encode_s(lens, proj, tok) + self.overhead_s
            if not self.nsteps & self.ts_mask:
                self._sample(len(batch))
            yield env.timeout(dt)
            self.busy_s += dt
            if dt > self.max_step_s:
                self.max_step_s = dt
            self.nsteps += 1
            for r in batch:
                r.encode_end_s = env.now
                r.encoded = True
                self.outstanding -= 1
                self.cluster.on_encoded(r, self)


class LlmInstance(_Base):
    """A vLLM-style engine running some of encode, prefill and decode for the requests routed to it."""

    kind = "llm"

    def __init__(
        self, env, name: str, pool: str, cluster: Cluster, coster: StepCost, *, total_blocks: int, block_size: int,
        max_num_seqs: int, max_num_batched_tokens: int, chunked_prefill: bool, encoder_budget: int,
        encoder_cache: int, does_encode: bool, handoff: bool, overhead_s: float,
        reuse: ReuseTracker | None = None, kv_policy: KVBudgetPolicy | None = None,
    ):
        super().__init__(env, name, pool, cluster, overhead_s)
        self.coster = coster
        self.total_blocks = total_blocks
        self.free = total_blocks
        self.bs = block_size
        self.max_seqs = max_num_seqs
        self.max_tokens = max_num_batched_tokens
        self.chunked = chunked_prefill
        self.enc_budget = encoder_budget
        self.enc_cache_cap = encoder_cache
        self.enc_cache_used = 0
        self.does_encode = does_encode
        self.handoff = handoff  # exits after the first token (a P pool feeding a separate D pool)
        self.running: dict[Request, None] = {}  # holders of a batch slot, in admission order
        self.prefilling: list[Request] = []
        self.ready: list[Request] = []  # KV pulled from a prefill instance; decode from the next step
        self.fin: list[tuple[int, int, int, Request]] = []  # (finish decode step, id, epoch, request)
        self.n_dec = 0
        self.dec_past = 0
        self.cls_count = [0] * block_size
        nseg = len(coster.segments)
        self.schedule = coster.has_schedule
        self.dec_pruned = [0] * nseg
        self.dec_cross_n = 0
        self.dec_cross_sum = 0
        self.dstep = 0  # decode steps run so far: the clock of the decode aggregates
        self.parked = 0
        self.last_dec_end = 0.0  # when the last step that advanced decoding sequences ended (inter-token gaps)
        self.n_new_dec = 0  # sequences that joined decoding since then (their previous token came from prefill)
        # techniques acting on sequences (see lvlmsim.engine.reuse and KVBudgetPolicy): a reuse cache consulted at
        # admission, and a KV budget applied when a sequence starts decoding. A rolling budget (H2O) stops a
        # sequence's KV growing at the budget: n_grow counts the decoding sequences still growing, `caps` holds
        # (decode step at which one reaches the budget, id, epoch, request).
        self.reuse = reuse
        self.kv_policy = kv_policy
        self.rolling = kv_policy is not None and kv_policy.mode == "rolling" and not kv_policy.visual_only
        self.n_grow = 0
        self.caps: list[tuple[int, int, int, Request]] = []
        self.process = env.process(self.run())

    # blocks ------------------------------------------------------------------------------------------------------
    def _blocks_for(self, slots: int) -> int:
        return -(-slots // self.bs) if slots > 0 else 0

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
        self.free += blocks
        self.parked -= 1
        if self.reuse is not None:
            self.reuse.release(r)
        self.wake()

    # decode set --------------------------------------------------------------------------------------------------
    def _start_decode(self, r: Request) -> None:
        self.n_new_dec += 1
        t0 = self.dstep
        r.state = DECODE
        r.t0 = t0
        past = r.computed
        if self.kv_policy is not None:
            past = self.kv_after_prefill(r)[0]
            own = self._blocks_for(past + r.extra_slots) - r.shared_blocks
            if own < r.blocks:  # the budget evicts KV right after prefill: its blocks go back
                self.free += r.blocks - own
                r.blocks = own
        r.past0 = past
        r.gen0 = r.generated
        r.capped = self.rolling and past >= self.kv_policy.budget_tokens
        if not r.capped:
            r.cls = (t0 - past - r.extra_slots) % self.bs
            self.cls_count[r.cls] += 1
            self.n_grow += 1
            if self.rolling:
                heapq.heappush(self.caps, (t0 + self.kv_policy.budget_tokens - past, r.id, r.epoch, r))
        self.n_dec += 1
        self.dec_past += past
        if self.schedule:
            for i, v in enumerate(r.pruned):
                self.dec_pruned[i] += v
        if r.cross_kv:
            self.dec_cross_n += 1
            self.dec_cross_sum += r.cross_kv
        heapq.heappush(self.fin, (t0 + r.output_tokens - r.generated - 1, r.id, r.epoch, r))

    def _leave_decode(self, r: Request) -> int:
        """Remove from the aggregates; returns the request's current past tokens."""
        if r.capped:
            past = self.kv_policy.budget_tokens
        else:
            past = r.past0 + (self.dstep - r.t0)
            self.cls_count[r.cls] -= 1
            self.n_grow -= 1
        self.n_dec -= 1
        self.dec_past -= past
        if self.schedule:
            for i, v in enumerate(r.pruned):
                self.dec_pruned[i] -= v
        if r.cross_kv:
            self.dec_cross_n -= 1
            self.dec_cross_sum -= r.cross_kv
        r.epoch += 1
        r.generated = r.gen0 + (self.dstep - r.t0)
        return past

    # preemption ---------------------------------------------------------------------------------------------------
    def _victim(self) -> Request | None:
        for r in reversed(self.running):
            if r.state == DECODE or r.state == PREFILL:
                return r
        return None

    def _preempt(self, v: Request, decodes_planned: bool) -> tuple[int, int]:
        """Recompute preemption (vLLM): free every block of `v` and put it at the head of the queue.

        Returns (decode blocks already taken this step to give back, decode tokens to drop from this step).
        """
        give_back = drop = 0
        if v.state == DECODE:
            grew = not v.capped
            past = self._leave_decode(v)
            held = self._blocks_for(past + v.extra_slots) - v.shared_blocks
            if decodes_planned:
                drop = 1
                if grew and (past + v.extra_slots) % self.bs == 0:
                    give_back = 1
        else:
            held = v.blocks
            self.prefilling.remove(v)
            if v.enc_cached:
                self.enc_cache_used -= v.enc_tokens
                v.enc_cached = False
        self.free += held
        v.blocks = 0
        v.shared_blocks = 0
        v.capped = False
        if self.reuse is not None:
            self.reuse.release(v)
        v.computed = 0
        v.target = v.seq_tokens + v.generated
        if self.does_encode and v.vit_seq_lens:
            v.encoded = False  # vLLM drops a preempted request's encoder outputs
        v.preemptions += 1
        del self.running[v]
        self._q_touch()
        v.state = WAITING
        v.wait_since = self.env.now
        self.waiting.appendleft(v)
        return give_back, drop

    # the step ------------------------------------------------------------------------------------------------------
    def _plan(self):
        """Form one batch step. Returns (seconds, scheduled prefill chunks, decodes ran, encoded requests, encode s,
        batch size) or None when nothing can run now."""
        now = self.env.now
        bs = self.bs
        if self.ready:
            for r in self.ready:
                self._start_decode(r)
            self.ready.clear()
        budget = self.max_tokens
        sched: list[tuple[Request, int]] = []
        chunks: list[tuple] = []
        enc_reqs: list[Request] = []
        enc_used = 0
        decode = False
        # v0 without chunking: a step of whole waiting prompts when one fits, else a decode step
        prefill_only = not self.chunked and self._head_admissible()
        if self.n_dec and not prefill_only:
            need = self.cls_count[self.dstep % bs]
            while need > self.free:
                v = self._victim()
                if v is None:
                    break
                if v.state == DECODE and v.cls == self.dstep % bs:
                    need -= 1
                self._preempt(v, False)
            self.free -= need
            budget -= self.n_dec
            decode = self.n_dec > 0
        # running prefills continue, oldest first
        if self.prefilling and not prefill_only:
            for r in list(self.prefilling):
                if r.state != PREFILL:
                    continue
                if budget <= 0:
                    break
                n = min(r.target - r.computed, budget)
                nb = self._blocks_for(r.computed + n + r.extra_slots) - r.shared_blocks - r.blocks
                while nb > self.free:
                    v = self._victim()
                    if v is None:
                        break
                    gb, drop = self._preempt(v, decode)
                    self.free += gb
                    budget += drop
                    if v is r:
                        break
                if r.state != PREFILL or nb > self.free:
                    continue
                self.free -= nb
                r.blocks += nb
                sched.append((r, n))
                budget -= n
        # admit waiting requests, FCFS (never skip the head)
        waiting = self.waiting
        touched = False
        while waiting and len(self.running) < self.max_seqs:
            r = waiting[0]
            if r.pull_src is not None:
                if prefill_only:
                    break
                nb = self._blocks_for(self.kv_after_prefill(r)[0] + r.extra_slots)
                if nb > self.free:
                    break
                if not touched:
                    self._q_touch()
                    touched = True
                waiting.popleft()
                r.queue_s += now - r.wait_since
                self.free -= nb
                src_blocks, r.blocks, r.shared_blocks = r.blocks, nb, 0  # a full copy here, shared or not there
                r.state = PULLING
                self.running[r] = None
                self.cluster.start_pull(r, r.pull_src, self, src_blocks)
                continue
            if budget <= 0:
                break
            plan = self.reuse.plan(r) if self.reuse is not None and not r.computed else None
            shared = plan.shared_tokens if plan is not None else 0
            remaining = r.target - max(r.computed, shared)
            if remaining <= 0:  # the whole prompt is cached image KV: recompute its last token (vLLM does too)
                shared = max(0, shared - self.bs)
                remaining = r.target - shared
            if self.chunked:
                n = min(remaining, budget)
            else:
                if remaining > budget and budget < self.max_tokens:
                    break
                n = remaining  # a prompt longer than the whole budget runs alone
            enc = 0
            if not r.encoded:
                enc = plan.encode_tokens if plan is not None else r.visual_tokens
                if enc_used and enc_used + enc > self.enc_budget:
                    break
                if self.enc_cache_used and self.enc_cache_used + enc > self.enc_cache_cap:
                    break
            shared_blocks = shared // self.bs
            nb = self._blocks_for(max(r.computed, shared) + n + r.extra_slots) - shared_blocks - r.blocks
            if nb > self.free:
                break
            if not touched:
                self._q_touch()
                touched = True
            waiting.popleft()
            r.queue_s += now - r.wait_since
            self.free -= nb
            r.blocks += nb
            r.state = PREFILL
            self.running[r] = None
            self.prefilling.append(r)
            if plan is not None:
                self.reuse.commit(r, plan)
                r.computed = shared
                r.shared_blocks = shared_blocks
                if not r.encoded:
                    r.enc_toks, r.enc_tokens = plan.encode_toks, enc
                    if not enc:  # every image's embeddings are cached (or its KV is): no encoder work
                        r.encoded = True
            if enc:
                enc_used += enc
                self.enc_cache_used += enc
                r.enc_cached = True
                r.encoded = True
                enc_reqs.append(r)
            sched.append((r, n))
            budget -= n
        if not sched and not decode:
            return None
        enc_s = 0.0
        if enc_reqs and self.coster.comp is not None:
            enc_s = self.coster.encode_toks_s([t for r in enc_reqs for t in r.toks_to_encode])
        elif enc_reqs:
            lens: list[int] = []
            proj = 0
            for r in enc_reqs:
                lens.extend(r.vit_seq_lens)
                proj += r.projector_in_tokens
            enc_s = self.coster.encode_s(lens, proj, enc_used)
        for r, n in sched:
            c = r.computed
            vis = r.vis_in_seq
            chunks.append((n, c, max(0, min(c + n, vis) - c), min(c, vis), r.cross_kv, c + n >= r.target))
        n_dec = self.n_dec if decode else 0
        if self.schedule:
            llm_s = self.coster.step_s(n_dec, self.dec_past if decode else 0, chunks, dec_pruned=self.dec_pruned,
                                       dec_cross_n=self.dec_cross_n if decode else 0,
                                       dec_cross_sum=self.dec_cross_sum if decode else 0)
        else:
            llm_s = self.coster.step_s(n_dec, self.dec_past if decode else 0, chunks,
                                       dec_cross_n=self.dec_cross_n if decode else 0,
                                       dec_cross_sum=self.dec_cross_sum if decode else 0)
        return enc_s + llm_s + self.overhead_s, sched, decode, enc_reqs, enc_s, n_dec + len(sched)

    def _head_admissible(self) -> bool:
        """v0 (no chunking): can the head of the queue start a whole-prompt prefill now?"""
        if not self.waiting or len(self.running) >= self.max_seqs:
            return False
        r = self.waiting[0]
        if r.pull_src is not None:
            return False
        return self._blocks_for(r.target + r.extra_slots) <= self.free

    def _after_decode(self) -> None:
        self.dec_past += self.n_grow
        d = self.dstep
        self.dstep = d + 1
        caps = self.caps
        while caps and caps[0][0] <= d + 1:  # reached the rolling budget: from now on its KV stays that size
            _, _, ep, r = heapq.heappop(caps)
            if ep != r.epoch or r.state != DECODE or r.capped:
                continue
            r.capped = True
            self.cls_count[r.cls] -= 1
            self.n_grow -= 1
        self._pop_finished(d)

    def _pop_finished(self, d: int) -> None:
        """Requests whose last decode step was step `d` (stale heap entries of preempted requests are skipped)."""
        fin = self.fin
        while fin and fin[0][0] <= d:
            _, _, ep, r = heapq.heappop(fin)
            if ep != r.epoch or r.state != DECODE:
                continue
            past = self._leave_decode(r)
            self.free += self._blocks_for(past + r.extra_slots) - r.shared_blocks
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

    def _after_chunks(self, sched: list[tuple[Request, int]]) -> None:
        now = self.env.now
        for r, n in sched:
            if r.state != PREFILL:
                continue
            r.computed += n
            if r.computed < r.target:
                continue
            self.prefilling.remove(r)
            if r.enc_cached:
                self.enc_cache_used -= r.enc_tokens
                r.enc_cached = False
            if self.reuse is not None:
                self.reuse.prefilled(r)
            r.generated += 1
            if r.first_token_s != r.first_token_s:  # NaN: the first time this request emits
                r.first_token_s = now
            if r.generated >= r.output_tokens:
                self.free += r.blocks
                r.blocks = 0
                self._finish(r)
            elif self.handoff:
                r.state = PARKED
                del self.running[r]
                self.parked += 1
                self.outstanding -= 1
                self.cluster.on_prefilled(r, self)
            else:
                r.blocks = self._blocks_for(r.computed + r.extra_slots) - r.shared_blocks
                self._start_decode(r)

    def run(self):
        env = self.env
        bs = self.bs
        coster = self.coster
        fast_ok = coster.simple_decode and not self.rolling  # rolling KV budgets stop sequences growing
        dec_get = coster._dec.get
        log = math.log
        inv = INV_LOG_Q
        cls_count = self.cls_count
        fin = self.fin
        itl_dt = self.itl_dt.append
        itl_n = self.itl_n.append
        overhead = self.overhead_s
        timeout = env.timeout
        while True:
            # fast path: decode-only steps while nothing waits (the common case under load). The decode aggregates
            # live in locals for the stretch (only this process changes them; `free` can change from other processes
            # during a step, so it stays on self) and are written back before anything else reads them.
            if (fast_ok and self.n_dec and not self.waiting and not self.prefilling and not self.ready
                    and not self.n_new_dec):
                n = self.n_dec
                past = self.dec_past
                d = self.dstep
                busy = self.busy_s
                longest = self.max_step_s
                ns = self.nsteps
                mask = self.ts_mask
                peak = self.peak_used
                total = self.total_blocks
                last_end = self.last_dec_end
                starved = False
                while True:
                    need = cls_count[d % bs]
                    free = self.free
                    if need > free:
                        starved = True  # out of blocks: the general planner preempts
                        break
                    free -= need
                    self.free = free
                    dt = dec_get(n * DECODE_KEY_STRIDE + int(log(past + n) * inv + 0.5))
                    if dt is None:
                        dt = coster.decode_s(n, past)
                    dt += overhead
                    if not ns & mask:
                        self._sample(n)
                        mask = self.ts_mask
                    if total - free > peak:
                        peak = total - free
                    yield timeout(dt)
                    busy += dt
                    if dt > longest:
                        longest = dt
                    ns += 1
                    now = env.now
                    itl_dt(now - last_end)  # no sequence joined: every gap is since the previous decode step
                    itl_n(n)
                    last_end = now
                    past += n
                    d += 1
                    if fin and fin[0][0] < d:
                        self.n_dec, self.dec_past, self.dstep = n, past, d
                        self._pop_finished(d - 1)
                        n, past = self.n_dec, self.dec_past
                    if not n or self.waiting or self.ready:
                        break
                self.n_dec, self.dec_past, self.dstep = n, past, d
                self.busy_s, self.max_step_s, self.nsteps, self.peak_used = busy, longest, ns, peak
                self.last_dec_end = last_end
                if not starved:
                    continue
            plan = self._plan()
            if plan is None:
                self._wake = env.event()
                yield self._wake
                continue
            dt, sched, decode, enc_reqs, enc_s, batch = plan
            start = env.now
            for r in enc_reqs:
                r.encode_start_s = start
                r.encode_end_s = start + enc_s
            if not self.nsteps & self.ts_mask:
                self._sample(batch)
            used = self.total_blocks - self.free
            if used > self.peak_used:
                self.peak_used = used
            n_dec = self.n_dec if decode else 0
            yield env.timeout(dt)
            self.busy_s += dt
            if dt > self.max_step_s:
                self.max_step_s = dt
            self.nsteps += 1
            if decode:
                now = env.now
                new = min(self.n_new_dec, n_dec)
                if n_dec - new:
                    self.itl_dt.append(now - self.last_dec_end)  # includes prefill-only steps in between (v0)
                    self.itl_n.append(n_dec - new)
                if new:
                    self.itl_dt.append(dt)  # their previous token came out of the step just before
                    self.itl_n.append(new)
                self.n_new_dec = 0
                self.last_dec_end = now
                self._after_decode()
            if sched:
                self._after_chunks(sched)


def kept_visual(vis: int, fracs: tuple[float, ...]) -> tuple[int, ...]:
    """Per layer segment: past visual tokens a visual-token schedule drops from the KV of a decoding sequence."""
    return tuple(vis - visual_tokens_kept(vis, f) for f in fracs)


__all__ = ["EncoderInstance", "LlmInstance", "TS_CAP", "kept_visual"]
