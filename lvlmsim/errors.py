"""One exception type for every input the user can get wrong.

Faces (CLI, app) catch :class:`LvlmsimError` and print its one-line message; a traceback is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LvlmsimError(Exception):
    """A user-facing error: bad input, a configuration that cannot run, a missing file."""


class SpecError(LvlmsimError, ValueError):
    """A spec (YAML or Python) failed validation; the message names the file and the field."""


class UnknownIdError(SpecError):
    """An id that is not in the registry; the message suggests the closest ids."""

    def __init__(self, kind: str, wanted: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(
            f"unknown {kind} '{wanted}'.{hint} Known {kind} ids: {', '.join(known)} "
            f"(or give a path to a YAML file)."
        )
        self.kind, self.wanted, self.suggestions = kind, wanted, close


class InfeasibleError(LvlmsimError):
    """A configuration that cannot run (does not fit in memory, TP does not divide heads, missing dtype)."""


def format_validation_error(exc, source: str | None = None, fields_at=None) -> str:
    """Turn a pydantic ValidationError into one line per problem: `file: field.path: message (got value)`.
    `fields_at(loc)` (optional) lists the fields of the model at `loc`, named after an unknown field."""
    where = f"{source}: " if source else ""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")  # pydantic's prefix says nothing
        got = err.get("input")
        got_s = ""
        if err.get("type") not in ("missing",) and not isinstance(got, dict | list) and not (
                err.get("type") == "value_error" and _names(msg, got)):
            got_s = f" (got {got!r})"
        if err.get("type") in ("number_not_bool", "number_not_text"):  # the message names the field already
            lines.append(f"{where}{loc + ': ' if err.get('loc') else ''}{msg}")
            continue
        hint = ""
        if err.get("type") == "extra_forbidden" and fields_at is not None:
            names = fields_at(tuple(err.get("loc", ()))[:-1])
            hint = f"; allowed fields: {', '.join(names)}" if names else ""
        lines.append(f"{where}{loc}: {msg}{got_s}{hint}")
    return "; ".join(lines)


def _names(msg: str, got) -> bool:
    """Whether a validator's own message already shows the value it was given."""
    if isinstance(got, bool) or got is None:
        return False
    shown = {str(got), repr(got)} | ({f"{got:g}"} if isinstance(got, int | float) else set())
    return any(text and text in msg for text in shown)
