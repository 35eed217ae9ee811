"""Hostile inputs found by the wave-9 fuzz of every subcommand (huge, non-finite, empty and malformed values in flags,
YAML, traces, profiles). Each case was a traceback, a silent simulation with impossible numbers, or an unclear error
before; now it is one line on stderr, exit 2, naming the field and what is allowed.

Runs are tiny (5 requests) and most cases are refused before anything is simulated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lvlmsim.cli import app
from tests.cli_checks import refused

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
HUGE = "99999999999999999999"  # 1e20: past int64 once a sample is rounded




SIM = ["simulate", "-n", "5"]
BENCH = ["bench", "--num-prompts", "5"]


@pytest.mark.parametrize(("args", "fragment"), [
    # rounded to int64 they wrapped negative: "-18497195308784001024 output tok/s", or a numpy traceback
    ([*SIM, "--output-tokens", HUGE], "output_tokens: value 1e+20 is out of range; allowed: at most 1e+07 tokens"),
    ([*SIM, "--prompt-tokens", HUGE], "prompt_tokens: value 1e+20 is out of range; allowed: at most 1e+07 tokens"),
    ([*SIM, "--images", HUGE], "images: value 1e+20 is out of range; allowed: at most 1e+07 images"),
    ([*BENCH, "--dataset-name", "random-image", "--image-count", HUGE], "images: value 1e+20 is out of range"),
    # a finite rate this high put every arrival within 1e-300 s: "completed 0/s of inf/s offered"
    ([*SIM, "--rate", "1e308"], "rate: a finite rate must be at most 1e+09 requests/s (under a nanosecond apart), "
                                "got 1e+308; give inf for every arrival at t = 0"),
    # duration x fps overflowed: OverflowError tracebacks in the frame count and Qwen3-VL's timestamps
    (["estimate", "--model", "qwen3-vl-8b", "--video-s", "1e308"], "video_s: expected a finite number in [0, 1e+07]"),
    ([*SIM, "--model", "qwen3-vl-8b", "--video-s", "1e308"], "video.duration_s: value 1e+308 is out of range; "
                                                             "allowed: at most 1e+07 s"),
])
def test_numbers_past_what_a_request_can_hold(args, fragment):
    refused(args, fragment)


@pytest.mark.parametrize("model", ["qwen2.5-vl-7b", "qwen3-vl-8b", "internvl3.5-8b"])
def test_a_huge_source_frame_rate_is_capped_by_the_model_not_an_overflow(model):
    """--video-fps is the clip's own rate: a huge one leaves the model's sampling cap in charge (it overflowed)."""
    from lvlmsim.ops.tokenization import tokenize_video
    from lvlmsim.specs.registry import load_model

    m = load_model(model)
    huge = tokenize_video(m, 5.0, source_fps=1e308)
    assert huge.llm_tokens == tokenize_video(m, 5.0).llm_tokens  # 5 s at the policy's fps: the policy decides


def test_a_fixed_negative_count_is_refused(tmp_path):
    """A fixed `images: -1` was clipped to 0 and simulated as text-only."""
    doc = yaml.safe_load((REPO / "workloads/scenarios/llava-chat-h100.yaml").read_text())
    doc["workload"]["images"] = -1
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    refused([*SIM, str(p)], "workload: images: a fixed count must be >= 0 images, got -1")


@pytest.mark.parametrize(("field", "value", "fragment"), [
    # 1e308 GiB became inf bytes and the memory report NaN: ValueError traceback
    ("mem_capacity_gib", 1e308, "mem_capacity_gib: 1e+308 is out of range (overflows in SI units)"),
    ("mem_bw_gbps", 1e308, "mem_bw_gbps: 1e+308 is out of range"),
    ("idle_power_w", 5000.0, "idle_power_w: 5000 W exceeds tdp_w 700 W; allowed: 0..700"),
])
def test_hardware_numbers_that_overflow_or_contradict(tmp_path, field, value, fragment):
    doc = yaml.safe_load((REPO / "hardware_specs/h100-sxm.yaml").read_text())
    doc[field] = value
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(doc))
    refused(["estimate", "--hardware", str(p)], fragment)


def test_a_profile_that_is_not_text_is_refused(tmp_path):
    """A binary --profile file was a UnicodeDecodeError traceback."""
    p = tmp_path / "p.json"
    p.write_bytes(bytes(range(256)))
    refused(["estimate", "--profile", str(p)], "not UTF-8 text (byte 0x80 at offset 128)")


def _trace_scenario(tmp_path: Path, body: str, time_scale: float = 1.0) -> str:
    (tmp_path / "t.csv").write_text(body, encoding="utf-8")
    sc = tmp_path / "sc.yaml"
    sc.write_text("id: tr\nmodel: llava-1.5-7b\nhardware: h100-sxm\nworkload:\n"
                  f"  arrival: {{kind: trace, path: t.csv, time_scale: {time_scale}}}\n")
    return str(sc)


HEAD = "arrival_s,prompt_tokens,output_tokens"


@pytest.mark.parametrize(("body", "fragment"), [
    # OverflowError tracebacks (int64) and a MemoryError for image_tokens
    (f"{HEAD}\n0.1,{HUGE},10\n", "column 'prompt_tokens': expected an integer in [0, 1e+07], got '" + HUGE),
    (f"{HEAD}\n0.1,10,{HUGE}\n", "column 'output_tokens': expected an integer in [1, 1e+07]"),
    (f"{HEAD},image_tokens\n0.1,10,10,{HUGE}\n", "column 'image_tokens': expected an integer in [0, 1e+07]"),
    (f"{HEAD},images,image_width,image_height\n0.1,10,10,{HUGE},336,336\n", "column 'images': expected an integer "
                                                                            "in [0, 1e+07]"),
    # an arrival at 1e308 s printed inf latencies and throughput
    (f"{HEAD}\n1e308,10,10\n", "column 'arrival_s': expected a finite number in [0, 1e+09], got '1e308'"),
])
def test_trace_numbers_out_of_range(tmp_path, body, fragment):
    refused([*SIM, _trace_scenario(tmp_path, body)], fragment)


def test_trace_time_scale_that_overflows_the_clock(tmp_path):
    refused([*SIM, _trace_scenario(tmp_path, f"{HEAD}\n1,10,10\n2,10,10\n", time_scale=1e308)],
            "workload.arrival.time_scale: 1e+308 puts the last arrival of")


def test_a_trace_saved_with_a_byte_order_mark_replays(tmp_path):
    """Spreadsheets write a BOM: 'missing column(s) arrival_s' while the header plainly had it."""
    res = runner.invoke(app, [*SIM, _trace_scenario(tmp_path, f"\ufeff{HEAD}\n0.1,10,10\n0.5,12,8\n")])
    assert res.exit_code == 0, res.output
    assert "completed 2" in res.stdout


def test_validation_messages_drop_pydantic_prefix_and_repeated_value():
    """'Value error, ' says nothing, and a validator that shows the value needs no '(got ...)' after it."""
    from pydantic import ValidationError

    from lvlmsim.errors import format_validation_error
    from lvlmsim.specs.workload import WorkloadSpec

    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({"arrival": {"kind": "poisson", "rate_rps": 1e12}})
    msg = format_validation_error(info.value)
    assert "Value error" not in msg and msg.count("1e+12") == 1, msg


@pytest.mark.parametrize(("args", "fragment"), [
    # Typer printed these as a usage line, a hint and a framed box over several lines
    (["app", "--print-command", "--port", "abc"], "Invalid value for '--port': Input should be a valid integer"),
    ([*SIM, "--prompt-tokens", "nan"], "Invalid value for '--prompt-tokens'"),
    (["estimate", "--bogus", "1"], "No such option: --bogus"),
    (["plan"], "Missing option '--target-rate' / '--rate'."),
    (["bogus"], "No such command 'bogus'."),
])
def test_click_usage_errors_are_one_line(args, fragment):
    refused(args, fragment)


def test_help_and_version_still_exit_0():
    assert runner.invoke(app, ["estimate", "--help"]).exit_code == 0
    assert runner.invoke(app, ["--version"]).exit_code == 0


@pytest.mark.parametrize(("args", "fragment"), [
    # an empty value read as 'not given': the client's runtime, no comparison, no result file, the default table
    ([*BENCH, "--runtime", ""], "serving.runtime: Input should be 'vllm', 'sglang', 'trtllm' or 'eager' (got '')"),
    ([*BENCH, "--compare", ""], "--compare: empty path; give a vLLM result JSON or an SGLang JSONL file"),
    ([*BENCH, "--compare", str(REPO)], "is a directory; give a vLLM result JSON or an SGLang JSONL file"),
    ([*BENCH, "--result-file", ""], "--result-file: empty path; give a file ending in .json"),
    (["sweep", str(REPO / "workloads/sweeps/llava-tp-hardware.yaml"), "--out", ""], "--out: empty path; give a "
                                                                                     "results table ending in "
                                                                                     ".parquet or .csv"),
    # an empty list fell back to the scenario's hardware / every layout
    (["plan", "--rate", "1", "--hardware", ","], "hardware: empty list ','; give hardware ids such as h100-sxm,l40s"),
    (["plan", "--rate", "1", "--layouts", ""], "layouts: empty list ''; give agg, E+PD:1:2"),
    (["plan", "--rate", "1", "--slo", ""], "slo: no thresholds given; allowed keys: ttft_p50"),
    # Streamlit was started with any text and failed to bind
    (["app", "--print-command", "--address", ""], "--address: expected an IP address (127.0.0.1, 0.0.0.0, ::1) or "
                                                  "a host name, got ''"),
    (["app", "--print-command", "--address", "/tmp"], "--address: expected an IP address"),
])
def test_empty_values_are_refused_not_taken_for_absent(args, fragment):
    refused(args, fragment)


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "localhost", "node-3.cluster.local"])
def test_real_addresses_pass(address):
    res = runner.invoke(app, ["app", "--print-command", "--address", address])
    assert res.exit_code == 0 and f"--server.address {address}" in res.stdout, res.output


@pytest.mark.parametrize(("args", "fragment"), [
    # inf failed every candidate with 'OverflowError: cannot convert float infinity to integer' and exited 1
    (["plan", "--rate", "inf"], "target_rate: must be a finite rate in (0, 1e+09] requests/s, got inf"),
    (["plan", "--rate", "1", "--probe-s", "inf"], "probe_duration_s (--probe-s): must be in (0, 1e+09] seconds"),
    (["plan", "--rate", "1", "--probe-s", HUGE], "probe_duration_s (--probe-s): must be in (0, 1e+09] seconds"),
    (["plan", "--rate", "1", "--top", "-1"], "--top: must be a whole number >= 0"),  # listed all but the last
    # torch overflowed on the thread count (traceback); a negative seed failed the fit after the whole suite ran
    (["calibrate", "--out", "p.json", "--threads", HUGE], "--threads (this machine has"),
    (["calibrate", "--out", "p.json", "--seed", "-1"], "--seed: expected an integer in [0, "),
    (["calibrate", "--out", "p.json", "--hardware", ""], "expected an id such as h100-sxm, a YAML path"),
    # validate's --seed only picks the leave-one-out subsample: it was dropped without a word
    (["validate", "--data", ".", "--hardware", "h100-sxm", "--seed", "3"], "--seed: only with --leave-one-out"),
    (["validate", "--data", ".", "--leave-one-out", "--seed", "-1"], "--seed: must be a whole number >= 0, got -1"),
])
def test_planner_and_calibration_flags(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing is: each is refused before any work
    refused(args, fragment)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ Python API
PLAN_KW = {"target_rate": 1, "tp": [1], "layouts": ["agg"], "hardware": ["h100-sxm"], "verify": False,
           "executor": "serial"}


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"slos": 0}, "slo: expected 'KEY=SECONDS,...' such as 'ttft_p90=1.0' or a dict"),  # TypeError traceback
    ({"max_gpus": float("nan")}, "max_gpus: expected an integer >= 1, got nan"),  # ran as no limit
    ({"max_gpus": 1.5}, "max_gpus: expected an integer >= 1, got 1.5"),
    ({"max_gpus": "abc"}, "max_gpus: expected an integer >= 1"),  # TypeError traceback
    ({"pareto_latency": []}, "pareto_latency: unknown []; allowed: e2e_p50"),  # unhashable-type traceback
    ({"techniques": []}, "techniques: an empty list of technique sets leaves nothing to plan"),  # KeyError later
    ({"techniques": 0}, "techniques: expected a list of technique sets"),
    ({"robust": float("nan")}, "robust: expected True or False, got nan"),  # reported nan as the run's setting
    ({"verify": "no"}, "verify: expected True or False, got 'no'"),  # 'no' is truthy: it verified
])
def test_plan_api_argument_types(kwargs, fragment):
    import lvlmsim

    with pytest.raises(lvlmsim.LvlmsimError) as info:
        lvlmsim.plan(**{**PLAN_KW, **kwargs})
    assert "\n" not in str(info.value) and fragment in str(info.value), info.value


def test_plan_api_takes_a_numpy_integer_gpu_cap():
    import numpy as np

    from lvlmsim.planner.capacity import SearchSettings
    from lvlmsim.planner.plan import _validate

    inp = _validate("llava-chat-h100", 1, None, ["h100-sxm"], [1], ["agg"], None, np.int64(3),
                    SearchSettings(probe_duration_s=2), "ttft_p90", "serial", None)
    assert inp.max_gpus == 3 and type(inp.max_gpus) is int


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda lv: lv.estimate(dtype=[1, 2]), "dtype: expected one of fp32"),  # numpy arrays raised ambiguous truth
    (lambda lv: lv.simulate(requests=5, keep_requests=0), "keep_requests: 0 is not one of true | false"),
])
def test_estimate_and_simulate_api_flag_types(call, fragment):
    import lvlmsim

    with pytest.raises(lvlmsim.LvlmsimError) as info:
        call(lvlmsim)
    assert fragment in str(info.value), info.value


@pytest.mark.parametrize(("args", "fragment"), [
    # refused under the scenario's field names (workload.requests, prompt_tokens, rate_rps): bench's flags named now
    ([*BENCH, "--num-prompts", HUGE], "--num-prompts: must be in [1, 1e+09], got " + HUGE),
    ([*BENCH, "--random-input-len", HUGE], "--random-input-len: must be at most 1e+07 tokens"),
    ([*BENCH, "--random-output-len", HUGE], "--random-output-len: must be at most 1e+07 tokens"),
    ([*BENCH, "--request-rate", "1e308"], "--request-rate: must be in (0, 1e+09] requests/s or inf, got 1e+308"),
])
def test_bench_names_its_own_flags(args, fragment):
    refused(args, fragment)


@pytest.mark.parametrize("spec", [0, None, b"x", ""])
def test_sweep_api_spec_types(spec):
    """A number or None was a pathlib TypeError traceback."""
    import lvlmsim

    with pytest.raises(lvlmsim.LvlmsimError, match="sweep: expected a sweep YAML path, a mapping or a SweepSpec"):
        lvlmsim.sweep(spec, executor="serial")


def test_plan_api_layout_items_must_be_text():
    import lvlmsim

    with pytest.raises(lvlmsim.LvlmsimError, match="layout: expected text such as agg or E\\+PD:1:2, got 1"):
        lvlmsim.plan(**{**PLAN_KW, "layouts": [1]})


@pytest.mark.parametrize("archs", [7, [1], "LlavaForConditionalGeneration", {"a": 1}])
def test_import_hf_architectures_must_be_a_list_of_names(tmp_path, archs):
    """A number was 'a field holds a value the llava importer cannot use' (no field named); a string imported with
    its first letter as the model's name."""
    import json

    cfg = json.loads((REPO / "tests/fixtures/hf/llava-1.5-7b-hf/config.json").read_text())
    cfg["architectures"] = archs
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    refused(["import-hf", str(p)], "architectures: expected a list of class names such as")


