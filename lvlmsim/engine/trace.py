"""Request traces (CSV or JSONL): parsed row by row, every bad value reported with file, line and column.

Columns: `arrival_s, prompt_tokens, output_tokens` (required); images as `images` (count) with `image_width` and
`image_height`, or `image_tokens` (visual tokens of the whole request); optional `session_id`, `turn`,
`image_ids` ("a;b"), `video_s`, `video_fps`. Empty cells mean "absent".
"""

from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from lvlmsim.errors import SpecError
from lvlmsim.specs.workload import MAX_ARRIVAL_S, MAX_REQUEST_TOKENS, MAX_VIDEO_S

REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL = ("images", "image_width", "image_height", "image_tokens", "session_id", "turn", "image_ids", "video_s",
            "video_fps")


class TraceError(SpecError):
    """A trace row or column is malformed; the message names file, line and column."""


@dataclass(frozen=True)
class TraceRow:
    line: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    images: int = 0
    image_width: int | None = None
    image_height: int | None = None
    image_tokens: int | None = None
    session_id: str | None = None
    turn: int | None = None
    image_ids: tuple[str, ...] = ()
    video_s: float = 0.0
    video_fps: float | None = None


def _rows(path: Path, strict: bool = True):
    """(line number, {column: raw value}) for each data row; header problems raise here. `strict`: refuse a column
    that is not a trace column (a replay); an empirical distribution reads one column of any table."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror or exc})") from exc
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not text (not UTF-8); expected a CSV or JSONL trace") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}:{i}: malformed JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise TraceError(f"{path}:{i}: expected a JSON object per line, got {type(obj).__name__}")
            if strict:
                _known(path, i, obj)
            yield i, obj
        return
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None:
        raise TraceError(f"{path}: empty trace (no header line)")
    names = [n.strip() for n in reader.fieldnames]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:  # csv.DictReader would silently keep the last column of that name
        raise TraceError(f"{path}:1: column '{dup}' appears twice in the header")
    reader.fieldnames = names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise TraceError(f"{path}:1: missing column(s) {', '.join(missing)} (header has: {', '.join(names)})")
    if strict:
        _known(path, 1, names)
    for row in reader:
        if None in row:
            raise TraceError(f"{path}:{reader.line_num}: more cells than header columns")
        yield reader.line_num, row


def _known(path: Path, line: int, columns) -> None:
    """An unknown column is refused, not ignored: a misspelt 'image' or 'output_token' would drop data silently."""
    unknown = [str(c) for c in columns if c not in REQUIRED and c not in OPTIONAL]
    if unknown:
        raise TraceError(f"{path}:{line}: unknown column(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join((*REQUIRED, *OPTIONAL))}")


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _num(path: Path, line: int, col: str, v, *, integer: bool, minimum: float, maximum: float = math.inf) -> float:
    try:
        x = float(v) if not isinstance(v, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer past a float
        x = float("nan")
    ok = math.isfinite(x) and minimum <= x <= maximum and (not integer or x == int(x))
    if not ok:
        what = "an integer" if integer else "a finite number"
        rng = (f" in [{minimum:g}, {maximum:g}]" if math.isfinite(maximum) else
               f" >= {minimum:g}" if math.isfinite(minimum) else "")
        raise TraceError(f"{path}:{line}: column '{col}': expected {what}{rng}, got {v!r}")
    return int(x) if integer else x


# Upper bounds of a row's numbers (a larger count overflowed numpy's int64 in a traceback; a later arrival time
# left the simulated clock too coarse to time a decode step: float64 steps are 0.12 us at 1e9 s).
_MAXIMA = {"prompt_tokens": MAX_REQUEST_TOKENS, "output_tokens": MAX_REQUEST_TOKENS, "images": MAX_REQUEST_TOKENS,
           "image_tokens": MAX_REQUEST_TOKENS, "arrival_s": MAX_ARRIVAL_S, "video_s": MAX_VIDEO_S}


def read_trace(path: Path | str) -> list[TraceRow]:
    """Parse and check every row; rows keep their file order (the engine sorts by arrival)."""
    path = Path(path)
    out: list[TraceRow] = []
    for line, raw in _rows(path):
        for c in REQUIRED:
            if _blank(raw.get(c)):
                raise TraceError(f"{path}:{line}: column '{c}': missing value")

        def num(col: str, *, integer: bool = True, minimum: float = 0.0, _raw=raw, _line=line):
            v = _raw.get(col)
            return None if _blank(v) else _num(path, _line, col, v, integer=integer, minimum=minimum,
                                               maximum=_MAXIMA.get(col, math.inf))

        images = num("images") or 0
        w, h, tok = num("image_width", minimum=1), num("image_height", minimum=1), num("image_tokens")
        if images and tok is None and (w is None or h is None):
            raise TraceError(
                f"{path}:{line}: column 'image_width': {images} image(s) need image_width and image_height, "
                "or image_tokens"
            )
        if tok and not images:
            images = 1
        ids_raw = raw.get("image_ids")
        ids = tuple(s.strip() for s in str(ids_raw).split(";") if s.strip()) if not _blank(ids_raw) else ()
        sid = raw.get("session_id")
        out.append(TraceRow(
            line=line,
            arrival_s=num("arrival_s", integer=False),
            prompt_tokens=num("prompt_tokens"),
            output_tokens=num("output_tokens", minimum=1),
            images=images, image_width=w, image_height=h, image_tokens=tok,
            session_id=None if _blank(sid) else str(sid), turn=num("turn"), image_ids=ids,
            video_s=num("video_s", integer=False) or 0.0, video_fps=num("video_fps", integer=False, minimum=1e-9),
        ))
    if not out:
        raise TraceError(f"{path}: trace has no rows")
    return out


@functools.lru_cache(maxsize=32)
def _cached(path: str, mtime: float) -> tuple[TraceRow, ...]:
    return tuple(read_trace(path))


def load_trace(path: Path | str) -> tuple[TraceRow, ...]:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace ({exc.strerror or exc})") from exc
    return _cached(str(p), mtime)


def read_column(path: Path | str, column: str) -> list[float]:
    """Numeric values of one column (for empirical distributions); blank cells are skipped."""
    p = Path(path)
    vals: list[float] = []
    seen = False
    for line, raw in _rows(p, strict=False):
        if column in raw:
            seen = True
        v = raw.get(column)
        if _blank(v):
            continue
        vals.append(_num(p, line, column, v, integer=False, minimum=-math.inf))
    if not seen:
        raise TraceError(f"{p}: no column '{column}'")
    if not vals:
        raise TraceError(f"{p}: column '{column}' has no values")
    return vals


def trace_mean_rate(path: Path | str) -> float:
    """Requests per second of a trace as recorded (rows / arrival span)."""
    rows = load_trace(path)
    ts = sorted(r.arrival_s for r in rows)
    span = ts[-1] - ts[0]
    if span <= 0:
        raise TraceError(f"{path}: all arrivals at the same time; cannot rescale it to a rate")
    return (len(ts) - 1) / span


__all__ = ["OPTIONAL", "REQUIRED", "TraceError", "TraceRow", "load_trace", "read_column", "read_trace",
           "trace_mean_rate"]
