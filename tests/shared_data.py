"""Where ../shared/data/measured is, if this checkout has it (development and CI only, never a user's machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CAND = REPO.parent / "shared" / "data" / "measured"
MEASURED: Path | None = _CAND if (_CAND / "aiconfigurator" / "data").is_dir() else None

needs_shared = pytest.mark.skipif(
    MEASURED is None, reason="../shared/data/measured (public measured kernel timings) is not next to this checkout"
)
