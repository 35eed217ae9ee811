"""`lvlmsim bench`: each client's length semantics by hand, the result keys, the summary block, --compare.

Oracles: the range formulas of vllm/benchmarks/datasets/random.py (RandomDataset.get_sampling_params) and
sglang/bench_serving.py (sample_random_requests), worked out by hand; a result compared with itself differs by 0%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lvlmsim.bench.clients import length_bounds, parse_resolution, uniform_int_dist
from lvlmsim.bench.run import (
    BenchArgs,
    bench_scenario,
    compare,
    pick_result,
    read_result,
    run_bench,
    summary_block,
)
from lvlmsim.cli import app
from lvlmsim.engine.workload import sample
from lvlmsim.errors import SpecError
from lvlmsim.specs.workload import WorkloadSpec

runner = CliRunner()
DONE_WHEN = ["bench", "--model", "qwen2.5-vl-7b", "--hardware", "h100-sxm", "--dataset-name", "random-image",
             "--image-resolution", "720p", "--num-prompts", "200", "--max-concurrency", "16", "--random-input-len",
             "512", "--random-output-len", "128", "--json"]
VLLM_KEYS = {"duration", "completed", "request_throughput", "output_throughput", "total_token_throughput",
             "total_input_tokens", "total_output_tokens", "failed", "max_concurrency", "request_rate",
             *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "e2el") for s in ("mean", "median", "std", "p99")),
             "mean_itl_ms", "median_itl_ms", "p99_itl_ms"}


@pytest.mark.parametrize(("client", "length", "ratio", "output", "special", "expected"), [
    ("vllm", 100, 0.0, False, 0, (100, 100)),
    ("vllm", 100, 0.5, False, 0, (50, 150)),  # centred on L
    ("vllm", 1001, 0.25, False, 0, (750, 1252)),  # floor(750.75), ceil(1251.25)
    ("vllm", 100, 0.0, False, 1, (99, 99)),  # one BOS token taken off the input only
    ("vllm", 100, 0.0, True, 1, (100, 100)),
    ("vllm", 1, 0.5, True, 0, (1, 2)),  # output low end raised to 1
    ("sglang", 100, 0.5, False, 0, (50, 100)),  # below L
    ("sglang", 100, 1.0, False, 0, (100, 100)),
    ("sglang", 100, 0.0, False, 0, (1, 100)),  # SGLang's default: anywhere up to L (lvlmsim's floor of 1)
    ("sglang", 7, 0.3, True, 0, (2, 7)),  # int(2.1)
])
def test_range_ratio_semantics_of_each_client(client, length, ratio, output, special, expected):
    assert length_bounds(client, length, ratio, output=output, special_tokens=special) == expected


@pytest.mark.parametrize(("client", "ratio"), [("vllm", 1.0), ("vllm", -0.1), ("sglang", 1.5)])
def test_out_of_range_ratio_names_the_flag(client, ratio):
    with pytest.raises(SpecError, match="--random-range-ratio"):
        length_bounds(client, 100, ratio)


def test_uniform_integer_lengths_give_every_integer_the_same_chance():
    """numpy's integers(low, high + 1) in the workload's language: the end points are not half as likely."""
    dist = WorkloadSpec(prompt_tokens=uniform_int_dist(5, 9)).prompt_tokens
    x = np.rint(sample(dist, np.random.default_rng(0), 50_000)).astype(int)
    counts = np.bincount(x, minlength=10)[5:10]
    assert x.min() == 5 and x.max() == 9
    assert np.allclose(counts / 10_000, 1.0, atol=0.05)
    assert uniform_int_dist(7, 7) == {"kind": "fixed", "value": 7}


def test_without_image_resolution_each_client_sends_its_own_default_images():
    """SGLang's image dataset defaults to 1080p; vLLM's random-mm draws each image from its default buckets, 256x256
    or 1280x720 at 0.5 each (sources in lvlmsim.bench.clients). Both used to get 720p. On Qwen2.5-VL (patch 14,
    merge 2: 28 px per token, + vision start/end): 1920x1080 -> 1932x1092, 69 x 39 + 2 = 2693 tokens; 256x256 ->
    252x252, 9 x 9 + 2 = 83; 1280x720 -> 1288x728, 46 x 26 + 2 = 1198."""
    kw = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "dataset_name": "random-image", "max_concurrency": 4,
          "random_input_len": 16, "random_output_len": 2}
    sg = run_bench(BenchArgs(client="sglang", num_prompts=4, random_range_ratio=1.0, **kw))
    assert sg.result["total_input_vision_tokens"] == 4 * 2693  # SGLang counts them as input
    vl = run_bench(BenchArgs(client="vllm", num_prompts=40, **kw))
    assert set(vl.simulation.requests.visual_tokens) == {83, 1198}
    given = run_bench(BenchArgs(client="sglang", num_prompts=4, random_range_ratio=1.0, image_resolution="720p", **kw))
    assert given.result["total_input_vision_tokens"] == 4 * 1198


def test_resolution_presets_and_height_first_custom_sizes():
    assert parse_resolution("720p") == (1280, 720)
    assert parse_resolution("1440p") == (2560, 1440)
    assert parse_resolution("720x1280") == (1280, 720)  # HEIGHTxWIDTH, as both clients read it
    with pytest.raises(SpecError, match="--image-resolution"):
        parse_resolution("big")


def test_the_clients_read_the_same_command_line_differently():
    """Same flags: vLLM prompts are exactly 512 text tokens, SGLang's anywhere in [1, 512]; SGLang also counts the
    vision tokens as input."""
    common = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "dataset_name": "random-image", "num_prompts": 40,
              "max_concurrency": 8, "random_input_len": 512, "random_output_len": 32, "ignore_eos": True}
    v = run_bench(BenchArgs(client="vllm", **common))
    s = run_bench(BenchArgs(client="sglang", **common))
    vdf, sdf = v.simulation.requests, s.simulation.requests
    assert (vdf.prompt_tokens == 512).all() and (vdf.output_tokens == 32).all()
    assert v.result["total_input_tokens"] == 40 * 512
    assert sdf.prompt_tokens.between(1, 512).all() and sdf.prompt_tokens.nunique() > 5
    assert s.result["total_input_tokens"] == int(sdf.prompt_tokens.sum() + sdf.visual_tokens.sum())
    assert s.result["total_input_vision_tokens"] == int(sdf.visual_tokens.sum()) > 0


def test_rate_inf_with_a_cap_is_a_closed_loop_and_a_finite_rate_is_poisson_with_the_cap():
    base = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "num_prompts": 10}
    assert bench_scenario(BenchArgs(max_concurrency=4, **base))["workload"]["arrival"] == \
        {"kind": "concurrency", "clients": 4}
    wl = bench_scenario(BenchArgs(request_rate=2.0, max_concurrency=4, **base))["workload"]
    assert wl["arrival"] == {"kind": "poisson", "rate_rps": 2.0} and wl["max_concurrency"] == 4
    assert bench_scenario(BenchArgs(request_rate=2.0, burstiness=4.0, **base))["workload"]["arrival"]["cv"] == 0.5


def test_done_when_command_prints_vllms_result_keys():
    res = runner.invoke(app, DONE_WHEN)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert VLLM_KEYS <= set(doc)
    assert doc["completed"] == 200 and doc["max_concurrency"] == 16 and doc["request_rate"] == "inf"
    assert doc["total_input_tokens"] == 200 * 512  # vLLM counts the text prompt only
    assert doc["request_throughput"] == pytest.approx(doc["completed"] / doc["duration"])
    assert doc["mean_ttft_ms"] < doc["mean_e2el_ms"]


def test_summary_block_has_vllms_labels():
    r = run_bench(BenchArgs(model="qwen2.5-vl-7b", hardware="h100-sxm", num_prompts=10, max_concurrency=2,
                            random_input_len=64, random_output_len=8)).result
    text = summary_block(r)
    for label in ("Successful requests:", "Benchmark duration (s):", "Total generated tokens:",
                  "Request throughput (req/s):", "Mean TTFT (ms):", "P99 TPOT (ms):", "Median ITL (ms):",
                  "Mean E2EL (ms):"):
        assert label in text
    assert text.splitlines()[0] == "============ Serving Benchmark Result ============"
    assert f"{'Successful requests:':<40} {10:<10}" in text


def test_compare_round_trip(tmp_path):
    """A result compared with itself, read back from the file bench wrote: every shared figure differs by 0%."""
    path = tmp_path / "result.json"
    args = ["bench", "--num-prompts", "12", "--max-concurrency", "4", "--random-input-len", "64",
            "--random-output-len", "8", "--result-file", str(path)]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, args[:-2] + ["--compare", str(path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["compare"]
    assert {r["metric"] for r in rows} >= {"request_throughput", "mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms"}
    assert all(r["diff_pct"] == pytest.approx(0.0, abs=1e-9) for r in rows)
    text = runner.invoke(app, args[:-2] + ["--compare", str(path)]).output
    assert "lvlmsim vs" in text and "+0.0%" in text


def test_compare_reads_sglang_jsonl_and_maps_its_keys(tmp_path):
    p = tmp_path / "sglang.jsonl"
    p.write_text(json.dumps({"mean_e2e_latency_ms": 50.0}) + "\n" +
                 json.dumps({"request_throughput": 2.0, "mean_e2e_latency_ms": 100.0}) + "\n")
    real = read_result(p)
    rows = {r["metric"]: r for r in compare({"request_throughput": 3.0, "mean_e2el_ms": 90.0}, real)}
    assert rows["request_throughput"]["diff_pct"] == pytest.approx(50.0)
    assert rows["mean_e2el_ms"]["diff_pct"] == pytest.approx(-10.0)


RESULTS = Path(__file__).parent / "fixtures" / "bench_results"
# tests/fixtures/bench_results: files with the key names, nesting and layout the clients write (figures made up, so
# each diff below is worked out by hand): vllm_save_result.json as `vllm bench serve --save-result` writes it
# (vllm/benchmarks/serve.py; request_rate "inf", no E2EL keys by default), sglang_runs.jsonl as
# `sglang.bench_serving --output-file` appends it (python/sglang/bench_serving.py; one line per run, request_rate
# the bare literal Infinity, nested server_info): three runs of 12 prompts at max_concurrency 1 / 2 / 4 lasting
# 24 / 12 / 8 s, i.e. 0.5 / 1.0 / 1.5 req/s, mean E2E 200 ms x the concurrency.
SGLANG_RUN = ["bench", "--client", "sglang", "--num-prompts", "12", "--random-input-len", "64", "--random-output-len",
              "8", "--random-range-ratio", "1"]


def test_compare_picks_the_run_with_this_runs_settings_from_a_multi_run_jsonl():
    """SGLang appends one line per run; the run compared is the one made with this run's settings, not the last."""
    want = {"client": "sglang", "request_rate": float("inf"), "max_concurrency": 2, "num_prompts": 12,
            "random_input_len": 64, "random_output_len": 8}
    real, notes = pick_result(RESULTS / "sglang_runs.jsonl", want)
    assert real["request_throughput"] == pytest.approx(12 / 12.0)
    assert real["mean_e2el_ms"] == pytest.approx(400.0)  # SGLang's mean_e2e_latency_ms, mapped
    assert notes == [f"compared with run 2 of 3 in {RESULTS / 'sglang_runs.jsonl'} (request_rate inf, "
                     "max_concurrency 2, random_input_len 64, random_output_len 8)"]
    res = runner.invoke(app, [*SGLANG_RUN, "--max-concurrency", "2", "--compare",
                              str(RESULTS / "sglang_runs.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["metric"]: r for r in json.loads(res.output)["compare"]}
    assert rows["request_throughput"]["real"] == pytest.approx(1.0)  # the last line's is 1.5
    assert rows["total_token_throughput"]["real"] == pytest.approx(12 * 72 / 12.0)  # SGLang's total_throughput


def test_compare_refuses_a_multi_run_file_without_this_run():
    """A sweep file none of whose runs is this run is refused in one line that lists its runs, never compared with
    whichever run came last."""
    res = runner.invoke(app, [*SGLANG_RUN, "--max-concurrency", "8", "--compare", str(RESULTS / "sglang_runs.jsonl")])
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[0]
    assert "holds 3 runs and none was run with this run's settings (request_rate inf, max_concurrency 8" in line
    assert "1: request_rate inf, max_concurrency 1," in line and "3: request_rate inf, max_concurrency 4," in line


def test_compare_reads_vllms_saved_result_and_flags_what_differs():
    """vLLM's saved result as written (no E2EL keys unless asked): the figures it has are compared, those it lacks
    are left out; a run made with other settings, or by the other client, is compared with a note saying so."""
    base = ["bench", "--num-prompts", "10", "--random-input-len", "64", "--random-output-len", "8", "--compare",
            str(RESULTS / "vllm_save_result.json"), "--json"]
    doc = json.loads(runner.invoke(app, [*base, "--max-concurrency", "2"]).output)
    rows = {r["metric"]: r for r in doc["compare"]}
    assert rows["total_input_tokens"]["real"] == 640 and rows["request_throughput"]["real"] == pytest.approx(2.5)
    assert rows["mean_ttft_ms"]["diff_pct"] == pytest.approx((doc["mean_ttft_ms"] - 100.0) / 100.0 * 100.0)
    assert "mean_e2el_ms" not in rows and doc["compare_notes"] == []
    doc = json.loads(runner.invoke(app, [*base, "--max-concurrency", "4"]).output)
    assert doc["compare_notes"] == [f"{RESULTS / 'vllm_save_result.json'} was run with other settings than this "
                                    "run: max_concurrency 2 (this run 4)"]
    text = runner.invoke(app, [*SGLANG_RUN[:2], "vllm", *SGLANG_RUN[3:-2], "--max-concurrency", "4", "--compare",
                               str(RESULTS / "sglang_runs.jsonl")]).output
    assert "is a sglang client's result and this run simulates --client vllm" in text


@pytest.mark.parametrize(("flags", "message"), [
    (["--client", "curl"], "--client: unknown client 'curl'"),
    (["--dataset-name", "coco"], "--dataset-name: unknown dataset 'coco'"),
    (["--request-rate", "0"], "--request-rate"),
    (["--max-concurrency", "0"], "--max-concurrency"),
    (["--image-resolution", "huge", "--dataset-name", "image"], "--image-resolution"),
    (["--compare", "/nonexistent/r.json"], "--compare: file not found"),
])
def test_bad_flags_are_one_line_errors(flags, message):
    res = runner.invoke(app, ["bench", "--num-prompts", "4", *flags])
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.parametrize("name", ["sharegpt", "visionarena", "mmmu"])
def test_named_datasets_run_and_say_where_their_numbers_come_from(name):
    r = run_bench(BenchArgs(model="qwen2.5-vl-7b", hardware="h100-sxm", dataset_name=name, num_prompts=20,
                            max_concurrency=4))
    assert r.result["completed"] == 20
    assert any(name in n for n in r.notes)


def test_ep_reaches_the_server_and_changes_a_moe_run():
    """--ep is the server's expert-parallel degree: on a MoE model it is serving.ep and the run differs from ep 1
    (the all-to-all and the expert split are priced); on a dense model it is refused by name."""
    kw = {"model": "qwen3-vl-30b-a3b", "hardware": "h100-sxm", "tp": 2, "num_prompts": 16, "max_concurrency": 4,
          "random_input_len": 128, "random_output_len": 16}
    assert bench_scenario(BenchArgs(ep=2, **kw))["serving"]["ep"] == 2
    ep2, ep1 = run_bench(BenchArgs(ep=2, **kw)).result, run_bench(BenchArgs(ep=1, **kw)).result
    assert ep2["completed"] == ep1["completed"] == 16
    assert ep2["mean_tpot_ms"] != pytest.approx(ep1["mean_tpot_ms"], rel=1e-6)
    res = runner.invoke(app, ["bench", "--model", "qwen2.5-vl-7b", "--tp", "2", "--ep", "2", "--num-prompts", "4"])
    assert res.exit_code == 2 and "ep: qwen2.5-vl-7b has no mixture-of-experts layers" in res.output


def test_bench_switches_api_costs_and_host_costs():
    kw = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "num_prompts": 8, "max_concurrency": 1,
          "random_input_len": 256, "random_output_len": 8}
    on = run_bench(BenchArgs(**kw)).result
    off = run_bench(BenchArgs(serving={"api_costs": False}, **kw)).result
    assert on["mean_ttft_ms"] > off["mean_ttft_ms"]  # one client: no queue, so API costs only add
    assert on["mean_tpot_ms"] == pytest.approx(off["mean_tpot_ms"], rel=1e-9)
    res = runner.invoke(app, ["bench", "--num-prompts", "4", "--host", "tgi"])
    assert res.exit_code == 2 and "--host: unknown host profile 'tgi'; allowed: off," in res.output


@pytest.mark.parametrize(("client", "content", "fmt", "expected"), [
    ("vllm", "random", "jpeg", "random-jpeg"),
    ("sglang", "random", "jpeg", "random-jpeg"),
    ("sglang", "blank", "png", "blank-png"),
])
def test_synthetic_images_carry_the_clients_content_and_format(client, content, fmt, expected):
    sc = bench_scenario(BenchArgs(model="qwen2.5-vl-7b", hardware="h100-sxm", client=client, num_prompts=4,
                                  dataset_name="random-image", image_content=content, image_format=fmt))
    assert sc["workload"]["image_content"] == expected


@pytest.mark.parametrize(("flags", "message"), [
    (["--client", "sglang", "--image-content", "noise"], "--image-content: unknown content 'noise'"),
    (["--client", "sglang", "--image-format", "webp"], "--image-format: unknown format 'webp'"),
    (["--image-format", "png"], "allowed with --client vllm: random, jpeg"),
])
def test_bad_image_content_flags_are_one_line_errors(flags, message):
    res = runner.invoke(app, ["bench", "--num-prompts", "4", "--dataset-name", "random-image", *flags])
    assert res.exit_code == 2 and message in res.output


@pytest.mark.parametrize("hardware, batched, seqs", [
    ("h100-sxm", 8192, 1024),        # 80 GiB, not an A100: vLLM 0.9's large defaults
    ("a100-sxm-80gb", 2048, 256),    # 80 GiB but an A100 (vLLM PR #17885 keeps it at 2048)
    ("l20", 2048, 256),              # 48 GiB: under the 70 GiB line
])
def test_vllm_server_picks_its_batch_defaults_by_device(hardware, batched, seqs):
    """`vllm serve` without --max-num-batched-tokens / --max-num-seqs sizes them by device memory and name
    (calibration/host/runtimes.yaml server_defaults); a bench run against it gets the same."""
    s = bench_scenario(BenchArgs(model="qwen2.5-vl-7b", hardware=hardware))["serving"]
    assert (s["max_num_batched_tokens"], s["max_num_seqs"]) == (batched, seqs)


def test_server_defaults_never_replace_a_set_knob_and_only_apply_to_the_runtime_that_has_them():
    a100 = "a100-sxm-80gb"
    s = bench_scenario(BenchArgs(model="qwen2.5-vl-7b", hardware=a100, serving={"max_num_batched_tokens": 8192}))
    assert s["serving"]["max_num_batched_tokens"] == 8192 and s["serving"]["max_num_seqs"] == 256
    v0 = bench_scenario(BenchArgs(model="qwen2.5-vl-7b", hardware=a100, serving={"host_costs": "vllm-v0"}))["serving"]
    assert "max_num_batched_tokens" not in v0 and "max_num_seqs" not in v0


@pytest.mark.parametrize("hardware, chunk", [("rtx-4090", 2048), ("l20", 4096), ("h100-sxm", 8192),
                                             ("h200-sxm", 8192), ("b200", 16384)])
def test_sglang_server_sizes_its_chunked_prefill_by_device_memory(hardware, chunk):
    """SGLang's --chunked-prefill-size default: 2048 below 35 GiB, 4096 below 60, 8192 below 160, 16384 above
    (server_args.py _handle_gpu_memory_settings); lvlmsim's max_num_batched_tokens is that knob."""
    s = bench_scenario(BenchArgs(model="qwen2.5-vl-7b", hardware=hardware, client="sglang"))["serving"]
    assert s["max_num_batched_tokens"] == chunk and "max_num_seqs" not in s


def test_a100_default_chunks_a_long_prompt_so_its_ttft_grows():
    """On an A100 vLLM 0.9 prefills a 4096-token prompt in two 2048-token steps: each re-reads the weights, so the
    served TTFT is longer than with one 8192-token budget."""
    common = dict(model="qwen2.5-vl-7b", hardware="a100-sxm-80gb", num_prompts=2, max_concurrency=1,
                  random_input_len=4096, random_output_len=2, random_range_ratio=0.0, ignore_eos=True)
    default = run_bench(BenchArgs(**common)).result["mean_ttft_ms"]
    one_step = run_bench(BenchArgs(**common, serving={"max_num_batched_tokens": 8192})).result["mean_ttft_ms"]
    assert default > one_step
