"""The decoding sequences of one instance, as O(1) aggregates.

Decoding sequences are never iterated per step. The set keeps their count, the sum of their past tokens, how many
sit at each block-boundary residue class (so the blocks a decode step needs is one list lookup), the per-segment
visual tokens a token schedule dropped, cross-attention KV, and two heaps: the decode step at which each sequence
finishes, and (with a rolling KV budget) the step at which its KV stops growing. A sequence that leaves early
(preemption) bumps its `epoch`, which makes its heap entries stale; they are skipped when popped.

`fast_steps` is the engine's hot path: a stretch of decode-only steps while nothing else is waiting, with the
aggregates held in locals. Its results must equal the general path's (the scheduler policy pricing one step at a
time); tests/test_engine_oracle.py checks that.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from lvlmsim.engine.request import DECODE, Request
from lvlmsim.engine.stats import FLUSH_GAPS
from lvlmsim.engine.stepcost import DECODE_KEY_STRIDE, INV_LOG_Q
from lvlmsim.ops.graph import visual_tokens_kept

if TYPE_CHECKING:
    from lvlmsim.engine.instance import LlmInstance

Retire = Callable[[Request, int], None]  # (finished request, its past tokens) -> free its blocks, record it


class DecodeSet:
    """Aggregates of the decoding sequences; `step` is the clock they are kept against (decode steps run)."""

    def __init__(self, block_size: int, segments: int, *, schedule: bool, rolling_budget: int | None):
        self.bs = block_size
        self.n = 0
        self.past = 0
        self.cls_count = [0] * block_size
        self.schedule = schedule
        self.pruned = [0] * segments
        self.cross_n = 0
        self.cross_sum = 0
        self.step = 0
        self.fin: list[tuple[int, int, int, Request]] = []  # (finish decode step, id, epoch, request)
        self.rolling_budget = rolling_budget  # tokens a rolling KV budget (H2O) caps a sequence's KV at, else None
        self.n_grow = 0  # sequences whose KV still grows each step
        self.caps: list[tuple[int, int, int, Request]] = []  # (step its KV reaches the budget, id, epoch, request)
        self.last_end = 0.0  # when the last step that advanced decoding sequences ended (inter-token gaps)
        self.n_new = 0  # sequences that joined since then (their previous token came from prefill)

    @classmethod
    def for_instance(cls, block_size: int, coster, kv_policy) -> DecodeSet:
        """The decode set of an instance pricing with `coster` under a KV budget `kv_policy` (or None); only a
        rolling budget on every token (H2O) caps sequences' KV while they decode."""
        rolling = kv_policy is not None and kv_policy.mode == "rolling" and not kv_policy.visual_only
        return cls(block_size, len(coster.segments), schedule=coster.has_schedule,
                   rolling_budget=kv_policy.budget_tokens if rolling else None)

    def start(self, r: Request, past: int) -> None:
        """`r` starts decoding with `past` KV tokens (its blocks already allocated)."""
        self.n_new += 1
        t0 = self.step
        r.state = DECODE
        r.t0 = t0
        r.past0 = past
        r.gen0 = r.generated
        budget = self.rolling_budget
        r.capped = budget is not None and past >= budget
        if not r.capped:
            r.cls = (t0 - past - r.extra_slots) % self.bs
            self.cls_count[r.cls] += 1
            self.n_grow += 1
            if budget is not None:
                heapq.heappush(self.caps, (t0 + budget - past, r.id, r.epoch, r))
        self.n += 1
        self.past += past
        if self.schedule:
            for i, v in enumerate(r.pruned):
                self.pruned[i] += v
        if r.cross_kv:
            self.cross_n += 1
            self.cross_sum += r.cross_kv
        heapq.heappush(self.fin, (t0 + r.output_tokens - r.generated - 1, r.id, r.epoch, r))

    def leave(self, r: Request) -> int:
        """Remove `r` from the aggregates (finished or preempted); returns its current past tokens."""
        if r.capped:
            past = self.rolling_budget
        else:
            past = r.past0 + (self.step - r.t0)
            self.cls_count[r.cls] -= 1
            self.n_grow -= 1
        self.n -= 1
        self.past -= past
        if self.schedule:
            for i, v in enumerate(r.pruned):
                self.pruned[i] -= v
        if r.cross_kv:
            self.cross_n -= 1
            self.cross_sum -= r.cross_kv
        r.epoch += 1
        r.generated = r.gen0 + (self.step - r.t0)
        return past

    def advance(self, retire: Retire) -> None:
        """After a step that decoded every sequence: grow the KV, stop capped ones growing, retire finished ones."""
        self.past += self.n_grow
        d = self.step
        self.step = d + 1
        caps = self.caps
        while caps and caps[0][0] <= d + 1:  # reached the rolling budget: from now on its KV stays that size
            _, _, ep, r = heapq.heappop(caps)
            if ep != r.epoch or r.state != DECODE or r.capped:
                continue
            r.capped = True
            self.cls_count[r.cls] -= 1
            self.n_grow -= 1
        self.pop_finished(d, retire)

    def pop_finished(self, d: int, retire: Retire) -> None:
        """Requests whose last decode step was step `d` (stale heap entries of preempted requests are skipped)."""
        fin = self.fin
        while fin and fin[0][0] <= d:
            _, _, ep, r = heapq.heappop(fin)
            if ep != r.epoch or r.state != DECODE:
                continue
            retire(r, self.leave(r))

    def fast_steps(self, inst: LlmInstance) -> Generator:
        """Decode-only steps while nothing waits (the common case under load); returns True when it stopped for
        lack of free blocks (the scheduler policy then preempts). The aggregates live in locals for the stretch
        (only this process changes them; free blocks can change from other processes during a step, so they stay
        on the block manager) and are written back before anything else reads them."""
        env = inst.env
        kv = inst.kv
        st = inst.stats
        coster = inst.coster
        bs = self.bs
        dec_get = coster._dec.get
        log = math.log
        inv = INV_LOG_Q
        cls_count = self.cls_count
        fin = self.fin
        itl_dt = st.itl_dt.append
        itl_n = st.itl_n.append
        overhead = inst.overhead_s
        timeout = env.timeout
        retire = inst.retire
        n, past, d = self.n, self.past, self.step
        busy, longest, ns, mask = st.busy_s, st.max_step_s, st.nsteps, st.ts_mask
        peak, total = kv.peak_used, kv.total
        last_end = self.last_end
        starved = False
        inst.busy_since = env.now  # decode steps back to back from here: st.busy_s holds the busy time up to now
        while True:
            need = cls_count[d % bs]
            free = kv.free
            if need > free:
                starved = True
                break
            free -= need
            kv.free = free
            dt = dec_get(n * DECODE_KEY_STRIDE + int(log(past + n) * inv + 0.5))
            if dt is None:
                dt = coster.decode_s(n, past)
            dt += overhead
            if not ns & mask:
                inst.sample(n)
                mask = st.ts_mask
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
                if st.itl_sketch is not None and len(st.itl_dt) >= FLUSH_GAPS:  # streaming: keep the lists short
                    st.flush_itl()
                self.n, self.past, self.step = n, past, d
                self.pop_finished(d - 1, retire)
                n, past = self.n, self.past
            if not n or inst.waiting or inst.ready:
                break
        self.n, self.past, self.step = n, past, d
        st.busy_s, st.max_step_s, st.nsteps, kv.peak_used = busy, longest, ns, peak
        inst.busy_since = math.inf
        self.last_end = last_end
        return starved



def kept_visual(vis: int, fracs: tuple[float, ...]) -> tuple[int, ...]:
    """Per layer segment: past visual tokens a visual-token schedule drops from the KV of a decoding sequence."""
    return tuple(vis - visual_tokens_kept(vis, f) for f in fracs)


__all__ = ["DecodeSet", "kept_visual"]
