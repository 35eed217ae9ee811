"""`lvlmsim bench`: what `vllm bench serve` or `sglang.bench_serving` would report for a run, simulated.

A BenchArgs holds the client's flags; `bench_scenario` turns them into a Scenario (the client's arrival process and
request mix, the server's knobs), `run_bench` simulates it and computes the client's result from the per-request
table with the client's own definitions (vllm/benchmarks/serve.py calculate_metrics):

* duration: from the first send to the last completion; throughputs divide by it.
* total_input_tokens: the prompt tokens the client counts: text only for vLLM (its prompt_len), text + vision tokens
  for SGLang (it reports both and sums them); total_token_throughput = (input + output) / duration.
* TTFT, E2EL per completed request; TPOT = (E2EL - TTFT) / (output tokens - 1) over requests with more than one
  output token; ITL pooled over every token gap (the engine's step-level ITL, see lvlmsim.engine.metrics).
* mean / median / std / p99 as numpy computes them (np.mean, np.median, np.std, np.percentile); ITL has no std (the
  engine keeps ITL as weighted step gaps, not per token). All four metrics are reported, as vLLM does with
  `--percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 99` (its default leaves E2EL out).
* Not reported: vLLM's peak output throughput and peak concurrent requests, SGLang's retokenized counts and its
  "Concurrency" line.

Client-side warm-up requests (SGLang's default 1, vLLM's initial test prompt) run before the timed run and are not
simulated as requests. What they leave in the server's prefix cache is: vLLM's client sends its first prompt,
input_requests[0], once before the timed run (benchmark_serving.py / vllm/benchmarks/serve.py, "Starting initial
single prompt test run"), so on a server with prefix caching (vLLM V1's default) request 0 of a random-dataset run
finds its whole prompt cached but the last block. `prior_runs` adds what earlier runs of the same client sent to
the same server (a sweep run one after another): the random dataset makes request i's prompt a prefix of one token
stream per index and seed (lvlmsim.specs.workload.TextPrefixSpec), so a run's prompts find the earlier runs' shorter
prompts of the same index cached. Without `--ignore-eos` a real server may stop before the requested output
length; lvlmsim always generates the full length, so compare runs made with `--ignore-eos`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lvlmsim.bench.clients import CLIENTS, DEFAULTS, check_client, image_sizes, length_bounds, uniform_int_dist
from lvlmsim.bench.datasets import dataset_ids, load_dataset
from lvlmsim.errors import SpecError
from lvlmsim.specs.workload import MAX_RATE_RPS, MAX_REQUESTS

SYNTHETIC = ("random", "random-image")
ALIASES = {"random-mm": "random-image", "image": "random-image"}  # vLLM's and SGLang's names for the same thing
METRICS = ("ttft", "tpot", "itl", "e2el")


@dataclass(frozen=True)
class BenchArgs:
    """The flags of one benchmark run; None means the client's default (lvlmsim.bench.clients.DEFAULTS)."""

    model: str
    hardware: str
    client: str = "vllm"
    runtime: str | None = None  # the server; None: the client's own (vllm or sglang)
    tp: int = 1
    ep: int | None = None
    dataset_name: str = "random"
    num_prompts: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    random_input_len: int | None = None
    random_output_len: int | None = None
    random_range_ratio: float | None = None
    special_tokens: int = 0
    image_count: int = 1
    image_resolution: str | None = None  # None: the client's own default images (clients.DEFAULT_IMAGES)
    image_content: str = "random"  # sglang --image-content random | blank (vLLM's random-mm: random)
    image_format: str = "jpeg"  # sglang --image-format jpeg | png (vLLM's random-mm: JPEG)
    ignore_eos: bool = False
    seed: int | None = None
    serving: dict = field(default_factory=dict)
    # (random input len, num prompts[, random output len]) of earlier runs, oldest first
    prior_runs: tuple[tuple[int, ...], ...] = ()

    @property
    def dataset(self) -> str:
        name = ALIASES.get(self.dataset_name, self.dataset_name)
        allowed = (*SYNTHETIC, *dataset_ids())
        if name not in allowed:
            raise SpecError(f"--dataset-name: unknown dataset '{self.dataset_name}'; allowed: {', '.join(allowed)} "
                            f"(aliases: {', '.join(f'{k}={v}' for k, v in ALIASES.items())})")
        return name


