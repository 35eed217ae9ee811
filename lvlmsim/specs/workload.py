"""WorkloadSpec: the traffic a scenario serves: arrivals, request mix, multi-turn sessions, video, trace replay.

Schemas only; sampling lives in :mod:`lvlmsim.engine.workload` and trace parsing in :mod:`lvlmsim.engine.trace`.
Every distribution is a mapping with a `kind` (a bare number is shorthand for `{kind: fixed, value: N}`), and may
be clipped with `min`/`max`. Token and image counts are rounded to integers and clipped to >= 1 (tokens) or
>= 0 (images) after sampling.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from lvlmsim.specs.base import StrictModel


class _Clip(StrictModel):
    min: float | None = Field(None, description="samples below are raised to this")
    max: float | None = Field(None, description="samples above are lowered to this")

    @model_validator(mode="after")
    def _order(self):
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self


class FixedDist(_Clip):
    kind: Literal["fixed"] = "fixed"
    value: float


class UniformDist(_Clip):
    """Uniform on [low, high]."""

    kind: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _bounds(self):
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        return self


class NormalDist(_Clip):
    kind: Literal["normal"] = "normal"
    mean: float
    std: NonNegativeFloat


class LogNormalDist(_Clip):
    """Log-normal given by the mean and standard deviation of the samples themselves (not of their logarithm):
    heavy right tail, the usual shape of prompt and answer lengths."""

    kind: Literal["lognormal"] = "lognormal"
    mean: PositiveFloat
    std: NonNegativeFloat


class EmpiricalDist(_Clip):
    """Resample observed values: either `values` (with optional `weights`) or a numeric `column` of a trace file."""

    kind: Literal["empirical"] = "empirical"
    values: list[float] | None = None
    weights: list[NonNegativeFloat] | None = None
    trace: str | None = Field(None, description="CSV/JSONL file (relative to the scenario, or in workloads/traces)")
    column: str | None = None

    @model_validator(mode="after")
    def _source(self):
        if (self.values is None) == (self.trace is None):
            raise ValueError("give either `values` or `trace` + `column`")
        if self.values is not None:
            if not self.values:
                raise ValueError("values: needs at least one value")
            if self.weights is not None:
                if len(self.weights) != len(self.values):
                    raise ValueError(f"weights: {len(self.weights)} weights for {len(self.values)} values")
                if sum(self.weights) <= 0:
                    raise ValueError("weights: must not all be zero")
        elif not self.column:
            raise ValueError("column: needed with `trace`")
        return self


def _number_is_fixed(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return {"kind": "fixed", "value": v}
    return v


Dist = Annotated[
    Annotated[FixedDist | UniformDist | NormalDist | LogNormalDist | EmpiricalDist, Field(discriminator="kind")],
    BeforeValidator(_number_is_fixed),
]


def fixed(value: float) -> FixedDist:
    return FixedDist(value=value)


# ----------------------------------------------------------------------------------------------------------------
# arrivals


# A finite rate above this spaces arrivals under a nanosecond apart: give .inf (all at t = 0) instead. Past it the
# arrival window underflows and the offered rate the saturation verdict divides by came out as inf.
MAX_RATE_RPS = 1e9


def _finite_rate_in_range(v: float) -> float:
    if math.isfinite(v) and v > MAX_RATE_RPS:
        raise ValueError(f"a finite rate must be at most {MAX_RATE_RPS:g} arrivals/s (under a nanosecond apart), "
                         f"got {v:g}; give .inf for every arrival at t = 0")
    return v


# Requests (sessions) per second; infinity, and only infinity among the non-finite values, means every arrival at
# t = 0: an unbounded offered rate, which the saturation verdict calls backlogged by definition.
RateRps = Annotated[float, Field(gt=0, allow_inf_nan=True, description="arrivals/s; .inf: all at t = 0"),
                    AfterValidator(_finite_rate_in_range)]


class PoissonArrival(StrictModel):
    """Exponential inter-arrival gaps: independent users."""

    kind: Literal["poisson"] = "poisson"
    rate_rps: RateRps


class GammaArrival(StrictModel):
    """Gamma inter-arrival gaps with coefficient of variation `cv`: cv > 1 is bursty, cv = 1 is Poisson."""

    kind: Literal["gamma"] = "gamma"
    rate_rps: RateRps
    cv: PositiveFloat = 2.0


class ConstantArrival(StrictModel):
    """One request every 1/rate_rps seconds: a load generator's fixed pacing."""

    kind: Literal["constant"] = "constant"
    rate_rps: RateRps


