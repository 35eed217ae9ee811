"""Capacity search: the highest arrival rate at which one configuration still meets latency SLOs, by simulation.

As in Vidur-Search's capacity search: probe rates with the discrete-event engine, first bracketing the capacity
(grow or shrink geometrically from an analytic guess until one probe passes and one fails), then bisecting until
the bracket is within a relative tolerance. The capacity reported is the highest rate that passed, with its bracket.

A probe runs to steady state rather than for a guessed duration. It starts with `probe_duration_s` of arrivals,
but never fewer requests than can turn every batch slot over `STEADY_TURNOVERS` times (max_num_seqs x instances;
a KV cache cannot have filled before that), and doubles the request count until `STEADY_RUNS` successive lengths
give the same answer: across each doubling every SLO percentile moved by less than `steady_tolerance` of its
threshold. A probe passes when, over
the requests that arrived after the warm-up (the first `warmup_fraction` of the arrival window), every SLO
percentile is within its threshold, nothing was rejected or left unfinished, and the saturation verdict (queue
trend, load shed) is stable. A failure at any length is final: from an empty start, queues and the KV cache only
fill with time. A pass that has not settled by `max_requests` is reported as a failure ("no steady state"), so the
capacity never rests on a transient, and does not move with `probe_duration_s`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from lvlmsim.errors import LvlmsimError, SpecError
from lvlmsim.planner.runs import load_payload
from lvlmsim.specs.lists import split_items
from lvlmsim.specs.workload import MAX_ARRIVAL_S

SLO_METRICS = ("ttft", "tpot", "e2e")
SLO_PERCENTILES = (50, 90, 99)
SLO_KEYS = tuple(f"{m}_p{p}" for m in SLO_METRICS for p in SLO_PERCENTILES)


@dataclass(frozen=True)
class SearchSettings:
    """How hard the capacity search looks. Defaults: ~5% bracket; probes start at 30 s of arrivals and double until
    their SLO percentiles move by less than 10% of the thresholds (at most `max_requests` requests)."""

    tolerance: float = 0.05
    growth: float = 2.0
    probe_duration_s: float = 30.0
    min_requests: int = 100
    max_requests: int = 128_000
    steady_tolerance: float = 0.1
    warmup_fraction: float = 0.2
    max_probes: int = 14
    start_fraction: float = 0.7  # first probe at this fraction of the analytic guess (which ignores queueing)

    def check(self) -> SearchSettings:
        if not 0 < self.tolerance < 1:
            raise SpecError(f"tolerance: must be in (0, 1), got {self.tolerance}")
        if not self.growth > 1:
            raise SpecError(f"growth: must be > 1, got {self.growth}")
        if not 0 < self.probe_duration_s <= MAX_ARRIVAL_S:  # inf: an OverflowError per candidate
            raise SpecError(f"probe_duration_s (--probe-s): must be in (0, {MAX_ARRIVAL_S:g}] seconds of arrivals, "
                            f"got {self.probe_duration_s}")
        if not 1 <= self.min_requests <= self.max_requests:
            raise SpecError(f"requests per probe: need 1 <= min_requests ({self.min_requests}) <= max_requests "
                            f"({self.max_requests})")
        if not 0 < self.steady_tolerance < 1:
            raise SpecError(f"steady_tolerance: must be in (0, 1), got {self.steady_tolerance}")
        if not 0 <= self.warmup_fraction < 1:
            raise SpecError(f"warmup_fraction: must be in [0, 1), got {self.warmup_fraction}")
        return self


def parse_slos(slos: str | dict[str, float] | None) -> dict[str, float]:
    """'ttft_p90=1.0,tpot_p90=0.05' (or a dict) -> {key: seconds}; a bad key names the allowed ones."""
    if slos is None:
        return {}
    if isinstance(slos, str):
        items: dict[str, Any] = {}
        for part in split_items(slos, "slo"):
            key, sep, value = part.partition("=")
            if not sep:
                raise SpecError(f"slo: expected KEY=SECONDS such as ttft_p90=1.0, got '{part}'")
            items[key.strip()] = value.strip()
    elif isinstance(slos, dict):
        items = dict(slos)
    else:  # a bare number was a TypeError traceback
        raise SpecError(f"slo: expected 'KEY=SECONDS,...' such as 'ttft_p90=1.0' or a dict {{key: seconds}}, got "
                        f"{slos!r}; keys: {', '.join(SLO_KEYS)}")
    out: dict[str, float] = {}
    for key, value in items.items():
        if key not in SLO_KEYS:
            raise SpecError(f"slo: unknown key '{key}'; allowed: {', '.join(SLO_KEYS)}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"slo: {key}: expected seconds as a number, got {value!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise SpecError(f"slo: {key}: must be > 0 seconds, got {value!r}")
        out[key] = v
    if not out and isinstance(slos, str):
        raise SpecError(f"slo: no thresholds given; allowed keys: {', '.join(SLO_KEYS)}")
    return out


def slos_of_scenario(sc) -> dict[str, float]:
    """The scenario's own SLOs (thresholds at its percentile) in planner keys; empty when it has none."""
    p = sc.slos.percentile
    out = {}
    for m in SLO_METRICS:
        limit = getattr(sc.slos, f"{m}_s")
        if limit is not None:
            if p not in SLO_PERCENTILES:
                raise SpecError(f"slos.percentile: the planner checks p50, p90 or p99; the scenario says p{p:g}; "
                                "give --slo explicitly")
            out[f"{m}_p{int(p)}"] = float(limit)
    return out


