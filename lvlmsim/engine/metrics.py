"""Metrics: the per-request table, the time series, and the run summary (latency percentiles, throughput, goodput,
utilisation, KV occupancy, dollars, energy, saturation verdict). Built once, after the run, from plain lists.

Definitions:
* Per request: queue_s is all the time spent waiting in queues, preempted_wait_s the part of it after a preemption
  (so queue_s - preempted_wait_s is the initial queueing); encode_start_s/encode_end_s are the first encode,
  last_encode_end_s the last one, reencodes how many times the images were encoded again after a preemption.
* TTFT = first token - arrival; TPOT = (finish - first token) / (output tokens - 1); E2E = finish - arrival.
* ITL (inter-token latency): for every step that advanced decoding sequences, the time since the previous such step
  ended (so prefill-only steps in between count, as with chunking off), weighted by how many sequences it advanced;
  a sequence's first decode step counts from its prefill. Stalls from preemption or a KV pull are in TPOT, not ITL.
* span_s: simulated time from 0 to the last event. Throughput, goodput and utilisation divide by it; dollars and
  energy are charged over it for every GPU of every instance.
* Warm-up (workload.warmup_requests): the per-request figures leave the warm-up requests out; the run-level ones
  cover the measured window, from the first measured request's send to the last event: span_s, throughput,
  busy_s, utilisation, energy, queue_len_mean and ITL (the inter-token gaps of steps ending in the window). steps
  and max_step_s count the whole run.
* Energy assumption: a GPU draws idle power all the time and TDP while busy:
  E = tp x (idle_w x span + (tdp_w - idle_w) x busy); idle_w defaults to 25% of TDP when the hardware has none.
  Energy is None (unknown) when any pool runs on hardware whose vendor publishes no power figure (tdp_w null).
* Saturation, from first principles: a service keeps up when what it completes matches what is offered. Over the
  arrival window [first arrival, last arrival], "backlogged" when (a) every arrival comes at the same instant (an
  unbounded offered rate, e.g. --rate inf), or (b) more than 1% of arrivals are shed by a full queue
  (max_queue_len: the queue stops growing only because the excess is thrown away), or (c) the least-squares trend
  of the count in the system (arrived - finished - rejected) over the second half of the window grows by more than
  max(1% of that half's arrivals, 3 x the spread of the count around its trend, 5). A stable queue fluctuates
  around a level (its trend is small against its spread); an overloaded one grows at offered - completion rate.
  The verdict also reports both rates over the second half. With chat sessions the open arrivals are session
  starts (later turns are closed-loop: sent only after the previous answer), so sessions are counted instead
  (started - ended by their last answer or a rejected turn). Otherwise "stable".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lvlmsim.engine.request import COMPLETED, IN_FLIGHT, REJECTED_S, Request

IDLE_POWER_DEFAULT_FRACTION = 0.25
BACKLOG_FRACTION = 0.01
BACKLOG_NOISE_SIGMAS = 3.0
BACKLOG_MIN_REQUESTS = 5
TREND_POINTS = 257
PERCENTILES = (50, 90, 99)

REQUEST_COLUMNS = (
    "request_id", "arrival_s", "queue_s", "encode_start_s", "encode_end_s", "first_token_s", "finish_s",
    "prompt_tokens", "visual_tokens", "output_tokens", "images", "preemptions", "instance", "pool", "transfer_s",
    "ttft_s", "tpot_s", "e2e_s", "status", "session_id", "turn", "reason", "preempted_wait_s", "reencodes",
    "last_encode_end_s",
)


# request-table columns read straight off the Request, and the ones derived from it
_ATTR_COLUMNS = {
    "request_id": "id", "arrival_s": "arrival_s", "queue_s": "queue_s", "encode_start_s": "encode_start_s",
    "encode_end_s": "encode_end_s", "first_token_s": "first_token_s", "finish_s": "finish_s",
    "prompt_tokens": "prompt_tokens", "visual_tokens": "visual_tokens", "output_tokens": "output_tokens",
    "images": "images", "preemptions": "preemptions", "transfer_s": "transfer_s", "status": "status",
    "turn": "turn", "reason": "reason", "preempted_wait_s": "preempted_wait_s",
    "last_encode_end_s": "last_encode_end_s",
}
_DERIVED_COLUMNS = {
    "instance": lambda r: ">".join(r.path),
    "pool": lambda r: ">".join(r.pools),
    "session_id": lambda r: r.session if r.session is not None else -1,
    "reencodes": lambda r: max(r.encodes - 1, 0),
}


def _latencies(rows: Sequence[Request]) -> dict[str, list[float]]:
    """TTFT, TPOT and E2E per request (NaN where the request never got that far)."""
    nan = math.nan
    ttft, tpot, e2e = [], [], []
    for r in rows:
        done = r.status == COMPLETED
        ttft.append(r.first_token_s - r.arrival_s if r.first_token_s == r.first_token_s else nan)
        e2e.append(r.finish_s - r.arrival_s if done else nan)
        tpot.append((r.finish_s - r.first_token_s) / (r.output_tokens - 1) if done and r.output_tokens > 1 else nan)
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e}


def request_frame(requests: Sequence[Request]) -> pd.DataFrame:
    """One row per arrived request (later chat turns that never got sent are not requests)."""
    rows = [r for r in requests if r.arrived]
    cols = {c: [getattr(r, a) for r in rows] for c, a in _ATTR_COLUMNS.items()}
    cols.update({c: [f(r) for r in rows] for c, f in _DERIVED_COLUMNS.items()})
    cols.update(_latencies(rows))
    df = pd.DataFrame(cols, columns=list(REQUEST_COLUMNS))
    return df.astype({"request_id": "int64", "prompt_tokens": "int64", "visual_tokens": "int64",
                      "output_tokens": "int64", "images": "int64", "preemptions": "int64", "session_id": "int64",
                      "turn": "int64", "reencodes": "int64"})


def timeseries_frame(instances: Sequence) -> pd.DataFrame:
    """Per-step samples (decimated to a bounded count per instance) of batch size, queue length, KV occupancy."""
    t, name, pool, b, q, kv = [], [], [], [], [], []
    for inst in instances:
        n = len(inst.stats.ts_t)
        t.extend(inst.stats.ts_t)
        name.extend([inst.name] * n)
        pool.extend([inst.pool] * n)
        b.extend(inst.stats.ts_batch)
        q.extend(inst.stats.ts_queue)
        kv.extend(inst.stats.ts_kv)
    df = pd.DataFrame({"t_s": t, "instance": name, "pool": pool, "batch_size": b, "queue_len": q,
                       "kv_occupancy": kv})
    return df.sort_values(["t_s", "instance"], kind="stable").reset_index(drop=True)


def stats(x) -> dict:
    """mean, p50, p90, p99 of the finite values (None when there are none)."""
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    out = {"mean": float(a.mean())}
    for p, v in zip(PERCENTILES, np.percentile(a, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    return out


def weighted_stats(values: np.ndarray, weights: np.ndarray) -> dict:
    if values.size == 0 or weights.sum() <= 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    total = cum[-1]
    out = {"mean": float((v * w).sum() / total)}
    for p in PERCENTILES:
        out[f"p{p}"] = float(v[min(int(np.searchsorted(cum, p / 100.0 * total)), v.size - 1)])
    return out


def saturation(arrivals: Sequence[float], done: Sequence[float], unit: str = "requests", shed: int = 0) -> dict:
    """The verdict described in the module docstring, with the numbers it rests on. `unit` names what arrives:
    requests, or chat sessions (then `arrivals` are session starts and `done` session ends); `shed` counts arrivals
    rejected because a queue was full."""
    rule = (f"backlogged when the arrivals all come at once (an unbounded rate), when more than "
            f"{BACKLOG_FRACTION:.0%} of them are shed by a full queue, or when the least-squares trend of {unit} in "
            f"the system over the second half of the arrival window grows by more than max({BACKLOG_FRACTION:.0%} "
            f"of that half's arrivals, {BACKLOG_NOISE_SIGMAS:g} x the spread around the trend, "
            f"{BACKLOG_MIN_REQUESTS})")
    base = {"rule": rule, "unit": unit, "shed": int(shed)}
    n = len(arrivals)
    if n < 2:
        return {"verdict": "stable", "why": f"{n} arrival(s): nothing to queue", "growth": 0,
                "arrivals_second_half": n, **base}
    a = np.sort(np.asarray(arrivals, dtype=float))
    d = np.sort(np.asarray(done, dtype=float)) if len(done) else np.zeros(0)
    first, last = float(a[0]), float(a[-1])
    if shed > BACKLOG_FRACTION * n:
        why = f"{shed} of {n} arrivals ({shed / n:.0%}) shed by a full queue"
        return {"verdict": "backlogged", "why": why, **_trend(a, d, first, last), **base}
    if not last > first:
        return {"verdict": "backlogged", "why": f"all {n} {unit} arrived at once (unbounded offered rate)",
                "growth": n - int(np.searchsorted(d, last, side="right")), "arrivals_second_half": n,
                "window_s": [first, last], **base}
    tr = _trend(a, d, first, last)
    limit = max(BACKLOG_FRACTION * tr["arrivals_second_half"], BACKLOG_NOISE_SIGMAS * tr["spread"],
                BACKLOG_MIN_REQUESTS)
    backlogged = tr["growth"] > limit
    growth = round(tr["growth"])
    moved = "grew" if growth >= 0 else "shrank"
    why = (f"{unit} in the system {moved} by {abs(growth)} (trend) over the second half, limit {limit:.0f}; "
           f"completed {tr['completion_rate']:.4g}/s of {tr['offered_rate']:.4g}/s offered")
    return {"verdict": "backlogged" if backlogged else "stable", "why": why, **tr, **base}


def _trend(a: np.ndarray, d: np.ndarray, first: float, last: float) -> dict:
    """Least-squares trend of arrived - done over [mid, last] on a fixed grid, the spread of the residuals, and the
    offered and completion rates over that half."""
    mid = (first + last) / 2.0
    half = last - mid
    a2 = int(np.searchsorted(a, last, side="right") - np.searchsorted(a, mid, side="right"))
    d2 = int(np.searchsorted(d, last, side="right") - np.searchsorted(d, mid, side="right"))
    out = {"arrivals_second_half": a2, "window_s": [first, last],
           "offered_rate": a2 / half if half > 0 else math.inf, "completion_rate": d2 / half if half > 0 else 0.0}
    if not half > 0:
        return {**out, "growth": 0.0, "spread": 0.0}
    t = np.linspace(mid, last, TREND_POINTS)
    in_system = (np.searchsorted(a, t, side="right") - np.searchsorted(d, t, side="right")).astype(float)
    x = (t - mid) / half
    slope, icept = np.polyfit(x, in_system, 1)
    spread = float(np.std(in_system - (slope * x + icept)))
    return {**out, "growth": float(slope), "spread": spread}


def _add_energy(energy: float, hw, tp: int, span: float, busy_s: float) -> float | None:
    """Energy so far plus one instance's; None once a device has no published power (tdp_w null)."""
    if hw.tdp_w is None:
        return None
    idle_w = hw.idle_power_w if hw.idle_power_w is not None else IDLE_POWER_DEFAULT_FRACTION * hw.tdp_w
    return energy + tp * (idle_w * span + (hw.tdp_w - idle_w) * busy_s)