def parse_request_rate(text: str) -> float:
    """`--request-rate` as the clients take it: requests/s > 0, or inf (every request at t = 0)."""
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"--request-rate: expected requests/s or inf, got '{text}'") from None
    if not value > 0 or math.isnan(value):
        raise SpecError(f"--request-rate: must be > 0 requests/s or inf, got '{text}'")
    if math.isinf(value) and text.strip().lower().lstrip("+") not in ("inf", "infinity"):  # '1e400' overflowed
        raise SpecError(f"--request-rate: '{text}' is past the largest finite number; give a finite rate, or inf "
                        "for every request at t = 0")
    return value


def parse_max_concurrency(text: str | None) -> int | None:
    """`--max-concurrency`: a whole number >= 1, or inf / none (or not given) for no cap (None)."""
    if text is None or text.strip().lower() in ("inf", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise SpecError(f"--max-concurrency: expected a whole number of requests or inf, got '{text}'") from None
    if value < 1:
        raise SpecError(f"--max-concurrency: must be >= 1 or inf, got {value}")
    return value


def _arrival(a: BenchArgs, n: int) -> dict:
    """The clients' pacing: rate inf sends everything at t = 0 (the cap then paces it: a closed loop); a finite rate
    is a Poisson process, or gamma gaps of shape `burstiness` (vLLM's --burstiness; cv = 1/sqrt(burstiness))."""
    if not (a.request_rate > 0 and (a.request_rate <= MAX_RATE_RPS or math.isinf(a.request_rate))):
        raise SpecError(f"--request-rate: must be in (0, {MAX_RATE_RPS:g}] requests/s or inf, got {a.request_rate:g}")
    if not (a.burstiness > 0 and math.isfinite(a.burstiness)):
        raise SpecError(f"--burstiness: must be a finite number > 0 (1 = Poisson), got {a.burstiness}")
    if math.isinf(a.request_rate):
        return {"kind": "concurrency", "clients": min(a.max_concurrency or n, n)}
    if a.burstiness == 1.0:
        return {"kind": "poisson", "rate_rps": a.request_rate}
    return {"kind": "gamma", "rate_rps": a.request_rate, "cv": 1.0 / math.sqrt(a.burstiness)}


def _request_mix(a: BenchArgs, client: str) -> dict:
    """Prompt/output lengths and images per request, by the client's semantics (synthetic) or the dataset's YAML."""
    d = DEFAULTS[client]
    name = a.dataset
    if name in SYNTHETIC:
        ratio = d.range_ratio if a.random_range_ratio is None else a.random_range_ratio
        lo, hi = length_bounds(client, _given(a.random_input_len, d.input_len), ratio, special_tokens=a.special_tokens)
        olo, ohi = length_bounds(client, _given(a.random_output_len, d.output_len), ratio, output=True)
        mix = {"prompt_tokens": uniform_int_dist(lo, hi), "output_tokens": uniform_int_dist(olo, ohi), "images": 0}
        if name == "random-image":
            if a.image_count < 0:
                raise SpecError(f"--image-count: must be >= 0, got {a.image_count}")
            mix.update(images=a.image_count, image_size=image_sizes(client, a.image_resolution),
                       image_content=_image_content(a, client))
        return mix
    ds = load_dataset(name)
    mix = {"prompt_tokens": ds.prompt_tokens.model_dump(), "output_tokens": ds.output_tokens.model_dump(),
           "images": ds.images.model_dump(), "image_size": [c.model_dump() for c in ds.image_size]}
    if a.random_output_len is not None:  # the clients' --sharegpt-output-len / --hf-output-len: a fixed length
        if a.random_output_len < 1:
            raise SpecError(f"--random-output-len: must be >= 1 token, got {a.random_output_len}")
        mix["output_tokens"] = a.random_output_len
    return mix


def _given(value: int | None, default: int) -> int:
    """A flag's value, or the client's default when it was not given (0 is a value, refused by length_bounds)."""
    return default if value is None else value


def _image_content(a: BenchArgs, client: str) -> str:
    """The synthetic images' content-format (workload.image_content), whose decode the host's table prices. Both
    clients draw uniform random pixels by default; SGLang can send blank (white) ones and PNGs, vLLM sends JPEGs."""
    content, fmt = a.image_content.strip().lower(), a.image_format.strip().lower()
    if content not in ("random", "blank"):
        raise SpecError(f"--image-content: unknown content '{a.image_content}'; allowed: random, blank")
    if fmt not in ("jpeg", "png"):
        raise SpecError(f"--image-format: unknown format '{a.image_format}'; allowed: jpeg, png")
    if client == "vllm" and (content, fmt) != ("random", "jpeg"):
        raise SpecError("--image-content/--image-format: vllm's random-mm sends random-pixel JPEGs; allowed with "
                        "--client vllm: random, jpeg")
    return f"{content}-{fmt}"


def _server_defaults(serving: dict, hardware: str) -> dict:
    """The knobs the server picks by itself on this device (lvlmsim.cost.host.server_defaults) for the runtime
    version the run names (serving.host_costs as a profile name, else the runtime's current version); the run's
    own serving values override them. A runtime lvlmsim has no host profile for picks none."""
    from lvlmsim.cost.host import host_profile_names, server_defaults
    from lvlmsim.specs.registry import load_hardware

    version = serving.get("host_costs")
    name = version if isinstance(version, str) else serving.get("runtime")
    if not isinstance(name, str) or name.strip().lower() not in host_profile_names():
        return {}
    return server_defaults(name, load_hardware(hardware))


def bench_scenario(a: BenchArgs) -> dict:
    """The Scenario (as a dict) that this benchmark run is."""
    client = check_client(a.client)
    d = DEFAULTS[client]
    n = a.num_prompts if a.num_prompts is not None else d.num_prompts
    if not 1 <= n <= MAX_REQUESTS:  # named here, not as the scenario's workload.requests
        raise SpecError(f"--num-prompts: must be in [1, {MAX_REQUESTS:g}], got {n}")
    if a.max_concurrency is not None and a.max_concurrency < 1:
        raise SpecError(f"--max-concurrency: must be >= 1 or inf, got {a.max_concurrency}")
    serving = {"tp": a.tp, "runtime": client if a.runtime is None else a.runtime, **a.serving}  # '' is refused
    serving = {**_server_defaults(serving, a.hardware), **serving}
    if a.ep is not None:  # serving.ep: the server's --enable-expert-parallel degree (a MoE model; divides tp)
        serving["ep"] = a.ep
    workload = {"requests": n, "arrival": _arrival(a, n), **_request_mix(a, client)}
    text_prefix = _text_prefix(a, client, workload["prompt_tokens"], workload["output_tokens"])
    if text_prefix is not None:
        workload["text_prefix"] = text_prefix
    if a.max_concurrency is not None and not math.isinf(a.request_rate):
        workload["max_concurrency"] = a.max_concurrency
    seed = a.seed if a.seed is not None else d.seed
    return {"id": f"bench-{client}-{a.dataset}", "model": a.model, "hardware": a.hardware, "seed": seed,
            "workload": workload, "serving": serving}


def _text_prefix(a: BenchArgs, client: str, prompt: dict, output: dict | int) -> dict | None:
    """What the server's prefix cache holds of the run's token streams when the timed run starts (module docstring):
    the prompts of `prior_runs`, then vLLM's test prompt (request 0's own prompt: its stream up to the longest length
    the client can draw, generating the run's output length). A prior run's output length (its third field, default
    0) is what its requests' generated blocks took of the cache. None for a dataset whose prompts are not token
    streams (images, real datasets)."""
    if a.dataset != "random":
        if a.prior_runs:
            raise SpecError("prior_runs: earlier runs share prompt prefixes only in the random (text) dataset; got "
                            f"--dataset-name {a.dataset_name}")
        return None
    ratio = DEFAULTS[client].range_ratio if a.random_range_ratio is None else a.random_range_ratio
    if a.prior_runs and ratio != 0:
        raise SpecError("prior_runs: needs --random-range-ratio 0: the clients draw the lengths before the token "
                        "offsets, so any other ratio gives every run different prompts")
    cached = []
    for k, run in enumerate(a.prior_runs):
        if len(run) not in (2, 3) or any(not isinstance(v, int) or v < 1 for v in run):
            raise SpecError(f"prior_runs[{k}]: expected (random input len, num prompts[, random output len]), each "
                            f">= 1, got {run!r}")
        lo, _ = length_bounds(client, run[0], 0.0, special_tokens=a.special_tokens)
        cached.append({"requests": run[1], "tokens": lo, "output_tokens": run[2] if len(run) == 3 else 0})
    if client == "vllm":
        cached.append({"requests": 1, "tokens": int(prompt.get("max", prompt.get("value", 1))),
                       "output_tokens": _longest(output)})
    return {"cached": cached}


def _longest(dist: dict | int) -> int:
    """The longest length a workload distribution (or a fixed int) draws."""
    if isinstance(dist, dict):
        return int(dist.get("max", dist.get("value", 0)))
    return int(dist)


def _ms_stats(values: np.ndarray, name: str) -> dict:
    v = np.asarray(values, dtype=float) * 1000.0
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"mean_{name}_ms": 0.0, f"median_{name}_ms": 0.0, f"std_{name}_ms": 0.0, f"p99_{name}_ms": 0.0}
    return {f"mean_{name}_ms": float(v.mean()), f"median_{name}_ms": float(np.median(v)),
            f"std_{name}_ms": float(v.std()), f"p99_{name}_ms": float(np.percentile(v, 99))}


