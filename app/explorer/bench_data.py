"""The Benchmark page's calls to the public bench API (lvlmsim.bench): one run per set of flags, cached, reduced to
what the page draws; the real client's result file beside it, through the same `--compare` code as the CLI."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import streamlit as st

from explorer.state import USER_ERRORS, save_upload
from lvlmsim.bench.run import BenchArgs

PER_REQUEST = ("request_id", "arrival_s", "ttft_s", "e2e_s", "tpot_s", "output_tokens", "status")


@st.cache_data(show_spinner=False, max_entries=64)
def _run(fields: tuple, profile: str | None, repo: str) -> dict:
    from lvlmsim.bench.commands import client_command, server_command
    from lvlmsim.bench.run import run_bench, summary_block

    args = BenchArgs(**dict(fields))
    res = run_bench(args, profile=profile)
    done = res.simulation.requests
    return {"result": res.result, "summary": summary_block(res.result), "notes": list(res.notes),
            "requests": done.loc[done.status == "completed", list(PER_REQUEST)].reset_index(drop=True),
            "client": client_command(args, repo), "server": server_command(args, res.simulation.scenario)}


def run(args: BenchArgs, profile: str | None, repo: str) -> dict:
    """`lvlmsim.bench.run_bench(args, profile=profile)` as the page shows it: the client's result dict, its summary
    block (the CLI's text), the notes, the completed requests, and the client and server command lines (each a
    (command, why none) pair, for a server of Hugging Face model `repo`). Raises the API's errors."""
    return _run(tuple(sorted(asdict(args).items(), key=lambda kv: kv[0])), profile, repo)


_CLI_FLAGS = {"model": "--model", "hardware": "--hardware", "tp": "--tp", "ep": "--ep", "runtime": "--runtime",
              "client": "--client", "dataset_name": "--dataset-name", "num_prompts": "--num-prompts",
              "request_rate": "--request-rate", "max_concurrency": "--max-concurrency",
              "random_input_len": "--random-input-len", "random_output_len": "--random-output-len",
              "random_range_ratio": "--random-range-ratio", "image_count": "--image-count",
              "image_resolution": "--image-resolution"}


def reproduce_lines(args: BenchArgs, profile: str) -> tuple[str, str]:
    """(the `lvlmsim bench` command line, the Python call) that run what the page ran: the fields the page sets,
    those left at their defaults omitted (an infinite rate is written 'inf' / float('inf'))."""
    base = BenchArgs(model=args.model, hardware=args.hardware)
    given = {k: v for k, v in asdict(args).items() if k in _CLI_FLAGS and (k in ("model", "hardware")
                                                                           or v != getattr(base, k))}
    words = ["lvlmsim bench"]
    for k, v in given.items():
        words.append(f"{_CLI_FLAGS[k]} {'inf' if v == float('inf') else v}")
    words += (["--ignore-eos"] if args.ignore_eos else []) + ([f"--profile {profile}"] if profile != "auto" else [])
    inf = "float('inf')"
    kw = ", ".join(f"{k}={inf if v == float('inf') else repr(v)}" for k, v in given.items())
    kw += ", ignore_eos=True" if args.ignore_eos else ""
    prof = f", profile={profile!r}" if profile != "auto" else ""
    python = ("from lvlmsim.bench.run import BenchArgs, run_bench, summary_block\n"
              f"res = run_bench(BenchArgs({kw}){prof})\nprint(summary_block(res.result))")
    return " \\\n  ".join(words), python


def hf_repo(model_ref: str) -> str:
    """The model's Hugging Face repo (what a real server loads), else its name."""
    from lvlmsim.specs import registry

    m = registry.load_model(model_ref)
    return m.hf_repo or m.name


def compare_with_upload(upload, args: BenchArgs, result: dict) -> tuple[list[dict] | None, list[str], str | None]:
    """(rows of lvlmsim.bench.compare, notes, None), or (None, [], a one-line error) for an uploaded real result:
    vLLM's JSON or SGLang's JSONL, the run matching this one picked as `lvlmsim bench --compare` picks it. Messages
    name the file as uploaded, not its saved copy."""
    from lvlmsim.bench.run import compare, pick_result, run_settings

    path = save_upload(upload.name, upload.getvalue())
    try:
        real, notes = pick_result(path, run_settings(args))
    except USER_ERRORS as exc:
        return None, [], str(exc).replace(str(path), upload.name)
    return compare(result, real), [n.replace(str(path), upload.name) for n in notes], None


def compare_frame(rows: list[dict]) -> pd.DataFrame:
    """The side-by-side table: metric (with its unit), lvlmsim, real, and lvlmsim's % difference from real."""
    return pd.DataFrame([{"metric": _label(r["metric"]), "lvlmsim": r["lvlmsim"], "real": r["real"],
                          "difference (%)": r["diff_pct"]} for r in rows])


_UNITS = {"duration": "duration (s)", "completed": "completed (requests)", "total_input_tokens": "total input tokens",
          "total_output_tokens": "total output tokens", "request_throughput": "request throughput (req/s)",
          "output_throughput": "output throughput (tok/s)", "total_token_throughput": "total token throughput (tok/s)"}


def _label(key: str) -> str:
    """'mean_ttft_ms' -> 'mean TTFT (ms)'; the throughputs and counts with their units."""
    if key in _UNITS:
        return _UNITS[key]
    stat, metric, _ = key.split("_")
    return f"{stat} {metric.upper()} (ms)"


__all__ = ["PER_REQUEST", "compare_frame", "compare_with_upload", "hf_repo", "reproduce_lines", "run"]
