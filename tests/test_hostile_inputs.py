"""Hostile inputs found by the wave-7 audit (issue 15): each case was a traceback or a silent simulation before, and
is now refused with one line on stderr (exit 2) that names the field and the allowed values.

A case is (argv, message fragment). The runs are small (4-5 requests) so the file stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app
from tests.cli_checks import refused

runner = CliRunner()
HF = Path(__file__).resolve().parent / "fixtures" / "hf"




@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Broken result / config files a user might hand over."""
    d = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, data in {
        "binary.json": bytes(range(256)),
        "strings.json": json.dumps({"duration": "abc", "completed": 5}).encode(),
        "nan.json": b'{"duration": NaN, "completed": 5}',
        "negative.json": json.dumps({"duration": 3.0, "completed": -5}).encode(),
    }.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    out["dir"] = str(d)
    return out


BENCH = ["bench", "--num-prompts", "4"]


@pytest.mark.parametrize(("flags", "fragment"), [
    # 0 used to fall back to the client's default length (1024 / 128) without a word
    (["--random-input-len", "0"], "--random-input-len: must be >= 1 token, got 0"),
    (["--random-output-len", "0"], "--random-output-len: must be >= 1 token, got 0"),
    (["--special-tokens", "-1"], "--special-tokens: must be in [0, --random-input-len 1024), got -1"),
    (["--special-tokens", "2000"], "--special-tokens: must be in [0, --random-input-len 1024), got 2000"),
    (["--client", "sglang", "--special-tokens", "1"], "--special-tokens: vllm only"),
    # inf reached the scenario as gamma cv 0 and was reported under a field the user never typed
    (["--request-rate", "2", "--burstiness", "inf"], "--burstiness: must be a finite number > 0"),
    (["--host", "tgi"], "--host: unknown host profile 'tgi'; allowed: off, sglang"),
    # flags the dataset does not read were dropped silently
    (["--image-count", "3"], "--image-count: applies to --dataset-name random-image only"),
    (["--image-resolution", "4k"], "--image-resolution: applies to --dataset-name random-image only"),
    (["--client", "sglang", "--image-format", "png"], "--image-format: applies to --dataset-name random-image"),
    (["--dataset-name", "sharegpt", "--random-input-len", "5"], "--random-input-len: applies to --dataset-name "
                                                                 "random or random-image only"),
    # every request longer than the context: 0 successful, 4 failed, exit 0 before
    (["--random-input-len", "200000"], "every request was rejected, none can be served; 4 of 4 requests rejected "
                                       "at admission: longer than max_model_len 128000 (4)"),
    (["--max-model-len", "100"], "longer than max_model_len 100"),
    (["--model", "llava-1.5-7b", "--dataset-name", "random-image", "--image-count", "10"],
     "longer than max_model_len 4096"),
])
def test_bench_flags(flags, fragment):
    refused([*BENCH, *flags], fragment)


@pytest.mark.parametrize(("name", "fragment"), [
    ("binary.json", "is not text (not UTF-8)"),  # UnicodeDecodeError traceback before
    ("strings.json", "duration: expected a finite number >= 0 (or null), got 'abc'"),  # row dropped unseen
    ("nan.json", "duration: expected a finite number >= 0 (or null), got nan"),  # printed '+nan%'
    ("negative.json", "completed: expected a finite number >= 0 (or null), got -5"),
])
def test_bench_compare_files(files, name, fragment):
    refused([*BENCH, "--compare", files[name]], f"--compare: {files[name]}")
    refused([*BENCH, "--compare", files[name]], fragment)


def test_bench_result_file_that_is_a_folder_is_refused_before_the_run(files):
    """IsADirectoryError traceback after the whole run before."""
    refused([*BENCH, "--result-file", files["dir"]], "--result-file:")


