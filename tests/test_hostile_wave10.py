"""Hostile input on wave 10's surfaces (techniques x expert parallelism x router skew, speculative decoding's
draft fields, plan's EP lists): each case here was taken and changed nothing, unsaid, before; now one line naming
the field and what it allows (exit 2), before any search or simulation."""

from __future__ import annotations

import pytest

import lvlmsim
from lvlmsim.errors import SpecError
from lvlmsim.techniques import parse_technique
from tests.cli_checks import refused

MOE = "qwen3-vl-30b-a3b"  # 128 routed experts, 8 per token
PLAN = ["plan", "--rate", "1", "--executor", "serial", "--slo", "ttft_p90=1,tpot_p90=0.05", "--no-verify"]


@pytest.mark.parametrize("flags", [
    ["--moe-skew", "1.2"],
    ["--moe-skew", "0.5", "--technique", "fastv"],  # a technique composes the skew into its graph config too
])
def test_router_skew_on_a_dense_model_is_refused(flags):
    """llava-1.5-7b has no router: --moe-skew 1.2 printed the skew-0 estimate as if it were the skewed one."""
    refused(["estimate", "-m", "llava-1.5-7b", *flags],
            "moe_skew: llava-1.5-7b has no mixture-of-experts layers to route; allowed: 0")


def test_router_skew_zero_on_a_dense_model_is_the_default_estimate():
    """0 is what the dense model's routing is: taken, and the same figures as leaving it out."""
    assert lvlmsim.estimate("llava-1.5-7b", moe_skew=0.0).tpot_s == lvlmsim.estimate("llava-1.5-7b").tpot_s


def test_router_skew_on_a_dense_model_is_refused_by_the_api():
    with pytest.raises(SpecError, match="moe_skew: llava-1.5-7b has no mixture-of-experts"):
        lvlmsim.estimate("llava-1.5-7b", moe_skew=1.2, techniques=["fastv"])


@pytest.mark.parametrize(("line", "field"), [
    ("speculative:alpha=0.7,draft_tp=3", "draft_tp"),
    ("speculative:alpha=0.7,draft_sees_visual=true", "draft_sees_visual"),
    ("speculative:alpha=0.7,draft=heads,draft_tp=2,draft_sees_visual=true", "draft_tp/draft_sees_visual"),
])
def test_draft_model_fields_with_self_drafting_heads_are_refused(line, field):
    """Heads run inside the target's step (head_overhead of it): draft_tp=3 under tp 2 / ep 2 printed the same
    TPOT as without it."""
    refused(["estimate", "-m", MOE, "--tp", "2", "--ep", "2", "--technique", line],
            f"technique 'speculative': {field}: only with a draft model (draft=MODEL_ID)")


def test_head_overhead_with_a_draft_model_is_refused():
    """A draft model is priced by its own decode steps: head_overhead=0.2 beside draft=qwen3-vl-2b changed nothing."""
    refused(["estimate", "-m", MOE, "--tp", "2", "--ep", "2", "--technique",
             "speculative:alpha=0.7,draft=qwen3-vl-2b,head_overhead=0.2"],
            "technique 'speculative': head_overhead: only with draft=heads; draft=qwen3-vl-2b is priced by its own")


def test_draft_model_fields_with_a_draft_model_are_taken():
    cfg = parse_technique("speculative:alpha=0.7,draft=qwen3-vl-2b,draft_tp=2,draft_sees_visual=true")
    assert cfg.draft_tp == 2 and cfg.draft_sees_visual
    assert parse_technique("speculative:alpha=0.7,draft_sees_visual=false").draft == "heads"  # the default, said


@pytest.mark.parametrize(("flags", "fragment"), [
    # ep 3 beside ep 1 and 2: no tp degree it divides, so it formed no candidate and was dropped without a word
    (["--model", MOE, "--tp", "2,4", "--ep", "1,2,3", "--techniques", "fastv"],
     "ep: 3 divides none of the tp degrees (2, 4); allowed: 1, 2, 4"),
    (["--model", MOE, "--tp", "2,4", "--ep", "3,8,2"], "ep: 3, 8 divides none of the tp degrees (2, 4)"),
])
def test_plan_ep_degrees_that_form_no_candidate_are_refused(flags, fragment):
    refused([*PLAN, *flags], fragment)


def test_scenario_technique_nan_parameter_is_named_as_written(tmp_path):
    """A scenario's 'layer: .nan' read 'layer: Input should be a valid integer (got None)': the CLI's overrides copy
    the scenario through JSON, where NaN becomes null. The copy keeps the techniques as the file gives them."""
    path = tmp_path / "nan.yaml"
    path.write_text("id: nan\nmodel: qwen3-vl-30b-a3b\nhardware: h100-sxm\nworkload: {requests: 5}\n"
                    "serving: {tp: 2, ep: 2}\ntechniques: [{kind: fastv, layer: .nan}]\n")
    refused(["simulate", str(path)], "technique 'fastv': layer: Input should be a finite number (got nan)")


@pytest.mark.parametrize(("kwargs", "why"), [
    ({}, "host costs off (no runtime): preprocess is empty; give a runtime"),
    # a runtime given with --host off read '(no runtime) ... give a runtime', which the person had done
    ({"runtime": "sglang", "host": False}, "host costs off (turned off under runtime sglang): preprocess is empty; "
                                           "leave them on (the default with a runtime)"),
])
def test_host_costs_off_note_says_why(kwargs, why):
    notes = lvlmsim.estimate("qwen3-vl-30b-a3b", tp=2, ep=2, techniques=["fastv"], **kwargs).notes
    assert sum(n.startswith(why) for n in notes) == 1, notes


@pytest.mark.parametrize("text", ["1e400", "-1e400", "+1E999"])
def test_request_rate_literal_past_the_largest_float_is_refused(text):
    """'1e400' read as inf: every request at t = 0, without a word, from a rate typed as a (huge) number."""
    from lvlmsim.bench.run import parse_request_rate

    with pytest.raises(SpecError, match="--request-rate: "):
        parse_request_rate(text)


@pytest.mark.parametrize("text", ["inf", " INF ", "+inf", "Infinity"])
def test_request_rate_inf_spelled_out_is_taken(text):
    from lvlmsim.bench.run import parse_request_rate

    assert parse_request_rate(text) == float("inf")


def test_plan_unknown_draft_model_is_refused_before_the_search():
    """An unknown draft id was each candidate's 'not chosen' reason, exit 1; an unknown technique kind is one line."""
    refused([*PLAN, "--model", MOE, "--tp", "2", "--ep", "2", "--layouts", "agg",
             "--techniques", "speculative:alpha=0.7,draft=nonexistent-model"],
            "technique 'speculative': draft: unknown model 'nonexistent-model'")
