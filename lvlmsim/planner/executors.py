"""Where independent simulations run: in this process, in a stdlib process pool, or on Ray.

Every task is a module-level function applied to a plain JSON-able payload, so the three give identical results (the
engine is deterministic for a given scenario and seed). No distribution layer of our own: `local` is
concurrent.futures, `ray` is Ray's own task API (a local Ray by default, or a cluster address).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
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
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise SpecError(f"executor: unknown {executor!r}; allowed: {', '.join(EXECUTORS)}")
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
    problem = main_reimport_problem()
    if problem:
        warnings.warn(f"lvlmsim: running {len(payloads)} simulations serially, not in a process pool: {problem}",
                      SerialFallbackWarning, stacklevel=2)
        return ((i, fn(p)) for i, p in enumerate(payloads))
    return _local(fn, payloads, n)


class SerialFallbackWarning(UserWarning):
    """The local process pool was not used because its workers would re-run the user's script."""


def _is_sys_path_call(stmt: ast.stmt) -> bool:
    """`sys.path.insert(...)` / `sys.path.append(...)` as a statement (benchmarks/ scripts put the checkout first)."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    on_sys_path = (isinstance(func, ast.Attribute) and func.attr in ("insert", "append")
                   and isinstance(func.value, ast.Attribute) and func.value.attr == "path"
                   and isinstance(func.value.value, ast.Name) and func.value.value.id == "sys")
    names = {n.id for arg in stmt.value.args for n in ast.walk(arg) if isinstance(n, ast.Name)}
    return on_sys_path and names <= _PATH_NAMES


_PATH_NAMES = {"str", "Path", "os", "pathlib", "__file__"}  # what a path set-up reads: nothing that runs lvlmsim


def _guarded(stmt: ast.stmt) -> bool:
    """A top-level statement a spawned worker may safely re-run on import: imports, definitions, docstrings,
    constant assignments, `sys.path` set-up (a script's own import path, harmless to repeat) and
    `if __name__ == "__main__":` blocks."""
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return True
    if _is_sys_path_call(stmt):
        return True
    if isinstance(stmt, ast.If):
        return any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(stmt.test))
    if isinstance(stmt, ast.Expr | ast.Assign | ast.AnnAssign):
        return not any(isinstance(n, ast.Call) for n in ast.walk(stmt))
    return False


def main_reimport_problem(main_path: str | None = None) -> str | None:
    """Why spawned workers cannot re-import `__main__`, or None. A worker of a 'spawn' pool imports the parent's
    main script; one that calls lvlmsim at top level, without an `if __name__ == "__main__":` guard, would run the
    whole call again in every worker (Python then stops it with a bootstrapping error). `python -m pkg` and
    interactive sessions are not re-imported and are always fine. A program read from standard input (`python -`,
    whose `__file__` is '<stdin>') cannot be re-imported at all: its workers would die at start."""
    if main_path is None:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            return None  # run with -m: the worker imports by name (and skips a package's __main__)
        main_path = getattr(main, "__file__", None)
    if not main_path:
        return None
    if not os.path.exists(main_path):
        return (f"the main program ({main_path}) is not a file that worker processes can re-import; run it as a "
                "script file to use all cores")
    if not str(main_path).endswith(".py") or not os.path.isfile(main_path):
        return None
    try:
        with open(main_path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=str(main_path))
    except (OSError, SyntaxError, ValueError):
        return None
    bad = next((s for s in tree.body if not _guarded(s)), None)
    if bad is None:
        return None
    return (f"{os.path.basename(str(main_path))} runs code at import (line {bad.lineno}) outside an "
            "`if __name__ == \"__main__\":` block, which each worker process would re-run; add the guard to use "
            "all cores")


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: exit when the parent does, even by SIGKILL (no orphans simulating for nobody).
    Linux delivers SIGTERM on the parent's death (prctl PR_SET_PDEATHSIG); elsewhere a thread polls the parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="lvlmsim-parent-watch", daemon=True).start()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a supervisor, `kill`, a CI timeout) is handled like Ctrl-C: KeyboardInterrupt, so
    finished runs are kept and workers stopped. Only in the main thread; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _local(fn: Task, payloads: Sequence[dict], workers: int) -> Iterator[tuple[int, dict]]:
    # spawn, not fork: the parent may hold threads (rich's live display, Ray) that a forked child would inherit locked.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(payloads)), mp_context=ctx,
                               initializer=_die_with_parent, initargs=(os.getpid(),))
    finished = False
    try:
        pending: dict[Future, int] = {pool.submit(fn, p): i for i, p in enumerate(payloads)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.__getitem__):
                i = pending.pop(fut)
                yield i, fut.result()
        finished = True
    finally:
        if not finished:  # interrupted or abandoned: stop the runs in progress rather than wait for them
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
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


__all__ = ["EXECUTORS", "SerialFallbackWarning", "check_executor", "default_workers", "main_reimport_problem",
           "run_tasks", "terminate_as_interrupt"]