# ----------------------------------------------------------------------------------------------------- runtimes
@pytest.mark.parametrize("args", [
    ["estimate", "--runtime", "trtllm", "-w", "gaudi3", "--dtype", "bf16"],
    ["estimate", "--runtime", "trtllm", "-w", "mi300x"],
    ["simulate", "-n", "4", "--runtime", "trtllm", "--hardware", "gaudi3"],
    [*BENCH, "--runtime", "trtllm", "--hardware", "mi300x"],
])
def test_tensorrt_llm_is_refused_off_nvidia(args):
    """TensorRT-LLM runs on NVIDIA GPUs only: these were priced as if it ran there."""
    refused(args, "runtime: trtllm runs on NVIDIA devices only;")
    refused(args, "allowed on it: vllm, sglang, eager")


def test_tensorrt_llm_still_runs_on_an_nvidia_soc():
    res = runner.invoke(app, ["estimate", "--runtime", "trtllm", "-w", "jetson-agx-orin-64gb", "--json"])
    assert res.exit_code in (0, 1), res.output  # 1: answered, does not fit


# ------------------------------------------------------------------------------------------------- simulate
@pytest.mark.parametrize(("flags", "fragment"), [
    (["--video-s", "nan", "--model", "qwen2.5-vl-7b"], "video_s: must be a finite number of seconds >= 0, got nan"),
    (["--video-s", "inf", "--model", "qwen2.5-vl-7b"], "video_s: must be a finite number of seconds >= 0, got inf"),
    (["--prompt-tokens", "0", "--images", "0"], "prompt_tokens: a request needs at least one prompt or visual token"),
    # every request over llava-1.5-7b's 4096-token context: 'completed 0, rejected 5', exit 0 before
    (["--prompt-tokens", "5000"], "workload: every request was rejected, none can be served; 5 of 5 requests "
                                  "rejected at admission: longer than max_model_len 4096 (5)"),
    (["--images", "50"], "longer than max_model_len 4096"),
])
def test_simulate_flags(flags, fragment):
    refused(["simulate", "-n", "5", *flags], fragment)


def test_partial_rejections_are_a_note_with_their_reason():
    """Some requests too long: the run is answered, and the report says how many were rejected and why."""
    res = runner.invoke(app, [*BENCH, "--random-input-len", "1000", "--random-range-ratio", "0.5", "--max-model-len",
                              "1200", "--random-output-len", "8", "--seed", "3"])
    assert res.exit_code == 0, res.output
    note = next(line for line in res.stdout.splitlines() if "rejected at admission" in line)
    assert "of 4 requests rejected at admission: longer than max_model_len 1200" in note


# ----------------------------------------------------------------------------------------------------- planner
def test_plan_ep_dividing_no_tp_is_refused_before_the_search():
    """A KeyError traceback from an empty candidate table before."""
    refused(["plan", "--rate", "1", "--executor", "serial", "--model", "qwen3-vl-30b-a3b", "--tp", "2", "--ep", "3"],
            "ep: 3 divides none of the tp degrees (2); allowed: 1, 2")


# ----------------------------------------------------------------------------------------------------- import-hf
def _qwen3_moe() -> dict:
    return json.loads((HF / "qwen3-vl-30b-a3b-instruct" / "config.json").read_text())


def _write(tmp_path: Path, doc: dict | bytes | str) -> str:
    p = tmp_path / "config.json"
    if isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def _with(path: tuple[str, ...], value) -> dict:
    doc = _qwen3_moe()
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("doc", "fragment"), [
    (bytes(range(256)), "not text (not UTF-8); expected a transformers config.json"),  # UnicodeDecodeError
    (_with(("text_config", "hidden_size"), "abc"), "text_config.hidden_size: expected a whole number >= 1, got 'abc'"),
    (_with(("vision_config", "depth"), 1.5), "vision_config.depth: expected a whole number >= 1, got 1.5"),  # was 1
    (_with(("text_config", "num_hidden_layers"), True), "text_config.num_hidden_layers: expected a whole number"),
    (json.dumps(_qwen3_moe()).replace('"hidden_size": 2048', '"hidden_size": NaN', 1),
     "text_config.hidden_size: expected a finite number, got NaN or Infinity"),  # ValueError traceback
])
def test_import_hf_bad_values(tmp_path, doc, fragment):
    refused(["import-hf", _write(tmp_path, doc)], fragment)


