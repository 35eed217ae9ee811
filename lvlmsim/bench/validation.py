"""Replay published benchmark-client runs (workloads/validation/bench-runs.yaml) through `lvlmsim bench` and report
the error of every figure each row published.

error % = (lvlmsim / published - 1) x 100, per row and metric; the summary is the median of |error| per metric over
the rows that published it. No row was used to fit anything (the table says so in its header); a row whose
configuration lvlmsim refuses (does not fit, unknown model) is reported with its reason, not dropped silently.

A row whose published mean TTFT is below the time its stated prompt needs at the GPU's peak (`ttft_floor_s`: the
tensor-core FLOPs of one request's encode and prefill per GPU, from lvlmsim's operator graph, at the datasheet's
dense peak of each op's dtype) is physically inconsistent with its stated conditions: every request computing its
whole prompt takes at least that long, so their mean does too. The table flags such rows (`inconsistent`, with the
arithmetic), the summaries are given with all rows and without the flagged ones, and a test keeps the flags equal to
the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lvlmsim.bench.run import BenchArgs, run_bench
from lvlmsim.errors import LvlmsimError, SpecError
from lvlmsim.ops.op import ATTN_ENCODER, ATTN_MLA_PREFILL, ATTN_PREFILL, CONV, GEMM, MOE_GEMM
from lvlmsim.specs.base import read_yaml
from lvlmsim.specs.registry import bench_runs_path

HEADLINE = ("request_throughput", "mean_ttft_ms", "mean_tpot_ms")  # the targets: 15%, 15%, 10%
TENSOR_KINDS = (GEMM, CONV, MOE_GEMM, ATTN_PREFILL, ATTN_ENCODER, ATTN_MLA_PREFILL)  # the tensor-core work


@dataclass
class RowResult:
    id: str
    source: str
    conditions: dict
    measured: dict
    predicted: dict = field(default_factory=dict)
    error_pct: dict = field(default_factory=dict)
    refused: str | None = None
    inconsistent: str | None = None  # the table's flag: the published TTFT is below what the stated prompt needs
    ttft_floor_ms: float | None = None  # ttft_floor_s of a row that publishes a mean TTFT, in ms
    reuse_floor_ms: float | None = None  # ttft_floor_with_reuse_s of such a row, in ms (None: no prefix reuse)


def load_rows() -> list[dict]:
    doc = read_yaml(bench_runs_path())
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not rows:
        raise SpecError(f"{bench_runs_path()}: rows: expected a list of published runs")
    return rows


def prior_runs(row: dict) -> tuple[tuple[int, ...], ...]:
    """The runs the row's client sent to the same server before it (its `session.prior_runs`, oldest first, as
    (random input len, num prompts[, random output len]); the session's `source` documents the order). Empty
    without a session."""
    session = row.get("session")
    if session is None:
        return ()
    if not isinstance(session, dict) or not session.get("source") or "prior_runs" not in session:
        raise SpecError(f"{row.get('id')}: session: expected {{source: <where the run order is documented>, "
                        "prior_runs: [[input len, num prompts, output len], ...]}")
    return tuple(tuple(int(v) for v in run) for run in session["prior_runs"])


def row_args(row: dict) -> BenchArgs:
    c = row["conditions"]
    args = dict(row.get("args", {}))
    rate = args.pop("request_rate", math.inf)
    return BenchArgs(model=c["model"], hardware=c["hardware"], client=c["client"], runtime=c["runtime"],
                     tp=int(c.get("tp", 1)), request_rate=math.inf if rate == "inf" else float(rate),
                     serving=dict(row.get("serving", {})), prior_runs=prior_runs(row), **args)


def ttft_floor_s(row: dict) -> float | None:
    """The least time one request of `row` can take to its first token at the stated conditions: the tensor-core
    FLOPs per GPU of encoding its images and prefilling its prompt (the shortest prompt the client draws), from
    lvlmsim's operator graph, each op at the device's dense peak for its dtype. No efficiency, host or network cost
    enters, and the causal attention counts only the keys each query sees, so the floor is below any real run.
    None for a row whose requests are not the synthetic datasets' fixed or uniform lengths."""
    from lvlmsim.bench.run import SYNTHETIC, bench_scenario

    a = row_args(row)
    if a.dataset not in SYNTHETIC:
        return None
    w = bench_scenario(a)["workload"]
    prompt = w["prompt_tokens"]
    shortest = int(prompt["value"] if prompt["kind"] == "fixed" else prompt["min"])
    return _tensor_s(a, w, shortest)


def _tensor_s(a: BenchArgs, w: dict, prompt_tokens: int) -> float:
    """Tensor-core seconds at peak of encoding a request's images and prefilling `prompt_tokens` (ttft_floor_s)."""
    from lvlmsim.estimate import estimate_request
    from lvlmsim.specs.registry import load_hardware, load_model

    sizes = w.get("image_size") or [{"width": 336, "height": 336}]  # unused without images
    hw = load_hardware(a.hardware)
    est = estimate_request(load_model(a.model), hw, images=int(w["images"]),
                           image_size=(sizes[0]["width"], sizes[0]["height"]), prompt_tokens=prompt_tokens,
                           output_tokens=1, tp=a.tp)
    return sum(c.op.flops * c.op.count / hw.peak_flops(c.op.dtype) for name in ("encode", "prefill")
               for c in est.stages[name].ops if c.op.kind in TENSOR_KINDS)


