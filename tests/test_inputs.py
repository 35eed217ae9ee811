"""One validation layer for numbers and input files: each bad input is refused in one line naming the field or file;
nothing non-finite, boolean-as-number or out of range reaches a computation (issue 15's silent wrong answers)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

import lvlmsim
from lvlmsim.errors import InfeasibleError, LvlmsimError, SpecError
from lvlmsim.specs.inputs import MAX_DEPTH, MAX_NODES, load_json, load_yaml, number, read_text
from lvlmsim.specs.registry import load_hardware, load_model

REPO = Path(__file__).resolve().parents[1]


def hardware_with(tmp_path: Path, text_edit) -> str:
    text = (REPO / "hardware_specs" / "h100-sxm.yaml").read_text()
    p = tmp_path / "hw.yaml"
    p.write_text(text_edit(text))
    return str(p)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "true", "false"])
def test_non_finite_and_boolean_datasheet_numbers_are_refused(tmp_path, value):
    """`mem_bw_gbps: true` used to be read as 1 GB/s and `.inf` gave NaN latencies."""
    path = hardware_with(tmp_path, lambda t: "\n".join(
        f"mem_bw_gbps: {value}" if line.startswith("mem_bw_gbps:") else line for line in t.splitlines()))
    with pytest.raises(SpecError) as exc:
        load_hardware(path)
    assert "mem_bw_gbps" in one_line(exc)


def test_boolean_inside_a_mapping_of_numbers_is_refused(tmp_path):
    data = yaml.safe_load((REPO / "hardware_specs" / "h100-sxm.yaml").read_text())
    data["peak_tflops"]["bf16"] = True
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as exc:
        load_hardware(str(p))
    assert "peak_tflops.bf16" in one_line(exc) and "boolean" in str(exc.value)


def test_duplicate_yaml_key_is_refused_not_last_wins(tmp_path):
    """A model with `num_layers: 32` then `num_layers: 2` was priced as 2 layers."""
    text = (REPO / "workloads" / "models" / "llava-1.5-7b.yaml").read_text()
    assert "num_layers:" in text
    p = tmp_path / "m.yaml"
    p.write_text(text.replace("num_layers:", "num_layers: 2\n  num_layers:", 1))
    with pytest.raises(SpecError) as exc:
        load_model(str(p))
    assert "duplicate key 'num_layers'" in one_line(exc)


def test_undecodable_bytes_are_one_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes(b"id: x\n\xff\xfe: 1\n")
    with pytest.raises(SpecError) as exc:
        load_hardware(str(p))
    assert "not UTF-8" in one_line(exc) and "0xff" in str(exc.value)


def test_deep_nesting_and_alias_bombs_are_bounded():
    with pytest.raises(SpecError, match="nested"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000, "deep.yaml")
    with pytest.raises(SpecError, match="nested deeper"):
        load_yaml("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5), "deep.yaml")
    # nine levels of nine-fold aliases: 9**9 = 387M values once expanded, a few hundred bytes on disk
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    with pytest.raises(SpecError, match=f"more than {MAX_NODES}"):
        load_yaml("\n".join(lines), "bomb.yaml")
    # a few shared anchors are fine
    assert load_yaml("a: &a [1, 2]\nb: *a\n", "ok.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_read_text_bounds_size(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("a: 1\n" * 100)
    with pytest.raises(SpecError, match="500 bytes, more than the 10 allowed"):
        read_text(p, "YAML", max_bytes=10)
    with pytest.raises(SpecError, match="is a directory"):
        read_text(tmp_path)


def test_strict_json_refuses_nan_and_infinity():
    with pytest.raises(SpecError, match="NaN is not a JSON number"):
        load_json('{"a": NaN}', "p.json")
    with pytest.raises(SpecError, match="Infinity"):
        load_json('{"a": -Infinity}', "p.json")
    assert load_json('{"a": 1.5}', "p.json") == {"a": 1.5}


@pytest.mark.parametrize(("value", "ok"), [(3, True), (3.0, True), (True, False), (math.nan, False), (math.inf, False),
                                           ("3", False), (None, False), (2.5, False), (0, False), (11, False)])
def test_number_oracle(value, ok):
    if ok:
        assert number(value, "n", lo=1, hi=10, integer=True) == 3
    else:
        with pytest.raises(SpecError, match="^n: expected an integer in \\[1, 10\\]"):
            number(value, "n", lo=1, hi=10, integer=True)


def test_estimate_applies_simulates_context_and_node_rules():
    """LLaVA-1.5's context is 4096 tokens; an H100 node has 8 GPUs. simulate rejected both; estimate priced them."""
    with pytest.raises(LvlmsimError, match="context length of 4096"):
        lvlmsim.estimate(prompt_tokens=4000, output_tokens=200)
    with pytest.raises(InfeasibleError, match="exceeds the 8 devices"):
        lvlmsim.estimate("qwen2-vl-7b", tp=16)
    e = lvlmsim.estimate(prompt_tokens=3000, output_tokens=400)  # 3000 + 576 + 400 = 3976 fits
    assert e.prompt_tokens + e.visual_tokens + e.output_tokens <= 4096


