"""The encoder side of an LLM instance that also encodes (vLLM's `max_num_encoder_input_tokens` and
`encoder_cache_size`): at most `budget` visual tokens encoded per step (a single larger item still runs alone),
and at most `capacity` tokens of encoder outputs held between encoding and the end of the request's prefill."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lvlmsim.engine.request import Request

if TYPE_CHECKING:
    from lvlmsim.engine.schedulers import StepPlan


class EncoderCache:
    __slots__ = ("budget", "capacity", "used")

    def __init__(self, budget_tokens: int, capacity_tokens: int):
        self.budget = budget_tokens
        self.capacity = capacity_tokens
        self.used = 0

    def fits(self, enc: int, step: StepPlan, check_cache: bool = True) -> bool:
        """Can `enc` more visual tokens be encoded in this step, under the budget and (optionally) the cache?"""
        if step.encode_tokens and step.encode_tokens + enc > self.budget:
            return False
        return not (check_cache and self.used and self.used + enc > self.capacity)

    def take(self, r: Request, enc: int, step: StepPlan) -> None:
        """`r`'s encoder runs in this step; its outputs hold `enc` tokens of the cache until its prefill ends."""
        step.encode_tokens += enc
        self.used += enc
        r.enc_cached = True
        r.encoded = True
        step.encoded.append(r)

    def release(self, r: Request) -> None:
        if r.enc_cached:
            self.used -= r.enc_tokens
            r.enc_cached = False


__all__ = ["EncoderCache"]
