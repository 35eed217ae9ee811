"""The CLI with techniques: `estimate -t ...` and `list techniques`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.techniques import REGISTRY

runner = CliRunner()
BASE = ["estimate", "--model", "llava-1.5-7b", "--hardware", "h100-sxm", "--images", "1", "--image-size", "336x336",
        "--prompt-tokens", "64", "--output-tokens", "128", "--json"]


def doc(*extra: str) -> dict:
    res = runner.invoke(app, BASE + list(extra))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_fastv_shows_the_flop_drop():
    base, fv = doc(), doc("-t", "fastv:layer=2,keep=0.5")
    # derived in tests/test_techniques.py: 8640 token-layers x 404,912,128 + 30 x 142,992 pairs x 16,384
    # - the 32 x 205,120 x 5 FLOP score pass
    drop = base["stages"]["prefill"]["flops"] - fv["stages"]["prefill"]["flops"]
    assert drop == pytest.approx(3_568_691_394_560, rel=1e-12)
    assert fv["ttft_s"] < base["ttft_s"]
    assert fv["graph_config"]["visual_keep"] == [[2, 0.5]]
    assert fv["techniques"][0]["kind"] == "fastv" and "2403.06764" in fv["techniques"][0]["citation"]
    assert fv["accuracy"] == [{"technique": "fastv", "accuracy_delta": None, "accuracy_source": None}]


def test_int4_kv_is_a_quarter_of_bf16():
    base, q = doc(), doc("-t", "kv_quant:bits=4")
    assert q["memory"]["kv_bytes_per_token"] * 4 == base["memory"]["kv_bytes_per_token"] == 524_288


def test_techniques_compose_on_the_command_line():
    d = doc("-t", "fastv", "-t", "kv_quant:bits=8", "-t", "weight_quant:scheme=w4a16")
    assert [t["kind"] for t in d["techniques"]] == ["fastv", "weight_quant", "kv_quant"]
    assert d["graph_config"]["weight_dtype"]["llm"] == "int4"


def test_list_techniques_lists_every_kind():
    res = runner.invoke(app, ["list", "techniques"])
    assert res.exit_code == 0, res.output
    for kind in REGISTRY:
        assert kind in res.stdout
    assert len(REGISTRY) >= 14


@pytest.mark.parametrize("spec, message", [
    ("fastv:keep=2", "technique 'fastv': keep"),
    ("nope:x=1", "unknown kind 'nope'"),
    ("fastv:layer=99", "layer: 99 must be in 1..31"),
])
def test_bad_technique_is_one_line_and_exit_2(spec, message):
    res = runner.invoke(app, BASE + ["-t", spec])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_conflict_is_reported_on_the_command_line():
    res = runner.invoke(app, BASE + ["-t", "fastv", "-t", "token_schedule:schedule=4:0.5"])
    assert res.exit_code == 2
    assert "cannot be composed" in res.output


def test_infeasible_dtype_is_reported():
    res = runner.invoke(app, BASE[:-1] + ["--hardware", "a100-sxm-80gb", "-t", "weight_quant:scheme=fp8"])
    assert res.exit_code == 2
    assert "no fp8 compute" in res.output


def test_a_technique_with_expert_parallelism_runs_and_a_bad_ep_names_the_field():
    """`estimate --technique ... --ep 8` prices the technique on the expert-parallel graph (it was refused)."""
    moe = ["estimate", "--model", "qwen3-vl-30b-a3b", "--hardware", "h100-sxm", "--tp", "8", "--output-tokens", "4",
           "-t", "fastv:layer=2,keep=0.5"]
    res = runner.invoke(app, [*moe, "--ep", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ep"] == 8 and out["graph_config"]["ep"] == 8 and out["graph_config"]["visual_keep"] == [[2, 0.5]]
    bad = runner.invoke(app, [*moe, "--ep", "3"])
    assert bad.exit_code != 0
    assert "ep: 3 must divide tp (8) and the 128 experts of qwen3-vl-30b-a3b; allowed: 1, 2, 4, 8" in bad.output
