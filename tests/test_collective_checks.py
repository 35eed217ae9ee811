"""benchmarks/collective_residual_map.py and vllm_symm_mem_check.py (issue 11, wave 11): arguments are checked before
any table is read (exit 2, one line naming what is allowed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # vllm_symm_mem_check imports collective_residual_map from benchmarks/
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name, args, allowed", [
    ("collective_residual_map", ["--held", "h100"], "allowed: --held all"),
    ("collective_residual_map", ["--seed", "1"], "allowed: --held all"),
    ("vllm_symm_mem_check", ["--all"], "takes none"),
])
def test_bad_arguments_exit_2_naming_what_is_allowed(name, args, allowed, capsys):
    assert _load(name).main(args) == 2
    out = capsys.readouterr().out
    assert allowed in out and len(out.strip().splitlines()) == 1
