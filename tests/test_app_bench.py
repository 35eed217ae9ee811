"""The explorer's Benchmark page (issue 13's `lvlmsim bench` in the explorer): what it prints is the API's for the
same flags (the summary block, the figures, the per-request chart, the commands), the client's semantics switch with
the client, a real result file is put beside it by the `--compare` code, and bad flags get one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("altair")
from streamlit.testing.v1 import AppTest  # noqa: E402

from lvlmsim.bench.commands import client_command, server_command  # noqa: E402
from lvlmsim.bench.run import BenchArgs, compare, run_bench, summary_block  # noqa: E402
from tests.app_checks import app_with  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_app import charts  # noqa: E402

MODEL = "qwen2.5-vl-7b"
# the page's defaults: the issue's `lvlmsim bench` example
PAGE_RUN = {"model": MODEL, "hardware": "h100-sxm", "dataset_name": "random-image", "image_resolution": "720p",
            "num_prompts": 200, "max_concurrency": 16, "random_input_len": 512, "random_output_len": 128,
            "random_range_ratio": 0.0, "image_count": 1, "ignore_eos": True}


def bench_page(params: dict | None = None) -> AppTest:
    at = app_with({"model": MODEL, **(params or {})})
    at.switch_page("views/bench.py")
    return rerun(at)


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_page_prints_the_api_summary_block_and_figures():
    """The oracle: run_bench with the page's flags gives the block and the headline figures shown."""
    at = bench_page()
    res = run_bench(BenchArgs(**PAGE_RUN))
    assert summary_block(res.result) in codes(at)
    shown = {m.label: m.value for m in at.metric}
    r = res.result
    assert shown == {"Request throughput": f"{r['request_throughput']:.2f} req/s",
                     "Output throughput": f"{r['output_throughput']:.0f} tok/s",
                     "Mean TTFT": f"{r['mean_ttft_ms']:.2f} ms", "Mean TPOT": f"{r['mean_tpot_ms']:.2f} ms"}
    assert r["completed"] == 200 and "Maximum request concurrency:             16" in summary_block(r)


def test_per_request_chart_is_the_runs_requests():
    """Every completed request twice (TTFT and E2E, in ms), at the time it was sent; the CDF reaches 100%."""
    at = bench_page()
    done = run_bench(BenchArgs(**PAGE_RUN)).simulation.requests
    done = done[done.status == "completed"]
    _, data = charts(at)["bench-requests"]
    frame = next(iter(data.values()))
    ttft = frame[frame.metric == "TTFT"].set_index("request_id").sort_index()
    assert len(ttft) == len(done) == 200
    assert ttft["ms"].to_numpy() == pytest.approx(done.sort_values("request_id").ttft_s.to_numpy() * 1e3)
    e2e = frame[frame.metric == "E2E"].set_index("request_id").sort_index()
    assert e2e["ms"].to_numpy() == pytest.approx(done.sort_values("request_id").e2e_s.to_numpy() * 1e3)
    assert e2e["sent_s"].to_numpy() == pytest.approx(done.sort_values("request_id").arrival_s.to_numpy())
    _, cdf = charts(at)["bench-cdf"]
    cdf = next(iter(cdf.values()))
    assert cdf.groupby("metric")["share"].max().to_dict() == {"E2E": 1.0, "TTFT": 1.0}


def test_sglang_client_applies_its_own_length_semantics():
    """Range ratio 0.5 means [L/2, L] for SGLang ([L/2, 3L/2] for vLLM), and SGLang counts vision tokens as input:
    the page's block is the API's for --client sglang, and differs from vLLM's."""
    at = bench_page()
    at.number_input(key="bench.ratio").set_value(0.5)
    at.selectbox(key="bench.client").set_value("sglang")
    at = rerun(at)
    want = run_bench(BenchArgs(**{**PAGE_RUN, "random_range_ratio": 0.5, "client": "sglang"})).result
    vllm = run_bench(BenchArgs(**{**PAGE_RUN, "random_range_ratio": 0.5})).result
    assert summary_block(want) in codes(at)
    assert want["total_input_tokens"] != vllm["total_input_tokens"]
    assert "total_input_vision_tokens" in want  # what SGLang reports that vLLM does not


def test_commands_are_the_apis_for_the_run():
    """The client and server lines are lvlmsim.bench.commands' for the same flags (not rebuilt by the page)."""
    at = bench_page({"tp": "2"})
    args = BenchArgs(**{**PAGE_RUN, "tp": 2})
    client, _ = client_command(args, "Qwen/Qwen2.5-VL-7B-Instruct")
    server, _ = server_command(args, run_bench(args).simulation.scenario)
    assert client in codes(at) and server in codes(at)
    assert "--tensor-parallel-size 2" in server


