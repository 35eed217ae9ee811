"""Scenario: everything one simulation needs (model + hardware + workload + serving + SLOs + techniques + seed).

Scenarios live in `workloads/scenarios/*.yaml` (found through the registry from a checkout or a wheel). The default
scenario is also embedded here as text, so `lvlmsim simulate` runs with no data folder at all.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, NonNegativeInt, PositiveFloat, PrivateAttr

from lvlmsim.errors import SpecError
from lvlmsim.specs.base import StrictModel, read_yaml, validate_as
from lvlmsim.specs.inputs import number
from lvlmsim.specs.registry import resolve_path, scenarios_dir, traces_dir
from lvlmsim.specs.serving import ServingSpec
from lvlmsim.specs.workload import MAX_RATE_RPS, MAX_REQUESTS, TraceArrival, WorkloadSpec

DEFAULT_SCENARIO_ID = "llava-chat-h100"

# Keep identical in content to workloads/scenarios/llava-chat-h100.yaml (a test compares them).
DEFAULT_SCENARIO_YAML = """\
id: llava-chat-h100
description: >-
  LLaVA-1.5-7B answering chat questions about one photo each on one H100 SXM with vLLM-style continuous batching
  and chunked prefill. Photos are letterboxed to 336 px (576 visual tokens); prompts and answers are log-normal.
model: llava-1.5-7b
hardware: h100-sxm
seed: 0
workload:
  requests: 2000
  arrival: {kind: poisson, rate_rps: 12}
  prompt_tokens: {kind: lognormal, mean: 80, std: 60, max: 1024}
  output_tokens: {kind: lognormal, mean: 160, std: 120, max: 1024}
  images: 1
  image_size:
    - {size: 1024x768, weight: 3}
    - {size: 640x480, weight: 1}
serving:
  max_num_seqs: 256
  max_num_batched_tokens: 8192
  chunked_prefill: true
  block_size: 16
  gpu_memory_utilization: 0.9
