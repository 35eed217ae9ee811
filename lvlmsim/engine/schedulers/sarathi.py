"""`sarathi`: stall-free batching (Sarathi-Serve, Agrawal et al., OSDI 2024, arXiv:2403.02310). Every step carries
all running decodes plus prefill chunks that fill a fixed token budget, so a long prompt never stalls decoding for
more than one budget's worth of prefill. The budget is `serving.scheduler_token_budget` (default 512, one of the
budgets the paper evaluates; it trades time between tokens against prefill throughput); prefill is always chunked
and always mixed with the decodes (serving.mixed_batches is not read)."""

from __future__ import annotations

from lvlmsim.engine.schedulers.base import SchedulerPolicy
from lvlmsim.errors import SpecError

DEFAULT_TOKEN_BUDGET = 512


class SarathiPolicy(SchedulerPolicy):
    name = "sarathi"

    def __init__(self, serving):
        super().__init__(serving)
        self.chunked = True
        self.mixed = True
        self.budget = serving.scheduler_token_budget or DEFAULT_TOKEN_BUDGET
        if self.budget < serving.max_num_seqs:
            raise SpecError(f"serving.scheduler_token_budget: {self.budget} is below max_num_seqs "
                            f"{serving.max_num_seqs} (every running sequence needs one token per step)")

    def token_budget(self) -> int:
        return self.budget


POLICY = SarathiPolicy