def client_result(res, a: BenchArgs) -> dict:
    """The client's saved-result JSON (vLLM's keys), computed from a SimulationResult with the client's rules."""
    client = check_client(a.client)
    df = res.requests
    done = df[df.status == "completed"]
    duration = float(res.summary["span_s"])
    text_in = int(done.prompt_tokens.sum())
    vision_in = int(done.visual_tokens.sum())
    total_in = text_in + (vision_in if client == "sglang" else 0)
    total_out = int(done.output_tokens.sum())
    n = int(res.meta.get("requests_planned", len(df)))
    backend = client if a.runtime is None else a.runtime
    out = {
        "date": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"), "backend": backend, "client": client,
        "model_id": a.model, "tokenizer_id": a.model, "hardware": a.hardware, "num_prompts": n,
        "request_rate": a.request_rate if math.isfinite(a.request_rate) else "inf", "burstiness": a.burstiness,
        "max_concurrency": a.max_concurrency, "duration": duration, "completed": len(done),
        "failed": int((df.status == "rejected").sum()), "total_input_tokens": total_in,
        "total_output_tokens": total_out, "request_throughput": len(done) / duration if duration else 0.0,
        "output_throughput": total_out / duration if duration else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration else 0.0,
    }
    if client == "sglang":
        out.update(total_input_text_tokens=text_in, total_input_vision_tokens=vision_in)
    out.update(_ms_stats(done.ttft_s.to_numpy(), "ttft"))
    multi = done[done.output_tokens > 1]
    out.update(_ms_stats(multi.tpot_s.to_numpy(), "tpot"))
    itl = res.summary["itl_s"]
    out.update({"mean_itl_ms": (itl["mean"] or 0.0) * 1000.0, "median_itl_ms": (itl["p50"] or 0.0) * 1000.0,
                "p99_itl_ms": (itl["p99"] or 0.0) * 1000.0})
    out.update(_ms_stats(done.e2e_s.to_numpy(), "e2el"))
    return out


