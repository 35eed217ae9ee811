"""Shared fixtures. `../shared/data` exists in development and CI, never on a user's machine: tests that read it
use the `shared_data` fixture, which skips with a visible reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"measured data folder {SHARED_DATA} is absent (it exists only in development and CI)")
    return SHARED_DATA
