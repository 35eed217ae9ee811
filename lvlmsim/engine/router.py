"""Routers: which instance of a pool gets the next request. Ties go to the lowest index (deterministic)."""

from __future__ import annotations

from collections.abc import Sequence


class Router:
    name = "base"

    def __init__(self, instances: Sequence):
        self.instances = list(instances)

    def pick(self):
        raise NotImplementedError


class RoundRobin(Router):
    """Cycle through the instances regardless of load."""

    name = "round_robin"

    def __init__(self, instances: Sequence):
        super().__init__(instances)
        self._i = -1

    def pick(self):
        self._i = (self._i + 1) % len(self.instances)
        return self.instances[self._i]


class LeastOutstanding(Router):
    """Fewest requests assigned and not yet gone from the instance (queued + running)."""

    name = "least_outstanding"

    def pick(self):
        insts = self.instances
        if len(insts) == 1:
            return insts[0]
        return min(insts, key=lambda x: x.outstanding)


class KvAware(Router):
    """Least KV-cache utilisation (used blocks / blocks), then fewest outstanding requests."""

    name = "kv_aware"

    def pick(self):
        insts = self.instances
        if len(insts) == 1:
            return insts[0]
        return min(insts, key=lambda x: (x.kv_utilisation, x.outstanding))


ROUTERS = {r.name: r for r in (RoundRobin, LeastOutstanding, KvAware)}


def make_router(name: str, instances: Sequence) -> Router:
    return ROUTERS[name](instances)


__all__ = ["ROUTERS", "KvAware", "LeastOutstanding", "RoundRobin", "Router", "make_router"]
