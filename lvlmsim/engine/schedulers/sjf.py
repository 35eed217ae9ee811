"""`sjf`: shortest prompt first, with aging. A waiting request's rank is its prompt length (tokens it must
prefill) minus `serving.sjf_aging_tokens_per_s` tokens per second since it arrived, so a long prompt is overtaken
by short ones only for a bounded time. The rank of a request is fixed at arrival (length + rate x arrival time:
subtracting rate x now shifts every request alike), so the queue is a heap."""

from __future__ import annotations

from lvlmsim.engine.schedulers.base import KeyedQueue, SchedulerPolicy


class SjfPolicy(SchedulerPolicy):
    name = "sjf"

    def __init__(self, serving):
        super().__init__(serving)
        self.aging = serving.sjf_aging_tokens_per_s

    def make_queue(self) -> KeyedQueue:
        aging = self.aging
        return KeyedQueue(lambda r: (r.seq_tokens + aging * r.arrival_s, r.arrival_s))


POLICY = SjfPolicy
