"""simulate(): load a scenario, build its pools, run the SimPy engine, collect metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import simpy

from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.cluster import Cluster, build_pool, default_link
from lvlmsim.engine.host import HostStage
from lvlmsim.engine.metrics import (
    REQUEST_COLUMNS,
    class_summary,
    request_frame,
    stats,
    summarize,
    summarize_stream,
    timeseries_frame,
)
from lvlmsim.engine.sketch import StreamSummary
from lvlmsim.engine.trace import trace_mean_rate
from lvlmsim.engine.workload import stream
from lvlmsim.errors import InfeasibleError, LvlmsimError
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.outputs import check_out_dir, strict_json, write_files_atomically
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.scenario import Scenario, load_scenario

ProgressFn = Callable[[int, int], None]
# every file SimulationResult.write may put in its folder (tables as parquet, or CSV without pyarrow; summary.json last)
RESULT_FILES = ("requests.parquet", "timeseries.parquet", "requests.csv", "timeseries.csv", "summary.json")
# keep_requests=None (the CLI without --out) streams summaries above this many planned requests, and keeps the exact
# per-request path at or below it (every pinned/golden output is far below it)
STREAM_THRESHOLD = 200_000


@dataclass
class SimulationResult:
    """What a run produced: the per-request table, the time series and the summary (plain JSON-able dict)."""

    scenario: Scenario
    requests: pd.DataFrame
    timeseries: pd.DataFrame
    summary: dict
    wall_s: float = 0.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"scenario": self.meta, "summary": self.summary}

    def rejections(self) -> dict[str, int]:
        """Why requests were rejected at admission, most common first: {reason: count}; empty without rejections or
        without a per-request table (a streaming run)."""
        df = self.requests
        if "status" not in df or "reason" not in df:
            return {}
        return {str(k): int(v) for k, v in df.loc[df.status == "rejected", "reason"].value_counts().items()}

    def rejection_text(self) -> str:
        """'N of M requests rejected: reason (k); ...' or '' when none was."""
        s = self.summary
        if not s.get("rejected"):
            return ""
        why = "; ".join(f"{r} ({n})" for r, n in self.rejections().items()) or "reasons not kept by a streaming run"
        return f"{s['rejected']} of {s['requests']} requests rejected at admission: {why}"

    def check_servable(self) -> None:
        """Refuse a run in which every request was rejected (too long for the context or the KV cache, an empty
        prompt): the configuration cannot serve this workload, and a summary of zero completions would hide that."""
        s = self.summary
        if s.get("requests") and not s.get("completed") and s.get("rejected") == s["requests"]:
            raise InfeasibleError(f"workload: every request was rejected, none can be served; {self.rejection_text()}")

    def write(self, out_dir: str | Path) -> list[Path]:
        """requests.parquet and timeseries.parquet (CSV when pyarrow is missing) and summary.json, all or nothing:
        written to temporary siblings, then renamed, summary.json last (see lvlmsim.specs.outputs)."""
        import importlib.util

        if "summary_mode" in self.summary:
            raise LvlmsimError("out: a streaming run (keep_requests=False) kept no per-request table to write; run "
                               "with keep_requests=True (simulate --out does)")
        parquet = importlib.util.find_spec("pyarrow") is not None
        writers = []
        for name, df in (("requests", self.requests), ("timeseries", self.timeseries)):
            if parquet:
                writers.append((f"{name}.parquet", lambda tmp, df=df: df.to_parquet(tmp, index=False)))
            else:
                writers.append((f"{name}.csv", lambda tmp, df=df: df.to_csv(tmp, index=False)))
        text = strict_json(self.to_dict(), default=_json_default, indent=2) + "\n"
        writers.append(("summary.json", lambda tmp: tmp.write_text(text, encoding="utf-8")))
        return write_files_atomically(check_out_dir(out_dir), writers, marker="summary.json")


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def load_scenario_model(sc: Scenario) -> ModelSpec:
    """The scenario's model: an id, or a YAML path relative to the scenario file's folder or the working one."""
    ref = sc.model
    if sc.source_dir is not None and (ref.endswith((".yaml", ".yml")) or "/" in ref):
        p = Path(ref)
        if not p.is_absolute() and (sc.source_dir / p).is_file():
            return load_model(str(sc.source_dir / p))
    return load_model(ref)


def engine_host_profile(serving):
    """The host profile a run uses (ServingSpec.host_costs), or None for host costs off."""
    choice = serving.host_costs
    if choice is False:
        return None
    from lvlmsim.cost.host import load_host_profile

    if isinstance(choice, str):
        return load_host_profile(choice, api=serving.api_costs)
    if serving.runtime is None or serving.runtime == "eager":
        if choice is True:
            raise LvlmsimError("serving.host_costs: host costs need serving.runtime vllm | sglang | trtllm, or a host "
                               "profile name (vllm-v0, vllm-v1-piecewise, vllm-v1, vllm-v1-async, sglang, trtllm)")
        return None
    return load_host_profile(serving.runtime, api=serving.api_costs)


def engine_refusal(techs, model: ModelSpec) -> str | None:
    """Why the simulator cannot run this combination of techniques (None when it can), as each technique declares
    it (TechniqueConfig.engine_refusal), asked in canonical order. Refused by name, never silently approximated;
    each of these still runs in `lvlmsim estimate`."""
    techs = sorted(techs, key=lambda t: t.order)
    for t in techs:
        why = t.engine_refusal([o for o in techs if o is not t], model)
        if why:
            return why
    return None


def _compose_pools(sc: Scenario, model: ModelSpec) -> dict:
    """One Composition per pool (its hardware, tp and ep): validates the techniques against every device."""
    from lvlmsim.errors import InfeasibleError
    from lvlmsim.techniques.base import load_techniques
    from lvlmsim.techniques.compose import compose

    techs = load_techniques(sc.techniques)
    why = engine_refusal(techs, model)
    if why:
        raise LvlmsimError(f"techniques: {why} (scenario '{sc.id}'; `lvlmsim estimate` can still price it)")
    comps = {}
    for ps in sc.serving.pool_list():
        hw = load_hardware(ps.hardware or sc.hardware)
        mine = techs
        if ps.role == "E":  # an encoder-only pool never runs the LLM: its weight scheme need not fit this device
            mine = [t for t in techs if t.kind != "weight_quant" or set(t.modules()) & {"vision", "projector"}]
        try:
            comps[ps.label] = compose(model, hw, mine, tp=ps.tp, ep=ps.ep)
        except InfeasibleError as exc:
            raise InfeasibleError(f"pool '{ps.label}' ({hw.id}, tp={ps.tp}): {exc}") from None
    return comps


def _techniques_summary(first) -> dict:
    """What the run applied (the LLM pools' composition): configs, citations, accuracy figures as given, notes."""
    out = {"applied": first.describe(), "accuracy": first.accuracy(), "notes": list(first.notes)}
    kb = first.kv_policy()
    if kb is not None:
        out["kv_budget"] = {
            "model": "after prefill each sequence keeps the KV the budget allows (its blocks go back to the pool, a "
                     "P->D pull moves only the kept KV); decode steps read the kept KV; rolling budgets stop growing "
                     "at the budget", "tokens": kb.budget_tokens, "mode": kb.mode, "visual_only": kb.visual_only}
    if first.lookahead_tokens > 1:
        out["speculative"] = {
            "model": "fluid: each engine decode step emits one token per sequence and costs (draft + verify round) "
                     "/ expected tokens per round; KV reserves the gamma drafted slots",
            "expected_tokens_per_round": first.tokens_per_step, "lookahead_tokens": first.lookahead_tokens,
        }
    return out


def simulate(
    scenario: str | Path | Scenario | dict | None = None,
    *,
    requests: int | None = None,
    rate: float | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    profile=None,
    runtime: str | None = None,
    keep_requests: bool | None = True,
) -> SimulationResult:
    """Run a scenario (an id, a YAML path, a dict, a Scenario; None = the default LLaVA chat on one H100).

    `requests`, `rate` (requests/s, or sessions/s for chat sessions) and `seed` override the scenario's.
    `progress(done, total)` is called about 200 times, driven by simulated completions.
    `profile`: None uses the scenario's (default: the device's own calibrated profile, else the device-general
    model for a GPU).
    `runtime` (vllm | sglang | trtllm | eager) overrides `serving.runtime`: the runtime's kernel floor wraps every
    pool's profile and its per-step launch overhead is added to every batch step, as `estimate(runtime=...)` does.

    Techniques (scenario `techniques`) are composed once per pool (its hardware and tp; an infeasible one raises
    InfeasibleError naming the pool): the requests get the composition's tokenization, the pools its model copy and
    GraphConfig, and StepCost prices every op through it (transformed ops, selection/draft prefill ops, ToMe encoder).
    Speculative decoding uses a fluid model: an engine decode step still emits one (real) token per sequence, so KV
    growth, finish steps, output_tokens and TPOT stay in real tokens, but the step costs one draft + verify round
    divided by the expected tokens per round E = (1 - alpha^(gamma+1)) / (1 - alpha) (deterministic; the decode part
    of a mixed step is scaled the same way); each sequence reserves gamma extra KV slots, and draft weights (and a
    draft model's KV) come off the KV budget. Not modelled: the burstiness of accepted tokens (ITL is the round
    average). A KV budget (kv_budget) applies when a sequence starts decoding (see LlmInstance.kv_after_prefill);
    reuse gives every instance encoder/image-KV caches keyed by image id (lvlmsim.engine.reuse), whose hits and
    savings are in summary['reuse']. Combinations the engine cannot model are refused (engine_refusal).
    summary['techniques'] reports configs and accuracy.

    `keep_requests`: True (default) keeps every request for the per-request table and computes the summary from it;
    False streams: each measured request is folded into running aggregates when it ends and dropped (percentiles
    from log-binned sketches within lvlmsim.engine.sketch.RELATIVE_ERROR, summary['summary_mode'] says so, the
    `requests` table is empty), so memory does not hold the requests; None picks streaming above STREAM_THRESHOLD
    planned requests. Streaming does not cover request classes or host costs yet (refused when asked for; None
    keeps the exact path for them).

    Benchmark-client traffic: `arrival: {kind: concurrency, clients: N}` (closed loop) and `workload.max_concurrency`
    (a cap on requests in flight) pace the sends, the per-request table gains a `client` column, and
    `workload.warmup_requests` leaves the first requests out of every metric (summary['warmup']). With a serving
    runtime, host costs run too (serving.host_costs; lvlmsim.engine.host): images wait for the runtime's
    preprocessing workers before admission, the table gains `preprocess_s`, and summary['host'] gives the stage's
    times and the workers' utilisation. With serving.api_costs (on by default with host costs) every request also
    spends the API layer's time and its prompt's tokenisation in that stage, and each output token's detokenisation
    + server-sent event delays its delivery: TTFT and E2E (and first_token_s, finish_s) include that delay once.
    """
    t_wall = time.perf_counter()
    if progress is not None and not callable(progress):
        raise LvlmsimError(f"progress: expected None or a function progress(done, total), got {progress!r}")
    sc = _scenario_with_overrides(scenario, requests, rate, seed, runtime)
    run = _build(sc, profile, progress)
    sink = _stream_sink(run, keep_requests)
    run.env.run(until=sc.horizon_s)
    end_s = float(run.env.now)
    run.cluster.finalize()
    if sink is None:
        df = _request_frame(run)
        summary = _summary(run, df, end_s)
    else:
        df = pd.DataFrame(columns=list(REQUEST_COLUMNS))
        summary = _summary(run, None, end_s, sink)
    if progress is not None:
        progress(run.cluster.n_completed + run.cluster.n_rejected, run.cluster.total)
    return SimulationResult(sc, df, timeseries_frame(run.cluster.instances), summary, time.perf_counter() - t_wall,
                            _meta(run))


@dataclass
class _Run:
    """A scenario assembled for the engine: its model, techniques, request stream, pools, link and host stage."""

    sc: Scenario
    model: ModelSpec
    main: Any  # the LLM pools' Composition (None without techniques)
    wl: Any
    env: simpy.Environment
    pools: list
    profiles: dict[str, str]
    link: Any
    host_profile: Any
    host: Any
    cluster: Any = None


def _scenario_with_overrides(scenario, requests, rate, seed, runtime) -> Scenario:
    sc = load_scenario(scenario)
    trace_rate = None
    if rate is not None and sc.trace_arrival is not None:
        trace_rate = trace_mean_rate(sc.resolve_data_path(sc.trace_arrival.path))
    sc = sc.with_overrides(requests=requests, rate=rate, seed=seed, trace_rate_rps=trace_rate)
    if runtime is not None:
        from lvlmsim.cost.runtime import get_runtime

        rt_name = get_runtime(runtime).name
        sc = sc.model_copy(update={"serving": sc.serving.model_copy(update={"runtime": rt_name})})
    _check_clock_span(sc)
    return sc


MAX_ARRIVAL_SPAN_S = 1e8  # float64 seconds keep 15 ns resolution here (2**-52 * 1e8); kernels last microseconds


def _check_clock_span(sc: Scenario) -> None:
    """A rate so low that the arrivals spread past MAX_ARRIVAL_SPAN_S would put them where the simulated clock can
    no longer resolve a kernel: service times vanish into rounding and the latencies come out near zero."""
    rate = getattr(sc.workload.arrival, "rate_rps", None)
    if rate is None or not math.isfinite(rate):
        return
    n = sc.workload.requests or 1
    if n / rate > MAX_ARRIVAL_SPAN_S:
        raise LvlmsimError(f"workload.arrival.rate_rps: {rate:g} requests/s spreads {n} arrivals over {n / rate:.3g} s "
                           f"of simulated time, past the {MAX_ARRIVAL_SPAN_S:g} s the simulated clock resolves to "
                           f"microseconds; allowed: rate >= {n / MAX_ARRIVAL_SPAN_S:.3g} requests/s for {n} requests")


def _check_max_model_len(sc: Scenario, model: ModelSpec) -> None:
    """A max_model_len past the model's context is a server that does not start (vLLM's model config check), not
    one that serves longer requests; serving.allow_long_max_model_len is vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN."""
    limit = model.llm.max_position_embeddings
    asked = sc.serving.max_model_len
    if asked is not None and asked > limit and not sc.serving.allow_long_max_model_len:
        raise InfeasibleError(f"serving.max_model_len: {asked} exceeds {model.id}'s context length of {limit} "
                              f"(llm.max_position_embeddings); allowed: 1..{limit}, or set "
                              "serving.allow_long_max_model_len (vLLM: VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)")


def _build(sc: Scenario, profile, progress: ProgressFn | None) -> _Run:
    """Compose the techniques per pool, open the request stream, build the pools, the host stage and the cluster."""
    model = load_scenario_model(sc)
    _check_max_model_len(sc, model)
    comps = _compose_pools(sc, model) if sc.techniques else {}
    main = next((comps[p.label] for p in sc.serving.pool_list() if p.role != "E"), None) if comps else None
    if main is not None:
        wl = stream(sc.workload, main.model, sc.seed, sc.resolve_data_path, main.transform_tokenization)
    else:
        wl = stream(sc.workload, model, sc.seed, sc.resolve_data_path)
    env = simpy.Environment()
    host_profile = engine_host_profile(sc.serving)
    pools, profiles = _pools(sc, env, model, wl, comps, profile, host_profile)
    link = (sc.serving.link or default_link(pools)) if len(pools) > 1 else None
    llm_model = main.model if main is not None else model
    host = (HostStage(env, llm_model, host_profile, sc.workload.image_content) if host_profile is not None
            else None)
    run = _Run(sc, model, main, wl, env, pools, profiles, link, host_profile, host)
    run.cluster = Cluster(env, llm_model, sc.serving, pools, wl, link=link, progress=progress,
                          classes=sc.workload.classes, ttft_slo_s=sc.slos.ttft_s, host=host)
    return run


def _pools(sc: Scenario, env, model: ModelSpec, wl, comps: dict, profile, host_profile) -> tuple[list, dict]:
    """Every pool with its hardware's efficiency profile (wrapped by the serving runtime's kernel floor)."""
    from lvlmsim.calibrate.profiles import resolve_profile

    pools, profiles = [], {}
    for ps in sc.serving.pool_list():
        hw = load_hardware(ps.hardware or sc.hardware)
        prof = resolve_profile(hw, profile if profile is not None else sc.profile)
        if sc.serving.runtime is not None:
            from lvlmsim.cost.runtime import serving_runtime

            rt = serving_runtime(sc.serving.runtime, sc.serving.enforce_eager)
            rt.check_hardware(hw)
            prof = rt.apply(prof)
        profiles[ps.label] = getattr(prof, "name", "custom")
        pools.append(build_pool(env, model, ps, hw, sc.serving, wl, CostModel(hw, prof), comp=comps.get(ps.label),
                                host_step_s=host_profile.step_host_s if host_profile is not None else 0.0,
                                cudagraph_mode=host_profile.cudagraph_mode if host_profile is not None else "full"))
    return pools, profiles


def _request_frame(run: _Run):
    """The per-request table of the measured requests, with the columns only some runs have."""
    wl, sc = run.wl, run.sc
    df = request_frame([r for r in wl.requests if not r.warmup] if wl.warmup else wl.requests)
    measured = [r for r in wl.requests if r.arrived and not r.warmup]
    if run.host is not None:
        df["preprocess_s"] = [r.preprocess_s for r in measured]
        _deliver(df, run.host.token_out_s)
    if wl.cap is not None:  # which client slot sent each request (the closed loop's sequence per client)
        df["client"] = [r.client if r.client is not None else -1 for r in measured]
    classes = sc.workload.classes
    if classes:
        df["request_class"] = [classes[r.rclass].name for r in measured]
    return df


def _deliver(df, token_out_s: float) -> None:
    """Every token reaches the client `token_out_s` after the engine emits it (detokenise + one SSE event, beside
    the GPU): the first and the last token's times, TTFT and E2E move by it, TPOT and ITL do not."""
    if token_out_s <= 0:
        return
    for col in ("first_token_s", "finish_s", "ttft_s", "e2e_s"):
        df[col] = df[col] + token_out_s


def _stream_sink(run: _Run, keep_requests: bool | None) -> StreamSummary | None:
    """The streaming aggregates when this run folds requests as they end (see simulate's keep_requests)."""
    if not (keep_requests is None or isinstance(keep_requests, bool)):  # `in (True, False, None)` let 0 pass
        raise LvlmsimError(f"keep_requests: {keep_requests!r} is not one of true | false | null (auto)")
    unsupported = [what for what, on in (("workload.classes", bool(run.sc.workload.classes)),
                                         ("host costs", run.host is not None)) if on]
    if keep_requests is None:
        keep_requests = run.wl.planned <= STREAM_THRESHOLD or bool(unsupported)
    if keep_requests:
        return None
    if unsupported:
        raise LvlmsimError(f"keep_requests: false (streaming summaries) does not cover {' or '.join(unsupported)} "
                           "yet; keep the requests (true) for this scenario")
    sink = StreamSummary(run.sc.slos)
    run.cluster.stream_into(sink)
    return sink


def _summary(run: _Run, df, end_s: float, sink: StreamSummary | None = None) -> dict:
    cluster, wl = run.cluster, run.wl
    if sink is not None:
        summary = summarize_stream(cluster, sink, run.sc.slos, end_s - cluster.measure_start_s)
    else:
        summary = summarize(cluster, df, run.sc.slos, end_s - cluster.measure_start_s)
    classes = run.sc.workload.classes
    if classes:
        summary["classes"] = class_summary(df, [c.name for c in classes])
    if run.host is not None:
        hp = run.host_profile
        summary["host"] = {"profile": hp.describe(), "preprocess_s": stats(df.preprocess_s),
                           "worker_utilisation": run.host.busy_s / max(end_s, 1e-12) / hp.preprocess_workers}
        if hp.api is not None:  # the front end's output work: detokenise + SSE per generated token, beside the GPU
            out_s = float(sum(r.generated for r in wl.requests if r.arrived)) * hp.api.token_out_s
            summary["host"].update(token_out_s=hp.api.token_out_s,
                                   output_utilisation=out_s / max(end_s, 1e-12) / hp.preprocess_workers)
    if wl.warmup:
        summary["warmup"] = {"requests": wl.warmup, "measured_from_s": cluster.measure_start_s}
    if run.main is not None:
        summary["techniques"] = _techniques_summary(run.main)
    reuse = cluster.reuse_stats()
    if reuse is not None:
        summary["reuse"] = reuse
    prefix = cluster.prefix_stats()
    if prefix is not None:
        summary["prefix_cache"] = prefix
    return summary


def _pool_meta(p, run: _Run) -> dict:
    """A pool as the run's meta shows it; `ep` only for a MoE pool split by expert parallelism (ep > 1)."""
    out = {"name": p.name, "role": p.role, "hardware": p.hardware.id, "instances": len(p.instances), "tp": p.spec.tp}
    if p.spec.ep > 1:
        out["ep"] = p.spec.ep
    return {**out, "kv_blocks": p.total_blocks, "profile": run.profiles[p.name], "memory": p.memory_verdict}


def _meta(run: _Run) -> dict:
    sc, wl, link = run.sc, run.wl, run.link
    meta = {
        "id": sc.id, "model": run.model.id, "hardware": sc.hardware, "seed": sc.seed,
        "requests_planned": wl.planned, "arrival": sc.workload.arrival.model_dump(mode="json"),
        "pools": [_pool_meta(p, run) for p in run.pools],
        "link": link.model_dump(mode="json") if link else None,
    }
    if wl.cap is not None:
        meta["max_concurrency"] = wl.cap
    if sc.serving.scheduler != "fcfs":
        meta["scheduler"] = sc.serving.scheduler
    return meta


__all__ = ["SimulationResult", "simulate"]