@dataclass
class BenchResult:
    args: BenchArgs
    result: dict
    simulation: object
    notes: list[str]

    def to_dict(self) -> dict:
        return {**self.result, "lvlmsim": {"scenario": self.simulation.meta, "notes": self.notes,
                                           "args": {k: v for k, v in asdict(self.args).items() if k != "serving"}}}


def run_bench(a: BenchArgs, *, profile=None) -> BenchResult:
    """Simulate the benchmark run and compute what the client would print."""
    from lvlmsim.engine.api import simulate

    sc = bench_scenario(a)
    res = simulate(sc, profile=profile)
    res.check_servable()
    notes = [res.rejection_text()] if res.rejection_text() else []
    notes += _transfer_notes(res, profile)
    if not a.ignore_eos:
        notes.append("without --ignore-eos a real server may stop answers early; lvlmsim generates every requested "
                     "token, so compare with runs made with --ignore-eos")
    if a.dataset not in SYNTHETIC:
        notes.append(f"dataset '{a.dataset}' is a distribution (workloads/datasets/{a.dataset}.yaml); "
                     "see its sources for which numbers are measured and which are assumed")
    return BenchResult(a, client_result(res, a), res, notes)


def _transfer_notes(res, profile) -> list[str]:
    """A warning per pool device the device-general model prices outside every category it was fitted on."""
    from lvlmsim.calibrate.profiles import transfer_notes

    return transfer_notes([p["hardware"] for p in res.meta.get("pools") or []],
                          profile if profile is not None else res.scenario.profile)


