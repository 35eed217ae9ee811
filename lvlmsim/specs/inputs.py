"""One validation layer for what enters the program: input files and numbers.

Every number that enters lvlmsim (spec fields, profile parameters, trace cells, CLI flags, Python API arguments) is
of its type (a boolean is not a number, though Python says True == 1), finite unless the field says what infinity
means, and in its range. Every input file is bounded in size and UTF-8 text; YAML documents refuse duplicate keys
(YAML 1.2 forbids them; PyYAML silently keeps the last), nesting deeper than `MAX_DEPTH` and alias expansion beyond
`MAX_NODES` nodes (a "billion laughs" document is tiny on disk and exponential once expanded). Each failure is one
line naming the file or field and what is allowed.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lvlmsim.errors import SpecError

MAX_FILE_BYTES = 256 * 1024 * 1024  # traces can be long; specs and profiles are far smaller
MAX_DEPTH = 64
MAX_NODES = 1_000_000


def read_text(path: str | Path, what: str = "file", *, error: type[Exception] = SpecError,
              max_bytes: int = MAX_FILE_BYTES) -> str:
    """The file's text, or one line saying why not: missing, unreadable, too large, or not UTF-8."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {p}: {size} bytes, more than the {max_bytes} allowed")
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {p}: file not found") from None
    except IsADirectoryError:
        raise error(f"{what} {p}: is a directory, expected a file") from None
    except OSError as exc:
        raise error(f"{what} {p}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


# PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: '1e3', '1e-3' and '1.5e3' are read as
# text. YAML 1.2 (and JSON) read them as numbers, which is what a person writing `rate_rps: 1e3` means; the spec
# models refuse text where a number is wanted, so the loader reads these forms as floats.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a mapping key given twice (it would silently keep the last value) and reads
    YAML 1.2's exponent floats ('1e3') as numbers."""

    # a copy, lists included: add_implicit_resolver appends to the lists it finds, which would change SafeLoader's
    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports an unhashable key
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def _check_tree(root) -> None:
    """Refuse nesting deeper than MAX_DEPTH and documents that expand (through aliases) to more than MAX_NODES."""
    sizes: dict[int, int] = {}
    stack = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels")
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for kv in node.value for n in kv]
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise SpecError(f"expands to more than {MAX_NODES} values (aliases repeat what they point to)")
            continue
        if id(node) in sizes:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document with the checks above; errors name the source and, where known, line and column."""
    loader = None
    try:
        loader = UniqueKeyLoader(text)  # the reader refuses control characters already here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node)
        return loader.construct_document(node)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply to parse (more than {MAX_DEPTH} levels allowed)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{where}: malformed YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def load_json(text: str, source: str, *, error: type[Exception] = SpecError) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json accepts) are refused; so is nesting deeper than Python's
    stack allows."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise error(f"{source}: {exc}") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply") from None


# ----------------------------------------------------------------------------------------------------------------
# numbers


def number(value: Any, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           integer: bool = False, allow_inf: bool = False, error: type[Exception] = SpecError) -> float | int:
    """`value` as a number of the right kind, or one line naming `name` and the allowed range.

    Refused: booleans, non-numbers (strings are not parsed here), NaN, +-infinity unless `allow_inf`, a fractional
    value where `integer`, and anything outside [lo, hi] ((lo, hi] with `lo_open`)."""
    rng = _range_text(lo, hi, lo_open, integer, allow_inf)
    if isinstance(value, bool) or not isinstance(value, int | float) or hasattr(value, "dtype") and value.dtype == bool:
        raise error(f"{name}: expected {rng}, got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise error(f"{name}: expected {rng}, got {value!r}")
    if integer and not math.isinf(v) and v != int(v):
        raise error(f"{name}: expected {rng}, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise error(f"{name}: expected {rng}, got {value!r}")
    if hi is not None and v > hi:
        raise error(f"{name}: expected {rng}, got {value!r}")
    return int(v) if integer and math.isfinite(v) else (value if isinstance(value, int) else v)


def _range_text(lo, hi, lo_open, integer, allow_inf=False) -> str:
    kind = "an integer" if integer else "a number (inf allowed)" if allow_inf else "a finite number"
    if lo is not None and hi is not None:
        return f"{kind} in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{kind} <= {hi:g}"
    return kind


def _union_args(ann) -> tuple:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _union_args(typing.get_args(ann)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: tuple = ()
        for a in typing.get_args(ann):
            out += _union_args(a)
        return out
    return (ann,)


def _takes_number_not_bool(ann) -> bool:
    arms = _union_args(ann)
    if any(a is bool or a is Any for a in arms):
        return False
    if any(typing.get_origin(a) is typing.Literal and any(isinstance(x, bool) for x in typing.get_args(a))
           for a in arms):
        return False
    return any(a in (int, float) for a in arms)


def _takes_number_not_text(ann, value: str) -> bool:
    """A number field that no arm of `ann` takes `value` (a string) for: no str, Any, or Literal holding it."""
    arms = _union_args(ann)
    if any(a is str or a is Any for a in arms):
        return False
    if any(typing.get_origin(a) is typing.Literal and value in typing.get_args(a) for a in arms):
        return False
    return any(a in (int, float) for a in arms)


def bool_where_number(value: Any, ann) -> str | None:
    """The path (within `value`) of a boolean given where the annotation wants a number; None when there is none."""
    return _where(value, ann, lambda v, a: isinstance(v, bool) and _takes_number_not_bool(a))


def text_where_number(value: Any, ann) -> str | None:
    """The path (within `value`) of a string given where the annotation wants a number ('2' for an int: pydantic's
    lax mode parses it; a spec file's number is written as a number); None when there is none."""
    return _where(value, ann, lambda v, a: isinstance(v, str) and _takes_number_not_text(a, v))


def _where(value: Any, ann, bad) -> str | None:
    """The path (within `value`) of the first leaf `bad(leaf, annotation)` holds for, through lists and dicts."""
    if bad(value, ann):
        return ""
    for arm in _union_args(ann):
        origin = typing.get_origin(arm)
        args = typing.get_args(arm)
        if isinstance(value, Mapping) and origin in (dict, Mapping) and len(args) == 2:
            for k, v in value.items():
                sub = _where(v, args[1], bad)
                if sub is not None:
                    return f".{k}{sub}"
        elif isinstance(value, list | tuple) and origin in (list, tuple, Sequence) and args:
            for i, v in enumerate(value):
                item = args[0] if origin is not tuple or (len(args) == 2 and args[1] is Ellipsis) else \
                    args[min(i, len(args) - 1)]
                sub = _where(v, item, bad)
                if sub is not None:
                    return f".{i}{sub}"
    return None


__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "UniqueKeyLoader", "bool_where_number", "load_json",
           "load_yaml", "number", "read_text", "text_where_number"]
