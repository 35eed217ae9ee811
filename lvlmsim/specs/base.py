"""Shared base for every spec: strict pydantic models loaded from YAML with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from lvlmsim.errors import SpecError, format_validation_error

Dtype = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4"]
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4")

# Bytes per element of each storage dtype; tf32 is stored as fp32. int4 and fp4 (E2M1, as in NVFP4/MXFP4) pack two
# values per byte, int2 four (int2 is a storage dtype only: 2-bit KV caches, KIVI; no device computes in it).
# Block scales are not counted: AWQ's fp16 scale per 128 weights adds 3%, NVFP4's fp8 scale per 16 values 12.5%.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5,
    "int2": 0.25,
}


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo must not be silently ignored); instances are immutable and hashable."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    _hash: int | None = PrivateAttr(default=None)

    def __hash__(self) -> int:
        # Specs key the graph's and the cost model's memo tables, so hashing must be cheap and work with list/dict
        # fields: hash the canonical JSON once and keep it (the instance is frozen).
        if self._hash is None:
            self._hash = hash((type(self).__name__, self.model_dump_json()))
        return self._hash


M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: file not found") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}:{where}: malformed YAML: {problem}") from exc


def validate_as(cls: type[M], data: Any, source: str) -> M:
    """Validate `data` as `cls`, turning pydantic's error into a SpecError that names the source and field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of fields for {cls.__name__}, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from exc


def load_yaml_as(cls: type[M], path: Path) -> M:
    return validate_as(cls, read_yaml(path), str(path))
