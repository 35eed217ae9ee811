"""Outputs all-or-nothing: check where results go before any work, write to a temporary sibling and rename.

* `check_out_dir` / `check_out_file` run before a simulation starts: an empty path, an unknown extension, a file
  where a folder is wanted (or the reverse) or a place that cannot be written is one line, not a lost run.
* `write_files_atomically` writes every file of a result set to temporary siblings first; only when all are written
  are they renamed into place, and the file that marks the set complete (`summary.json`) is removed first and renamed
  last, so a crash never leaves new tables beside an old summary that looks complete.
* `refuse_to_replace` is the commands' one rule for files that already exist: kept unless the user gave --force.
* `strict_json` is JSON without NaN or Infinity (which Python's json writes and no other parser reads): non-finite
  numbers become null and the document lists where, under `non_finite`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lvlmsim.errors import SpecError


def _writable_parent(p: Path, what: str) -> None:
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise SpecError(f"{what}: {probe} is a file, so {p} cannot be created under it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"{what}: cannot write under {probe} (permission denied)")


def check_out_dir(path: str | Path | None, what: str = "--out") -> Path:
    """A folder results can be written to (created later, by the writer)."""
    if path is None or not str(path).strip():
        raise SpecError(f"{what}: empty path; give a folder to write the results to")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SpecError(f"{what}: {p} exists and is not a folder")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        raise SpecError(f"{what}: cannot write into {p} (permission denied)")
    _writable_parent(p, what)
    return p


def check_out_file(path: str | Path | None, suffixes: Sequence[str], what: str = "--out") -> Path:
    """A file path with one of `suffixes` ('.parquet', '.csv', ...) that can be written."""
    if path is None or not str(path).strip():
        raise SpecError(f"{what}: empty path; give a file ending in {', '.join(suffixes)}")
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise SpecError(f"{what}: {p} has extension '{p.suffix}'; allowed: {', '.join(suffixes)}")
    if p.is_dir():
        raise SpecError(f"{what}: {p} is a folder, expected a file")
    _writable_parent(p, what)
    return p


def refuse_to_replace(paths: Iterable[str | Path], what: str, force: bool) -> None:
    """Refuse, before any work, to write over files that exist, unless `force` (the commands' --force): an output
    path naming a file the user has is more often a slip than a wish, and the old file would be lost unannounced."""
    if force:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise SpecError(f"{what}: {', '.join(existing)} already {verb}; give --force to replace "
                        f"{'it' if len(existing) == 1 else 'them'}, or another path")


def _temp_sibling(folder: Path, name: str) -> Path:
    """An empty temporary file next to the target, with the permissions a plain open() would give (mkstemp's are
    0600)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp_name, 0o666 & ~mask)
    return Path(tmp_name)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it over `path`; nothing is left on failure."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(p.parent, p.name)
    try:
        write(tmp)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_files_atomically(folder: str | Path, writers: Sequence[tuple[str, Callable[[Path], None]]],
                           marker: str | None = None) -> list[Path]:
    """Write each (name, write(tmp)) of a result set into `folder`: all to temporary siblings first, then renamed
    together. `marker` (one of the names) is removed before and renamed after the others: when it exists, the set
    beside it is complete and of one run."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers:
            tmp = _temp_sibling(out, name)
            staged.append((tmp, out / name))
            write(tmp)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    if marker is not None:
        with contextlib.suppress(FileNotFoundError):
            (out / marker).unlink()
        staged.sort(key=lambda st: st[1].name == marker)
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]


def _finite(obj: Any, path: str, bad: list[str]) -> Any:
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        bad.append(path or "(value)")
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, f"{path}.{k}" if path else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v, f"{path}[{i}]", bad) for i, v in enumerate(obj)]
    return obj


def strict_json(doc: Any, *, default: Callable[[Any], Any] | None = None, **kwargs) -> str:
    """JSON text without NaN/Infinity: non-finite floats become null; a dict document says where under
    `non_finite` (a list of dotted paths)."""
    plain = json.loads(json.dumps(doc, default=default)) if default is not None else doc
    bad: list[str] = []
    clean = _finite(plain, "", bad)
    if bad and isinstance(clean, dict):
        clean = {**clean, "non_finite": bad}
    return json.dumps(clean, allow_nan=False, **kwargs)


__all__ = ["atomic_write", "atomic_write_text", "check_out_dir", "check_out_file", "strict_json",
           "write_files_atomically"]