@pytest.mark.parametrize("model_id", ["", "Bad Id!", "my_model", "-x"])
def test_import_hf_id_must_be_a_lower_case_slug(model_id):
    """'' fell back to the config's name and 'Bad Id!' was written into the YAML."""
    refused(["import-hf", str(HF / "qwen3-vl-8b-instruct" / "config.json"), "--id", model_id],
            f"--id: expected a lower-case id of letters, digits, '.' and '-' such as qwen3-vl-8b, got {model_id!r}")


# ------------------------------------------------------------------------------------------- conflicting / long
@pytest.mark.parametrize(("args", "fragment"), [
    # the video shape flags were dropped without a video
    (["estimate", "--video-size", "640x480"], "video_size/video_fps: describe the request's video, but video_s is 0"),
    (["estimate", "-m", "qwen2.5-vl-7b", "--video-fps", "2"], "give video_s > 0 (--video-s) or leave them out"),
    # --stream was ignored by the uncertainty re-runs
    (["simulate", "-n", "4", "--uncertainty", "2", "--stream"], "--stream: the --uncertainty re-runs do not stream"),
    # a server vLLM would not start: max_model_len past the model's context
    ([*BENCH, "--max-model-len", "1000000"], "serving.max_model_len: 1000000 exceeds qwen2.5-vl-7b's context length "
                                              "of 128000 (llm.max_position_embeddings); allowed: 1..128000"),
])
def test_conflicting_or_impossible(args, fragment):
    refused(args, fragment)


def test_long_max_model_len_runs_when_allowed_as_vllm_allows_it(tmp_path):
    """serving.allow_long_max_model_len is vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN=1: the same scenario then runs."""
    from lvlmsim.engine.api import simulate
    from lvlmsim.errors import InfeasibleError

    doc = {"id": "long", "model": "llava-1.5-7b", "hardware": "h100-sxm", "serving": {"max_model_len": 8192},
           "workload": {"requests": 3, "prompt_tokens": 5000, "images": 0, "output_tokens": 4}}
    with pytest.raises(InfeasibleError, match="allowed: 1..4096"):
        simulate(doc)
    doc["serving"]["allow_long_max_model_len"] = True
    assert simulate(doc).summary["completed"] == 3


# ------------------------------------------------------------------------------------------------ model YAMLs
def _model_with(tmp_path: Path, model: str, path: tuple, value) -> str:
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "workloads" / "models" / f"{model}.yaml").read_text())
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    p = tmp_path / f"{model}.yaml"
    p.write_text(yaml.safe_dump(doc))
    return str(p)


@pytest.mark.parametrize(("model", "path", "value", "fragment"), [
    # a ViT layer index past the encoder was dropped from the full-attention count without a word
    ("qwen2.5-vl-7b", ("vision", "window", "full_attention_layers"), [7, 99],
     "window.full_attention_layers [99] are >= num_layers 32; allowed: 0..31"),
    # a repeated layer was priced twice (cross-attention KV, graph layer counts)
    ("llama-3.2-11b-vision", ("llm", "cross_attention_layers"), [3, 3, 8],
     "cross_attention_layers: layers [3] are listed more than once; allowed: each layer once"),
    ("gemma-3-4b", ("llm", "local_attention", "global_layers"), [5, 5],
     "local_attention.global_layers: layers [5] are listed more than once"),
    ("kimi-vl-a3b", ("llm", "moe", "dense_layers"), [0, 0], "moe.dense_layers: layers [0] are listed more than once"),
])
def test_model_layer_lists(tmp_path, model, path, value, fragment):
    refused(["estimate", "-m", _model_with(tmp_path, model, path, value)], fragment)


