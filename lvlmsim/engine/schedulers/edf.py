"""`edf`: earliest deadline first. A request's deadline is its arrival plus its first-token target: its class's
`ttft_slo_s` (workload.classes), else the scenario's `slos.ttft_s`; without either, arrival order (fcfs). The
queue is ordered by deadline; batch formation and preemption are SchedulerPolicy's."""

from __future__ import annotations

from lvlmsim.engine.schedulers.base import KeyedQueue, SchedulerPolicy


class EdfPolicy(SchedulerPolicy):
    name = "edf"

    def make_queue(self) -> KeyedQueue:
        return KeyedQueue(lambda r: (r.deadline_s, r.arrival_s))


POLICY = EdfPolicy
