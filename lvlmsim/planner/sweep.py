"""Sweeps: a base scenario plus axes over any of its fields, run in parallel, one row per run, resumable.

Sweep YAML (validated by :class:`SweepSpec`)::

    name: llava-tp-hardware
    base: llava-chat-h100            # scenario id, YAML path (relative to this file), or an inline mapping
    overrides: {workload.requests: 300}   # fixed for every run
    runs:                            # an explicit list of runs (optional) ...
      - {hardware: h100-sxm, serving.tp: 1}
      - {hardware: l40s, serving.tp: 2}
    grid:                            # ... and/or a grid: every combination (crossed with each listed run)
      rate: [5, 10, 20]              # `rate` = simulate(rate=...): requests/s (sessions/s for chats; traces rescale)

Axis keys are dotted paths into the scenario (`serving.tp`, `serving.pools.D.instances`, `workload.arrival.rate_rps`,
`techniques`, ...), checked against the base scenario before anything runs. Precedence: overrides < runs < grid.

Resumption: every run is keyed by a stable hash of its resolved inputs (:func:`lvlmsim.planner.runs.run_key`); runs
whose key is already in the output (or in its journal, `<out>.journal.jsonl`, appended after every run so that even
a killed sweep loses nothing) are skipped. The final table is ordered by run number whatever the order of completion,
so an interrupted-then-resumed sweep writes the same table as an uninterrupted one (bar the `wall_s` column).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from lvlmsim.errors import SpecError
from lvlmsim.planner.executors import check_executor, run_tasks
from lvlmsim.planner.overrides import apply_overrides, resolve_path
from lvlmsim.planner.progress import ProgressFn
from lvlmsim.planner.runs import METRIC_DTYPES, METRICS, clean, run_key, run_one, scenario_payload
from lvlmsim.specs.base import StrictModel, read_yaml, validate_as
from lvlmsim.specs.outputs import check_out_file
from lvlmsim.specs.scenario import DEFAULT_SCENARIO_ID, Scenario, load_scenario

RESULT_COLUMNS = ("status", "error", "wall_s", "profile", "profile_kind", "expected_error_pct")
JOURNAL_SUFFIX = ".journal.jsonl"


class SweepSpec(StrictModel):
    """A sweep: base scenario + fixed overrides + an explicit list of runs and/or a grid of axes."""

    name: str = "sweep"
    description: str = ""
    base: str | dict[str, Any] = Field(DEFAULT_SCENARIO_ID, description="scenario id, YAML path, or inline mapping")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value, for every run")
    runs: list[dict[str, Any]] = Field(default_factory=list, description="explicit runs: dotted path -> value")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> values, all combinations")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, values in v.items():
            if not values:
                raise PydanticCustomError("empty_axis", "axis '{axis}' has no values", {"axis": k})
        return v


class Sweep:
    """A validated, expanded sweep: the base scenario and, per run, its axis values and payload."""

    def __init__(self, spec: SweepSpec, base: Scenario, source: str):
        self.spec = spec
        self.base = base
        self.source = source
        for where, keys in (("overrides", spec.overrides), ("grid", spec.grid),
                            *((f"runs[{i}]", r) for i, r in enumerate(spec.runs))):
            for path in keys:
                try:
                    resolve_path(base, path)
                except SpecError as exc:
                    raise SpecError(f"{source}: {where}: {exc}") from None
        self.axes: list[str] = list(dict.fromkeys([k for r in spec.runs for k in r] + list(spec.grid)))
        combos = [dict(zip(spec.grid, vals, strict=True)) for vals in itertools.product(*spec.grid.values())]
        self.values: list[dict[str, Any]] = [{**r, **g} for r in (spec.runs or [{}]) for g in combos]
        self.payloads: list[dict] = []
        for i, vals in enumerate(self.values):
            sc, rate = apply_overrides(base, {**spec.overrides, **vals}, f"{source}: run {i}")
            self.payloads.append(scenario_payload(sc, rate=rate))
        self.keys = [run_key(p) for p in self.payloads]
        if len(set(self.keys)) != len(self.keys):
            dup = next(k for k in self.keys if self.keys.count(k) > 1)
            runs = [i for i, k in enumerate(self.keys) if k == dup]
            raise SpecError(f"{source}: runs {runs} have identical inputs; remove the duplicates")

    def __len__(self) -> int:
        return len(self.payloads)


def load_sweep(spec: str | Path | dict | SweepSpec) -> Sweep:
    """A Sweep from a YAML path, a mapping or a SweepSpec; every path and every run is checked up front."""
    source_dir: Path | None = None
    if isinstance(spec, SweepSpec):
        parsed, source = spec, "sweep"
    elif isinstance(spec, dict):
        parsed, source = validate_as(SweepSpec, spec, "sweep"), "sweep"
    elif isinstance(spec, str | Path) and str(spec).strip():
        path = Path(spec)
        source = str(path)
        parsed = validate_as(SweepSpec, read_yaml(path), source)
        source_dir = path.resolve().parent
    else:  # a number or None was a TypeError traceback from pathlib
        raise SpecError(f"sweep: expected a sweep YAML path, a mapping or a SweepSpec, got {spec!r}")
    base_ref = parsed.base
    if isinstance(base_ref, str) and source_dir is not None and base_ref.endswith((".yaml", ".yml")):
        p = Path(base_ref)
        if not p.is_absolute() and (source_dir / p).is_file():
            base_ref = str(source_dir / p)
    base = load_scenario(Path(base_ref) if isinstance(base_ref, str) and Path(base_ref).is_file() else base_ref)
    return Sweep(parsed, base, source)


# ---------------------------------------------------------------------------------------------------------------- io
def _normalise(values: list[Any]) -> tuple[list[Any], str]:
    """One axis column: JSON text for lists/dicts and for mixed types, else the values with a nullable dtype."""
    present = [v for v in values if v is not None]
    if any(isinstance(v, list | dict) for v in present):
        return [None if v is None else json.dumps(v, sort_keys=True) for v in values], "string"
    kinds = {type(v) for v in present}
    if kinds <= {bool}:
        return values, "boolean"
    if kinds <= {int}:
        return values, "Int64"
    if kinds <= {int, float}:
        return values, "float64"
    if kinds <= {str}:
        return values, "string"
    return [None if v is None else json.dumps(v, sort_keys=True) for v in values], "string"


def build_frame(rows: list[dict], axes: list[str]) -> pd.DataFrame:
    """The sweep table with a fixed column order and fixed dtypes (so resumed and fresh tables compare equal)."""
    rows = sorted(rows, key=lambda r: (r.get("run") is None, r.get("run") if r.get("run") is not None else 0))
    cols: dict[str, Any] = {}
    dtypes: dict[str, str] = {"run": "Int64", "run_key": "string", "status": "string", "error": "string",
                              "wall_s": "float64", "profile": "string", "profile_kind": "string",
                              "expected_error_pct": "float64", **METRIC_DTYPES}
    cols["run"] = [r.get("run") for r in rows]
    cols["run_key"] = [r.get("run_key") for r in rows]
    for a in axes:
        cols[a], dtypes[a] = _normalise([clean(r.get(a)) for r in rows])
    for c in (*RESULT_COLUMNS, *METRICS):
        cols[c] = [clean(r.get(c)) for r in rows]
    df = pd.DataFrame(cols)
    return df.astype({c: dtypes[c] for c in df.columns})


TABLE_SUFFIXES = (".parquet", ".csv")  # what read_table can read back (a resumed sweep reads its own output)


def _table_path(out: Path) -> Path:
    """Where the table really is: the given path, or its CSV twin when parquet could not be written."""
    if out.suffix == ".parquet" and not out.exists() and out.with_suffix(".csv").exists():
        return out.with_suffix(".csv")
    return out


def read_table(out: str | Path) -> pd.DataFrame | None:
    """The table at `out` (parquet, or CSV), or None when there is none yet."""
    p = _table_path(Path(out))
    if not p.exists():
        return None
    try:
        if p.suffix == ".csv":
            return pd.read_csv(p)
        return pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user problem with one clear line
        raise SpecError(f"{p}: cannot read the existing results ({type(exc).__name__}: {exc}); move it away") from None


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    """Parquet when the name says so and pyarrow is there, else CSV next to it; written atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = out
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".parquet":
        try:
            df.to_parquet(tmp, index=False)
        except ImportError:
            target = out.with_suffix(".csv")
            tmp = target.with_name(target.name + ".tmp")
            df.to_csv(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, target)
    return target