def test_sweep_row_of_a_workload_nobody_can_serve_is_an_error_row(tmp_path):
    """A sweep run whose every request was rejected was an 'ok' row of zeros."""
    from lvlmsim.planner.runs import run_one, scenario_payload
    from lvlmsim.specs.scenario import load_scenario, scenario_from_dict

    doc = load_scenario("llava-chat-h100").model_dump(mode="json")
    doc["workload"]["prompt_tokens"] = 9000
    row = run_one(scenario_payload(scenario_from_dict(doc, "test"), requests=4))
    assert row["status"] == "error" and "every request was rejected" in row["error"], row


# ------------------------------------------------------------------------------------------------------- traces
@pytest.mark.parametrize(("name", "data", "fragment"), [
    ("t.csv", bytes(range(128, 256)), "not text (not UTF-8); expected a CSV or JSONL trace"),  # UnicodeDecodeError
    # a misspelt or foreign column was ignored: its data vanished from the replay
    ("t.csv", b"arrival_s,prompt_tokens,output_tokens,image\n0.1,5,5,2\n", "unknown column(s) image; allowed: "
                                                                             "arrival_s, prompt_tokens"),
    ("t.jsonl", b'{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3, "video_sec": 4}\n',
     ":1: unknown column(s) video_sec; allowed:"),
])
def test_trace_files(tmp_path, name, data, fragment):
    (tmp_path / name).write_bytes(data)
    sc = tmp_path / "sc.yaml"
    sc.write_text("id: tr\nmodel: llava-1.5-7b\nhardware: h100-sxm\nworkload:\n"
                  f"  arrival: {{kind: trace, path: {name}}}\n")
    refused(["simulate", str(sc)], fragment)


def test_an_empirical_column_may_come_from_a_wider_table(tmp_path):
    """The unknown-column check is the replay's: an empirical distribution reads one column of any table."""
    from lvlmsim.engine.trace import read_column

    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,latency_s\n0,5,5,0.3\n1,6,5,0.4\n")
    assert read_column(p, "latency_s") == [0.3, 0.4]


# ------------------------------------------------------------------------------------------ host profile vs runtime
@pytest.mark.parametrize(("args", "fragment"), [
    ([*BENCH, "--runtime", "vllm", "--host", "trtllm"],
     "host_costs: 'trtllm' is a version of trtllm, not of the serving runtime vllm; allowed with it: vllm-v0"),
    (["estimate", "--runtime", "vllm", "--host", "sglang"], "host: 'sglang' is a version of sglang, not of the "
                                                             "serving runtime vllm"),
    (["estimate", "--runtime", "eager", "--host", "vllm-v0"], "allowed with it: false (no host profile is measured "
                                                               "for eager)"),
])
def test_a_host_profile_of_another_engine_is_refused(args, fragment):
    """Another engine's host time was priced under this runtime's kernels without a word."""
    refused(args, fragment)


