"""The real commands a simulated benchmark run stands for: the benchmark client's command line (`vllm bench serve`
or `python -m sglang.bench_serving`) with the run's flags, and the server it measures (`vllm serve` / SGLang's
launch_server, from lvlmsim.planner.summary.deploy_commands). Run both against a real server, then put its result
file beside the simulation (`lvlmsim bench --compare`, or the explorer's Benchmark page).

Flag names and meanings, by client (sources: vLLM docs/cli/bench/serve and benchmarks/README "random-mm";
SGLang docs/developer_guide/bench_serving.md and python/sglang/bench_serving.py; the published runs in
workloads/validation/bench-runs.yaml use the same):

* vLLM: `--dataset-name random` (text, default backend) or `random-mm` (images: `--backend openai-chat --endpoint
  /v1/chat/completions`, `--random-mm-base-items-per-request`, `--random-mm-num-mm-items-range-ratio 0`,
  `--random-mm-limit-mm-per-prompt '{"image": N, "video": 0}'`, `--random-mm-bucket-config '{(H, W, 1): 1.0}'`,
  keys height first); ShareGPT `--dataset-name sharegpt --dataset-path <file> --sharegpt-output-len`; VisionArena
  `--dataset-name hf --dataset-path lmarena-ai/VisionArena-Chat --hf-split train --hf-output-len`; `--ignore-eos`;
  `--percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 99` so the saved result has every figure lvlmsim
  compares; `--save-result --result-filename`.
* SGLang: `--dataset-name random` or `image` (`--image-count --image-resolution --image-content --image-format`),
  `sharegpt --dataset-path <file> --sharegpt-output-len`, `mmmu --random-output-len`; backend `sglang-oai-chat`
  (images) / `sglang` against an SGLang server, `vllm-chat` / `vllm` against a vLLM one; it ignores EOS unless told
  `--disable-ignore-eos`; `--output-file` (JSONL).

A combination a client cannot express (vLLM's MMMU, SGLang's VisionArena, SGLang with --burstiness) gets no
command, with the reason.
"""

from __future__ import annotations

import math
import shlex

from lvlmsim.bench.clients import DEFAULTS, check_client, parse_resolution
from lvlmsim.bench.run import SYNTHETIC, BenchArgs

SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"  # the file both clients' docs download
RESULT_FILE = {"vllm": "result.json", "sglang": "result.jsonl"}


def client_command(a: BenchArgs, repo: str) -> tuple[str | None, str | None]:
    """(the client's command line for this run against a server of Hugging Face model `repo`, None), or (None, why
    the client cannot run it). Flags left at the client's default are written out anyway, so the line says what
    the simulation assumed."""
    client = check_client(a.client)
    server = a.runtime or client
    d = DEFAULTS[client]
    data, why = _dataset_flags(a, client)
    if data is None:
        return None, why
    if client == "sglang" and a.burstiness != 1.0:
        return None, "sglang.bench_serving has no --burstiness (Poisson arrivals only); use --client vllm"
    program = "vllm bench serve" if client == "vllm" else "python -m sglang.bench_serving"
    flags = [program, *_backend(client, server, a.dataset), "--model", repo, *data,
             "--num-prompts", str(a.num_prompts if a.num_prompts is not None else d.num_prompts),
             "--request-rate", "inf" if math.isinf(a.request_rate) else f"{a.request_rate:g}"]
    if a.max_concurrency is not None:
        flags += ["--max-concurrency", str(a.max_concurrency)]
    if client == "vllm" and a.burstiness != 1.0:
        flags += ["--burstiness", f"{a.burstiness:g}"]
    flags += ["--seed", str(a.seed if a.seed is not None else d.seed)]
    if client == "vllm":
        flags += [*(["--ignore-eos"] if a.ignore_eos else []), "--percentile-metrics", "ttft,tpot,itl,e2el",
                  "--metric-percentiles", "99", "--save-result", "--result-filename", RESULT_FILE[client]]
    else:
        flags += [*([] if a.ignore_eos else ["--disable-ignore-eos"]), "--output-file", RESULT_FILE[client]]
    return _lines(flags), None


def _backend(client: str, server: str, dataset: str) -> list[str]:
    """The client's backend flags: the chat API where images are sent (vLLM needs it for random-mm), the server's
    own completions API otherwise."""
    images = dataset not in ("random", "sharegpt")
    if client == "vllm":
        return ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions"] if images else []
    if server == "sglang":
        return ["--backend", "sglang-oai-chat" if images else "sglang"]
    return ["--backend", "vllm-chat" if images else "vllm"]


