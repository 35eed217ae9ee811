"""Shared fixtures. `../shared/data` exists in development and CI, never on a user's machine: tests that read it
use the `shared_data` fixture, which skips with a visible reason when it is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"measured data folder {SHARED_DATA} is absent (it exists only in development and CI)")
    return SHARED_DATA


@pytest.fixture
def pool_safe_main(monkeypatch):
    """A `__main__` that spawned pool workers may re-import. Other tests (Streamlit's AppTest) leave an app page as
    `__main__`, and the local executor then rightly falls back to serial, which would make a pool test vacuous;
    with this fixture, that fallback fails the test instead."""
    import types
    import warnings

    from lvlmsim.planner.executors import SerialFallbackWarning

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerialFallbackWarning)
        yield