# ------------------------------------------------------------------------------------------------ Python API
def _api_refuses(fn, fragment: str) -> None:
    from lvlmsim.errors import LvlmsimError

    with pytest.raises(LvlmsimError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and fragment in msg, msg


@pytest.mark.parametrize(("kwargs", "fragment"), [
    # each of these was a TypeError / AttributeError / IndexError traceback
    ({"image_size": 5}, "image_size: expected 'WIDTHxHEIGHT' such as '336x336' or (width, height) in pixels, got 5"),
    ({"image_size": (336, 336, 3)}, "image_size: expected 'WIDTHxHEIGHT'"),
    ({"model": "qwen2.5-vl-7b", "video_s": 3, "video_size": []}, "video_size: expected 'WIDTHxHEIGHT'"),
    ({"techniques": 3}, "techniques: expected a list of technique configs"),
    ({"profile": 2.5}, "profile: expected auto | general | default | peak, a profile JSON path or an Efficiency"),
    ({"model": None}, "model: expected an id such as llava-1.5-7b, a YAML path or a spec object, got None"),
    ({"hardware": 7}, "hardware: expected an id such as h100-sxm, a YAML path or a spec object, got 7"),
    # these were read as truthy / falsy and answered
    ({"host": 0.5}, "host: expected None, false (off), true or a host profile name, got 0.5"),
    ({"api_costs": "no"}, "api_costs: expected true or false, got 'no'"),
    ({"allow_overflow": []}, "allow_overflow: expected true or false, got []"),
])
def test_estimate_api_types(kwargs, fragment):
    import lvlmsim

    _api_refuses(lambda: lvlmsim.estimate(**kwargs), fragment)


def test_estimate_api_takes_a_path_object_and_one_technique_string():
    """A pathlib.Path model (AttributeError before) and a single 'kind:k=v' string (split into characters before)."""
    import lvlmsim

    root = Path(__file__).resolve().parents[1]
    assert lvlmsim.estimate(root / "workloads" / "models" / "llava-1.5-7b.yaml").ttft_s > 0
    one = lvlmsim.estimate(techniques="fastv:layer=2,keep=0.5")
    assert one.ttft_s == lvlmsim.estimate(techniques=["fastv:layer=2,keep=0.5"]).ttft_s


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda lv, sim: sim(requests=4, progress=3), "progress: expected None or a function progress(done, total)"),
    (lambda lv, sim: sim(requests=4, profile=[]), "profile: expected auto | general | default | peak"),
    (lambda lv, sim: lv.plan(target_rate=1, techniques=["fastv:keep=0.5"], tp=[1], layouts=["agg"],
                             executor="serial"), "techniques: each technique set is a list of configs"),
    (lambda lv, sim: lv.plan(target_rate=1, layouts=b"agg", tp=[1], executor="serial"),
     "layouts: expected a comma-separated list or a sequence"),
])
def test_simulate_and_plan_api_types(call, fragment):
    import lvlmsim
    from lvlmsim.engine.api import simulate

    _api_refuses(lambda: call(lvlmsim, simulate), fragment)


# ------------------------------------------------------------------------------------------------------- pools
@pytest.mark.parametrize(("serving", "fragment"), [
    # the serving-level degree was not read with explicit pools
    ({"tp": 2, "pools": [{"role": "E"}, {"role": "PD"}]}, "tp 2: not read with explicit pools; set instances, tp and "
                                                          "ep on each pool"),
    ({"instances": 3, "pools": [{"role": "EP"}, {"role": "D"}]}, "instances 3: not read with explicit pools"),
    # an encode-only pool runs no experts: its ep was dropped
    ({"pools": [{"role": "E", "ep": 2}, {"role": "PD", "tp": 2, "ep": 2}]},
     "pools: 'E' encodes only (role E) and runs no experts; allowed ep: 1, got 2"),
])
def test_pool_degrees(tmp_path, serving, fragment):
    import yaml

    p = tmp_path / "pools.yaml"
    p.write_text(yaml.safe_dump({"id": "pools", "model": "qwen3-vl-30b-a3b", "hardware": "h100-sxm",
                                 "serving": serving, "workload": {"requests": 4}}))
    refused(["simulate", str(p)], fragment)


@pytest.mark.parametrize(("args", "fragment"), [
    # a named dataset's fixed output length took 0 and -3 (the scenario's output then ran on its own default)
    ([*BENCH, "--dataset-name", "sharegpt", "--random-output-len", "0"], "--random-output-len: must be >= 1 token"),
    # arrivals spread past 1e8 s: the float clock swallowed the service times (TTFT 0.03 ms, TPOT 0 at 1e-300)
    ([*BENCH, "--request-rate", "1e-300"], "workload.arrival.rate_rps: 1e-300 requests/s spreads 4 arrivals over "
                                           "4e+300 s of simulated time"),
    (["simulate", "-n", "4", "--rate", "1e-12"], "allowed: rate >= 4e-08 requests/s for 4 requests"),
])
def test_lengths_and_rates_past_what_can_be_simulated(args, fragment):
    refused(args, fragment)


