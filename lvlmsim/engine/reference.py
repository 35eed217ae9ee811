"""A reference fcfs scheduler: slow, per sequence, obviously correct. The oracle of the real engine.

It makes vLLM v1's fcfs decisions (the rules in lvlmsim.engine.schedulers.base) by looking at every sequence every
step: no decode aggregates, no block-residue classes, no finish heaps, no fast path, no StepPlan. A decoding sequence
holds its own KV token count; it needs a new block in a step when its KV slots fill their last block; it finishes
when it has generated its output. tests/test_engine_oracle.py runs it and the real engine on random workloads and
requires identical per-request timelines.

Scope: one colocated instance without techniques (no reuse, KV budget, token schedule or cross-attention KV),
prefill chunked or not, encoder co-batched, preemption by recompute.
"""

from __future__ import annotations

from collections import deque

from lvlmsim.engine.request import COMPLETED, DECODE, DONE, PREFILL, WAITING, Request
from lvlmsim.engine.stepcost import StepCost


class ReferenceInstance:
    """Drop-in for an LlmInstance in a Cluster (submit / outstanding / waiting), run as its own SimPy process."""

    kind = "llm"

    def __init__(self, env, name: str, pool: str, coster: StepCost, *, total_blocks: int, block_size: int,
                 max_num_seqs: int, max_num_batched_tokens: int, chunked_prefill: bool, encoder_budget: int,
                 encoder_cache: int, overhead_s: float):
        self.env, self.name, self.pool, self.coster = env, name, pool, coster
        self.cluster = None
        self.total_blocks, self.free, self.bs = total_blocks, total_blocks, block_size
        self.max_seqs, self.max_tokens, self.chunked = max_num_seqs, max_num_batched_tokens, chunked_prefill
        self.enc_budget, self.enc_cache_cap, self.enc_cache_used = encoder_budget, encoder_cache, 0
        self.overhead_s = overhead_s
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order
        self.kv_tokens: dict[Request, int] = {}  # KV tokens of each decoding sequence
        self.outstanding = 0
        self.kv_utilisation = 0.0
        self._wake = None
        self.process = env.process(self.run())

    def queue_touch(self) -> None:
        """The cluster closes queue integrals at the end; the reference keeps none."""

    def blocks(self, slots: int) -> int:
        return -(-slots // self.bs) if slots > 0 else 0

    def submit(self, r: Request) -> None:
        r.state, r.wait_since = WAITING, self.env.now
        r.path.append(self.name)
        r.pools.append(self.pool)
        self.outstanding += 1
        self.waiting.append(r)
        if self._wake is not None:
            ev, self._wake = self._wake, None
            ev.succeed()

    def decoding(self) -> list[Request]:
        return [r for r in self.running if r.state == DECODE]

    def needs_block(self, r: Request) -> bool:
        """Its next token starts a new block: the KV slots it holds fill whole blocks."""
        return (self.kv_tokens[r] + r.extra_slots) % self.bs == 0

    def victim(self) -> Request | None:
        held = [r for r in self.running if r.state in (DECODE, PREFILL)]
        return held[-1] if held else None

    def preempt(self, v: Request, decode_planned: bool) -> int:
        """Recompute preemption; returns the step budget it gives back (its decode token, when planned)."""
        give_back = 0
        if v.state == DECODE:
            kv = self.kv_tokens.pop(v)
            held = self.blocks(kv + v.extra_slots)
            if decode_planned:
                give_back = 1
                if (kv + v.extra_slots) % self.bs == 0:
                    self.free += 1  # the block reserved for its token this step
        else:
            held = v.blocks
            if v.enc_cached:
                self.enc_cache_used -= v.enc_tokens
                v.enc_cached = False
        self.free += held
        v.blocks, v.computed = 0, 0
        v.target = v.seq_tokens + v.generated
        if v.vit_seq_lens:
            v.encoded = False
        v.preemptions += 1
        self.running.remove(v)
        v.state, v.wait_since = WAITING, self.env.now
        self.waiting.appendleft(v)
        return give_back

    def plan(self):
        """(chunks, decoding sequences, encoded requests, encoder tokens) of the next step, or None."""
        budget = self.max_tokens
        prefill_only = not self.chunked and self.head_fits()
        decoding: list[Request] = []
        if self.decoding() and not prefill_only:
            need = sum(1 for r in self.decoding() if self.needs_block(r))
            while need > self.free:
                v = self.victim()
                if v is None:
                    break
                if v.state == DECODE and self.needs_block(v):
                    need -= 1
                self.preempt(v, False)
            self.free -= need
            decoding = self.decoding()
            budget -= len(decoding)
        chunks: list[tuple[Request, int]] = []
        if not prefill_only:
            budget = self.continue_prefills(chunks, budget, bool(decoding))
            decoding = self.decoding() if decoding else []
        enc_reqs: list[Request] = []
        enc_used = self.admit(chunks, budget, enc_reqs)
        if not chunks and not decoding:
            return None
        return chunks, decoding, enc_reqs, enc_used

    def head_fits(self) -> bool:
        if not self.waiting or len(self.running) >= self.max_seqs:
            return False
        r = self.waiting[0]
        return self.blocks(r.target + r.extra_slots) <= self.free

    def continue_prefills(self, chunks: list, budget: int, decode_planned: bool) -> int:
        for r in [r for r in self.running if r.state == PREFILL]:
            if r.state != PREFILL:
                continue
            if budget <= 0:
                break
            n = min(r.target - r.computed, budget)
            nb = self.blocks(r.computed + n + r.extra_slots) - r.blocks
            while nb > self.free:
                v = self.victim()
                if v is None:
                    break
                budget += self.preempt(v, decode_planned)
                if v is r:
                    break
            if r.state != PREFILL or nb > self.free:
                continue
            self.free -= nb
            r.blocks += nb
            chunks.append((r, n))
            budget -= n
        return budget

    def admit(self, chunks: list, budget: int, enc_reqs: list) -> int:
        enc_used = 0
        while self.waiting and len(self.running) < self.max_seqs and budget > 0:
            r = self.waiting[0]
            remaining = r.target - r.computed
            if not self.chunked and remaining > budget and budget < self.max_tokens:
                break
            n = min(remaining, budget) if self.chunked else remaining
            enc = 0 if r.encoded else r.visual_tokens
            if enc and enc_used and enc_used + enc > self.enc_budget:
                break
            if enc and self.enc_cache_used and self.enc_cache_used + enc > self.enc_cache_cap:
                break
            nb = self.blocks(r.computed + n + r.extra_slots) - r.blocks
            if nb > self.free:
                break
            self.waiting.popleft()
            r.waited(self.env.now)
            self.free -= nb
            r.blocks += nb
            r.state = PREFILL
            self.running.append(r)
            if enc:
                enc_used += enc
                self.enc_cache_used += enc
                r.enc_cached = r.encoded = True
                enc_reqs.append(r)
            chunks.append((r, n))
            budget -= n
        return enc_used

    def seconds(self, chunks, decoding, enc_reqs, enc_used) -> tuple[float, float]:
        """(step seconds, of which encoder seconds)."""
        enc_s = 0.0
        if enc_reqs:
            lens = [n for r in enc_reqs for n in r.vit_seq_lens]
            enc_s = self.coster.encode_s(lens, sum(r.projector_in_tokens for r in enc_reqs), enc_used)
        rows = [(n, r.computed, max(0, min(r.computed + n, r.vis_in_seq) - r.computed), min(r.computed, r.vis_in_seq),
                 0, r.computed + n >= r.target) for r, n in chunks]
        past = sum(self.kv_tokens[r] for r in decoding)
        return enc_s + self.coster.step_s(len(decoding), past, rows) + self.overhead_s, enc_s

    def finish(self, r: Request) -> None:
        r.state, r.status, r.finish_s, r.generated = DONE, COMPLETED, self.env.now, r.output_tokens
        self.running.remove(r)
        self.outstanding -= 1
        self.cluster.on_finished(r)

    def after_step(self, chunks, decoding) -> None:
        finished = []
        for r in decoding:
            self.kv_tokens[r] += 1
            r.generated += 1
            if r.generated >= r.output_tokens:
                finished.append(r)
        for r in sorted(finished, key=lambda r: r.id):
            self.free += self.blocks(self.kv_tokens.pop(r) + r.extra_slots)
            self.finish(r)
        for r, n in chunks:
            if r.state != PREFILL:
                continue
            r.computed += n
            if r.computed < r.target:
                continue
            if r.enc_cached:
                self.enc_cache_used -= r.enc_tokens
                r.enc_cached = False
            r.generated += 1
            if r.first_token_s != r.first_token_s:
                r.first_token_s = self.env.now
            if r.generated >= r.output_tokens:
                self.free += r.blocks
                r.blocks = 0
                self.finish(r)
            else:
                r.blocks = self.blocks(r.computed + r.extra_slots)
                r.state = DECODE
                self.kv_tokens[r] = r.computed

    def run(self):
        env = self.env
        while True:
            step = self.plan()
            if step is None:
                self._wake = env.event()
                yield self._wake
                continue
            chunks, decoding, enc_reqs, enc_used = step
            dt, enc_s = self.seconds(chunks, decoding, enc_reqs, enc_used)
            for r in enc_reqs:
                r.encode_started(env.now)
                r.encode_ended(env.now + enc_s)
            yield env.timeout(dt)
            self.after_step(chunks, decoding)


__all__ = ["ReferenceInstance"]