def _records(df: pd.DataFrame | None) -> list[dict]:
    if df is None or df.empty:
        return []
    return [{k: clean(None if v is pd.NA else v) for k, v in r.items()} for r in df.to_dict("records")]


def _read_journal(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
    return rows


# ------------------------------------------------------------------------------------------------------------- sweep
def sweep(
    spec: str | Path | dict | SweepSpec | Sweep,
    *,
    out: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    max_runs: int | None = None,
    progress: ProgressFn | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Run every run of a sweep not already in `out`; return the whole table (one row per run, ordered by run).

    `executor`: "local" (process pool of `workers`, default all cores), "ray" (a local Ray with `workers` CPUs, or
    the cluster at `address`), or "serial". `max_runs` stops after that many new runs (a budget; resume later).
    `retry_failed` re-runs rows recorded with status "error". `progress(done, total)` is called as runs finish.
    """
    check_executor(executor, workers)
    sw = spec if isinstance(spec, Sweep) else load_sweep(spec)
    if max_runs is not None and max_runs < 0:
        raise SpecError(f"max_runs: must be >= 0, got {max_runs}")
    out_path = check_out_file(out, TABLE_SUFFIXES) if out is not None else None  # before any run
    journal = out_path.with_name(out_path.name + JOURNAL_SUFFIX) if out_path else None
    index = {k: i for i, k in enumerate(sw.keys)}
    done, foreign = _previous_runs(out_path, journal, index, resume, retry_failed)
    rows = {k: _full_row(sw, index[k], r) for k, r in done.items()}
    todo = [i for i, k in enumerate(sw.keys) if k not in done]
    if max_runs is not None:
        todo = todo[:max_runs]
    if progress is not None:
        progress(len(rows), len(sw))

    def finish() -> pd.DataFrame:
        df = build_frame(list(rows.values()) + foreign, sw.axes)
        if out_path is not None:
            write_table(df, out_path)
            if journal.exists():
                journal.unlink()
        return df

    results = run_tasks(run_one, [sw.payloads[i] for i in todo], executor=executor, workers=workers,
                        address=address)
    _record_runs(results, todo, sw, rows, journal, progress, on_row, finish)
    return finish()


def _full_row(sw: Sweep, i: int, result: dict) -> dict:
    return {"run": i, "run_key": sw.keys[i], **{a: sw.values[i].get(a) for a in sw.axes},
            **{c: clean(result.get(c)) for c in (*RESULT_COLUMNS, *METRICS)}}


def _previous_runs(out_path: Path | None, journal: Path | None, index: dict, resume: bool,
                   retry_failed: bool) -> tuple[dict[str, dict], list[dict]]:
    """Runs already recorded in `out` and its journal: (this sweep's, by run key; rows of other runs, kept)."""
    done: dict[str, dict] = {}
    foreign: list[dict] = []
    if out_path is None:
        return done, foreign
    if not resume:
        if journal.exists():
            journal.unlink()
        return done, foreign
    for r in _records(read_table(out_path)) + _read_journal(journal):
        key = r.get("run_key")
        if key in index:
            done[key] = r
        elif key is not None and all(f.get("run_key") != key for f in foreign):
            foreign.append(r)
    if retry_failed:
        done = {k: r for k, r in done.items() if r.get("status") == "ok"}
    return done, foreign


def _record_runs(results, todo: list[int], sw: Sweep, rows: dict, journal: Path | None,
                 progress: ProgressFn | None, on_row, finish: Callable[[], pd.DataFrame]) -> None:
    """Record each finished run in `rows` and the journal as it arrives; on any interruption, keep what finished
    (finish() writes the table; the next run resumes from it) and re-raise."""
    fh = journal.open("a") if journal is not None else None
    try:
        for j, result in results:
            i = todo[j]
            row = _full_row(sw, i, result)
            rows[sw.keys[i]] = row
            if fh is not None:
                fh.write(json.dumps(row, default=str) + "\n")
                fh.flush()
            if progress is not None:
                progress(len(rows), len(sw))
            if on_row is not None:
                on_row(row)
    except BaseException:
        if hasattr(results, "close"):
            results.close()
        if fh is not None:
            fh.close()
            fh = None
        finish()
        raise
    finally:
        if fh is not None:
            fh.close()


__all__ = ["Sweep", "SweepSpec", "build_frame", "load_sweep", "read_table", "sweep", "write_table"]