# ------------------------------------------------------------------------------------------------ printing, compare
_LINE = 50


def _row(label: str, value) -> str:
    if isinstance(value, float):
        return f"{label:<40} {value:<10.2f}"
    return f"{label:<40} {value!s:<10}"


def _rule(title: str) -> str:
    return f"{title:-^{_LINE}}"


def summary_block(r: dict) -> str:
    """The block `vllm bench serve` prints at the end of a run, with the same labels and number formats."""
    lines = [f"{' Serving Benchmark Result ':=^{_LINE}}", _row("Successful requests:", r["completed"]),
             _row("Failed requests:", r["failed"])]
    if r.get("max_concurrency") is not None:
        lines.append(_row("Maximum request concurrency:", r["max_concurrency"]))
    if r.get("request_rate") not in (None, "inf"):
        lines.append(_row("Request rate configured (RPS):", float(r["request_rate"])))
    lines += [_row("Benchmark duration (s):", r["duration"]), _row("Total input tokens:", r["total_input_tokens"]),
              _row("Total generated tokens:", r["total_output_tokens"]),
              _row("Request throughput (req/s):", r["request_throughput"]),
              _row("Output token throughput (tok/s):", r["output_throughput"]),
              _row("Total Token throughput (tok/s):", r["total_token_throughput"])]
    titles = {"ttft": ("Time to First Token", "TTFT"), "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
              "itl": ("Inter-token Latency", "ITL"), "e2el": ("End-to-end Latency", "E2EL")}
    for m in METRICS:
        title, short = titles[m]
        lines.append(_rule(title))
        lines += [_row(f"Mean {short} (ms):", r[f"mean_{m}_ms"]), _row(f"Median {short} (ms):", r[f"median_{m}_ms"]),
                  _row(f"P99 {short} (ms):", r[f"p99_{m}_ms"])]
    lines.append("=" * _LINE)
    return "\n".join(lines)


# SGLang's saved keys that name the same figure as vLLM's
_SGLANG_KEYS = {"mean_e2e_latency_ms": "mean_e2el_ms", "median_e2e_latency_ms": "median_e2el_ms",
                "p99_e2e_latency_ms": "p99_e2el_ms", "std_e2e_latency_ms": "std_e2el_ms",
                "total_throughput": "total_token_throughput"}
