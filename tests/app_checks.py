"""What the explorer's AppTest files share: the app opened with given query parameters, run once without error."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = Path(__file__).resolve().parents[1] / "app" / "Home.py"


def app_with(params: dict) -> AppTest:
    """The explorer with `params` in its URL, after its first run (which must raise nothing)."""
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at