@pytest.mark.parametrize("kw", [dict(images=True), dict(images=10**6), dict(batch=10**9), dict(video_s=math.nan),
                                dict(video_s=math.inf), dict(moe_skew=math.nan), dict(output_tokens=0),
                                dict(prompt_tokens=1.5), dict(video_fps=0.0)])
def test_estimate_api_misuse_is_the_projects_error(kw):
    with pytest.raises(SpecError) as exc:
        lvlmsim.estimate(**kw)
    assert next(iter(kw)) in one_line(exc)


def test_rate_infinity_means_all_at_once_and_nan_is_refused():
    from lvlmsim.engine.api import simulate

    s = simulate(requests=200, rate=math.inf).summary
    assert s["saturation"]["verdict"] == "backlogged"
    with pytest.raises(SpecError, match="rate"):
        simulate(requests=200, rate=math.nan)
    with pytest.raises(SpecError, match="requests: expected an integer"):
        simulate(requests=True)


@pytest.mark.parametrize("bad", [-1e-6, math.nan, math.inf, True])
def test_profile_parameters_are_range_checked(tmp_path, bad):
    """A negative floor priced negative TPOTs; NaN printed 'TPOT nan us' with exit 0."""
    import json

    doc = json.loads((REPO / "calibration" / "profiles" / "h100-sxm.json").read_text())
    fam = next(f for f in doc["families"].values() if "floor_s" in f["params"])
    fam["params"]["floor_s"] = bad
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as exc:
        lvlmsim.estimate(profile=str(p))
    assert "floor_s" in one_line(exc)


def test_duplicate_csv_header_and_list_items_are_refused(tmp_path):
    """csv.DictReader keeps the last of two same-named columns; a hardware given twice was searched twice."""
    from lvlmsim.engine.api import simulate
    from lvlmsim.specs.scenario import load_scenario

    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,output_tokens\n0.1,10,20,99\n")
    doc = load_scenario("llava-chat-h100").model_dump(mode="json")
    doc["workload"]["arrival"] = {"kind": "trace", "path": str(p)}
    with pytest.raises(LvlmsimError, match="column 'output_tokens' appears twice"):
        simulate(doc)
    with pytest.raises(SpecError, match="hardware: 'h100-sxm' is given twice"):
        lvlmsim.plan(target_rate=1, slos="ttft_p90=1", hardware="h100-sxm,h100-sxm", executor="serial")
    with pytest.raises(SpecError, match="tp: '2' is given twice"):
        lvlmsim.plan(target_rate=1, slos="ttft_p90=1", hardware="h100-sxm", tp="2,2", executor="serial")


@pytest.mark.parametrize("args, message", [
    (["--tp", "1,,2"], "tp: empty item in '1,,2'"),  # searched tp 1 and 2, silently
    (["--tp", "1,2,"], "tp: empty item in '1,2,'"),
    (["--ep", ",8"], "ep: empty item in ',8'"),
    (["--hardware", "h100-sxm,,l40s"], "hardware: empty item in 'h100-sxm,,l40s'"),
    (["--layouts", "agg,,E+PD:1:2"], "layouts: empty item in 'agg,,E+PD:1:2'"),
    (["--slo", "ttft_p90=1,,tpot_p90=0.05"], "slo: empty item in 'ttft_p90=1,,tpot_p90=0.05'"),
    (["--techniques", "fastv:keep_ratio=0.5;;none"], "techniques: empty item in 'fastv:keep_ratio=0.5;;none'"),
    (["--hardware", ","], "hardware: empty list ','"),  # nothing at all: the empty-list message, as before
])
def test_plan_refuses_an_empty_item_in_a_list_flag(args, message):
    """A doubled comma in any list flag is a one-line error naming the flag, before anything is simulated."""
    from typer.testing import CliRunner

    from lvlmsim.cli import app

    res = CliRunner().invoke(app, ["plan", "--rate", "1", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_the_list_parser_splits_strips_and_refuses_empty_items():
    from lvlmsim.specs.lists import split_items
    from lvlmsim.specs.request_overrides import parse_image_sizes

    assert split_items(" 1, 2 ,4", "tp") == ["1", "2", "4"] and split_items("", "tp") == split_items(",", "tp") == []
    assert split_items("a;b", "techniques", ";") == ["a", "b"]
    with pytest.raises(SpecError, match="image_size: empty item"):
        parse_image_sizes("336x336,,640x480")
    with pytest.raises(SpecError, match="tp: empty item"):
        lvlmsim.plan(target_rate=1, slos="ttft_p90=1", hardware="h100-sxm", tp="1,,2", executor="serial")


def test_a_kv_cache_that_holds_no_block_is_refused_not_simulated():
    """block_size 10^7 gave 0 KV blocks (every request rejected) while memory said 'fits'."""
    from lvlmsim.engine.api import simulate
    from lvlmsim.specs.scenario import load_scenario

    doc = load_scenario("llava-chat-h100").model_dump(mode="json")
    doc["serving"]["block_size"] = 10_000_000
    with pytest.raises(InfeasibleError, match="holds no block of serving.block_size 10000000"):
        simulate(doc, requests=20)
