"""`priority`: request classes served by priority (lower value first, vLLM's convention), first come first served
within a class. When blocks run out the lowest-priority, latest-arrived running request is preempted, as vLLM's
priority scheduling does. Requests get their priority from `workload.classes` (all 0 without classes: fcfs)."""

from __future__ import annotations

from lvlmsim.engine.request import DECODE, PREFILL, Request
from lvlmsim.engine.schedulers.base import KeyedQueue, SchedulerPolicy


class PriorityPolicy(SchedulerPolicy):
    name = "priority"

    def make_queue(self) -> KeyedQueue:
        return KeyedQueue(lambda r: (r.priority, r.arrival_s))

    def victim(self, inst) -> Request | None:
        held = [r for r in inst.running if r.state == DECODE or r.state == PREFILL]
        return max(held, key=lambda r: (r.priority, r.arrival_s), default=None)


POLICY = PriorityPolicy
