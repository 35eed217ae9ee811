"""A check the hostile-input test files share: a command refused with one line, the project's usage exit code."""

from __future__ import annotations

from typer.testing import CliRunner

from lvlmsim.cli import app

runner = CliRunner()


def refused(args: list[str], fragment: str) -> None:
    """`lvlmsim ARGS` exits 2 with exactly one stderr line that contains `fragment`, and prints no traceback."""
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert fragment in lines[0], lines[0]