def _fixture_with(name: str, path: tuple[str, ...], value) -> dict:
    doc = json.loads((HF / name / "config.json").read_text())
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("name", "path", "value", "fragment"), [
    # range(10**15) layers: the importer looped for minutes (gemma 3's global layers, llama 4's MoE layers)
    ("gemma-3-27b-it", ("text_config", "num_hidden_layers"), 10**15,
     "text_config.num_hidden_layers: 1000000000000000 is beyond any real model (at most 2048)"),
    ("llama-4-scout-17b-16e", ("text_config", "num_hidden_layers"), 10**15, "is beyond any real model"),
    # [inner] * (depth - 1): a MemoryError
    ("deepseek-vl2", ("projector_config", "depth"), 10**15, "projector_config.depth: 1000000000000000 is beyond"),
    # ZeroDivisionError / IndexError tracebacks
    ("qwen2.5-vl-7b-instruct", ("num_attention_heads",), 0,
     "error: num_attention_heads: expected a whole number >= 1, got 0"),
    ("llava-1.5-7b-hf", ("vision_config", "image_size"), [],
     "vision_config.image_size: expected a size in pixels or an [height, width] pair, got []"),
])
def test_import_hf_values_that_hung_or_crashed(tmp_path, name, path, value, fragment):
    refused(["import-hf", _write(tmp_path, _fixture_with(name, path, value))], fragment)