STEADY_TURNOVERS = 8
STEADY_RUNS = 3  # lengths n, 2n, 4n must agree: a slow drift (a KV cache filling, rare bursts) shows over two doublings


def probe_requests(rate: float, s: SearchSettings, floor: int = 0) -> int:
    """The first length of a probe: `probe_duration_s` of arrivals, at least `floor` and `min_requests` requests."""
    return int(min(max(math.ceil(rate * s.probe_duration_s), s.min_requests, floor), s.max_requests))


def turnover_floor(payload: dict) -> int:
    """Requests that turn every batch slot of the scenario over STEADY_TURNOVERS times: fewer cannot fill a KV cache."""
    serving = payload["scenario"]["serving"]
    slots = int(serving.get("max_num_seqs") or 1)
    pools = serving.get("pools") or []
    instances = sum(int(p.get("instances") or 1) for p in pools) if pools else int(serving.get("instances") or 1)
    return STEADY_TURNOVERS * slots * max(instances, 1)


def evaluate(req: pd.DataFrame, slos: dict[str, float], warmup_fraction: float) -> tuple[bool, str, dict]:
    """(passed, why not, measured percentiles) of one run's request table against the SLOs."""
    metrics: dict[str, float | None] = {}
    if req.empty:
        return False, "no requests arrived", metrics
    n_rej = int((req.status == "rejected").sum())
    n_fly = int((req.status == "in_flight").sum())
    arr = req.arrival_s.to_numpy(dtype=float)
    cut = arr.min() + warmup_fraction * (arr.max() - arr.min())
    window = req[(req.arrival_s >= cut) & (req.status == "completed")]
    for m in SLO_METRICS:
        vals = window[f"{m}_s"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        for p in SLO_PERCENTILES:
            metrics[f"{m}_p{p}"] = float(np.percentile(vals, p)) if vals.size else None
    if n_rej:
        return False, f"{n_rej} requests rejected", metrics
    if n_fly:
        return False, f"{n_fly} requests unfinished at the horizon", metrics
    misses = []
    for key, limit in slos.items():
        v = metrics.get(key)
        if v is None:
            misses.append(f"{key} not measured")
        elif v > limit:
            misses.append(f"{key} {v:.3g} s > {limit:g} s")
    return not misses, "; ".join(misses), metrics


def settled(before: dict, after: dict, slos: dict[str, float], tolerance: float) -> bool:
    """Whether doubling the probe moved no SLO percentile by more than `tolerance` of its threshold."""
    for key, limit in slos.items():
        a, b = before.get(key), after.get(key)
        if a is None or b is None or abs(b - a) > tolerance * limit:
            return False
    return True


def _run(payload: dict, rate: float, n: int, slos: dict[str, float], s: SearchSettings) -> tuple[bool, str, dict, dict]:
    from lvlmsim.engine.api import simulate

    res = simulate(load_payload(payload), requests=n, rate=rate, seed=payload.get("seed"))
    ok, why, metrics = evaluate(res.requests, slos, s.warmup_fraction)
    sat = res.summary["saturation"]
    if ok and sat["verdict"] != "stable":
        ok, why = False, f"backlogged: {sat['why']}"
    return ok, why, metrics, res.summary


def probe(payload: dict, rate: float, slos: dict[str, float], s: SearchSettings) -> dict:
    """DES runs of the payload's scenario at `rate`, doubling until steady (module docstring); raises LvlmsimError
    when the engine refuses the config."""
    t0 = time.perf_counter()
    n = probe_requests(rate, s, turnover_floor(payload))
    runs, history, steady = 0, [], False
    while True:
        ok, why, metrics, summary = _run(payload, rate, n, slos, s)
        runs += 1
        history.append(metrics)
        steady = ok and len(history) >= STEADY_RUNS and all(
            settled(a, b, slos, s.steady_tolerance) for a, b in zip(history[-STEADY_RUNS:], history[-STEADY_RUNS + 1:],
                                                                    strict=False))
        if not ok or steady:
            break
        if n >= s.max_requests:
            ok, why = False, (f"no steady state within {n} requests (SLO percentiles still moving by more than "
                              f"{s.steady_tolerance:.0%} of their thresholds); raise max_requests")
            break
        n = min(2 * n, s.max_requests)
    gpus = summary.get("gpus") or 1
    sat = summary["saturation"]
    return {"rate": rate, "requests": n, "runs": runs, "passed": ok, "steady": steady, "reason": why, **metrics,
            "completion_rate": sat.get("completion_rate"), "saturation": sat["verdict"],
            "output_tokens_per_s": summary.get("output_tokens_per_s"),
            "output_tokens_per_s_per_gpu": (summary.get("output_tokens_per_s") or 0.0) / gpus,
            "wall_s": time.perf_counter() - t0}


def drain_rate(req: pd.DataFrame) -> float:
    """Completions per second between the 25th and 75th percentile completion of a run whose work all arrived at
    once: the queue never empties there and the KV cache is full. Chat sessions count as one unit each, ended by
    their last answer (the planner's rates are sessions/s for them)."""
    done = req[req.status == "completed"]
    if (done.session_id >= 0).any():
        ends = np.sort(done.groupby("session_id").finish_s.max().to_numpy(dtype=float))
    else:
        ends = np.sort(done.finish_s.to_numpy(dtype=float))
    i, j = len(ends) // 4, (3 * len(ends)) // 4
    if j <= i or not ends[j] > ends[i]:
        return math.inf
    return (j - i) / float(ends[j] - ends[i])


def saturated_throughput(payload: dict, s: SearchSettings) -> dict:
    """The most the configuration completes per second once backlogged (all arrivals at once), doubling the run until
    two lengths agree within half the search tolerance. No rate above it is sustainable at any run length: past it
    the queue grows without bound, however long a probe takes to show it."""
    t0 = time.perf_counter()
    from lvlmsim.engine.api import simulate

    n = min(max(2 * turnover_floor(payload), s.min_requests), s.max_requests)
    before, runs = None, 0
    while True:
        res = simulate(load_payload(payload), requests=n, rate=math.inf, seed=payload.get("seed"))
        rate = drain_rate(res.requests)
        runs += 1
        if before is not None and abs(rate - before) <= 0.5 * s.tolerance * before or n >= s.max_requests:
            break
        before, n = rate, min(2 * n, s.max_requests)
    return {"rate": rate, "requests": n, "runs": runs, "wall_s": time.perf_counter() - t0}


def replicas_settled(lo: float, hi: float, target: float) -> bool:
    """Whether every capacity c in [lo, hi) needs the same number of replicas, ceil(target / c), for the target."""
    if lo <= 0:
        return False
    if lo >= target:
        return True
    return math.isfinite(hi) and math.ceil(target / lo) == math.floor(target / hi) + 1


class _Bracket:
    """A capacity bracket [lo passing, hi failing] and the probes that set it; `test(rate)` probes and moves it."""

    def __init__(self, payload: dict, slos: dict[str, float], s: SearchSettings, ceiling: dict, lo: float,
                 hi: float, target_rps: float | None):
        self.payload, self.slos, self.s, self.ceiling = payload, slos, s, ceiling
        self.lo, self.hi, self.target_rps = lo, hi, target_rps
        self.probes: list[dict] = []

    def test(self, rate: float) -> None:
        if rate > self.ceiling["rate"]:
            p = {"rate": rate, "requests": 0, "runs": 0, "passed": False, "steady": None, "wall_s": 0.0,
                 "reason": f"above the saturated throughput {self.ceiling['rate']:.4g}/s: not sustainable at any "
                           "length"}
        else:
            p = probe(self.payload, rate, self.slos, self.s)
        self.probes.append(p)
        if p["passed"]:
            self.lo = rate
        else:
            self.hi = rate

    def settled(self) -> bool:
        """The bracket already decides how many replicas the target needs (a finer capacity changes nothing)."""
        return self.target_rps is not None and replicas_settled(self.lo, self.hi, self.target_rps)

    def budget_left(self) -> bool:
        return len(self.probes) < self.s.max_probes


def capacity_search(payload: dict, slos: dict[str, float], guess_rps: float,
                    settings: SearchSettings | None = None, *, target_rps: float | None = None,
                    lo: float = 0.0, hi: float = math.inf) -> dict:
    """Bracket, then bisect. Returns capacity_rps (0 when even a trickle fails), the bracket, and every probe.

    With `target_rps`, the search also stops as soon as the bracket settles how many replicas the target needs
    (:func:`replicas_settled`): a finer capacity would not change the plan's cost, GPUs or ranking. `exact` in the
    result says whether the bracket reached the tolerance. `lo`/`hi` continue an earlier search (a passing and a
    failing rate)."""
    s = (settings or SearchSettings()).check()
    ceiling = saturated_throughput(payload, s)
    b = _Bracket(payload, slos, s, ceiling, lo, hi, target_rps)
    if b.lo <= 0 and math.isinf(b.hi):
        b.test(max(guess_rps * s.start_fraction, 1e-3) if guess_rps and math.isfinite(guess_rps) else 1.0)
    floor = (b.hi if math.isfinite(b.hi) else b.lo) / s.growth ** 6
    while b.lo > 0 and math.isinf(b.hi) and not b.settled() and b.budget_left() and b.lo < 1e6:
        b.test(b.lo * s.growth)  # passing: grow until a rate fails
    while b.lo == 0.0 and b.budget_left() and b.hi / s.growth >= floor:
        b.test(b.hi / s.growth)  # failing: shrink until a rate passes (or give up near zero)
    while (b.lo > 0 and math.isfinite(b.hi) and (b.hi - b.lo) / b.hi > s.tolerance and not b.settled()
           and b.budget_left()):
        b.test((b.lo + b.hi) / 2.0)
    return _search_result(b)


def _search_result(b: _Bracket) -> dict:
    lo, hi, probes = b.lo, b.hi, b.probes
    reason = ""
    if lo == 0.0:
        low = min((p["rate"] for p in probes), default=hi)
        why = probes[-1]["reason"] if probes else ""
        reason = f"fails the SLOs even at {low:.3g} req/s: {why}"
    exact = lo > 0 and math.isfinite(hi) and (hi - lo) / hi <= b.s.tolerance
    return {"capacity_rps": lo, "bracket_lo_rps": lo, "bracket_hi_rps": hi if math.isfinite(hi) else None,
            "exact": exact, "des_runs": sum(p["runs"] for p in probes) + b.ceiling["runs"], "probes": probes,
            "reason": reason, "saturated_rps": b.ceiling["rate"]}


def search_task(task: dict) -> dict:
    """Executor task: capacity search of one candidate, then one run at its operating point for the target rate.

    task: payload (scenario JSON + seed), slos, settings (dict), guess_rps, target_rps. Never raises for a
    configuration the engine refuses: that is status "infeasible" with the engine's message.
    """
    t0 = time.perf_counter()
    s = SearchSettings(**task["settings"])
    slos = task["slos"]
    out: dict[str, Any] = {"status": "ok", "reason": "", "des_runs": 0}
    try:
        res = capacity_search(task["payload"], slos, task["guess_rps"], s,
                              target_rps=task["target_rps"] if task.get("settle_only") else None)
        out.update({k: v for k, v in res.items() if k != "probes"})
        out["probes"] = res["probes"]
        cap = res["capacity_rps"]
        if cap <= 0:
            out.update(status="infeasible", reason=res["reason"])
        else:
            replicas = max(1, math.ceil(task["target_rps"] / cap - 1e-9))
            per = task["target_rps"] / replicas
            op = next((p for p in res["probes"] if math.isclose(p["rate"], per, rel_tol=1e-9)), None)
            if op is None:
                op = probe(task["payload"], per, slos, s)
                out["des_runs"] += op["runs"]
            out.update(replicas=replicas, operating_point=op)
    except LvlmsimError as exc:
        out.update(status="infeasible", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken candidate must not stop the plan
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    out["wall_s"] = time.perf_counter() - t0
    return out


def settings_dict(s: SearchSettings) -> dict:
    return asdict(s)


__all__ = ["SLO_KEYS", "STEADY_TURNOVERS", "SearchSettings", "capacity_search", "evaluate", "parse_slos", "probe",
           "probe_requests", "replicas_settled", "search_task", "settled", "slos_of_scenario", "turnover_floor"]