def class_summary(df: pd.DataFrame, names: Sequence[str]) -> dict:
    """Per request class (column `request_class`): requests, completed, TTFT and end-to-end statistics."""
    out = {}
    for name in names:
        part = df[df.request_class == name]
        done = part[part.status == COMPLETED]
        out[name] = {"requests": len(part), "completed": len(done), "ttft_s": stats(done.ttft_s),
                     "e2e_s": stats(done.e2e_s)}
    return out


def _slo_check(completed: pd.DataFrame, slos) -> tuple[dict, int, dict]:
    """(thresholds given, requests meeting every one, each threshold checked at the SLO percentile)."""
    ok = np.ones(len(completed), dtype=bool)
    thresholds = {}
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        limit = getattr(slos, name)
        if limit is not None:
            thresholds[name] = limit
            vals = completed[name].to_numpy(dtype=float)
            ok &= ~(vals > limit)  # NaN TPOT (one output token) meets any TPOT threshold
    pct_check = {}
    for name, limit in thresholds.items():
        vals = completed[name].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        at = float(np.percentile(vals, slos.percentile)) if vals.size else None
        pct_check[name] = {"threshold": limit, f"p{slos.percentile:g}": at, "met": at is not None and at <= limit}
    return thresholds, int(ok.sum()), pct_check


