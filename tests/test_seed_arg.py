"""The `--seed N` flag of the nested selection scripts (benchmarks/seed_arg.py), added for the audit of how robust the
shipped picks are to the tables' subsample seed: without it a script runs at seed 0 as before, and a bad value is
refused with a one-line message before any measured table is read."""

from __future__ import annotations

import pytest

from tests.bench_modules import load_bench as _load

SEEDED_SCRIPTS = ("decode_combine_selection", "decode_walk_selection", "encoder_cta_selection",
                  "gemm_splitk_selection", "gemm_clock_selection", "gemm_link_selection",
                  "gemm_gemv_selection", "attention_setup_check", "gemm_wave_fp8_check")


def test_no_flag_is_seed_zero_and_keeps_the_other_arguments_in_order():
    """Default output stays what it was: no flag means the seed-0 subsample every recorded figure used."""
    seed_arg = _load("seed_arg")
    assert seed_arg.pop_seed(["bf16", "fp8"]) == (0, ["bf16", "fp8"])


def test_flag_anywhere_is_taken_out_with_its_value():
    seed_arg = _load("seed_arg")
    assert seed_arg.pop_seed(["bf16", "--seed", "3", "fp8"]) == (3, ["bf16", "fp8"])
    assert seed_arg.only_seed(["--seed", "12"]) == 12
    assert seed_arg.only_seed([]) == 0


@pytest.mark.parametrize("args", [["--seed"], ["--seed", "-1"], ["--seed", "one"], ["--seed", "1.5"]])
def test_missing_or_non_integer_seed_is_refused_naming_the_flag(args):
    seed_arg = _load("seed_arg")
    with pytest.raises(ValueError, match=r"^--seed: expected a non-negative integer"):
        seed_arg.pop_seed(args)


def test_an_argument_other_than_the_seed_is_refused_by_name():
    seed_arg = _load("seed_arg")
    with pytest.raises(ValueError, match=r"unknown argument 'fp8'; allowed: --seed N"):
        seed_arg.only_seed(["--seed", "1", "fp8"])


@pytest.mark.parametrize("name", SEEDED_SCRIPTS)
def test_each_script_refuses_a_bad_seed_with_exit_2_before_reading_tables(name, capsys):
    """Exit 2 and one line, whether or not ../shared is present: the argument is checked first."""
    mod = _load(name)
    assert mod.main(["--seed", "x"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["--seed: expected a non-negative integer (the table subsample seed), got 'x'"]


def test_splitk_candidates_with_shipped_links_differ_only_in_form_and_carry_the_clock_link():
    """--shipped-links re-checks split-K against today's bf16 setup: the same two variants, both with the shipped
    links (b0 by clock as well as bandwidth); without the flag the candidates are the ones the pick was made with."""
    mod = _load("gemm_splitk_selection")
    assert mod.candidates(False) is mod.CANDIDATES
    shipped = mod.general.FAMILY_SETUPS["gemm"]
    pair = mod.candidates(True)
    assert [s.variant for s in pair.values()] == ["gemm+l2", "gemm+splitk+l2"]
    assert pair["splitk"].variant == shipped.variant
    assert all(s.links == shipped.links and s.links["b0"]["log_clock"] == -1.0 for s in pair.values())


def test_fp8_wave_check_candidates_differ_only_in_form():
    """gemm_wave_fp8_check.py re-scores the shipped fp8 wave form against the plain form on fp8 rows alone: same links
    and ridge as shipped, only the variant differs, and the shipped one is listed first (it keeps a tie)."""
    mod = _load("gemm_wave_fp8_check")
    shipped = mod.general.FAMILY_SETUPS["gemm.fp8"]
    pair = mod.candidates()
    assert list(pair) == ["waves", "plain"] and pair["waves"] is shipped
    plain = pair["plain"]
    assert (plain.variant, plain.links, plain.ridge) == ("gemm+l2", shipped.links, shipped.ridge)
