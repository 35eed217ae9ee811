"""Dotted paths into a Scenario (`serving.tp`, `workload.arrival.rate_rps`, `serving.pools.D.instances`).

Sweeps and the planner change a base scenario one field at a time. A path is checked against the scenario's pydantic
schema *and* its actual values (so a union such as `workload.arrival` resolves to the arrival kind the base uses, and
a list such as `serving.pools` takes an index or a pool name); a bad path fails before anything runs with a message
naming the path and the fields valid at the point where it went wrong.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

from pydantic import BaseModel

from lvlmsim.errors import SpecError
from lvlmsim.specs.scenario import Scenario, scenario_from_dict

# Axis names that are not scenario fields but simulate() overrides: `rate` rescales traces as well as sets the
# arrival rate (requests/s, or sessions/s for chat sessions).
PSEUDO_FIELDS = ("rate",)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X | None` (or a plain model annotation); None for scalars, lists and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return None


def _list_item(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        return _model_in(args[0]) if args else None
    return None


def _fields_text(cls: type[BaseModel], extra: tuple[str, ...] = ()) -> str:
    return ", ".join([*cls.model_fields, *extra])


def resolve_path(base: Scenario, path: str) -> tuple[str | int, ...]:
    """Check `path` against the scenario and return its segments (list segments as integer indices).

    Raises SpecError naming the path and the valid fields (or indices / pool names) where it went wrong.
    """
    if not isinstance(path, str) or not path or any(not s for s in path.split(".")):
        raise SpecError(f"axis '{path}': expected a dotted path of scenario fields such as serving.tp")
    if path in PSEUDO_FIELDS:
        return (path,)
    parts = path.split(".")
    obj: Any = base
    cls: type[BaseModel] | None = Scenario
    out: list[str | int] = []
    for i, seg in enumerate(parts):
        done = ".".join(parts[:i]) or "scenario"
        if isinstance(obj, list | tuple):
            idx = _list_index(obj, seg, path, done)
            out.append(idx)
            obj = obj[idx]
            cls = type(obj) if isinstance(obj, BaseModel) else None
            continue
        obj, cls = _field_step(obj, cls, seg, path, done, first=i == 0)
        out.append(seg)
    return tuple(out)


def _list_index(items: list | tuple, seg: str, path: str, done: str) -> int:
    """A list segment: an index, or the label of an item (a pool's name)."""
    labels = [getattr(x, "label", None) for x in items]
    if seg.isdigit() and int(seg) < len(items):
        return int(seg)
    if seg in labels:
        return labels.index(seg)
    named = [str(x) for x in labels if x]
    valid = [str(j) for j in range(len(items))] + named
    raise SpecError(
        f"axis '{path}': '{seg}' is not an item of {done}; valid: "
        f"{', '.join(valid) if valid else f'none ({done} is empty in the base scenario)'}"
    )


def _field_step(obj: Any, cls: type[BaseModel] | None, seg: str, path: str, done: str,
                first: bool) -> tuple[Any, type[BaseModel] | None]:
    """A field segment: check it names a field of the current model; return the value and model class below it."""
    if isinstance(obj, BaseModel):
        cls = type(obj)
    if cls is None:
        raise SpecError(f"axis '{path}': {done} is a value, not a group of fields; the path must end there")
    if seg not in cls.model_fields:
        extra = PSEUDO_FIELDS if first else ()
        raise SpecError(
            f"axis '{path}': '{seg}' is not a field of {done} ({cls.__name__}); valid fields: "
            f"{_fields_text(cls, extra)}"
        )
    ann = cls.model_fields[seg].annotation
    nxt = getattr(obj, seg, None) if obj is not None else None
    if isinstance(nxt, BaseModel):
        return nxt, type(nxt)
    if isinstance(nxt, list):
        return nxt, _list_item(ann)
    return None, _model_in(ann)


def set_path(data: dict, segments: tuple[str | int, ...], value: Any) -> None:
    """Set a value in a scenario's JSON dict in place, creating missing mappings along the way (e.g. serving.link)."""
    cur: Any = data
    for seg in segments[:-1]:
        if isinstance(seg, int):
            cur = cur[seg]
            continue
        if cur.get(seg) is None:
            cur[seg] = {}
        cur = cur[seg]
    cur[segments[-1]] = copy.deepcopy(value)


def apply_overrides(base: Scenario, values: dict[str, Any], source: str = "run") -> tuple[Scenario, float | None]:
    """The base scenario with `values` (dotted path -> value) applied, validated; plus the `rate` override if any."""
    data = base.model_dump(mode="json")
    rate = None
    for path, value in values.items():
        segs = resolve_path(base, path)
        if segs == ("rate",):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise SpecError(f"{source}: rate: must be a number > 0 (requests/s), got {value!r}")
            rate = float(value)
            continue
        set_path(data, segs, value)
    sc = scenario_from_dict(data, f"{source} ({', '.join(f'{k}={v!r}' for k, v in values.items())})",
                            source_dir=base.source_dir)
    return sc, rate


__all__ = ["PSEUDO_FIELDS", "apply_overrides", "resolve_path", "set_path"]