def _instances(cluster, span: float) -> tuple[list[dict], float, float | None, int]:
    """(one row per instance, dollars, joules or None when a device has no published power, GPUs)."""
    inst_rows = []
    usd = 0.0
    energy: float | None = 0.0
    gpus = 0
    for pool in cluster.pools:
        hw = pool.hardware
        tp = pool.spec.tp
        for inst in pool.instances:
            gpus += tp
            usd += hw.price_per_hour_usd * tp * span / 3600.0
            if energy is not None:
                energy = _add_energy(energy, hw, tp, span, inst.stats.window_busy_s)
            st, kv = inst.stats, inst.kv
            inst_rows.append({
                "instance": inst.name, "pool": pool.name, "role": pool.role, "hardware": hw.id, "tp": tp,
                "steps": st.nsteps, "busy_s": st.window_busy_s, "max_step_s": st.max_step_s,
                "utilisation": st.window_busy_s / span,
                "kv_blocks": kv.total,
                "peak_kv_occupancy": kv.peak_used / kv.total if kv.total else None,
                "kv_blocks_in_use_at_end": kv.total - kv.free if kv.total else 0,
                "queue_len_mean": st.window_q_area / span,
            })
    return inst_rows, usd, energy, gpus


def summarize(cluster, df: pd.DataFrame, slos, span_s: float) -> dict:
    """The run summary from the per-request table; see the module docstring for every definition."""
    completed = df[df.status == COMPLETED]
    thresholds, n_good, pct_check = _slo_check(completed, slos)
    itl_v = np.concatenate([np.asarray(i.stats.itl_dt, dtype=float) for i in cluster.instances] or [np.zeros(0)])
    itl_w = np.concatenate([np.asarray(i.stats.itl_n, dtype=float) for i in cluster.instances] or [np.zeros(0)])
    figs = {
        "requests": len(df), "completed": len(completed), "rejected": int((df.status == REJECTED_S).sum()),
        "in_flight": int((df.status == IN_FLIGHT).sum()), "ttft_s": stats(completed.ttft_s),
        "tpot_s": stats(completed.tpot_s), "itl_s": weighted_stats(itl_v, itl_w), "e2e_s": stats(completed.e2e_s),
        "queue_s": stats(df.queue_s), "output_tokens": int(completed.output_tokens.sum()), "good": n_good,
        "thresholds": thresholds, "check": pct_check, "preemptions": int(df.preemptions.sum()),
        "transfer_s": stats(completed.transfer_s) if len(cluster.pools) > 1 else None,
    }
    return _assemble(cluster, figs, slos, span_s)


