"""The README's Python snippet saved as a script: a 'spawn' process pool re-imports the main script, so an unguarded
one would re-run plan() in every worker. lvlmsim detects that and runs serially with a warning instead."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lvlmsim.planner.executors import main_reimport_problem

REPO = Path(__file__).resolve().parents[1]
PLAN = ('plan = lvlmsim.plan("llava-chat-h100", target_rate=20, slos={"ttft_p90": 1.0, "tpot_p90": 0.05}, '
        'hardware="h100-sxm", tp=[1, 2], layouts="agg", workers=2)')


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "script.py"
    p.write_text(textwrap.dedent(body))
    return p


@pytest.mark.parametrize("body, safe", [
    ('"""doc"""\nimport lvlmsim\nX = 3\n\ndef f():\n    return lvlmsim.plan()\n', True),
    ('import lvlmsim\nif __name__ == "__main__":\n    lvlmsim.plan()\n', True),
    ('import lvlmsim\nres = lvlmsim.plan()\n', False),
    ('import lvlmsim\nprint(1)\n', False),
    ('for i in range(3):\n    pass\n', False),
    ('import sys\nsys.path.insert(0, str(Path(__file__).resolve().parents[1]))\n', True),  # benchmarks/' set-up
    ('import sys\nsys.path.insert(0, str(lvlmsim.plan()))\n', False),  # a path call that runs lvlmsim
    ('import sys\nsys.exit(0)\n', False),
])
def test_unguarded_top_level_code_is_detected(tmp_path, body, safe):
    problem = main_reimport_problem(str(write(tmp_path, body)))
    assert (problem is None) == safe
    if not safe:
        assert "script.py" in problem and "__main__" in problem


def test_a_program_read_from_stdin_is_detected():
    """`python - < script.py` sets __main__.__file__ to '<stdin>', which a spawned worker fails to re-import (the pool
    broke with BrokenProcessPool before): it must run serially instead."""
    problem = main_reimport_problem("<stdin>")
    assert problem is not None and "<stdin>" in problem


@pytest.mark.slow
def test_plan_piped_on_stdin_runs_serially(tmp_path):
    script = f"import lvlmsim\n{PLAN}\nprint('VERDICT', plan.verdict)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-"], input=script, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "VERDICT" in res.stdout and "running 2 simulations serially" in res.stderr


def _run(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(path)], cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_readme_snippet_saved_as_a_script_runs(tmp_path):
    res = _run(write(tmp_path, f"import lvlmsim\n{PLAN}\nprint('VERDICT', plan.verdict)\n"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "VERDICT" in res.stdout and "running 2 simulations serially" in res.stderr
