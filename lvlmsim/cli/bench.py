"""`lvlmsim bench`: the flags of `vllm bench serve` / `python -m sglang.bench_serving`, simulated; prints the client's
summary block, or its result JSON with `--json`; `--compare RESULT.json` puts a real run beside it.

Registered on the main Typer app by lvlmsim.cli (`register(app)`); the logic lives in lvlmsim.bench.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lvlmsim.cli.request_flags import PROFILE_CHOICES

_IMAGE_FLAGS = ("--image-count", "--image-resolution", "--image-content", "--image-format")
_RANDOM_FLAGS = ("--random-input-len", "--random-range-ratio", "--special-tokens")


def _check_dataset_flags(dataset: str, given: dict) -> None:
    """A flag the dataset does not read is refused, not silently dropped: the image flags shape random-image's
    synthetic images only, the random lengths the two synthetic datasets only (a named dataset brings its own;
    --random-output-len is its fixed output length)."""
    from lvlmsim.errors import SpecError

    for flag in given:
        if flag in _IMAGE_FLAGS and dataset != "random-image":
            raise SpecError(f"{flag}: applies to --dataset-name random-image only (random-mm, image), got "
                            f"--dataset-name {dataset}")
        if flag in _RANDOM_FLAGS and dataset not in ("random", "random-image"):
            raise SpecError(f"{flag}: applies to --dataset-name random or random-image only ({dataset} brings its "
                            "own prompt lengths)")


def _host(text: str | None) -> str | bool | None:
    """--host: off (False), a host profile name, or None (the server's current version)."""
    if text is None:
        return None
    if text.strip().lower() == "off":
        return False
    from lvlmsim.cost.host import host_profile_names
    from lvlmsim.errors import SpecError

    names = host_profile_names()
    if text.strip().lower() not in names:
        raise SpecError(f"--host: unknown host profile '{text}'; allowed: off, {', '.join(names)}")
    return text.strip().lower()


def register(app: typer.Typer) -> None:
    from lvlmsim.cli import out, print_json, user_errors

    @app.command("bench")
    @user_errors
    def bench_cmd(
        model: Annotated[str, typer.Option("--model", "-m", help="model id or YAML path")] = "qwen2.5-vl-7b",
        hardware: Annotated[str, typer.Option("--hardware", "-w", help="hardware id or YAML path")] = "h100-sxm",
        tp: Annotated[int, typer.Option(help="tensor-parallel degree of the server")] = 1,
        ep: Annotated[int | None, typer.Option(help="expert-parallel degree (MoE models)")] = None,
        runtime: Annotated[str | None, typer.Option(help="server: vllm | sglang | trtllm (default: the client's)")]
        = None,
        client: Annotated[str, typer.Option(help="whose flag semantics: vllm (vllm bench serve) | sglang "
                                                 "(sglang.bench_serving)")] = "vllm",
        dataset_name: Annotated[str, typer.Option("--dataset-name", help="random | random-image | sharegpt | "
                                                  "visionarena | mmmu (random-mm and image: random-image)")]
        = "random",
        num_prompts: Annotated[int | None, typer.Option("--num-prompts", help="requests (client default 1000)")]
        = None,
        request_rate: Annotated[str, typer.Option("--request-rate", help="requests/s or inf (all at t = 0)")]
        = "inf",
        burstiness: Annotated[float, typer.Option(help="vLLM --burstiness: gamma shape of the gaps (1 = Poisson)")]
        = 1.0,
        max_concurrency: Annotated[str | None, typer.Option("--max-concurrency", help="requests in flight at most, "
                                                             "or inf")] = None,
        random_input_len: Annotated[int | None, typer.Option("--random-input-len", help="text tokens per prompt")]
        = None,
        random_output_len: Annotated[int | None, typer.Option("--random-output-len", help="output tokens")] = None,
        random_range_ratio: Annotated[float | None, typer.Option(
            "--random-range-ratio", help="vllm: lengths on [L(1-r), L(1+r)], r < 1; sglang: on [L r, L]")] = None,
        special_tokens: Annotated[int | None, typer.Option(
            "--special-tokens", help="vllm only: tokenizer special tokens it subtracts from --random-input-len "
                                     "(default: 0)")] = None,
        image_count: Annotated[int | None, typer.Option(
            "--image-count", help="images per request of random-image (default: 1)")] = None,
        image_resolution: Annotated[str | None, typer.Option(
            "--image-resolution", help="360p | 720p | 1080p | 1440p | 4k | HEIGHTxWIDTH (height first) "
                                       "(default: the client's own: vllm 256x256 or 1280x720 at "
                                       "random, sglang 1080p)")] = None,
        image_content: Annotated[str | None, typer.Option(
            "--image-content", help="sglang: random | blank pixels of the synthetic images (their decode time) "
                                    "(default: random)")] = None,
        image_format: Annotated[str | None, typer.Option(
            "--image-format", help="sglang: jpeg | png (default: jpeg)")] = None,
        ignore_eos: Annotated[bool, typer.Option("--ignore-eos", help="answers run to their full length")] = False,
        seed: Annotated[int | None, typer.Option(help="random seed (client default: vllm 0, sglang 1)")] = None,
        max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs", help="server: sequences per batch")]
        = None,
        max_num_batched_tokens: Annotated[int | None, typer.Option(
            "--max-num-batched-tokens", help="server: tokens per step")] = None,
        gpu_memory_utilization: Annotated[float | None, typer.Option(
            "--gpu-memory-utilization", help="server: share of device memory it may use")] = None,
        max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="server: longest sequence")]
        = None,
        profile: Annotated[str | None, typer.Option(help=f"{PROFILE_CHOICES} (default: auto)")] = None,
        host: Annotated[str | None, typer.Option(
            help="host costs: off, or a runtime version vllm-v0 | vllm-v1-piecewise | vllm-v1 | vllm-v1-async | "
                 "sglang | trtllm, its CUDA-graph mode too (default: the server's current version)")] = None,
        api_costs: Annotated[bool, typer.Option(
            "--api-costs/--no-api-costs", help="with host costs: the API layer, tokenisation and token streaming "
                                               "(measured; lvlmsim.cost.host)")] = True,
        compare_with: Annotated[str | None, typer.Option(
            "--compare", help="a real vLLM result JSON or SGLang JSONL: print both with the % difference")] = None,
        result_file: Annotated[str | None, typer.Option("--result-file", help="also write the result JSON here")]
        = None,
        force: Annotated[bool, typer.Option("--force", help="replace --result-file if it exists (refused "
                                                            "otherwise)")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the client's result JSON (vLLM's keys)")] = False,
    ) -> None:
        """What `vllm bench serve` or `sglang.bench_serving` would print for this run, on hardware you do not have."""
        from lvlmsim.bench.run import (
            BenchArgs,
            compare,
            compare_block,
            parse_max_concurrency,
            parse_request_rate,
            pick_result,
            run_bench,
            run_settings,
            summary_block,
        )

        knobs = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens,
                 "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len,
                 "host_costs": _host(host), "api_costs": None if api_costs else False}
        given = {"--image-count": image_count, "--image-resolution": image_resolution,
                 "--image-content": image_content, "--image-format": image_format,
                 "--random-input-len": random_input_len, "--random-range-ratio": random_range_ratio,
                 "--special-tokens": special_tokens}
        image = {"image_count": image_count, "image_resolution": image_resolution, "image_content": image_content,
                 "image_format": image_format, "special_tokens": special_tokens}
        args = BenchArgs(
            model=model, hardware=hardware, client=client, runtime=runtime, tp=tp, ep=ep, dataset_name=dataset_name,
            num_prompts=num_prompts, request_rate=parse_request_rate(request_rate), burstiness=burstiness,
            max_concurrency=parse_max_concurrency(max_concurrency), random_input_len=random_input_len,
            random_output_len=random_output_len, random_range_ratio=random_range_ratio,
            **{k: v for k, v in image.items() if v is not None}, ignore_eos=ignore_eos, seed=seed,
            serving={k: v for k, v in knobs.items() if v is not None},
        )
        _check_dataset_flags(args.dataset, {k: v for k, v in given.items() if v is not None})
        real, compare_notes = (pick_result(compare_with, run_settings(args)) if compare_with is not None
                               else (None, []))
        if result_file is not None:  # an empty path is refused, not taken for 'no file'
            from lvlmsim.specs.outputs import check_out_file, refuse_to_replace

            # before the run: a bad path or a file that would be lost must not cost it
            refuse_to_replace([check_out_file(result_file, (".json",), "--result-file")], "--result-file", force)
        res = run_bench(args, profile=profile)
        doc = res.to_dict()
        if result_file is not None:
            _write_json(result_file, doc)
        rows = compare(res.result, real) if real is not None else None
        if as_json:
            print_json({**doc, "compare": rows, "compare_notes": compare_notes} if rows is not None else doc)
            return
        out.print(summary_block(res.result), highlight=False, markup=False)
        for note in res.notes:
            out.print(f"note: {note}", highlight=False, markup=False)
        if rows is not None:
            out.print(f"\nlvlmsim vs {compare_with}:", highlight=False, markup=False)
            for note in compare_notes:
                out.print(f"note: {note}", highlight=False, markup=False)
            out.print(compare_block(rows), highlight=False, markup=False)


def _write_json(path: str, doc: dict) -> None:
    """Written to a temporary sibling and renamed: all or nothing."""
    from lvlmsim.specs.outputs import atomic_write_text, strict_json

    atomic_write_text(path, strict_json(doc, indent=2, default=str) + "\n")