def summarize_stream(cluster, agg, slos, span_s: float) -> dict:
    """The run summary from streaming aggregates (lvlmsim.engine.sketch.StreamSummary, and the instances' ITL
    sketches): the same keys, percentiles within the sketch's stated error, plus summary_mode saying so."""
    from lvlmsim.engine.sketch import RELATIVE_ERROR, LogHistogram

    itl = LogHistogram()
    for inst in cluster.instances:
        inst.stats.flush_itl()
        if inst.stats.itl_sketch is not None:
            itl.merge(inst.stats.itl_sketch)
    h = agg.hist
    figs = {
        "requests": agg.requests, "completed": agg.completed, "rejected": agg.rejected, "in_flight": agg.in_flight,
        "ttft_s": h["ttft_s"].stats(PERCENTILES), "tpot_s": h["tpot_s"].stats(PERCENTILES),
        "itl_s": itl.stats(PERCENTILES, weighted=True), "e2e_s": h["e2e_s"].stats(PERCENTILES),
        "queue_s": h["queue_s"].stats(PERCENTILES), "output_tokens": agg.output_tokens, "good": agg.good,
        "thresholds": dict(agg.limits), "check": agg.pct_check(), "preemptions": agg.preemptions,
        "transfer_s": h["transfer_s"].stats(PERCENTILES) if len(cluster.pools) > 1 else None,
    }
    out = _assemble(cluster, figs, slos, span_s)
    out["summary_mode"] = {
        "mode": "streaming", "percentile_relative_error": RELATIVE_ERROR,
        "note": "requests folded into running aggregates as they ended and dropped (no per-request table); counts, "
                "sums and means exact, percentiles from log-binned sketches within the stated relative error of the "
                "exact order statistics (values under 1 ns within 1 ns)"}
    return out