# Wave 8: every int-valued config.json / processor field that went through int(), round() or bool() unchecked. Each
# value was truncated, coerced or crashed before (1.5 -> 1, "2" -> 2, true -> 1, 0.3 -> a merge of 11, "false" ->
# true); now each is refused by its config field's name and the allowed values.
@pytest.mark.parametrize(("name", "path", "value", "fragment"), [
    ("qwen3-vl-8b-instruct", ("vision_config", "spatial_merge_size"), 1.5,
     "vision_config.spatial_merge_size: expected a whole number >= 1, got 1.5"),
    ("qwen3-vl-8b-instruct", ("vision_config", "spatial_merge_size"), "2",
     "vision_config.spatial_merge_size: expected a whole number >= 1, got '2'"),
    ("qwen3-vl-8b-instruct", ("vision_config", "spatial_merge_size"), True,
     "vision_config.spatial_merge_size: expected a whole number >= 1, got True"),
    ("qwen3-vl-8b-instruct", ("vision_config", "spatial_merge_size"), 0,
     "vision_config.spatial_merge_size: expected a whole number >= 1, got 0"),
    ("qwen3-vl-8b-instruct", ("vision_config", "temporal_patch_size"), -1,
     "vision_config.temporal_patch_size: expected a whole number >= 1, got -1"),
    ("qwen3-vl-8b-instruct", ("vision_config", "out_hidden_size"), 1e30,
     "vision_config.out_hidden_size: 1e+30 is beyond any real model (at most 134217728)"),
    ("qwen3-vl-8b-instruct", ("vision_config", "num_position_embeddings"), 2300,
     "vision_config.num_position_embeddings: expected a square number of positions"),
    ("qwen3-vl-8b-instruct", ("vision_config", "deepstack_visual_indexes"), 3,
     "vision_config.deepstack_visual_indexes: expected a list of layer indexes (whole numbers >= 0), got 3"),
    ("qwen3-vl-30b-a3b-instruct", ("text_config", "num_experts"), 128.5,
     "text_config.num_experts: expected a whole number >= 1, got 128.5"),
    ("qwen3-vl-30b-a3b-instruct", ("text_config", "decoder_sparse_step"), 0,
     "text_config.decoder_sparse_step: expected a whole number >= 1, got 0"),
    ("qwen3-vl-30b-a3b-instruct", ("text_config", "mlp_only_layers"), [1.5],
     "text_config.mlp_only_layers[0]: expected a whole number >= 0, got 1.5"),
    ("qwen3-vl-30b-a3b-instruct", ("text_config", "head_dim"), 0, "text_config.head_dim: expected a whole number >= 1"),
    ("qwen3-vl-30b-a3b-instruct", ("text_config", "num_key_value_heads"), "4",
     "text_config.num_key_value_heads: expected a whole number >= 1, got '4'"),
    ("qwen2-vl-7b-instruct", ("vision_config", "mlp_ratio"), "4",
     "vision_config.mlp_ratio: expected a finite number > 0, got '4'"),
    ("qwen2.5-vl-7b-instruct", ("vision_config", "window_size"), 112.5,
     "vision_config.window_size: expected a whole number >= 1, got 112.5"),
    ("qwen2.5-vl-7b-instruct", ("vision_config", "fullatt_block_indexes"), [7, "15"],
     "vision_config.fullatt_block_indexes[1]: expected a whole number >= 0, got '15'"),
    ("llava-1.5-7b-hf", ("vision_feature_layer",), -2.5, "vision_feature_layer: expected a whole number in -25..24, "
                                                          "got -2.5"),
    ("llava-1.5-7b-hf", ("vision_feature_layer",), 99, "vision_feature_layer: expected a whole number in -25..24, "
                                                        "got 99"),
    ("llava-1.5-7b-hf", ("vision_config", "patch_size"), 14.2,
     "vision_config.patch_size: expected a whole number >= 1, got 14.2"),
    ("llava-1.5-7b-hf", ("text_config", "tie_word_embeddings"), "false",
     "text_config.tie_word_embeddings: expected true or false, got 'false'"),
    ("llava-v1.6-vicuna-7b-hf", ("image_grid_pinpoints",), [[336, 672.5]],
     "image_grid_pinpoints[0][1]: expected a whole number >= 1, got 672.5"),
    ("llava-v1.6-vicuna-7b-hf", ("use_image_newline_parameter",), "false",
     "use_image_newline_parameter: expected true or false, got 'false'"),
    ("internvl2_5-8b", ("downsample_ratio",), 0.3, "downsample_ratio: expected 1/k for a whole k >= 1"),
    ("internvl2_5-8b", ("downsample_ratio",), 0, "downsample_ratio: expected a finite number > 0, got 0"),
    ("internvl2_5-8b", ("max_dynamic_patch",), 12.5, "max_dynamic_patch: expected a whole number >= 1, got 12.5"),
    ("internvl2_5-8b", ("min_dynamic_patch",), 0, "min_dynamic_patch: expected a whole number >= 1, got 0"),
    ("internvl2_5-8b", ("select_layer",), "-1", "select_layer: expected a whole number in -25..24, got '-1'"),
    ("internvl2_5-8b", ("force_image_size",), 448.5, "force_image_size: expected a whole number >= 1, got 448.5"),
    ("llama-3.2-11b-vision-instruct", ("text_config", "cross_attention_layers"), [3, 8.5],
     "text_config.cross_attention_layers[1]: expected a whole number >= 0, got 8.5"),
    ("gemma-3-27b-it", ("mm_tokens_per_image",), 300, "mm_tokens_per_image: 300 does not pool the 64 x 64 patch grid "
                                                       "evenly; allowed: a square whose side divides 64"),
    ("gemma-3-27b-it", ("text_config", "head_dim"), 128.5, "text_config.head_dim: expected a whole number >= 1"),
    ("deepseek-vl2", ("language_config", "q_lora_rank"), 0, "language_config.q_lora_rank: expected a whole number "
                                                             ">= 1, got 0"),
    ("deepseek-vl2", ("language_config", "n_shared_experts"), 1.5,
     "language_config.n_shared_experts: expected a whole number >= 0, got 1.5"),
    ("deepseek-vl2", ("language_config", "first_k_dense_replace"), -1,
     "language_config.first_k_dense_replace: expected a whole number >= 0, got -1"),
    ("deepseek-vl2", ("candidate_resolutions",), [[384, "768"]],
     "candidate_resolutions[0][1]: expected a whole number >= 1, got '768'"),
    ("deepseek-vl2", ("vision_config", "mlp_ratio"), "abc", "vision_config.mlp_ratio: expected a finite number > 0"),
    ("kimi-vl-a3b-instruct", ("vision_config", "merge_kernel_size"), [2.5, 2.5],
     "vision_config.merge_kernel_size[0]: expected a whole number >= 1, got 2.5"),
    ("kimi-vl-a3b-instruct", ("vision_config", "merge_kernel_size"), 2,
     "vision_config.merge_kernel_size: expected [k, k] (whole numbers >= 1), got 2"),
    ("llama-4-scout-17b-16e", ("vision_config", "pixel_shuffle_ratio"), 0.3,
     "vision_config.pixel_shuffle_ratio: expected 1/k for a whole k >= 1"),
    ("llama-4-scout-17b-16e", ("text_config", "interleave_moe_layer_step"), 0,
     "text_config.interleave_moe_layer_step: expected a whole number >= 1, got 0"),
    ("glm-4.5v", ("text_config", "first_k_dense_replace"), 1.5,
     "text_config.first_k_dense_replace: expected a whole number >= 0, got 1.5"),
])
def test_import_hf_int_fields_are_never_truncated(tmp_path, name, path, value, fragment):
    refused(["import-hf", _write(tmp_path, _fixture_with(name, path, value))], fragment)


