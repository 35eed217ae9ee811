"""Golden summaries: the default run and every shipped scenario must give byte-identical `simulate --json` output.

These files were written before the engine was split into parts (issue 10); a refactor of the engine, the planner
or the CLI must not move a single byte. A change that is MEANT to change default outputs (a new calibration, a fixed
cost formula) regenerates them in the same commit and says why in its message:

    python tests/test_golden.py --regen
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

# name -> simulate arguments. The default run as the issue states it, every shipped scenario at its own request
# count and seed, and overloaded runs that drive preemption and backlog (paths a stable run never takes).
CASES: dict[str, list[str]] = {
    "default-2000-seed1": ["--requests", "2000", "--seed", "1"],
    "overload-llava-chat-h100-40rps": ["llava-chat-h100", "--requests", "1000", "--rate", "40", "--seed", "3"],
    "overload-video-qa-3rps": ["video-qa", "--requests", "600", "--rate", "3", "--seed", "3"],
    "overload-multiturn-chat-reuse-10rps": ["multiturn-chat-reuse", "--requests", "800", "--rate", "10", "--seed", "3"],
}


def _scenario_cases() -> dict[str, list[str]]:
    from lvlmsim.specs.registry import scenario_ids

    return {f"scenario-{sid}": [sid] for sid in scenario_ids()}


def all_cases() -> dict[str, list[str]]:
    return {**CASES, **_scenario_cases()}


def simulate_json(args: list[str]) -> str:
    """stdout of `lvlmsim simulate ARGS --json`, run in-process."""
    from lvlmsim.cli import app

    res = CliRunner().invoke(app, ["simulate", *args, "--json"])
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.mark.parametrize("name", sorted(all_cases()))
def test_summary_is_byte_identical_to_golden(name: str):
    """A refactor must not change one byte of a summary; a golden file missing means a new scenario was shipped
    without regenerating (run this file with --regen)."""
    path = GOLDEN_DIR / f"{name}.json"
    assert path.is_file(), f"no golden file {path.name}: run `python tests/test_golden.py --regen`"
    got = simulate_json(all_cases()[name])
    assert got == path.read_text(), (
        f"{path.name} moved. A refactor must not change it; a change meant to alter default outputs regenerates the "
        "golden files (python tests/test_golden.py --regen) in its own commit and says why")


def test_every_golden_file_has_a_case():
    """A scenario removed from the zoo leaves no stale golden file behind."""
    names = {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert names == set(all_cases())


def regenerate() -> None:
    for p in GOLDEN_DIR.glob("*.json"):
        p.unlink()
    for name, args in sorted(all_cases().items()):
        (GOLDEN_DIR / f"{name}.json").write_text(simulate_json(args))
        print(f"wrote {GOLDEN_DIR / name}.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python tests/test_golden.py --regen")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    regenerate()