COMPARED = ("duration", "completed", "total_input_tokens", "total_output_tokens", "request_throughput",
            "output_throughput", "total_token_throughput", *(f"{s}_{m}_ms" for m in METRICS
                                                            for s in ("mean", "median", "p99")))


def read_result(path: str | Path, want: dict | None = None) -> dict:
    """A real client's result: vLLM's saved JSON, or one run of SGLang's JSONL; SGLang key names mapped. `want`
    (run_settings) picks the run of a file that holds several (pick_result); without it, the last one."""
    return pick_result(path, want)[0]


def pick_result(path: str | Path, want: dict | None = None) -> tuple[dict, list[str]]:
    """The run of a result file to compare with, and notes on it. SGLang appends one line per run to its output
    file (and vLLM with --append-result), so a file can hold a sweep: the run compared is the last one whose
    recorded settings (request_rate, max_concurrency, num_prompts; SGLang's random lengths) are this run's, and a
    file of several runs none of which is this one is refused. A single run is compared whatever its settings, with
    a note naming each that differs, as is a result of the other client (their lengths and token counts differ)."""
    if not str(path).strip():
        raise SpecError("--compare: empty path; give a vLLM result JSON or an SGLang JSONL file")
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"--compare: {p} is a directory; give a vLLM result JSON or an SGLang JSONL file")
    if not p.is_file():
        raise SpecError(f"--compare: file not found: {p}")
    runs = _result_docs(p)
    notes: list[str] = []
    index = len(runs) - 1
    if want is not None:
        misses = [_mismatches(doc, want) for doc in runs]
        if len(runs) > 1:
            index = _matching_run(p, runs, misses, want)
            notes.append(f"compared with run {index + 1} of {len(runs)} in {p} ({_settings(runs[index])})")
        elif misses[0]:
            notes.append(f"{p} was run with other settings than this run: {'; '.join(misses[0])}")
        other = _client_of(runs[index])
        if other is not None and other != want.get("client"):
            notes.append(f"{p} is a {other} client's result and this run simulates --client {want.get('client')}: "
                         f"the clients draw lengths and count input tokens differently; rerun with --client {other}")
    return _checked(p, runs[index]), notes


def _checked(p: Path, doc: dict) -> dict:
    """The run with SGLang's key names mapped to vLLM's; every compared figure a finite number >= 0 (or absent)."""
    out = dict(doc)
    for k, v in doc.items():
        if k in _SGLANG_KEYS and _SGLANG_KEYS[k] not in doc:
            out[_SGLANG_KEYS[k]] = v
    if not any(k in out for k in COMPARED):
        raise SpecError(f"--compare: {p} has none of the result keys ({', '.join(COMPARED[:5])}, ...)")
    for k in COMPARED:  # a figure the client wrote must be one: a string or NaN would vanish from the table unseen
        v = out.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0):
            raise SpecError(f"--compare: {p}: {k}: expected a finite number >= 0 (or null), got {v!r}")
    return out


def _result_docs(p: Path) -> list[dict]:
    """Every run in a result file: vLLM's JSON object, or one JSON object per line (SGLang's JSONL, vLLM's
    --append-result)."""
    try:
        text = p.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise SpecError(f"--compare: {p} is not text (not UTF-8); expected a vLLM result JSON or an SGLang JSONL "
                        "result") from None
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:
        docs = []
        for ln in (ln for ln in text.splitlines() if ln.strip()):
            try:
                docs.append(json.loads(ln))
            except json.JSONDecodeError:
                docs.append(None)
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise SpecError(f"--compare: {p} is not a vLLM result JSON or an SGLang JSONL result")
    return docs


def run_settings(a: BenchArgs) -> dict:
    """What a client's result file records of a run, as this run has it: the settings pick_result matches on."""
    client = check_client(a.client)
    d = DEFAULTS[client]
    want = {"client": client, "request_rate": a.request_rate, "max_concurrency": a.max_concurrency,
            "num_prompts": a.num_prompts if a.num_prompts is not None else d.num_prompts}
    if a.dataset in SYNTHETIC:
        want.update(random_input_len=_given(a.random_input_len, d.input_len),
                    random_output_len=_given(a.random_output_len, d.output_len))
    return want