class TraceArrival(StrictModel):
    """Replay a trace file (CSV or JSONL): `arrival_s, prompt_tokens, output_tokens` plus image columns.

    Image columns: `images` (count) with `image_width`/`image_height`, or `image_tokens`; optional `session_id`,
    `turn`, `image_ids` ("a;b"), `video_s`, `video_fps`. Arrival times are multiplied by `time_scale`.
    """

    kind: Literal["trace"] = "trace"
    path: str
    time_scale: PositiveFloat = 1.0


class ConcurrencyArrival(StrictModel):
    """Closed loop: `clients` clients each send their next request as soon as their previous one has finished.

    The same as a benchmark client run with an infinite request rate and a concurrency cap of `clients`
    (`vllm bench serve --request-rate inf --max-concurrency N`, `sglang.bench_serving` likewise): every request is
    ready at t = 0 and a request is sent when one of the `clients` slots frees.
    """

    kind: Literal["concurrency"] = "concurrency"
    clients: PositiveInt


Arrival = Annotated[
    PoissonArrival | GammaArrival | ConstantArrival | TraceArrival | ConcurrencyArrival, Field(discriminator="kind")
]


def _inf_is_none(v: Any) -> Any:
    """`inf` (as both benchmark clients accept) means no cap."""
    if isinstance(v, str):
        if v.strip().lower() in ("inf", "infinity", "none"):
            return None
        raise ValueError(f"expected a whole number or 'inf', got the text {v!r}")
    if isinstance(v, float) and math.isinf(v) and v > 0:
        return None
    return v


# ----------------------------------------------------------------------------------------------------------------
# request contents


class ImageSizeChoice(StrictModel):
    """One image size of the mix, picked with probability proportional to `weight`. Accepts "WxH" shorthand."""

    width: PositiveInt
    height: PositiveInt
    weight: PositiveFloat = 1.0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"size": v}
        if isinstance(v, dict) and "size" in v:
            v = dict(v)
            text = str(v.pop("size"))
            try:
                w, h = (int(x) for x in text.lower().replace("×", "x").split("x"))
            except ValueError:
                raise ValueError(f"size: expected WIDTHxHEIGHT in pixels such as 336x336, got '{text}'") from None
            v.setdefault("width", w)
            v.setdefault("height", h)
        return v


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str | dict) else v


class VideoSpec(StrictModel):
    """A share of requests carries one video clip; frames are sampled at `fps` (default: the model's video policy)
    and capped at `max_frames`."""

    fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of requests carrying a video")
    duration_s: Dist
    fps: PositiveFloat | None = None
    max_frames: PositiveInt | None = None
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    source_fps: PositiveFloat | None = Field(
        None, description="the clip's own frame rate: no more than duration x source_fps frames can be sampled"
    )


class SessionSpec(StrictModel):
    """Multi-turn chats: the arrival process starts sessions; each later turn is sent `think_time_s` after the
    previous answer finished (closed loop), re-sending the chat history (earlier prompts, answers and images)."""

    turns: Dist
    think_time_s: Dist = Field(default_factory=lambda: fixed(10.0))
    new_images_per_turn: Dist = Field(default_factory=lambda: fixed(0.0))
    resend_images: bool = Field(True, description="later turns carry every earlier image again")
    keep_history: bool = Field(True, description="later turns' prompts include earlier prompts and answers")


class RequestClass(StrictModel):
    """A share of the traffic with its own priority and first-token target (schedulers `priority` and `edf`).

    Classes are interleaved deterministically: request i belongs to the class whose cumulative-fraction interval
    holds frac(i x golden ratio), so every stretch of the run carries each class in its proportion."""

    name: str = Field(min_length=1)
    fraction: float = Field(gt=0.0, le=1.0, description="share of the requests")
    priority: int = Field(0, description="lower is served first (vLLM's convention)")
    ttft_slo_s: PositiveFloat | None = Field(None, description="first-token deadline after arrival; default: the "
                                             "scenario's slos.ttft_s")