def test_a_client_without_the_dataset_says_why_instead_of_a_command():
    at = bench_page()
    at.selectbox(key="bench.client").set_value("sglang")
    at.selectbox(key="bench.dataset").set_value("visionarena")
    at = rerun(at)
    assert any("sglang.bench_serving has no 'visionarena' dataset loader" in i.value for i in at.info)
    assert not any(c.startswith("python -m sglang.bench_serving") for c in codes(at))
    assert summary_block(run_bench(BenchArgs(**{**{k: v for k, v in PAGE_RUN.items() if k not in (
        "image_resolution", "random_input_len", "random_range_ratio", "image_count", "random_output_len")},
        "client": "sglang",
        "dataset_name": "visionarena"})).result) in codes(at)


def test_named_dataset_keeps_its_own_output_lengths_unless_one_is_given():
    """ShareGPT's answers have the dataset's lengths (0 on the page); a fixed length is --sharegpt-output-len."""
    base = {k: v for k, v in PAGE_RUN.items() if k not in ("image_resolution", "random_input_len", "dataset_name",
                                                            "random_range_ratio", "image_count", "random_output_len")}
    at = bench_page()
    at.selectbox(key="bench.dataset").set_value("sharegpt")
    at = rerun(at)
    own = run_bench(BenchArgs(**base, dataset_name="sharegpt")).result
    assert summary_block(own) in codes(at)
    at.number_input(key="bench.named_output_len").set_value(64)
    at = rerun(at)
    fixed = run_bench(BenchArgs(**base, dataset_name="sharegpt", random_output_len=64)).result
    assert summary_block(fixed) in codes(at) and fixed["total_output_tokens"] == 200 * 64 != own["total_output_tokens"]
    assert any("--sharegpt-output-len 64" in c for c in codes(at))


def test_uploaded_real_result_is_compared_as_the_cli_compares():
    """A vLLM result file whose mean TTFT is 1.25x lvlmsim's: the table is compare()'s, and that row reads -20%
    (lvlmsim's difference from the real figure: (1 - 1.25) / 1.25)."""
    at = bench_page()
    sim = run_bench(BenchArgs(**PAGE_RUN)).result
    real = {**{k: v for k, v in sim.items() if k != "date"}, "mean_ttft_ms": sim["mean_ttft_ms"] * 1.25}
    at.file_uploader(key="bench.upload").set_value(("result.json", json.dumps(real).encode(), "application/json"))
    at = rerun(at)
    table = at.dataframe[0].value
    rows = compare(sim, real)
    assert list(table["lvlmsim"]) == pytest.approx([r["lvlmsim"] for r in rows])
    assert list(table["real"]) == pytest.approx([r["real"] for r in rows])
    ttft = table[table.metric == "mean TTFT (ms)"]
    assert ttft["difference (%)"].item() == pytest.approx(-20.0)
    assert table[table.metric == "request throughput (req/s)"]["difference (%)"].item() == pytest.approx(0.0)


@pytest.mark.parametrize(("key", "value", "error"), [
    ("bench.rate", "fast", "--request-rate: expected requests/s or inf, got 'fast'"),
    ("bench.rate", "-2", "--request-rate: must be > 0 requests/s or inf, got '-2'"),
    ("bench.cap", "0", "--max-concurrency: must be >= 1 or inf, got 0"),
    ("bench.cap", "2.5", "--max-concurrency: expected a whole number of requests or inf, got '2.5'"),
])
def test_bad_flag_text_is_one_line_naming_the_flag(key, value, error):
    at = bench_page()
    at.text_input(key=key).set_value(value)
    at = rerun(at)
    assert errors(at) == [error]
    assert not at.metric  # nothing simulated with a flag no client takes


def test_bad_custom_resolution_is_the_apis_error():
    at = bench_page()
    at.selectbox(key="bench.resolution").set_value("custom HxW")
    at = rerun(at)
    at.text_input(key="bench.custom_resolution").set_value("big")
    at = rerun(at)
    assert len(errors(at)) == 1 and errors(at)[0].startswith("--image-resolution: expected 360p, 720p")
    assert "got 'big'" in errors(at)[0]


def test_upload_that_is_not_a_result_names_the_file():
    at = bench_page()
    at.file_uploader(key="bench.upload").set_value(("notes.json", b"[1, 2, 3]", "application/json"))
    at = rerun(at)
    assert errors(at) == ["--compare: notes.json is not a vLLM result JSON or an SGLang JSONL result"]
    assert at.metric  # the simulation is still shown
