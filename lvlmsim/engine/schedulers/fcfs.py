"""`fcfs`: vLLM's default. Requests are admitted in arrival order and the head of the queue is never skipped; a
preempted request goes back to the head. The batch formation itself is SchedulerPolicy's (see base.py)."""

from __future__ import annotations

from lvlmsim.engine.schedulers.base import SchedulerPolicy


class FcfsPolicy(SchedulerPolicy):
    name = "fcfs"


POLICY = FcfsPolicy