class CachedPrompts(StrictModel):
    """The first `tokens` tokens of token streams 0 .. `requests` - 1 (see TextPrefixSpec): what an earlier run of
    the same client sent (its prompts, `requests` of `tokens` each), or the client's own test prompt."""

    requests: PositiveInt
    tokens: PositiveInt
    output_tokens: NonNegativeInt = Field(0, description="tokens each of those requests generated: their full KV "
                                          "blocks were cached too and, freed first, evicted before the prompt's "
                                          "(lvlmsim.engine.prefix)")


class TextPrefixSpec(StrictModel):
    """Text prompts that share token prefixes, as a prefix cache sees them (serving.prefix_caching).

    A benchmark client's random dataset builds request i's prompt as the first L tokens of a token stream fixed by
    i and the client's seed (vLLM's RandomDataset: tokens (offset_i + i + j) mod vocab, offset_i the i-th draw of
    the seeded generator; SGLang's random dataset likewise), so the prompts of index i in two runs of the same seed
    share the shorter one's tokens. Request i of this workload is stream i. `cached` lists the streams' tokens the
    server's prefix cache holds when the run starts, oldest first: the prompts of earlier runs of the same session
    (same client, seed and server) and the client's test prompt. Text-only requests (no images, no video, no
    sessions): a prompt with images is not a prefix of a stream."""

    cached: list[CachedPrompts] = Field(default_factory=list)


MAX_REQUESTS = 10**9  # a count checked before anything is generated: 10^9 requests is days of simulation already
MAX_REQUEST_TOKENS = 10_000_000  # past the longest context any model has (10M); bounds what is allocated per request
# Latest arrival time, s (32 years): float64 spaces times 0.12 us apart there, still far below a decode step.
MAX_ARRIVAL_S = 1e9
# Seconds of one video clip (116 days): every model's sampling caps the frames long before this; the bound keeps
# duration x fps and Qwen3-VL's timestamp text finite.
MAX_VIDEO_S = 1e7

# Per-request counts a distribution may describe, each at most MAX_REQUEST_TOKENS (an image is at least one token):
# a larger value overflowed the int64 the engine rounds samples to (a negative output throughput was printed).
_COUNT_FIELDS = (("prompt_tokens", "tokens"), ("output_tokens", "tokens"), ("images", "images"))
_DIST_NUMBERS = ("value", "low", "high", "mean", "std", "min", "max")


def dist_out_of_range(dist: Any, hi: float) -> str | None:
    """The first parameter of `dist` whose magnitude exceeds `hi` ('mean 1e+20'), or None."""
    for name in _DIST_NUMBERS:
        v = getattr(dist, name, None)
        if v is not None and abs(v) > hi:
            return f"{name} {v:g}"
    for v in getattr(dist, "values", None) or ():
        if abs(v) > hi:
            return f"values item {v:g}"
    return None


