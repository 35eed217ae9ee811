"""Shared base for every spec: strict pydantic models loaded from YAML with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from lvlmsim.errors import SpecError, format_validation_error
from lvlmsim.specs.inputs import bool_where_number, load_yaml, read_text, text_where_number

Dtype = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4"]
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4")

# Bytes per element of each storage dtype; tf32 is stored as fp32. int4 and fp4 (E2M1, as in NVFP4/MXFP4) pack two
# values per byte, int2 four (int2 is a storage dtype only: 2-bit KV caches, KIVI; no device computes in it).
# Block scales are not counted here: AWQ's fp16 scale per 128 weights adds 3%, NVFP4's fp8 scale per 16 values
# 12.5% (a GEMM op adds NVFP4's to what it reads: lvlmsim.ops.graph.SCALE_BYTES_PER_VALUE).
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5,
    "int2": 0.25,
}


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo must not be silently ignored); instances are immutable and hashable.
    Numbers are finite (NaN and infinity are refused unless a field converts them first), never booleans and never
    strings ('2' where a number is wanted: pydantic's lax mode would parse it, so `ep: "2"` was taken)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)
    _hash: int | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, data: Any) -> Any:
        return no_text_for_numbers(cls, no_bools_for_numbers(cls, data))

    def __hash__(self) -> int:
        # Specs key the graph's and the cost model's memo tables, so hashing must be cheap and work with list/dict
        # fields: hash the canonical JSON once and keep it (the instance is frozen).
        if self._hash is None:
            self._hash = hash((type(self).__name__, self.model_dump_json()))
        return self._hash


M = TypeVar("M", bound=BaseModel)


def no_bools_for_numbers(cls: type[BaseModel], data: Any) -> Any:
    """A before-validator's body: refuse `true`/`false` where a field (or an item in it) wants a number."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            key = name if name in data else field.alias
            if key is None or key not in data:
                continue
            where = bool_where_number(data[key], field.annotation)
            if where is not None:
                raise PydanticCustomError("number_not_bool", "{field}: expected a number, got a boolean",
                                          {"field": f"{name}{where}"})
    return data


def no_text_for_numbers(cls: type[BaseModel], data: Any) -> Any:
    """A before-validator's body: refuse a string where a field (or an item in it) wants only a number. A field with
    its own before-validator reads its text forms itself (`max_concurrency: inf`, as the benchmark clients take)."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            key = name if name in data else field.alias
            if key is None or key not in data or _reads_own_text(field):
                continue
            where = text_where_number(data[key], field.annotation)
            if where is not None:
                raise PydanticCustomError("number_not_text", "{field}: expected a number, got the text {text}",
                                          {"field": f"{name}{where}", "text": repr(_leaf(data[key], where))})
    return data


def _reads_own_text(field: Any) -> bool:
    """Whether a field's own BeforeValidator sees the raw value first (and so decides what text means)."""
    return any(isinstance(m, BeforeValidator) for m in field.metadata)


def _leaf(value: Any, where: str) -> Any:
    """The item of `value` at a '.key.0' path from text_where_number."""
    for part in where.split(".")[1:]:
        value = value[int(part)] if isinstance(value, list | tuple) else value[part]
    return value


def read_yaml(path: Path) -> Any:
    """One YAML file, through the input layer (size, UTF-8, duplicate keys, depth, alias expansion)."""
    return load_yaml(read_text(path, "YAML"), str(path))


def validate_as(cls: type[M], data: Any, source: str) -> M:
    """Validate `data` as `cls`, turning pydantic's error into a SpecError that names the source and field."""
    if data is None:  # an empty YAML file (or one of comments only) read as 'got NoneType'
        raise SpecError(f"{source}: empty, no fields; expected a mapping of fields for {cls.__name__}")
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of fields for {cls.__name__}, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source, lambda loc: fields_at(cls, loc))) from exc


def fields_at(cls: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names of the model reached from `cls` along a pydantic error location (list indices, dict keys and
    the tags of discriminated unions included), for naming what an unknown field could have been; None when the
    path does not end at a model."""
    t: Any = cls
    for part in loc:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            if part not in t.model_fields:
                return None
            t = t.model_fields[part].annotation
            continue
        args = [_unwrap(a) for a in get_args(t)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        tagged = [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == part]
        if tagged:  # a discriminated union: pydantic's loc names the member by its tag
            t = tagged[0]
        elif isinstance(part, int | str) and get_origin(t) in (list, tuple, dict) and args:
            t = args[-1]  # an item of a list, or a value of a dict
        else:
            return None
    t = _unwrap(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return list(t.model_fields)
    models = [a for a in map(_unwrap, get_args(t)) if isinstance(a, type) and issubclass(a, BaseModel)]
    return list(models[0].model_fields) if len(models) == 1 else None  # `X | None`


def _unwrap(t: Any) -> Any:
    """Annotated[X, ...] -> X (repeatedly)."""
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t


def load_yaml_as(cls: type[M], path: Path) -> M:
    return validate_as(cls, read_yaml(path), str(path))