def _dataset_flags(a: BenchArgs, client: str) -> tuple[list[str] | None, str | None]:
    """The dataset's flags (synthetic ones with the run's lengths; named ones their loader's), or None and why the
    client has no such dataset."""
    name = a.dataset
    if name in SYNTHETIC:
        return _synthetic(a, client), None
    out = [] if a.random_output_len is None else [str(a.random_output_len)]
    table = {
        ("vllm", "sharegpt"): ["--dataset-name", "sharegpt", "--dataset-path", SHAREGPT_FILE,
                               *(["--sharegpt-output-len", *out] if out else [])],
        ("vllm", "visionarena"): ["--dataset-name", "hf", "--dataset-path", "lmarena-ai/VisionArena-Chat",
                                  "--hf-split", "train", *(["--hf-output-len", *out] if out else [])],
        ("sglang", "sharegpt"): ["--dataset-name", "sharegpt", "--dataset-path", SHAREGPT_FILE,
                                 *(["--sharegpt-output-len", *out] if out else [])],
        ("sglang", "mmmu"): ["--dataset-name", "mmmu", *(["--random-output-len", *out] if out else [])],
    }
    flags = table.get((client, name))
    if flags is None:
        other = "sglang" if client == "vllm" else "vllm"
        program = "vllm bench serve" if client == "vllm" else "sglang.bench_serving"
        return None, f"{program} has no '{name}' dataset loader lvlmsim knows of; use --client {other}"
    return flags, None


def _synthetic(a: BenchArgs, client: str) -> list[str]:
    """The random / random-image flags with the run's values (the client's defaults where none was given)."""
    d = DEFAULTS[client]
    ratio = d.range_ratio if a.random_range_ratio is None else a.random_range_ratio
    image = a.dataset == "random-image"
    name = ("random-mm" if client == "vllm" else "image") if image else "random"
    flags = ["--dataset-name", name,
             "--random-input-len", str(a.random_input_len if a.random_input_len is not None else d.input_len),
             "--random-output-len", str(a.random_output_len if a.random_output_len is not None else d.output_len),
             "--random-range-ratio", f"{ratio:g}"]
    if not image:
        return flags
    if client == "sglang":
        flags += ["--image-count", str(a.image_count),
                  "--image-resolution", a.image_resolution if a.image_resolution is not None else "1080p",
                  "--image-content", a.image_content, "--image-format", a.image_format]
        return flags
    flags += ["--random-mm-base-items-per-request", str(a.image_count), "--random-mm-num-mm-items-range-ratio", "0",
              "--random-mm-limit-mm-per-prompt", f'{{"image": {a.image_count}, "video": 0}}']
    if a.image_resolution is not None:  # else the client's own default buckets (lvlmsim.bench.clients)
        w, h = parse_resolution(a.image_resolution)
        flags += ["--random-mm-bucket-config", f"{{({h}, {w}, 1): 1.0}}"]
    return flags


def _lines(flags: list[str]) -> str:
    """The program, then one flag with its value per line, values shell-quoted, joined by backslash
    continuations."""
    parts = [flags[0]]
    for w in flags[1:]:
        if w.startswith("--"):
            parts.append(w)
        else:
            parts[-1] += " " + shlex.quote(w)
    return " \\\n  ".join(parts)


def server_command(a: BenchArgs, scenario) -> tuple[str | None, str | None]:
    """(`vllm serve` / SGLang launch_server for the simulated server: the run's tp, ep and the serving knobs the
    simulation used, None), or (None, why) for a runtime deploy_commands does not write (trtllm)."""
    from lvlmsim.engine.api import load_scenario_model
    from lvlmsim.planner.summary import deploy_commands

    server = scenario.serving.runtime or check_client(a.client)
    one = {"tp": scenario.serving.tp, "ep": scenario.serving.ep, "replicas": 1, "layout": "agg"}
    cmds = deploy_commands(one, load_scenario_model(scenario), scenario.serving)
    if server not in cmds:
        return None, f"no launch command is written for runtime '{server}' (vllm and sglang only)"
    # the first line is deploy_commands' replica count, which says nothing about one benchmarked server
    return "\n".join(cmds[server].splitlines()[1:]), None


__all__ = ["RESULT_FILE", "client_command", "server_command"]
