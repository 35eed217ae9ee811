"""Scheduler policies of an LLM instance, one module each, chosen by name with `serving.scheduler`.

The names are declared once, in lvlmsim.specs.serving.SCHEDULERS (the spec's Literal is derived from it); module
`lvlmsim.engine.schedulers.<name>` defines `POLICY`, a SchedulerPolicy subclass. Adding a policy is one new module
here plus its name in SCHEDULERS (see docs/architecture.md).
"""

from __future__ import annotations

import importlib

from lvlmsim.engine.schedulers.base import KeyedQueue, SchedulerPolicy, StepPlan
from lvlmsim.errors import SpecError
from lvlmsim.specs.serving import SCHEDULERS, ServingSpec


def policy_class(name: str) -> type[SchedulerPolicy]:
    """The policy class registered under `name`."""
    if name not in SCHEDULERS:
        raise SpecError(f"serving.scheduler: unknown policy '{name}'; allowed: {', '.join(SCHEDULERS)}")
    return importlib.import_module(f"{__name__}.{name}").POLICY


def make_policy(serving: ServingSpec) -> SchedulerPolicy:
    """A fresh policy object for one instance (policies may keep per-instance state)."""
    return policy_class(serving.scheduler)(serving)


__all__ = ["KeyedQueue", "SchedulerPolicy", "StepPlan", "make_policy", "policy_class"]
