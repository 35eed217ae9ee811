"""benchmarks/collective_residual_map.py and vllm_symm_mem_check.py (issue 11, wave 11): arguments are checked before
any table is read (exit 2, one line naming what is allowed)."""

from __future__ import annotations

import pytest

from tests.bench_modules import load_bench as _load


@pytest.mark.parametrize("name, args, allowed", [
    ("collective_residual_map", ["--held", "h100"], "allowed: --held all"),
    ("collective_residual_map", ["--seed", "1"], "allowed: --held all"),
    ("vllm_symm_mem_check", ["--all"], "takes none"),
])
def test_bad_arguments_exit_2_naming_what_is_allowed(name, args, allowed, capsys):
    assert _load(name).main(args) == 2
    out = capsys.readouterr().out
    assert allowed in out and len(out.strip().splitlines()) == 1