@pytest.mark.parametrize(("yaml_text", "fragment"), [
    # an unknown (misspelt) field named itself but not what it could have been
    ("serving: {max_num_seq: 5}", "serving.max_num_seq: Extra inputs are not permitted (got 5); allowed fields: "
                                  "instances, tp, ep"),
    ("workload: {arrival: {kind: poisson, rate_rps: 1, rate: 2}}", "workload.arrival.poisson.rate: Extra inputs are "
                                                                   "not permitted (got 2); allowed fields: kind, "
                                                                   "rate_rps"),
    ("workload: {image_size: [{size: 336x336, wt: 1}]}", "allowed fields: width, height, weight"),
    ("slos: {ttft: 1}", "slos.ttft: Extra inputs are not permitted (got 1); allowed fields: ttft_s, tpot_s, e2e_s, "
                        "percentile"),
    ("serving: {pools: [{role: E, instances: 1, tpp: 2}]}", "serving.pools.0.tpp: Extra inputs are not permitted "
                                                            "(got 2); allowed fields: role, name, hardware"),
    ("", "empty, no fields; expected a mapping of fields for Scenario"),  # was '..., got NoneType'
])
def test_scenario_yaml_typos_list_the_allowed_fields(tmp_path, yaml_text, fragment):
    p = tmp_path / "s.yaml"
    p.write_text(f"id: x\nmodel: llava-1.5-7b\nhardware: h100-sxm\n{yaml_text}\n" if yaml_text else "")
    refused([*SIM, str(p)], fragment)