slos: {ttft_s: 1.0, tpot_s: 0.05, e2e_s: 15.0}
techniques: []
"""


class SloSpec(StrictModel):
    """Per-request latency thresholds; a request meets the SLOs when it completes within every one given.

    `percentile` is the one the summary checks the thresholds at (p90: "90% of requests meet TTFT < 1 s").
    """

    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None
    e2e_s: PositiveFloat | None = None
    percentile: float = Field(90.0, gt=0.0, le=100.0)


class Scenario(StrictModel):
    id: str = "custom"
    description: str = ""
    model: str = Field(description="model id or path to a model YAML")
    hardware: str = Field(description="hardware id or path to a hardware YAML (pools may override it)")
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    slos: SloSpec = Field(default_factory=SloSpec)
    # items of any type: lvlmsim.techniques validates them, and names the allowed kinds (a union type here answered
    # `techniques: [5]` with one error per branch of it, and could not list the kinds: specs rank below techniques)
    techniques: list[Any] = Field(default_factory=list, description="validated by lvlmsim.techniques")
    seed: NonNegativeInt = 0
    profile: str | None = Field(None, description="None/auto: the device's calibrated profile, else the "
                                                  "device-general model; general; default; a JSON path; '@p90'")
    horizon_s: PositiveFloat | None = Field(None, description="stop here; unfinished requests count as in flight")

    _source_dir: Path | None = PrivateAttr(default=None)

    @property
    def source_dir(self) -> Path | None:
        """Folder of the YAML this scenario came from: relative trace paths resolve against it."""
        return self._source_dir

    def resolve_data_path(self, ref: str) -> Path:
        """A trace path: absolute, relative to the scenario file, relative to the working directory, or a file in
        workloads/traces."""
        p = Path(ref)
        candidates = [p] if p.is_absolute() else [
            *([self._source_dir / p] if self._source_dir else []), Path.cwd() / p, traces_dir() / p,
        ]
        for c in candidates:
            if c.is_file():
                return c
        raise SpecError(f"trace '{ref}': file not found (looked in {', '.join(str(c.parent) for c in candidates)})")

    def with_overrides(
        self, *, requests: int | None = None, rate: float | None = None, seed: int | None = None,
        trace_rate_rps: float | None = None,
    ) -> Scenario:
        """A copy with the CLI's overrides: request count, arrival rate (requests/s; for sessions, sessions/s) and
        seed. A replayed trace is time-scaled to the new rate; give its recorded rate as `trace_rate_rps`
        (lvlmsim.engine.trace.trace_mean_rate reads it)."""
        data = self.model_dump(mode="json")
        # the techniques as the file gave them: JSON turns a NaN parameter into null ('layer: .nan' was then reported
        # by lvlmsim.techniques as 'got None'); they are validated there, where the run reads them
        data["techniques"] = copy.deepcopy(self.techniques)
        if requests is not None:
            data["workload"]["requests"] = number(requests, "requests", lo=1, hi=MAX_REQUESTS, integer=True)
        if seed is not None:
            data["seed"] = number(seed, "seed", lo=0, integer=True)
        if rate is not None:  # infinity: every arrival at t = 0 (backlogged by definition)
            number(rate, "rate (requests/s)", lo=0, lo_open=True, allow_inf=True)
            if math.isfinite(rate) and rate > MAX_RATE_RPS:  # named here, not as workload.arrival.poisson.rate_rps
                raise SpecError(f"rate: a finite rate must be at most {MAX_RATE_RPS:g} requests/s (under a "
                                f"nanosecond apart), got {rate:g}; give inf for every arrival at t = 0")
            arr = data["workload"]["arrival"]
            if arr["kind"] == "trace":
                if trace_rate_rps is None:
                    raise SpecError("rate: rescaling a trace needs its recorded rate (trace_rate_rps)")
                arr["time_scale"] = trace_rate_rps / rate
            elif arr["kind"] == "concurrency":
                raise SpecError("rate: a closed-loop arrival (kind: concurrency) has no rate; use a poisson arrival "
                                "with workload.max_concurrency for a rate and a cap")
            else:
                arr["rate_rps"] = rate
        return scenario_from_dict(data, f"scenario '{self.id}'", source_dir=self._source_dir)

    @property
    def trace_arrival(self) -> TraceArrival | None:
        a = self.workload.arrival
        return a if isinstance(a, TraceArrival) else None


def scenario_from_dict(data: Any, source: str, *, source_dir: Path | None = None) -> Scenario:
    """Validate `data` as a Scenario; `source_dir` is the folder its relative trace and model paths resolve against
    (the folder of the YAML it was read from, or of the scenario it was derived from)."""
    sc = validate_as(Scenario, data, source)
    sc._source_dir = Path(source_dir) if source_dir is not None else None
    return sc


def default_scenario() -> Scenario:
    """The embedded default (LLaVA-1.5-7B chat on one H100), independent of any data folder."""
    return scenario_from_dict(yaml.safe_load(DEFAULT_SCENARIO_YAML), f"embedded scenario '{DEFAULT_SCENARIO_ID}'")


def load_scenario(ref: str | Path | Scenario | dict | None = None) -> Scenario:
    """A Scenario from an id (`llava-chat-h100`), a YAML path, a dict, an existing Scenario, or None (default)."""
    if ref is None:
        folder = scenarios_dir()
        if (folder / f"{DEFAULT_SCENARIO_ID}.yaml").is_file():
            return load_scenario(DEFAULT_SCENARIO_ID)
        return default_scenario()
    if isinstance(ref, Scenario):
        return ref
    if isinstance(ref, dict):
        return scenario_from_dict(ref, "scenario")
    text = str(ref)
    if text == DEFAULT_SCENARIO_ID and not (scenarios_dir() / f"{text}.yaml").is_file():
        return default_scenario()
    path = resolve_path("scenario", text, scenarios_dir()) if not isinstance(ref, Path) else ref
    return scenario_from_dict(read_yaml(path), str(path), source_dir=Path(path).resolve().parent)


__all__ = [
    "DEFAULT_SCENARIO_ID", "DEFAULT_SCENARIO_YAML", "Scenario", "SloSpec", "default_scenario", "load_scenario",
    "scenario_from_dict",
]