def _assemble(cluster, f: dict, slos, span_s: float) -> dict:
    """The summary dict (key order is part of the pinned output) from the request figures `f`."""
    span = max(span_s, 1e-12)
    n_arr, n_done, n_good, out_tokens = f["requests"], f["completed"], f["good"], f["output_tokens"]
    inst_rows, usd, energy, gpus = _instances(cluster, span)
    peaks = [r["peak_kv_occupancy"] for r in inst_rows if r["peak_kv_occupancy"] is not None]
    summary = {
        "requests": n_arr,
        "completed": n_done,
        "rejected": f["rejected"],
        "in_flight": f["in_flight"],
        "span_s": span_s,
        "ttft_s": f["ttft_s"],
        "tpot_s": f["tpot_s"],
        "itl_s": f["itl_s"],
        "e2e_s": f["e2e_s"],
        "queue_s": f["queue_s"],
        "throughput_rps": n_done / span,
        "output_tokens_per_s": out_tokens / span,
        "goodput_rps": n_good / span,
        "slo_attainment": n_good / n_arr if n_arr else None,
        "slos": {"thresholds": f["thresholds"], "percentile": slos.percentile, "check": f["check"]},
        "queue_len_mean": sum(i.stats.window_q_area for i in cluster.instances) / span,
        "peak_kv_occupancy": max(peaks) if peaks else None,
        "preemptions": f["preemptions"],
        "steps": sum(i.stats.nsteps for i in cluster.instances),
        "instances": inst_rows,
        "gpus": gpus,
        "cost_usd": usd,
        "usd_per_1m_output_tokens": usd / (out_tokens / 1e6) if out_tokens else None,
        "energy_j": energy,
        "joules_per_output_token": energy / out_tokens if out_tokens and energy is not None else None,
        "energy_assumption": "per GPU: idle power over the whole span + (TDP - idle) while busy; idle defaults to "
                             f"{IDLE_POWER_DEFAULT_FRACTION:.0%} of TDP where the hardware spec has none",
        "saturation": saturation(cluster.unit_starts, cluster.unit_ends,
                                 "sessions" if cluster.has_sessions else "requests", cluster.n_shed),
    }
    if f["transfer_s"] is not None:
        summary["transfer_s"] = f["transfer_s"]
    return summary


__all__ = ["REQUEST_COLUMNS", "request_frame", "saturation", "stats", "summarize", "summarize_stream",
           "timeseries_frame", "weighted_stats"]
