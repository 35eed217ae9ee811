"""The real commands a simulated bench run stands for (lvlmsim.bench.commands): each flag the client's own name and
the run's value, written by hand from the clients' docs; a combination a client cannot express gets a reason."""

from __future__ import annotations

import shlex

import pytest

from lvlmsim.bench.commands import client_command, server_command
from lvlmsim.bench.run import BenchArgs, run_bench

REPO = "Qwen/Qwen2.5-VL-7B-Instruct"
ISSUE_RUN = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "dataset_name": "random-image",
             "image_resolution": "720p", "num_prompts": 200, "max_concurrency": 16, "random_input_len": 512,
             "random_output_len": 128, "ignore_eos": True}


def words(cmd: str) -> list[str]:
    return shlex.split(cmd.replace("\\\n", " "))


def flag_values(cmd: str) -> dict[str, str | None]:
    """--flag -> its value (None for a switch)."""
    w = words(cmd)
    out: dict[str, str | None] = {}
    for i, x in enumerate(w):
        if x.startswith("--"):
            out[x] = w[i + 1] if i + 1 < len(w) and not w[i + 1].startswith("--") else None
    return out


def test_vllm_random_mm_command_of_the_issue_run():
    """The issue's run as `vllm bench serve` takes it: random-mm over the chat API, one 720p image per request
    as one (H, W, T) bucket (height first), every figure lvlmsim compares saved."""
    cmd, why = client_command(BenchArgs(**ISSUE_RUN), REPO)
    assert why is None and words(cmd)[:3] == ["vllm", "bench", "serve"]
    assert flag_values(cmd) == {
        "--backend": "openai-chat", "--endpoint": "/v1/chat/completions", "--model": REPO,
        "--dataset-name": "random-mm", "--random-input-len": "512", "--random-output-len": "128",
        "--random-range-ratio": "0", "--random-mm-base-items-per-request": "1",
        "--random-mm-num-mm-items-range-ratio": "0", "--random-mm-limit-mm-per-prompt": '{"image": 1, "video": 0}',
        "--random-mm-bucket-config": "{(720, 1280, 1): 1.0}", "--num-prompts": "200", "--request-rate": "inf",
        "--max-concurrency": "16", "--seed": "0", "--ignore-eos": None, "--percentile-metrics": "ttft,tpot,itl,e2el",
        "--metric-percentiles": "99", "--save-result": None, "--result-filename": "result.json"}


def test_sglang_image_command_keeps_its_own_defaults_and_eos_rule():
    """SGLang's image dataset takes the resolution as given (HxW, height first), its seed default is 1, and it
    ignores EOS unless told --disable-ignore-eos."""
    args = BenchArgs(**{**ISSUE_RUN, "client": "sglang", "image_resolution": "1080x1920", "random_range_ratio": 0.5,
                        "ignore_eos": False})
    cmd, why = client_command(args, REPO)
    assert why is None and words(cmd)[:3] == ["python", "-m", "sglang.bench_serving"]
    assert flag_values(cmd) == {
        "--backend": "sglang-oai-chat", "--model": REPO, "--dataset-name": "image", "--random-input-len": "512",
        "--random-output-len": "128", "--random-range-ratio": "0.5", "--image-count": "1",
        "--image-resolution": "1080x1920", "--image-content": "random", "--image-format": "jpeg",
        "--num-prompts": "200", "--request-rate": "inf", "--max-concurrency": "16", "--seed": "1",
        "--disable-ignore-eos": None, "--output-file": "result.jsonl"}


def test_text_run_against_another_server_uses_that_servers_backend():
    """Text prompts go to the completions API: vLLM's default backend (no flag), SGLang's client names the server."""
    text = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "num_prompts": 50, "request_rate": 4.0}
    vllm, _ = client_command(BenchArgs(**text), REPO)
    assert "--backend" not in flag_values(vllm) and flag_values(vllm)["--request-rate"] == "4"
    sglang_on_vllm, _ = client_command(BenchArgs(**text, client="sglang", runtime="vllm"), REPO)
    assert flag_values(sglang_on_vllm)["--backend"] == "vllm"
    assert "--max-concurrency" not in flag_values(sglang_on_vllm)


@pytest.mark.parametrize(("client", "dataset", "reason"), [
    ("sglang", "visionarena", "sglang.bench_serving has no 'visionarena' dataset loader"),
    ("vllm", "mmmu", "vllm bench serve has no 'mmmu' dataset loader"),
])
def test_a_dataset_the_client_has_no_loader_for_gets_a_reason(client, dataset, reason):
    cmd, why = client_command(BenchArgs(model="qwen2.5-vl-7b", hardware="h100-sxm", client=client,
                                        dataset_name=dataset), REPO)
    assert cmd is None and why.startswith(reason)


def test_burstiness_is_vllm_only():
    args = {"model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "request_rate": 2.0, "burstiness": 0.5}
    assert flag_values(client_command(BenchArgs(**args), REPO)[0])["--burstiness"] == "0.5"
    cmd, why = client_command(BenchArgs(**args, client="sglang"), REPO)
    assert cmd is None and "--burstiness" in why


def test_server_command_is_the_simulated_servers():
    """tp, ep and the serving knobs the simulation ran with (the device's server defaults), as deploy_commands
    writes them, without the planner's replica line."""
    args = BenchArgs(**{**ISSUE_RUN, "model": "qwen3-vl-30b-a3b", "tp": 2, "ep": 2, "num_prompts": 20})
    sc = run_bench(args).simulation.scenario
    cmd, why = server_command(args, sc)
    assert why is None and not cmd.startswith("#")
    v = flag_values(cmd)
    assert v["--tensor-parallel-size"] == "2" and "--enable-expert-parallel" in v
    assert v["--max-num-seqs"] == str(sc.serving.max_num_seqs)
    assert v["--max-num-batched-tokens"] == str(sc.serving.max_num_batched_tokens)
    trt = BenchArgs(**{**ISSUE_RUN, "runtime": "trtllm", "num_prompts": 5})
    cmd, why = server_command(trt, run_bench(trt).simulation.scenario)
    assert cmd is None and "trtllm" in why
