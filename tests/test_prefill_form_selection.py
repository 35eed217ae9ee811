"""benchmarks/prefill_form_selection.py: its candidates differ from the shipped prefill setup only in the form (and
the CTA count), its pick keeps the first listed on a tie, and bad arguments get a one-line error."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from lvlmsim.calibrate import general, kernels
from lvlmsim.calibrate.measured import prefill_attention_op


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "prefill_form_selection.py"
    spec = importlib.util.spec_from_file_location("prefill_form_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_candidates_change_only_the_form_of_the_shipped_setup():
    """`constant` is what ships (`ctas-context`, picked by the rule, was not shipped); every candidate keeps links,
    ridge and rows."""
    mod = _script()
    shipped = general.FAMILY_SETUPS["attn_prefill"]
    assert mod.CANDIDATES["constant"] == shipped
    assert mod.CANDIDATES["ctas-context"] == replace(shipped, variant="attention+ctas+l2")
    assert {c: s.variant for c, s in mod.CANDIDATES.items()} == {
        "constant": "attention+l2", "softmax": "attention+softmax+l2", "ctas-context": "attention+ctas+l2",
        "ctas": "attention+ctas+l2"}


def test_only_the_ctas_candidate_counts_blackwell_one_token_rows_on_the_generation_kernel():
    """256 sequences x 40 heads (8 KV heads) x 1 token on B300: 256 x 8 CTAs for `ctas`, 256 x 40 as shipped."""
    mod = _script()
    op = prefill_attention_op(256, 1, 40, 8, 64)
    assert mod.CTA_COUNTS["ctas"](op, "bw") == 256 * 8
    assert kernels.prefill_ctas(op, "bw") == 256 * 40
    assert set(mod.CTA_COUNTS) == {"ctas"}


def test_pick_is_the_lowest_inner_score_and_the_first_listed_on_a_tie():
    pick = _script().pick
    assert pick({"constant": 25.0, "ctas-context": 22.0, "ctas": 23.0}) == "ctas-context"
    assert pick({"constant": 22.0, "ctas-context": 22.0}) == "constant"


def test_bad_arguments_get_a_one_line_error(capsys):
    main = _script().main
    assert main(["--seeds", "x"]) == 2
    assert main(["ctas", "constant"]) == 2
    assert main(["constant", "bogus"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("--seeds:") and all(line.startswith("candidates:") for line in out[1:])