@pytest.mark.parametrize(("pp", "fragment"), [
    ({"min_pixels": 3136.5, "max_pixels": 12845056}, "preprocessor_config.json: min_pixels: expected a whole number "
                                                     ">= 1, got 3136.5"),
    ({"size": {"shortest_edge": 3136, "longest_edge": "big"}}, "preprocessor_config.json: size.longest_edge: "
                                                               "expected a whole number >= 1, got 'big'"),
    ({"min_pixels": -1, "max_pixels": 12845056}, "preprocessor_config.json: min_pixels: expected a whole number >= 1"),
])
def test_import_hf_processor_pixel_limits_are_checked(tmp_path, pp, fragment):
    """The Qwen pixel limits of preprocessor_config.json went through int() unchecked (3136.5 -> 3136, -1 kept)."""
    path = _write(tmp_path, _fixture_with("qwen2.5-vl-7b-instruct", ("model_type",), "qwen2_5_vl"))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pp))
    refused(["import-hf", path], fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    # a change of a benchmark score in percentage points cannot pass 100 (the explorer's editor took 1400)
    ("fastv:accuracy_delta=1400,accuracy_source=x", "accuracy_delta: Input should be less than or equal to 100"),
    ("fastv:accuracy_delta=-101,accuracy_source=x", "accuracy_delta: Input should be greater than or equal to -100"),
])
def test_technique_accuracy_delta_is_percentage_points(text, fragment):
    from lvlmsim.techniques import parse_technique

    _api_refuses(lambda: parse_technique(text), f"technique 'fastv': {fragment}")


@pytest.mark.parametrize(("prices", "fragment"), [
    # a negative price ranked that GPU type first at a negative $/hour; NaN made every cost NaN
    ({"h100-sxm": -1.0}, "prices['h100-sxm']: expected a finite number of $ per GPU-hour >= 0, got -1.0"),
    ({"h100-sxm": float("nan")}, "prices['h100-sxm']: expected a finite number of $ per GPU-hour >= 0, got nan"),
    ({"h100-sxm": "3"}, "prices['h100-sxm']: expected a finite number of $ per GPU-hour >= 0, got '3'"),
    ([3.0], "prices: expected {hardware id: $ per GPU-hour}, got [3.0]"),
])
def test_plan_prices_are_checked(prices, fragment):
    import pandas as pd

    from lvlmsim.planner.summary import by_hardware

    cands = pd.DataFrame([{"hardware": "h100-sxm", "candidate": "h100-sxm tp1 agg", "status": "feasible", "gpus": 1,
                           "price_per_gpu_hour_usd": 3.0}])
    _api_refuses(lambda: by_hardware(cands, 1.0, prices), fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    # the explorer echoed a 5000-character line whole, in a page-high error block
    ("x" * 5000, "technique: unknown kind '" + "x" * 60 + "…'. Allowed kinds: "),
    ("fastv:keep=" + "9" * 5000, "technique 'fastv': keep: "),
])
def test_technique_messages_clip_a_huge_value(text, fragment):
    from lvlmsim.techniques import parse_technique

    _api_refuses(lambda: parse_technique(text), fragment)
    with pytest.raises(Exception) as info:
        parse_technique(text)
    assert len(str(info.value)) < 600, len(str(info.value))