def _rate_of(value) -> float | None:
    """A recorded request rate: a number, or "inf" (vLLM) / Infinity (SGLang); None when there is none to match
    ("trace", absent)."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _mismatches(doc: dict, want: dict) -> list[str]:
    """Each setting the file records that differs from this run's, as 'name file (this run x)'."""
    out = []
    rate = _rate_of(doc.get("request_rate"))
    if rate is not None and not (rate == want["request_rate"] or math.isclose(rate, want["request_rate"])):
        out.append(f"request_rate {rate:g} (this run {want['request_rate']:g})")
    keys = ["max_concurrency", "num_prompts"]
    if str(doc.get("dataset_name", "")).startswith(("random", "image")) and "random_input_len" in want:
        keys += ["random_input_len", "random_output_len"]  # SGLang records them, for every dataset
    for k in keys:
        if k in doc and doc[k] != want.get(k):
            out.append(f"{k} {doc[k]} (this run {want.get(k)})")
    return out


def _settings(doc: dict) -> str:
    rate = _rate_of(doc.get("request_rate"))
    parts = [f"request_rate {rate:g}" if rate is not None else None, f"max_concurrency {doc.get('max_concurrency')}"]
    parts += [f"{k} {doc[k]}" for k in ("num_prompts", "random_input_len", "random_output_len") if k in doc]
    return ", ".join(p for p in parts if p)


def _matching_run(p: Path, runs: list[dict], misses: list[list[str]], want: dict) -> int:
    """The index of the last run with this run's settings; none is a one-line error listing the file's runs."""
    hits = [i for i, m in enumerate(misses) if not m]
    if hits:
        return hits[-1]
    listed = "; ".join(f"{i + 1}: {_settings(d)}" for i, d in enumerate(runs[:8]))
    more = f"; ... {len(runs) - 8} more" if len(runs) > 8 else ""
    rate = want["request_rate"]
    raise SpecError(f"--compare: {p} holds {len(runs)} runs and none was run with this run's settings (request_rate "
                    f"{rate:g}, max_concurrency {want['max_concurrency']}, num_prompts {want['num_prompts']}); its "
                    f"runs: {listed}{more}")


# keys only one client writes (lvlmsim's own result names its client)
_CLIENT_KEYS = {"sglang": ("mean_e2e_latency_ms", "total_output_tokens_retokenized", "total_throughput"),
                "vllm": ("mean_e2el_ms", "tokenizer_id", "burstiness")}


def _client_of(doc: dict) -> str | None:
    if doc.get("client") in CLIENTS:
        return doc["client"]
    for client, keys in _CLIENT_KEYS.items():
        if any(k in doc for k in keys):
            return client
    return None


def compare(sim: dict, real: dict) -> list[dict]:
    """Rows of (metric, lvlmsim, real, % difference of lvlmsim from real) for every figure both results have."""
    rows = []
    for k in COMPARED:
        a, b = sim.get(k), real.get(k)
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            continue
        diff = (a - b) / b * 100.0 if b else None
        rows.append({"metric": k, "lvlmsim": float(a), "real": float(b), "diff_pct": diff})
    return rows


def compare_block(rows: list[dict]) -> str:
    lines = [f"{'metric':<26} {'lvlmsim':>12} {'real':>12} {'diff':>9}"]
    for r in rows:
        diff = f"{r['diff_pct']:+.1f}%" if r["diff_pct"] is not None else "-"
        lines.append(f"{r['metric']:<26} {r['lvlmsim']:>12.2f} {r['real']:>12.2f} {diff:>9}")
    return "\n".join(lines)


__all__ = ["BenchArgs", "BenchResult", "bench_scenario", "client_result", "compare", "compare_block",
           "parse_max_concurrency", "parse_request_rate", "pick_result", "read_result", "run_bench", "run_settings",
           "summary_block"]
