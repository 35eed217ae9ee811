"""Preemption of a running request when KV blocks run out, by recompute (vLLM v1: drop its KV and encoder outputs,
prefill prompt + generated tokens again later) or, for a decoding sequence, by swap (copy its KV to host memory
over the host link and back when it is readmitted; the copy's seconds are added to the step that does it).
Either way the request goes back to the head of the waiting queue; which request is the scheduler policy's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lvlmsim.engine.request import DECODE, WAITING, Request

if TYPE_CHECKING:
    from lvlmsim.engine.instance import LlmInstance
    from lvlmsim.engine.schedulers import StepPlan

SwapTime = Callable[[Request, int], float]  # (request, KV tokens) -> seconds to move them over the host link


class Preemption:
    """`swap_s` None: recompute; else swap decoding sequences (a prefilling one, or one sharing reused KV blocks,
    is still recomputed). `keep_encoded`: a recomputed request keeps encoder outputs still in the encoder cache."""

    def __init__(self, swap_s: SwapTime | None = None, keep_encoded: bool = False):
        self.swap_s = swap_s
        self.keep_encoded = keep_encoded

    def preempt(self, inst: LlmInstance, v: Request, step: StepPlan, decodes_planned: bool) -> None:
        """Free every block of `v` on `inst` and requeue it at the head; `decodes_planned`: this step's decode
        already counted `v` (its token and the block it took for it come back)."""
        kv = inst.kv
        if v.state == DECODE:
            grew = not v.capped
            past = inst.decodes.leave(v)
            held = kv.blocks_for(past + v.extra_slots) - v.shared_blocks
            freed_tokens = past
            if decodes_planned:
                step.budget += 1
                if grew and (past + v.extra_slots) % kv.size == 0:
                    kv.free += 1
            if self.swap_s is not None and not v.shared_blocks:
                v.swapped = past
                step.transfer_s += self.swap_s(v, past)
        else:
            held = v.blocks
            freed_tokens = v.computed
            inst.prefilling.remove(v)
            if not self.keep_encoded:
                inst.encoder.release(v)
        kv.free += held
        if not v.swapped:  # recomputed: its blocks go back to the free pool, cached (swapped: they left the GPU)
            inst.cache_freed(v, freed_tokens)
        v.blocks = v.shared_blocks = 0
        v.capped = False
        if inst.reuse is not None:
            inst.reuse.release(v)
        if not v.swapped:
            v.computed = 0
            v.target = v.seq_tokens + v.generated
            if inst.does_encode and v.vit_seq_lens and not v.enc_cached:
                v.encoded = False  # vLLM drops a preempted request's encoder outputs
        v.preemptions += 1
        del inst.running[v]
        inst.queue_touch()
        v.state = WAITING
        v.wait_since = inst.env.now
        inst.waiting.appendleft(v)

    def swap_in(self, r: Request, step: StepPlan) -> None:
        """`r`'s KV comes back from host memory in this step; it decodes from the next one."""
        step.transfer_s += self.swap_s(r, r.swapped)
        r.computed = r.swapped


__all__ = ["Preemption", "SwapTime"]