def test_fields_at_follows_lists_unions_and_optionals():
    from lvlmsim.specs.base import fields_at
    from lvlmsim.specs.scenario import Scenario

    assert fields_at(Scenario, ("workload", "video")) == ["fraction", "duration_s", "fps", "max_frames", "width",
                                                          "height", "source_fps"]  # VideoSpec | None
    assert fields_at(Scenario, ("workload", "prompt_tokens", "uniform"))[-2:] == ["low", "high"]
    assert fields_at(Scenario, ("no_such_field",)) is None


def test_a_gpu_without_a_published_power_is_priced(tmp_path):
    """tdp_w: null is allowed ('energy is then unknown'), but the device-general model divided by it: a TypeError
    traceback. Its power feature takes the reference's 0, as device_features' other optional fields do."""
    from lvlmsim.calibrate.general import device_features
    from lvlmsim.specs.registry import load_hardware

    doc = yaml.safe_load((REPO / "hardware_specs/h100-sxm.yaml").read_text())
    doc.update(id="my-gpu", tdp_w=None, idle_power_w=None)
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(doc))
    assert device_features(load_hardware(str(p)))["log_power"] == 0.0
    res = runner.invoke(app, ["estimate", "--hardware", str(p)])
    assert res.exit_code == 0, res.output
