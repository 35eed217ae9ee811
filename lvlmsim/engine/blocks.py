"""The paged KV blocks of one instance: how many there are, how many are free, the peak in use.

Blocks are counted, not tracked one by one: a request holds `Request.blocks` of its own plus `shared_blocks` of a
reused image-KV prefix (see lvlmsim.engine.reuse). Allocation is lazy, as in vLLM: a sequence takes a block when its
tokens cross a block boundary, so a decoding sequence needs one block every `size` steps (the decode set counts how
many need one at each step). Which request is preempted when blocks run out is the scheduler policy's choice.
"""

from __future__ import annotations


class BlockManager:
    """Free/used counts of `total` blocks of `size` tokens each."""

    __slots__ = ("free", "peak_used", "size", "total")

    def __init__(self, total: int, size: int):
        self.total = total
        self.free = total
        self.size = size
        self.peak_used = 0

    def blocks_for(self, slots: int) -> int:
        """Blocks that hold `slots` KV token slots."""
        return -(-slots // self.size) if slots > 0 else 0

    @property
    def used(self) -> int:
        return self.total - self.free

    @property
    def utilisation(self) -> float:
        """Fraction of blocks in use (0 for an instance without a KV cache)."""
        return (self.total - self.free) / self.total if self.total else 0.0

    def note_peak(self) -> None:
        used = self.total - self.free
        if used > self.peak_used:
            self.peak_used = used


__all__ = ["BlockManager"]
