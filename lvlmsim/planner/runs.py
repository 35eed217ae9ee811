"""One simulation as a task: a JSON-able payload in, one flat row of inputs and summary metrics out.

Shared by sweeps and the planner so that every executor (this process, a process pool, Ray) runs exactly the same
function. A configuration the engine refuses (does not fit, bad TP, ...) is a row with status "error" and the
one-line message, never an exception: one bad run must not stop a sweep.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from lvlmsim.errors import LvlmsimError
from lvlmsim.specs.scenario import Scenario, scenario_from_dict

LATENCIES = ("ttft", "tpot", "itl", "e2e", "queue")
STATS = ("mean", "p50", "p90", "p99")
# Summary metrics copied into a row, with their pandas dtype (fixed, so a resumed table equals a fresh one).
METRIC_DTYPES: dict[str, str] = {
    "requests": "Int64", "completed": "Int64", "rejected": "Int64", "in_flight": "Int64", "span_s": "float64",
    **{f"{k}_{s}_s": "float64" for k in LATENCIES for s in STATS},
    "throughput_rps": "float64", "output_tokens_per_s": "float64", "goodput_rps": "float64",
    "slo_attainment": "float64", "slo_met": "boolean", "saturation": "string", "queue_len_mean": "float64",
    "peak_kv_occupancy": "float64", "preemptions": "Int64", "steps": "Int64", "gpus": "Int64",
    "cost_usd": "float64", "cost_per_hour_usd": "float64", "usd_per_1m_output_tokens": "float64",
    "energy_j": "float64", "joules_per_output_token": "float64",
}
METRICS = tuple(METRIC_DTYPES)


def scenario_payload(sc: Scenario, *, rate: float | None = None, requests: int | None = None,
                     seed: int | None = None) -> dict:
    """What a worker needs to rebuild and run the scenario: its JSON, where relative paths resolve, the overrides."""
    return {
        "scenario": sc.model_dump(mode="json"),
        "source_dir": str(sc.source_dir) if sc.source_dir is not None else None,
        "rate": rate, "requests": requests, "seed": seed,
    }


def run_key(payload: dict) -> str:
    """A stable hash of a run's inputs (the resolved scenario and the simulate() overrides), 16 hex digits.

    It keys resumption: the same inputs give the same key in any process, on any machine, in any order.
    """
    doc = {k: payload.get(k) for k in ("scenario", "rate", "requests", "seed")}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_payload(payload: dict) -> Scenario:
    src = payload.get("source_dir")
    return scenario_from_dict(payload["scenario"], "run", source_dir=Path(src) if src else None)


def summary_row(summary: dict) -> dict[str, Any]:
    """The flat metrics of a simulate() summary (see METRIC_DTYPES)."""
    row: dict[str, Any] = {k: summary.get(k) for k in ("requests", "completed", "rejected", "in_flight", "span_s",
                                                      "throughput_rps", "output_tokens_per_s", "goodput_rps",
                                                      "slo_attainment", "queue_len_mean", "peak_kv_occupancy",
                                                      "preemptions", "steps", "gpus", "cost_usd",
                                                      "usd_per_1m_output_tokens", "energy_j",
                                                      "joules_per_output_token")}
    for k in LATENCIES:
        st = summary.get(f"{k}_s") or {}
        for s in STATS:
            row[f"{k}_{s}_s"] = st.get(s)
    checks = (summary.get("slos") or {}).get("check") or {}
    row["slo_met"] = all(c.get("met") for c in checks.values()) if checks else None
    sat = summary.get("saturation")
    row["saturation"] = sat.get("verdict") if isinstance(sat, dict) else sat
    span = summary.get("span_s") or 0.0
    row["cost_per_hour_usd"] = summary["cost_usd"] / span * 3600.0 if span > 0 and "cost_usd" in summary else None
    return row


def simulate_payload(payload: dict):
    """simulate() on a payload; raises LvlmsimError for configurations the engine refuses."""
    from lvlmsim.engine.api import simulate

    return simulate(load_payload(payload), requests=payload.get("requests"), rate=payload.get("rate"),
                    seed=payload.get("seed"))


def run_one(payload: dict) -> dict:
    """Run one payload and return its row: status "ok" + metrics, or status "error" + the message."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"status": "ok", "error": None}
    try:
        res = simulate_payload(payload)
        res.check_servable()  # every request rejected: the row is an error with the reasons, not a run of zeros
        row.update(summary_row(res.summary))
        row.update(run_provenance(res))
    except LvlmsimError as exc:
        row.update(status="error", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a crashed run is recorded, the sweep goes on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_provenance(res) -> dict[str, Any]:
    """Which efficiency model priced a run and how sure it is (its first LLM pool's device; see
    lvlmsim.calibrate.profiles.profile_provenance): profile, profile_kind (measured | transferred | flat),
    expected_error_pct."""
    from lvlmsim.calibrate.profiles import profile_provenance
    from lvlmsim.specs.registry import load_hardware

    pools = res.meta.get("pools") or []
    hw_id = next((p["hardware"] for p in pools if p.get("role") != "E"), res.meta.get("hardware"))
    return profile_provenance(load_hardware(hw_id), res.scenario.profile)


def clean(value: Any) -> Any:
    """JSON-safe scalars (numpy -> Python, NaN -> None) so rows survive the journal and parquet alike."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


__all__ = ["METRICS", "METRIC_DTYPES", "load_payload", "run_key", "run_one", "scenario_payload",
           "simulate_payload", "summary_row"]
