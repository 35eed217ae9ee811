"""Routers: which instance of a pool gets the next request. Ties go to the lowest index (deterministic).

`pick(r)` is given the request, so a router may route by what the request is (its chat session).
"""

from __future__ import annotations

from collections.abc import Sequence


class Router:
    name = "base"

    def __init__(self, instances: Sequence):
        self.instances = list(instances)

    def pick(self, r=None):
        raise NotImplementedError


class RoundRobin(Router):
    """Cycle through the instances regardless of load."""

    name = "round_robin"

    def __init__(self, instances: Sequence):
        super().__init__(instances)
        self._i = -1

    def pick(self, r=None):
        self._i = (self._i + 1) % len(self.instances)
        return self.instances[self._i]


class LeastOutstanding(Router):
    """Fewest requests assigned and not yet gone from the instance (queued + running)."""

    name = "least_outstanding"

    def pick(self, r=None):
        insts = self.instances
        if len(insts) == 1:
            return insts[0]
        return min(insts, key=lambda x: x.outstanding)


class KvAware(Router):
    """Least KV-cache utilisation (used blocks / blocks), then fewest outstanding requests."""

    name = "kv_aware"

    def pick(self, r=None):
        insts = self.instances
        if len(insts) == 1:
            return insts[0]
        return min(insts, key=lambda x: (x.kv_utilisation, x.outstanding))


class SessionAffinity(LeastOutstanding):
    """Every turn of a chat session goes to the instance that served its first turn (so a per-instance reuse cache
    sees the session's images again, as SGLang's cache-aware router intends); requests without a session, and first
    turns, go to the instance with the fewest outstanding requests."""

    name = "session_affinity"

    def __init__(self, instances: Sequence):
        super().__init__(instances)
        self._home: dict[int, object] = {}

    def pick(self, r=None):
        sid = getattr(r, "session", None)
        if sid is None:
            return super().pick(r)
        home = self._home.get(sid)
        if home is None:
            home = self._home[sid] = super().pick(r)
        return home


ROUTERS = {r.name: r for r in (RoundRobin, LeastOutstanding, KvAware, SessionAffinity)}


def make_router(name: str, instances: Sequence) -> Router:
    return ROUTERS[name](instances)


__all__ = ["ROUTERS", "KvAware", "LeastOutstanding", "RoundRobin", "Router", "SessionAffinity", "make_router"]