def ttft_floor_with_reuse_s(row: dict) -> float | None:
    """ttft_floor_s of the prompt tokens a prefix-caching server still computes (lvlmsim.engine.prefix): the mean
    over the run's requests of the tensor work of tokens [hit, L) at peak, the hit from what the row's session and
    the client's test prompt left cached. A prefill of tokens [h, L) is the prefill of L minus that of h (each
    token's work depends only on its position), so the floor is (F(L) - F(h)) / peak per request. None for a row
    without a fixed-length text prompt (the reuse needs the random dataset) or whose server does not cache."""
    from lvlmsim.bench.run import bench_scenario
    from lvlmsim.engine.prefix import PrefixCache
    from lvlmsim.specs.workload import TextPrefixSpec

    a = row_args(row)
    sc = bench_scenario(a)
    w = sc["workload"]
    if "text_prefix" not in w or not sc["serving"].get("prefix_caching") or w["prompt_tokens"]["kind"] != "fixed":
        return None
    length, n = int(w["prompt_tokens"]["value"]), int(w["requests"])
    cache = PrefixCache.preloaded(int(sc["serving"].get("block_size", 16)), 10**9,
                                  TextPrefixSpec.model_validate(w["text_prefix"]))
    full = _tensor_s(a, w, length)
    hits = [cache.hit_tokens(i, length) for i in range(n)]
    return sum(full - (_tensor_s(a, w, h) if h else 0.0) for h in hits) / n


def replay(row: dict) -> RowResult:
    out = RowResult(row["id"], row["source"], row["conditions"], dict(row["measured"]),
                    inconsistent=row.get("inconsistent"))
    try:
        res = run_bench(row_args(row))
    except LvlmsimError as exc:
        out.refused = str(exc)
        return out
    r = dict(res.result)
    r.setdefault("total_input_vision_tokens", int(res.simulation.requests.visual_tokens.sum()))
    floor_s = ttft_floor_s(row) if "mean_ttft_ms" in out.measured else None
    out.ttft_floor_ms = floor_s * 1e3 if floor_s is not None else None
    reuse_s = ttft_floor_with_reuse_s(row) if floor_s is not None else None
    out.reuse_floor_ms = reuse_s * 1e3 if reuse_s is not None else None
    for k, v in out.measured.items():
        if isinstance(r.get(k), int | float) and v:
            out.predicted[k] = float(r[k])
            out.error_pct[k] = (float(r[k]) / float(v) - 1.0) * 100.0
    return out


def consistent(results: list[RowResult]) -> list[RowResult]:
    """The rows the table does not flag as physically inconsistent with their stated conditions."""
    return [r for r in results if not r.inconsistent]


def summarize(results: list[RowResult]) -> dict[str, dict]:
    """Median |error| % and row count per metric."""
    metrics = sorted({k for r in results for k in r.error_pct})
    return {m: {"median_abs_error_pct": float(np.median([abs(r.error_pct[m]) for r in results if m in r.error_pct])),
                "rows": sum(m in r.error_pct for r in results)} for m in metrics}


def source_of(row_id: str) -> str:
    """The published sweep a row belongs to: the first two parts of its id (`tt-143`, `sglang-9812`)."""
    return "-".join(row_id.split("-")[:2])


def summarize_by_source(results: list[RowResult]) -> dict[str, dict]:
    """summarize() within each published sweep: a sweep whose server lvlmsim misses shows as one group."""
    groups: dict[str, list[RowResult]] = {}
    for r in results:
        groups.setdefault(source_of(r.id), []).append(r)
    return {g: summarize(rs) for g, rs in groups.items()}


def median_of_sweeps(by_source: dict[str, dict]) -> dict[str, dict]:
    """Median over the published sweeps of each sweep's median |error| %, per metric: every sweep weighs the same,
    so a sweep with many rows cannot hide another (a sweep counts for a metric when it published that metric)."""
    metrics = sorted({m for s in by_source.values() for m in s})
    return {m: {"median_abs_error_pct": float(np.median([s[m]["median_abs_error_pct"] for s in by_source.values()
                                                         if m in s])),
                "sweeps": sum(m in s for s in by_source.values())} for m in metrics}


def run_validation() -> tuple[list[RowResult], dict]:
    results = [replay(row) for row in load_rows()]
    return results, summarize(results)


__all__ = ["HEADLINE", "RowResult", "consistent", "load_rows", "median_of_sweeps", "prior_runs", "replay",
           "row_args", "run_validation", "source_of", "summarize", "summarize_by_source", "ttft_floor_s",
           "ttft_floor_with_reuse_s"]