class WorkloadSpec(StrictModel):
    requests: PositiveInt | None = Field(
        None, le=MAX_REQUESTS,
        description="requests to generate, all turns of all sessions counted; default 1000, or every trace row"
    )
    arrival: Arrival = Field(default_factory=lambda: PoissonArrival(rate_rps=1.0))
    prompt_tokens: Dist = Field(default_factory=lambda: fixed(64), description="text tokens of the prompt")
    output_tokens: Dist = Field(default_factory=lambda: fixed(128), description="tokens generated")
    images: Dist = Field(default_factory=lambda: fixed(1), description="images per request (first turn)")
    image_size: Annotated[list[ImageSizeChoice], BeforeValidator(_one_or_many)] = Field(
        default_factory=lambda: [ImageSizeChoice(width=336, height=336)], min_length=1
    )
    image_content: Literal["photo-jpeg", "random-jpeg", "random-png", "blank-jpeg", "blank-png"] = Field(
        "photo-jpeg", description="what the images are, as sent (content-format): photos, or a benchmark client's "
        "synthetic random or blank pixels as JPEG or PNG; picks the host's measured decode table (lvlmsim.cost.host)")
    video: VideoSpec | None = None
    session: SessionSpec | None = None
    duration_s: PositiveFloat | None = Field(None, description="no arrivals after this simulated time")
    max_concurrency: Annotated[PositiveInt | None, BeforeValidator(_inf_is_none)] = Field(
        None, description="at most this many requests in flight (sent, not finished); a request whose arrival time "
        "has come waits for a free slot, as `--max-concurrency` of vllm bench serve and sglang.bench_serving does; "
        "latencies count from when it is sent. None or 'inf': no cap"
    )
    classes: list[RequestClass] = Field(default_factory=list, description="request classes; empty: one class")
    text_prefix: TextPrefixSpec | None = Field(
        None, description="request i's prompt is the first prompt_tokens tokens of token stream i (a benchmark "
        "client's random dataset) and `cached` says what the server's prefix cache holds of those streams when the "
        "run starts; a server with serving.prefix_caching reuses it (None: every prompt is unique)")
    warmup_requests: NonNegativeInt = Field(
        0, description="the first N requests sent are warm-up: simulated, but left out of every metric; throughput "
        "counts from the first measured request's send time"
    )

    @field_validator("image_size")
    @classmethod
    def _nonempty(cls, v: list) -> list:
        if not v:
            raise ValueError("needs at least one size")
        return v

    @model_validator(mode="after")
    def _classes(self):
        if self.classes:
            total = sum(c.fraction for c in self.classes)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"classes: fractions must sum to 1, got {total:g}")
            names = [c.name for c in self.classes]
            if len(set(names)) != len(names):
                raise ValueError(f"classes: names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _counts_in_range(self):
        for name, unit in _COUNT_FIELDS:
            dist = getattr(self, name)
            if isinstance(dist, FixedDist) and dist.value < 0:  # sampled counts are clipped; a fixed one is a typo
                raise ValueError(f"{name}: a fixed count must be >= 0 {unit}, got {dist.value:g}")
            bad = dist_out_of_range(dist, MAX_REQUEST_TOKENS)
            if bad:
                raise ValueError(f"{name}: {bad} is out of range; allowed: at most {MAX_REQUEST_TOKENS:g} {unit} per "
                                 "request (past the longest context of any model)")
        if self.video is not None:
            bad = dist_out_of_range(self.video.duration_s, MAX_VIDEO_S)
            if bad:
                raise ValueError(f"video.duration_s: {bad} is out of range; allowed: at most {MAX_VIDEO_S:g} s")
        return self

    @model_validator(mode="after")
    def _closed_loop(self):
        closed = isinstance(self.arrival, ConcurrencyArrival) or self.max_concurrency is not None
        if closed and self.session is not None:
            raise ValueError("max_concurrency / arrival kind 'concurrency': not combined with chat sessions "
                             "(a session's later turns are closed-loop already)")
        if self.requests is not None and self.warmup_requests >= self.requests:
            raise ValueError(f"warmup_requests: {self.warmup_requests} leaves none of the {self.requests} requests "
                             "to measure")
        return self

    @model_validator(mode="after")
    def _text_prefix(self):
        if self.text_prefix is None:
            return self
        images = self.images
        if not (isinstance(images, FixedDist) and images.value == 0) or self.video is not None:
            raise ValueError("text_prefix: needs text-only requests (images: 0, no video): a prompt with images is "
                             "not a prefix of a token stream")
        if self.session is not None or isinstance(self.arrival, TraceArrival):
            raise ValueError("text_prefix: not with chat sessions or trace replay (their prompts are not the token "
                             "streams of a benchmark client's random dataset)")
        return self

    @property
    def concurrency_cap(self) -> int | None:
        """Requests in flight at most: the clients of a closed loop, `max_concurrency`, the smaller of both."""
        caps = [c for c in (getattr(self.arrival, "clients", None), self.max_concurrency) if c is not None]
        return min(caps) if caps else None

    @property
    def is_trace(self) -> bool:
        return isinstance(self.arrival, TraceArrival)


__all__ = [
    "MAX_ARRIVAL_S", "MAX_RATE_RPS", "MAX_REQUEST_TOKENS", "MAX_VIDEO_S",
    "Arrival", "CachedPrompts", "ConcurrencyArrival", "ConstantArrival", "Dist", "EmpiricalDist", "FixedDist",
    "GammaArrival", "ImageSizeChoice", "LogNormalDist", "NormalDist", "PoissonArrival", "RequestClass", "SessionSpec",
    "TextPrefixSpec", "TraceArrival", "UniformDist", "VideoSpec", "WorkloadSpec", "fixed",
]
