"""Where independent simulations run: in this process, in a stdlib process pool, or on Ray.

Every task is a module-level function applied to a plain JSON-able payload, so the three give identical results (the
engine is deterministic for a given scenario and seed). No distribution layer of our own: `local` is
concurrent.futures, `ray` is Ray's own task API (a local Ray by default, or a cluster address).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from lvlmsim.errors import LvlmsimError, SpecError

EXECUTORS = ("local", "ray", "serial")
RAY_MISSING = "executor 'ray': Ray is not installed; pip install 'lvlmsim[distributed]' (or pip install ray)"

Task = Callable[[dict], dict]


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def check_executor(executor: str, workers: int | None) -> None:
    """Fail before any work starts on an unknown executor or a bad worker count."""
    if executor not in EXECUTORS:
        raise SpecError(f"executor: unknown '{executor}'; allowed: {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SpecError(f"workers: must be an integer >= 1, got {workers!r}")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise LvlmsimError(RAY_MISSING)


def run_tasks(
    fn: Task, payloads: Sequence[dict], *, executor: str = "local", workers: int | None = None,
    address: str | None = None,
) -> Iterator[tuple[int, dict]]:
    """Yield (index, result) as tasks finish (in completion order). Stopping the iteration cancels what is left.

    `fn` must never raise for a bad configuration (it records the error in its result); an exception here is a bug
    or an interrupt and propagates.
    """
    check_executor(executor, workers)
    if not payloads:
        return iter(())
    if executor == "ray":
        return _ray(fn, payloads, workers, address)
    n = workers or default_workers()
    if executor == "serial" or n == 1 or len(payloads) == 1:
        return ((i, fn(p)) for i, p in enumerate(payloads))
    return _local(fn, payloads, n)


def _local(fn: Task, payloads: Sequence[dict], workers: int) -> Iterator[tuple[int, dict]]:
    # spawn, not fork: the parent may hold threads (rich's live display, Ray) that a forked child would inherit locked.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(payloads)), mp_context=ctx)
    try:
        pending: dict[Future, int] = {pool.submit(fn, p): i for i, p in enumerate(payloads)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.__getitem__):
                i = pending.pop(fut)
                yield i, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray(fn: Task, payloads: Sequence[dict], workers: int | None, address: str | None) -> Iterator[tuple[int, dict]]:
    try:
        import ray
    except ImportError:
        raise LvlmsimError(RAY_MISSING) from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        elif workers:
            kwargs["num_cpus"] = workers
        ray.init(**kwargs)
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    try:
        refs = {remote.remote(p): i for i, p in enumerate(payloads)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
    finally:
        for ref in pending if "pending" in locals() else ():
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


__all__ = ["EXECUTORS", "check_executor", "default_workers", "run_tasks"]
