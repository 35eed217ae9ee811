"""plan(): the cheapest configuration that serves a target rate within latency SLOs, and the trade-offs around it.

1. Enumerate candidates: hardware x tensor-parallel degree x layout (aggregated, or E/P/D pools in a ratio) x
   technique set. A candidate is one *replica*: one instance, or one set of pools in the layout's ratio.
2. Pre-screen with the analytic estimate (no simulation): TP must divide the heads and fit in a node, the largest
   request must fit in memory, and lower bounds on the SLO percentiles (a lone request on an idle replica, see
   :func:`latency_bounds`) must not already exceed the thresholds; a replica over --max-gpus is dropped too.
3. Capacity search per survivor with the discrete-event engine (lvlmsim.planner.capacity): the highest rate one
   replica sustains within the SLOs. Replicas needed = ceil(target / capacity); GPUs and $/hour follow.
   Scaling by replicas assumes the router spreads load evenly, so the cheapest candidates are then *verified*: the
   whole fleet is simulated at the target rate, adding a replica while it misses the SLOs.
4. Rank by $/hour; Pareto fronts: $/hour vs p90 latency, and output tokens/s per GPU vs tokens/s per user, both at
   the operating point (each replica carrying target / replicas).

Nothing meets the SLOs -> `recommended` is None and `verdict` says why (the CLI exits 1).
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lvlmsim.errors import InfeasibleError, LvlmsimError, SpecError
from lvlmsim.planner.capacity import (
    SLO_METRICS,
    SLO_PERCENTILES,
    SearchSettings,
    evaluate,
    parse_slos,
    search_task,
    settings_dict,
    slos_of_scenario,
)
from lvlmsim.planner.executors import check_executor, run_tasks
from lvlmsim.planner.progress import ProgressFn
from lvlmsim.planner.runs import scenario_payload
from lvlmsim.specs.inputs import number
from lvlmsim.specs.lists import split_items
from lvlmsim.specs.scenario import Scenario, load_scenario, scenario_from_dict
from lvlmsim.specs.serving import MAX_INSTANCES
from lvlmsim.specs.workload import MAX_RATE_RPS

DEFAULT_TP = (1, 2, 4, 8)
DEFAULT_LAYOUTS = ("agg", "E+PD:1:2", "EP+D:1:1", "E+P+D:1:1:2")
SPLITS = ("E+PD", "EP+D", "E+P+D")
MAX_VERIFY = 6  # fleet simulations spent confirming the cheapest candidates


@dataclass(frozen=True)
class Layout:
    """How one replica is laid out: `agg` (one colocated instance) or pools with instance counts, e.g. E+PD:1:2."""

    roles: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def aggregated(self) -> bool:
        return self.roles == ("EPD",)

    @property
    def label(self) -> str:
        return "agg" if self.aggregated else f"{'+'.join(self.roles)}:{':'.join(map(str, self.counts))}"

    def pools(self, tp: int, scale: int = 1, ep: int = 1) -> list[dict]:
        """PoolSpec dicts; the encoder pool runs at tp 1 (a ViT is small; tensor parallelism would only add comms);
        the LLM pools of a MoE model split their experts ep ways."""
        return [{"role": r, "name": r, "instances": c * scale, "tp": 1 if r == "E" else tp,
                 "ep": 1 if r == "E" else ep}
                for r, c in zip(self.roles, self.counts, strict=True)]

    def gpus(self, tp: int) -> int:
        return 1 * tp if self.aggregated else sum(p["instances"] * p["tp"] for p in self.pools(tp))


def parse_layout(text: str) -> Layout:
    """'agg' | 'E+PD[:a:b]' | 'EP+D[:a:b]' | 'E+P+D[:a:b:c]' (instance counts per pool, default 1 each)."""
    if not isinstance(text, str):  # a number had no .strip(): AttributeError traceback
        raise SpecError(f"layout: expected text such as agg or E+PD:1:2, got {text!r}")
    t = text.strip()
    if t in ("agg", "aggregated", "EPD"):
        return Layout(("EPD",), (1,))
    roles_s, _, counts_s = t.partition(":")
    if roles_s not in SPLITS:
        raise SpecError(f"layout: unknown '{text}'; allowed: agg, {', '.join(SPLITS)} with optional instance counts "
                        "per pool such as E+PD:1:2 or E+P+D:1:1:2")
    roles = tuple(roles_s.split("+"))
    try:
        counts = tuple(int(c) for c in counts_s.split(":")) if counts_s else (1,) * len(roles)
    except ValueError:
        raise SpecError(f"layout: '{text}': instance counts must be integers, e.g. {roles_s}:1:2") from None
    if len(counts) != len(roles) or any(c < 1 for c in counts):
        raise SpecError(f"layout: '{text}': give {len(roles)} positive instance counts, one per pool of {roles_s}")
    if max(counts) > MAX_INSTANCES:  # E+PD:1:1000000000 filled memory building the pools, without a word
        raise SpecError(f"layout: '{text}': at most {MAX_INSTANCES:,} instances per pool, got {max(counts):,}")
    return Layout(roles, counts)


def _split_list(v: str | Sequence | None, what: str = "list") -> list:
    """'a,b' or a sequence -> a list; an item given twice is refused (it would be searched twice), and so is an empty
    one ('1,,2': lvlmsim.specs.lists)."""
    if v is None:
        return []
    if isinstance(v, bytes | bytearray | dict):  # iterable, but of ints or keys: never a list of items
        raise SpecError(f"{what}: expected a comma-separated list or a sequence, got {v!r}")
    try:
        items = split_items(v, what) if isinstance(v, str) else list(v)
    except TypeError:
        raise SpecError(f"{what}: expected a comma-separated list or a sequence, got {v!r}") from None
    dup = next((x for i, x in enumerate(items) if x in items[:i]), None)
    if dup is not None:
        raise SpecError(f"{what}: '{dup}' is given twice")
    return items


@dataclass
class PlanResult:
    """What plan() found. `candidates`: one row per candidate (pruned ones with their reason), ranked feasible first.
    `pareto`: $/hour vs p90 latency front; `pareto_throughput`: tokens/s per GPU vs tokens/s per user front."""

    scenario_id: str
    target_rate: float
    slos: dict[str, float]
    recommended: dict | None
    verdict: str
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    pareto_throughput: pd.DataFrame
    stats: dict = field(default_factory=dict)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    scenario: Scenario | None = None  # the base scenario planned (names model, hardware, workload in outputs)

    @property
    def feasible(self) -> bool:
        return self.recommended is not None

    def by_hardware(self, prices: dict[str, float] | None = None) -> dict[str, dict]:
        """One row per GPU type (lvlmsim.planner.summary.by_hardware); `prices` overrides $/GPU-hour."""
        from lvlmsim.planner.summary import by_hardware

        return by_hardware(self.candidates, self.target_rate, prices)

    def deploy(self) -> dict[str, str] | None:
        """`vllm serve` / SGLang command lines for the recommendation (lvlmsim.planner.summary.deploy_commands)."""
        if self.scenario is None:
            return None
        from lvlmsim.engine.api import load_scenario_model
        from lvlmsim.planner.summary import deploy_commands

        return deploy_commands(self.recommended, load_scenario_model(self.scenario), self.scenario.serving)

    def to_dict(self) -> dict:
        from lvlmsim.specs.request_overrides import describe

        sc = self.scenario
        named = describe(sc, self.target_rate) if sc is not None else {"scenario": self.scenario_id}
        return {**named, "target_rate": self.target_rate, "slos": self.slos,
                "verdict": self.verdict, "recommended": self.recommended,
                "by_hardware": {k: {c: _clean(v) for c, v in row.items()} for k, row in self.by_hardware().items()},
                "deploy": self.deploy(),
                "candidates": json_rows(self.candidates), "pareto": json_rows(self.pareto),
                "pareto_throughput": json_rows(self.pareto_throughput), "stats": self.stats}


def _clean(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if hasattr(v, "item") and not isinstance(v, str | list | dict):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def json_rows(df: pd.DataFrame) -> list[dict]:
    """A frame as JSON-able records: NaN and NA become None, numpy scalars plain Python."""
    return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")]


# ---------------------------------------------------------------------------------------------- analytic pre-screen
class _Analytic:
    """Estimates for the pre-screen and the first probe, memoised per (hardware, tp, request shape)."""

    def __init__(self, sc: Scenario, percentiles: set[int]):
        from lvlmsim.engine.api import load_scenario_model
        from lvlmsim.engine.workload import generate

        self.sc = sc
        self.model = load_scenario_model(sc)
        wl_spec = sc.workload
        wl = generate(wl_spec, self.model, sc.seed, sc.resolve_data_path)
        reqs = [r for r in wl.requests if r.prompt_tokens + r.visual_tokens > 0]
        if not reqs:
            raise SpecError(f"scenario '{sc.id}': its workload has no requests to plan for")
        self.reqs = reqs
        prompt = np.array([r.prompt_tokens for r in reqs])
        out = np.array([r.output_tokens for r in reqs])
        vis_order = sorted(reqs, key=lambda r: (r.visual_tokens, sum(r.vit_seq_lens)))
        least_vis = vis_order[0]
        self.shapes: dict[int, list[tuple[int, Any, int]]] = {}
        for p in percentiles:
            # Quantile level a little under p: np.percentile interpolates, so a bound at exactly p could overshoot.
            q = max(p - 2, 0) / 100.0
            k = min(int(q * len(reqs)), len(reqs) - 1)
            self.shapes[p] = [
                (int(np.quantile(prompt, q, method="lower")), least_vis, 1),
                (int(prompt.min()), vis_order[k], 1),
                (int(prompt.min()), least_vis, int(np.quantile(out, q, method="lower"))),
            ]
        self.largest = max(reqs, key=lambda r: r.prompt_tokens + r.output_tokens + r.visual_tokens)
        med = vis_order[len(vis_order) // 2]
        self.mean_shape = (max(int(round(prompt.mean())), 1), med, max(int(round(out.mean())), 2))
        self._memo: dict = {}

    @staticmethod
    def _toks(r) -> list:
        from lvlmsim.ops.tokenization import ImageTokenization

        if not r.vit_seq_lens and not r.visual_tokens:
            return []
        return [ImageTokenization(0, 0, tuple(r.vit_seq_lens), r.visual_tokens, r.projector_in_tokens,
                                  "planner: a request of the workload")]

    def estimate(self, hw, tp: int, prompt: int, vis_req, out: int, batch: int = 1, ep: int = 1):
        key = (id(hw), tp, ep, prompt, id(vis_req), out, batch)
        if key not in self._memo:
            from lvlmsim.calibrate.profiles import resolve_profile
            from lvlmsim.estimate import estimate_request

            prof = resolve_profile(hw, self.sc.profile)
            self._memo[key] = estimate_request(self.model, hw, prompt_tokens=prompt, output_tokens=out,
                                               batch=batch, tp=tp, profile=prof, tokenizations=self._toks(vis_req),
                                               images=len(self._toks(vis_req)), ep=ep)
        return self._memo[key]

    def screen(self, hw, tp: int, slos: dict[str, float], techniques: list, ep: int = 1) -> tuple[str, dict]:
        """'' when the (hardware, tp, ep) may meet the SLOs, else the reason; plus the latency lower bounds."""
        from lvlmsim.cost.memory import check_ep, check_tp

        if tp > hw.max_devices_per_node:
            return f"tp {tp} exceeds the {hw.max_devices_per_node} devices of a {hw.id} node", {}
        try:
            check_tp(self.model, tp)
            check_ep(self.model, tp, ep)
        except InfeasibleError as exc:
            return str(exc), {}
        if techniques:
            # Techniques change tokens, bytes and dtypes: a bound without them would not be a bound. The engine decides.
            return "", {}
        try:
            big = self.largest
            est = self.estimate(hw, tp, big.prompt_tokens, big, max(big.output_tokens, 1), ep=ep)
        except LvlmsimError as exc:
            return str(exc), {}
        if not est.memory.fits:
            return f"largest request: {est.memory.verdict}", {}
        bounds = self.latency_bounds(hw, tp, {int(k.split('_p')[1]) for k in slos}, ep)
        for key, limit in slos.items():
            lb = bounds.get(key)
            if lb is not None and lb > limit:
                return (f"{key} >= {lb:.3g} s even for a lone request on an idle replica (SLO {limit:g} s)", bounds)
        return "", bounds

    def latency_bounds(self, hw, tp: int, percentiles: set[int], ep: int = 1) -> dict[str, float]:
        """Lower bounds on the p-th percentile of TTFT/TPOT/E2E.

        Each latency grows with prompt, visual and output tokens, and queueing only adds to it; so if at least
        (100-p)% of requests have prompt >= x, each of them takes at least the lone time of a request with prompt x
        and the least visual/output tokens of the workload. The bound is the largest over the three dimensions."""
        out: dict[str, float] = {}
        for p in percentiles:
            ests = [self.estimate(hw, tp, pr, vr, o, ep=ep) for pr, vr, o in self.shapes[p]]
            out[f"ttft_p{p}"] = max(e.ttft_s for e in ests)
            out[f"tpot_p{p}"] = max(e.tpot_s for e in ests)
            out[f"e2e_p{p}"] = max(e.e2e_s for e in ests)
        return out

    def guess(self, hw, tp: int, layout: Layout, max_num_seqs: int, ep: int = 1) -> float:
        """A rough capacity of one replica (requests/s) to start the search from: batch B of mean requests,
        B = what fits in KV (and max_num_seqs), pools limited by their slowest stage."""
        pr, vr, o = self.mean_shape
        one = self.estimate(hw, tp, pr, vr, o, ep=ep)
        b = max(1, min(max_num_seqs, one.memory.max_sequences or 1, 256))
        many = self.estimate(hw, tp, pr, vr, o, batch=b, ep=ep)
        st1, stb = one.stages, many.stages
        enc1 = st1["encode"].time_s
        pre1 = st1["prefill"].time_s
        dec_b = stb["decode"].time_s
        caps = []
        for role, n in zip(layout.roles, layout.counts, strict=True):
            if role == "EPD":
                caps.append(n * b / max(many.e2e_s, 1e-9))
            elif role == "E":
                caps.append(n / max(enc1, 1e-9) if enc1 > 0 else math.inf)
            elif role == "EP":
                caps.append(n / max(enc1 + pre1, 1e-9))
            elif role == "P":
                caps.append(n / max(pre1, 1e-9))
            elif role == "PD":
                caps.append(n * b / max(stb["prefill"].time_s + dec_b, 1e-9))
            elif role == "D":
                caps.append(n * b / max(dec_b, 1e-9))
        g = min(caps)
        return g if math.isfinite(g) and g > 0 else 1.0


# ----------------------------------------------------------------------------------------------------------- plan
def _tech_label(techs: list) -> str:
    """' +fastv:layer=2,keep=0.5' for a candidate's name ('' without techniques)."""
    parts = [t if isinstance(t, str) else ",".join(f"{k}={v}" for k, v in t.items()) for t in techs]
    return "".join(f" +{p}" for p in parts)


def _candidate_scenario(base: dict, hw: str, tp: int, layout: Layout, techniques: list, scale: int = 1,
                        ep: int = 1) -> dict:
    d = json.loads(json.dumps(base))
    d["hardware"] = hw
    d["techniques"] = list(techniques)
    serving = d["serving"]
    if layout.aggregated:
        serving.update(instances=scale, tp=tp, ep=ep, pools=[])
    else:
        serving.update(instances=1, tp=1, ep=1, pools=layout.pools(tp, scale, ep))
    return d


def _pareto(df: pd.DataFrame, x: str, y: str, x_max: bool = False, y_max: bool = False) -> pd.Series:
    """True where no other row is at least as good on both columns and better on one."""
    xs = df[x].to_numpy(dtype=float) * (-1 if x_max else 1)
    ys = df[y].to_numpy(dtype=float) * (-1 if y_max else 1)
    ok = np.isfinite(xs) & np.isfinite(ys)
    keep = np.zeros(len(df), dtype=bool)
    for i in range(len(df)):
        if not ok[i]:
            continue
        dominated = ok & (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        keep[i] = not dominated.any()
    return pd.Series(keep, index=df.index)


@dataclass
class PlanInputs:
    """plan()'s arguments, validated: every bad value is reported before anything runs."""

    sc: Scenario
    target: float
    slo: dict[str, float]
    hardware: dict[str, Any]  # id -> HardwareSpec, in the order given
    tps: list[int]
    layouts: list[Layout]
    tech_sets: list[list]
    max_gpus: int | None
    settings: SearchSettings
    pareto_latency: str
    eps: list[int] = field(default_factory=lambda: [1])

    @property
    def percentiles(self) -> set[int]:
        """SLO percentiles the pre-screen bounds (and the Pareto latency's, and p90 for the first probe)."""
        return ({50, 90, 99} & ({int(k.split("_p")[1]) for k in self.slo}
                                | {int(self.pareto_latency.split("_p")[1])})) | {90}


@dataclass
class Candidate:
    """One replica configuration: hardware x tensor-parallel degree x layout x technique set, and its table row
    (what the result's `candidates` frame shows: status, reason, capacity, fleet, cost, latencies)."""

    hw_id: str
    hardware: Any
    tp: int
    layout: Layout
    techniques: list
    row: dict[str, Any]
    ep: int = 1

    @property
    def name(self) -> str:
        return self.row["candidate"]

    @property
    def pruned(self) -> bool:
        return self.row.get("status") == "pruned"

    def prune(self, reason: str) -> None:
        self.row.update(status="pruned", reason=reason)


def plan(
    scenario: str | Scenario | dict | None = None,
    *,
    target_rate: float,
    slos: str | dict[str, float] | None = None,
    hardware: str | Sequence[str] | None = None,
    tp: Sequence[int] | str | None = None,
    ep: Sequence[int] | str | None = None,
    layouts: Sequence[str] | str | None = None,
    techniques: Sequence[Sequence[Any]] | None = None,
    max_gpus: int | None = None,
    settings: SearchSettings | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    verify: bool = True,
    exact: bool = False,
    pareto_latency: str = "ttft_p90",
    progress: ProgressFn | None = None,
    robust: bool = False,
    capacity_range: bool = False,
) -> PlanResult:
    """The cheapest configuration (hardware, TP, replicas, layout, techniques) serving `target_rate` within `slos`.

    `target_rate`: requests/s (sessions/s for chat-session workloads), in the scenario's own units.
    `slos`: 'ttft_p90=1.0,tpot_p90=0.05' or a dict; default: the scenario's SLOs at its percentile.
    `hardware`: ids (default: the scenario's); `tp`: degrees to try (default 1,2,4,8); `ep`: expert-parallel
    degrees to try with each tp they divide (default 1; a MoE model's experts split ep ways); `layouts`: 'agg',
    'E+PD:1:2', ... (default agg plus three disaggregated ratios); `techniques`: technique sets to try (default:
    the scenario's own list). `executor`/`workers`/`address`: where the capacity searches run (see sweep()).
    `exact`: search every candidate's capacity to the tolerance; by default a search stops once it has settled how
    many replicas the target needs (cost, GPUs and ranking are then final) and only the recommended configuration's
    capacity is refined, so the other rows' capacity is a lower bound (`capacity_exact` False).

    `robust`: price every candidate with every kernel family at the pessimistic (p90) end of its uncertainty band
    (profile `<profile>@p90`), so the recommendation holds if the cost model is optimistic. Every row says which
    efficiency model priced its device (profile, profile_kind, expected_error_pct). `capacity_range`: search the
    recommended configuration's capacity again with every kernel family at the p90 and at the p10 end of its band
    (recommended['capacity_range_rps'] = [pessimistic, optimistic] per replica; two more capacity searches).

    Phases: validate, enumerate, screen (analytic), search (capacity per replica), choose (verify the fleet), rank.
    """
    t_wall = time.perf_counter()
    for name, flag in (("verify", verify), ("exact", exact), ("robust", robust), ("capacity_range", capacity_range)):
        if not isinstance(flag, bool):  # any truthy value ran, and robust=nan was reported as the run's setting
            raise SpecError(f"{name}: expected True or False, got {flag!r}")
    if robust:
        sc0 = load_scenario(scenario)
        scenario = sc0.model_copy(update={"profile": f"{sc0.profile or 'auto'}@p90"})
    inp = _validate(scenario, target_rate, slos, hardware, tp, layouts, techniques, max_gpus, settings,
                    pareto_latency, executor, workers, ep)
    analytic = _Analytic(inp.sc, inp.percentiles)
    base = inp.sc.model_dump(mode="json")
    mean_out = float(np.mean([r.output_tokens for r in analytic.reqs]))
    cands = _enumerate(inp)
    prov = _provenance(inp)
    for c in cands:
        c.row.update(prov[c.hw_id])
    _screen(cands, inp, analytic)
    tasks, searched = _search_tasks(cands, inp, analytic, base, exact)
    probes = _search(tasks, searched, inp, mean_out, executor, workers, address, progress)
    recommended, verify_runs, refine_runs = _choose_phase(cands, inp, base, mean_out, verify)
    df, pareto, pareto_tp = _rank([c.row for c in cands], inp.pareto_latency)
    stats = _stats(df, sum(c.pruned for c in cands), verify_runs, refine_runs, inp)
    stats.update(wall_s=time.perf_counter() - t_wall, executor=executor, workers=workers)
    prov = _provenance(inp)
    stats.update(robust=robust, profiles=prov, provenance_note=_provenance_note(prov),
                 transfer_notes=_transfer_notes(inp))
    if capacity_range and recommended is not None:
        stats["des_runs"] += _capacity_range(recommended, base, inp)
    verdict = _verdict(recommended, df, inp.target, inp.slo, inp.max_gpus)
    return PlanResult(inp.sc.id, inp.target, inp.slo, recommended, verdict, df, pareto, pareto_tp, stats,
                      pd.DataFrame(probes), scenario=inp.sc)


def _validate(scenario, target_rate, slos, hardware, tp, layouts, techniques, max_gpus, settings, pareto_latency,
              executor: str, workers: int | None, ep=None) -> PlanInputs:
    sc = load_scenario(scenario)
    if (isinstance(target_rate, bool) or not isinstance(target_rate, int | float)
            or not 0 < target_rate <= MAX_RATE_RPS):  # inf: every candidate failed with an OverflowError, exit 1
        raise SpecError(f"target_rate: must be a finite rate in (0, {MAX_RATE_RPS:g}] requests/s, got {target_rate!r}")
    empty = slos is None or (isinstance(slos, dict) and not slos)  # '' is refused by parse_slos, not the default
    slo = slos_of_scenario(sc) if empty else parse_slos(slos)
    if not slo:
        raise SpecError(f"slo: none given and scenario '{sc.id}' has none; e.g. --slo ttft_p90=1.0,tpot_p90=0.05")
    latencies = sorted(f"{m}_p{p}" for m in SLO_METRICS for p in SLO_PERCENTILES)
    if not isinstance(pareto_latency, str) or pareto_latency not in latencies:
        raise SpecError(f"pareto_latency: unknown {pareto_latency!r}; allowed: {', '.join(latencies)}")
    if max_gpus is not None:  # nan, inf and 1.5 were taken; a string was a TypeError traceback
        integral = isinstance(max_gpus, numbers.Integral) and not isinstance(max_gpus, bool)  # numpy ints too
        max_gpus = number(int(max_gpus) if integral else max_gpus, "max_gpus", lo=1, integer=True)
    s = (settings or SearchSettings()).check()
    check_executor(executor, workers)
    hw_ids = _given_list(hardware, "hardware", "hardware ids such as h100-sxm,l40s") or [sc.hardware]
    tps = _tps(tp)
    lays = [parse_layout(x) for x in (_given_list(layouts, "layouts", "agg, E+PD:1:2, EP+D:1:1 or E+P+D:1:1:2")
                                      or list(DEFAULT_LAYOUTS))]
    tech_sets = _tech_sets(sc, techniques)
    eps = _tps(ep, "ep", [1])
    _check_eps(eps, tps, sc)
    return PlanInputs(sc, float(target_rate), slo, _hardware(hw_ids), tps, lays, tech_sets, max_gpus, s,
                      pareto_latency, eps)


def _check_eps(eps: list[int], tps: list[int], sc: Scenario) -> None:
    """Every EP degree given forms a candidate: it divides one of the tp degrees. An ep dividing none, beside others
    that do, was dropped from the search without a word. A dense model (the one model a plan searches) has no
    experts to split: its ep > 1 was searched and every such candidate shown as not chosen, where estimate, bench
    and simulate refuse it with one line."""
    if any(e > 1 for e in eps):
        from lvlmsim.engine.api import load_scenario_model

        model = load_scenario_model(sc)
        if model.llm.moe is None:
            raise SpecError(f"ep: {model.id} has no mixture-of-experts layers (expert parallelism applies to MoE "
                            f"models only); allowed: 1, got {', '.join(map(str, eps))}")
    useless = [e for e in eps if not any(t % e == 0 for t in tps)]
    if useless:
        allowed = sorted({d for t in tps for d in range(1, t + 1) if t % d == 0})
        raise SpecError(f"ep: {', '.join(map(str, useless))} divides none of the tp degrees "
                        f"({', '.join(map(str, tps))}); allowed: {', '.join(map(str, allowed))}")


def _given_list(v, what: str, example: str) -> list:
    """_split_list, refusing a list that was given but holds nothing (',' or ''): it fell back to the default."""
    items = _split_list(v, what)
    if v is not None and not items:
        raise SpecError(f"{what}: empty list {v!r}; give {example} (or leave it out for the default)")
    return items


def _tps(tp, field: str = "tp", default: Sequence[int] = DEFAULT_TP) -> list[int]:
    """Parallel degrees to try ('1,2,4,8' or a list); `field` names the option in errors."""
    items = _split_list(tp, field) if tp is not None else list(default)
    try:
        tps = [int(x) for x in items]
    except (TypeError, ValueError):
        raise SpecError(f"{field}: expected parallel degrees such as 1,2,4,8, got {tp!r}") from None
    if not tps or any(t < 1 for t in tps):
        raise SpecError(f"{field}: degrees must be integers >= 1, got {tp!r}")
    return tps


def _tech_sets(sc: Scenario, techniques) -> list[list]:
    from lvlmsim.techniques import load_techniques

    if techniques is None:
        load_techniques(sc.techniques)  # the scenario's own, checked here too: not once per candidate
        return [list(sc.techniques)]

    if isinstance(techniques, str | bytes) or not isinstance(techniques, list | tuple):
        raise SpecError(f"techniques: expected a list of technique sets (each a list of configs or 'kind:k=v' "
                        f"strings), got {techniques!r}")
    bad = next((t for t in techniques if not isinstance(t, list | tuple)), None)
    if bad is not None:  # a bare 'fastv:keep=0.5' was read as a set of one-character techniques
        raise SpecError(f"techniques: each technique set is a list of configs or 'kind:k=v' strings, got {bad!r}")
    if not techniques:  # a KeyError once the empty candidate table was summarised
        raise SpecError("techniques: an empty list of technique sets leaves nothing to plan; give at least one set "
                        "([] inside it is 'no techniques'), or None for the scenario's")
    sets = [list(t) for t in techniques]
    for t in sets:
        load_techniques(t)  # a bad technique is a user error, reported before anything runs
    return sets


def _hardware(ids: list[str]) -> dict:
    from lvlmsim.specs.registry import load_hardware

    return {h: load_hardware(h) for h in ids}  # unknown ids fail here, naming the known ones


def _enumerate(inp: PlanInputs) -> list[Candidate]:
    """hardware x (tp, ep) x technique set x layout, in that nesting order; an ep that does not divide tp is skipped."""
    out = []
    for hw_id, hw in inp.hardware.items():
        for t, e in ((t, e) for t in inp.tps for e in inp.eps if t % e == 0):
            for techs in inp.tech_sets:
                for lay in inp.layouts:
                    par = f"tp{t}" + (f" ep{e}" if e > 1 else "")
                    row: dict[str, Any] = {
                        "candidate": f"{hw.id} {par} {lay.label}" + _tech_label(techs),
                        "hardware": hw_id, "tp": t, "ep": e, "layout": lay.label,
                        "techniques": json.dumps(techs) if techs else "",
                        "gpus_per_replica": lay.gpus(t), "price_per_gpu_hour_usd": hw.price_per_hour_usd,
                    }
                    out.append(Candidate(hw_id, hw, t, lay, techs, row, e))
    return out


def _screen(cands: list[Candidate], inp: PlanInputs, analytic: _Analytic) -> None:
    """Prune what cannot run or cannot meet the SLOs even alone on an idle replica (one analytic screen per
    hardware, tp and technique set), what needs a network it lacks, and what exceeds max_gpus."""
    memo: dict = {}
    for c in cands:
        key = (c.hw_id, c.tp, c.ep, json.dumps(c.techniques))
        if key not in memo:
            memo[key] = analytic.screen(c.hardware, c.tp, inp.slo, c.techniques, c.ep)
        reason, bounds = memo[key]
        c.row.update({f"lb_{k}_s": v for k, v in bounds.items() if k in inp.slo})
        if not reason and not c.layout.aggregated and inp.sc.serving.link is None \
                and c.hardware.inter_node_bw_gbps <= 0:
            reason = f"{c.hw_id} has no inter-node network for disaggregated pools (set serving.link)"
        if not reason and inp.max_gpus is not None and c.row["gpus_per_replica"] > inp.max_gpus:
            reason = f"one replica needs {c.row['gpus_per_replica']} GPUs > max_gpus {inp.max_gpus}"
        if reason:
            c.prune(reason)


def _search_tasks(cands: list[Candidate], inp: PlanInputs, analytic: _Analytic, base: dict,
                  exact: bool) -> tuple[list[dict], list[Candidate]]:
    """One capacity-search task per surviving candidate, started from an analytic guess of its capacity."""
    tasks, searched = [], []
    sc = inp.sc
    for c in cands:
        if c.pruned:
            continue
        cand = scenario_from_dict(_candidate_scenario(base, c.hw_id, c.tp, c.layout, c.techniques, ep=c.ep), c.name,
                                  source_dir=sc.source_dir)
        try:  # without techniques; they usually add capacity, and the search brackets from there
            guess = analytic.guess(c.hardware, c.tp, c.layout, sc.serving.max_num_seqs, c.ep)
        except LvlmsimError:
            guess = inp.target
        c.row["analytic_guess_rps"] = guess
        searched.append(c)
        tasks.append({"payload": scenario_payload(cand), "slos": inp.slo, "settings": settings_dict(inp.settings),
                      "guess_rps": guess, "target_rps": inp.target, "settle_only": not exact})
    return tasks, searched


def _search(tasks: list[dict], searched: list[Candidate], inp: PlanInputs, mean_out: float, executor: str,
            workers: int | None, address: str | None, progress: ProgressFn | None) -> list[dict]:
    """Run the capacity searches; fill each candidate's row; return every probe (candidate, rate, metrics)."""
    probes: list[dict] = []
    if progress is not None:
        progress(0, len(tasks))
    done = 0
    for j, res in run_tasks(search_task, tasks, executor=executor, workers=workers, address=address):
        row = searched[j].row
        row["des_runs"] = res.get("des_runs", 0)
        row["search_wall_s"] = res.get("wall_s")
        probes.extend({"candidate": row["candidate"], **p} for p in res.get("probes") or [])
        _record_search(row, res, inp, mean_out)
        done += 1
        if progress is not None:
            progress(done, len(tasks))
    return probes


def _record_search(row: dict, res: dict, inp: PlanInputs, mean_out: float) -> None:
    if res["status"] != "ok":
        row.update(status="infeasible", reason=res.get("reason", ""))
        return
    op = res["operating_point"]
    row.update(status="feasible", reason="", capacity_per_replica_rps=res["capacity_rps"],
               bracket_hi_rps=res.get("bracket_hi_rps"), capacity_exact=bool(res.get("exact")),
               saturated_rps=res.get("saturated_rps"))
    _fill_fleet(row, res["replicas"], inp.target, mean_out)
    row.update({f"{k}_s": op.get(k) for k in (f"{m}_p{p}" for m in SLO_METRICS for p in SLO_PERCENTILES)})
    tpot50 = op.get("tpot_p50")
    row["tokens_per_s_per_user"] = 1.0 / tpot50 if tpot50 else None
    row["tokens_per_s_per_gpu"] = op.get("output_tokens_per_s_per_gpu")
    row["meets_slo_at_target"] = bool(op.get("passed"))
    if inp.max_gpus is not None and row["gpus"] > inp.max_gpus:
        row.update(status="over_max_gpus", reason=f"needs {row['gpus']} GPUs > max_gpus {inp.max_gpus}")


def _choose_phase(cands: list[Candidate], inp: PlanInputs, base: dict, mean_out: float,
                  verify: bool) -> tuple[dict | None, int, int]:
    """(recommendation, fleet-verification runs, refinement runs): the cheapest verified fleet, its capacity
    bracket refined to the tolerance when the search stopped early."""
    rows = [c.row for c in cands]
    feasible = [r for r in rows if r.get("status") == "feasible"]
    if not feasible:
        return None, 0, 0
    recommended, verify_runs = _choose(feasible, base, inp.sc, inp.slo, inp.target, inp.settings, mean_out,
                                       inp.max_gpus, verify, f"{inp.pareto_latency}_s")
    refine_runs = 0
    if recommended is not None:
        row = next(r for r in rows if r["candidate"] == recommended["candidate"])
        if not row.get("capacity_exact"):
            refine_runs = _refine(row, base, inp.sc, inp.slo, inp.settings)
            recommended = _recommend(row)
    return recommended, verify_runs, refine_runs


def _rank(rows: list[dict], pareto_latency: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The candidates table ranked (feasible by $/hour, then latency, then GPUs), and its two Pareto fronts."""
    df = pd.DataFrame(rows)
    lat = f"{pareto_latency}_s"
    for col in ("status", "reason", "cost_per_hour_usd", "gpus", "des_runs", lat, "tokens_per_s_per_gpu",
                "tokens_per_s_per_user", "verified"):
        if col not in df:
            df[col] = None
    order = {"feasible": 0, "over_max_gpus": 1, "infeasible": 2, "pruned": 3}
    df["_o"] = df["status"].map(order).fillna(4)
    df = df.sort_values(["_o", "cost_per_hour_usd", lat, "gpus"], kind="stable",
                        na_position="last").drop(columns="_o").reset_index(drop=True)
    feas = df[df.status == "feasible"]
    df["rank"] = pd.Series(range(1, len(feas) + 1), index=feas.index, dtype="Int64")
    df["pareto_cost_latency"] = False
    df["pareto_throughput"] = False
    if len(feas):
        df.loc[feas.index, "pareto_cost_latency"] = _pareto(feas, "cost_per_hour_usd", lat)
        df.loc[feas.index, "pareto_throughput"] = _pareto(feas, "tokens_per_s_per_gpu", "tokens_per_s_per_user",
                                                          True, True)
    pareto = df[df.pareto_cost_latency].sort_values("cost_per_hour_usd").reset_index(drop=True)
    pareto_tp = df[df.pareto_throughput].sort_values("tokens_per_s_per_gpu", ascending=False).reset_index(drop=True)
    return df, pareto, pareto_tp


def _stats(df: pd.DataFrame, n_pruned: int, verify_runs: int, refine_runs: int, inp: PlanInputs) -> dict:
    searched = df[df.des_runs.notna() & (df.status != "pruned")]
    runs = searched.des_runs.astype(float)
    return {
        "candidates": len(df), "pruned_analytic": n_pruned, "searched": len(searched),
        "feasible": int((df.status == "feasible").sum()), "infeasible": int((df.status == "infeasible").sum()),
        "over_max_gpus": int((df.status == "over_max_gpus").sum()),
        "des_runs": int(runs.sum()) + verify_runs + refine_runs, "verify_runs": verify_runs,
        "refine_runs": refine_runs,
        "des_runs_per_candidate_mean": float(runs.mean()) if len(runs) else 0.0,
        "des_runs_per_candidate_max": int(runs.max()) if len(runs) else 0,
        "wall_s": 0.0, "executor": "", "workers": None,
        "settings": settings_dict(inp.settings), "pareto_latency": inp.pareto_latency,
    }


def _provenance_note(prov: dict[str, dict]) -> str | None:
    """A warning when the comparison mixes devices priced from their own measurements with transferred ones."""
    kinds = {h: p["profile_kind"] for h, p in prov.items()}
    if len(set(kinds.values())) < 2:
        return None
    parts = [f"{h} {k}" + (f" (expected error ~{prov[h]['expected_error_pct']:.0f}%)"
                           if prov[h]["expected_error_pct"] is not None else "") for h, k in kinds.items()]
    return ("compares devices priced from their own measured kernels with devices priced by transfer or the flat "
            "derate: " + ", ".join(parts))


def _transfer_notes(inp: PlanInputs) -> list[str]:
    """A warning per candidate device the general model prices outside every category it was fitted on."""
    from lvlmsim.calibrate.profiles import transfer_notes

    return transfer_notes(list(inp.hardware.values()), inp.sc.profile)


def _provenance(inp: PlanInputs) -> dict[str, dict]:
    """Per hardware id: which efficiency model prices it (profile, profile_kind, expected_error_pct)."""
    from lvlmsim.calibrate.profiles import profile_provenance

    return {h: profile_provenance(hw, inp.sc.profile) for h, hw in inp.hardware.items()}



def _fill_fleet(row: dict, replicas: int, target: float, mean_out: float) -> None:
    row["replicas"] = replicas
    row["gpus"] = replicas * row["gpus_per_replica"]
    row["cost_per_hour_usd"] = row["gpus"] * row["price_per_gpu_hour_usd"]
    row["max_rate_meeting_slo"] = replicas * row["capacity_per_replica_rps"]
    tok_per_h = target * mean_out * 3600.0
    row["usd_per_1m_output_tokens"] = row["cost_per_hour_usd"] / tok_per_h * 1e6 if tok_per_h else None


def _refine(row: dict, base: dict, sc: Scenario, slo: dict, s: SearchSettings) -> int:
    """Narrow one candidate's capacity bracket to the tolerance (the search stopped once replicas were settled)."""
    from lvlmsim.planner.capacity import capacity_search

    techs = json.loads(row["techniques"]) if row["techniques"] else []
    cand = scenario_from_dict(_candidate_scenario(base, row["hardware"], row["tp"], parse_layout(row["layout"]), techs,
                                                  ep=row.get("ep", 1)), row["candidate"], source_dir=sc.source_dir)
    hi = row.get("bracket_hi_rps")
    res = capacity_search(scenario_payload(cand), slo, row["capacity_per_replica_rps"], s,
                          lo=row["capacity_per_replica_rps"], hi=hi if hi is not None and hi == hi else math.inf)
    row.update(capacity_per_replica_rps=res["capacity_rps"], bracket_hi_rps=res["bracket_hi_rps"],
               capacity_exact=res["exact"], refine_runs=res["des_runs"], saturated_rps=res["saturated_rps"])
    row["max_rate_meeting_slo"] = row["replicas"] * row["capacity_per_replica_rps"]
    return res["des_runs"]


def _choose(feasible: list[dict], base: dict, sc: Scenario, slo: dict, target: float, s: SearchSettings,
            mean_out: float, max_gpus: int | None, verify: bool, latency_col: str) -> tuple[dict | None, int]:
    """The cheapest candidate whose whole fleet, simulated at the target rate, meets the SLOs (a replica is added
    while it does not, up to two). Without `verify`, simply the cheapest."""
    runs = 0
    tried: set[str] = set()
    good: list[dict] = []

    def cost(r: dict) -> tuple:
        return r["cost_per_hour_usd"], r.get(latency_col) or math.inf, r["gpus"]  # the candidates' rank order

    while runs < MAX_VERIFY:
        pool = [r for r in feasible if r["candidate"] not in tried and r.get("status") == "feasible"]
        if not pool:
            break
        best = min(pool, key=cost)
        if not verify:
            return _recommend(best), 0
        if good and cost(min(good, key=cost)) <= cost(best):
            break
        tried.add(best["candidate"])
        if _fleet_instances(best) > MAX_INSTANCES:  # a spec refused it (too big to simulate): recommended as searched
            best.update(verified=False, verify_reason=f"not simulated: its largest pool has {_fleet_instances(best):,} "
                        f"instances, past the engine's {MAX_INSTANCES:,}; the capacity is one replica's x replicas")
            good.append(best)
            continue
        if best["replicas"] == 1 and not best.get("meets_slo_at_target"):
            # One replica at the target rate is the operating point the search probed to steady state.
            _fill_fleet(best, 2, target, mean_out)
            if _over_max_gpus(best, max_gpus, verified=False):
                continue
        ok, n = _verify_fleet(best, base, sc, slo, target, mean_out, max_gpus, MAX_VERIFY - runs)
        runs += n
        if ok:
            good.append(best)
    return (_recommend(min(good, key=cost)) if good else None), runs


def _fleet_instances(row: dict) -> int:
    """Instances in the fleet's largest pool: replicas x the layout's largest per-replica count."""
    return int(row["replicas"]) * max(parse_layout(row["layout"]).counts)


def _over_max_gpus(row: dict, max_gpus: int | None, **extra) -> bool:
    if max_gpus is None or row["gpus"] <= max_gpus:
        return False
    row.update(status="over_max_gpus", **extra, reason=f"needs {row['gpus']} GPUs > max_gpus {max_gpus} once "
               "verified at the target rate")
    return True


def _verify_fleet(best: dict, base: dict, sc: Scenario, slo: dict, target: float, mean_out: float,
                  max_gpus: int | None, budget: int) -> tuple[bool, int]:
    """Simulate the candidate's whole fleet at the target rate, adding a replica while it misses the SLOs (at most
    two more, within `budget` runs); (met, runs spent)."""
    from lvlmsim.engine.api import simulate

    lay = parse_layout(best["layout"])
    techs = json.loads(best["techniques"]) if best["techniques"] else []
    runs = 0
    for _bump in range(3):
        d = _candidate_scenario(base, best["hardware"], best["tp"], lay, techs, scale=best["replicas"],
                                ep=best.get("ep", 1))
        fleet = scenario_from_dict(d, best["candidate"], source_dir=sc.source_dir)
        try:  # the scenario's own run (its request count) at the target rate, judged on every request
            res = simulate(fleet, rate=target)
        except LvlmsimError as exc:
            best.update(verified=False, verify_reason=str(exc))
            return False, runs
        runs += 1
        ok, why, metrics = evaluate(res.requests, slo, 0.0)
        sat = res.summary["saturation"]
        if ok and sat["verdict"] != "stable":
            ok, why = False, f"backlogged: {sat['why']}"
        best.update(verified=ok, verify_reason=why, **{f"verified_{k}_s": v for k, v in metrics.items() if k in slo})
        if ok:
            return True, runs
        if runs >= budget:
            return False, runs
        _fill_fleet(best, best["replicas"] + 1, target, mean_out)
        if _over_max_gpus(best, max_gpus):
            return False, runs
    return False, runs


def _capacity_range(rec: dict, base: dict, inp: PlanInputs) -> int:
    """The recommended configuration's capacity per replica with every family at the p90 (pessimistic) and p10
    (optimistic) end of its uncertainty band; returns the DES runs spent."""
    from lvlmsim.planner.capacity import capacity_search

    profile = str(base.get("profile") or "auto").rsplit("@", 1)[0]
    runs, caps = 0, []
    for q in ("p90", "p10"):
        b = dict(base, profile=f"{profile}@{q}")
        cand = scenario_from_dict(_candidate_scenario(b, rec["hardware"], rec["tp"], parse_layout(rec["layout"]),
                                                      rec["techniques"], ep=rec.get("ep") or 1),
                                  rec["candidate"], source_dir=inp.sc.source_dir)
        res = capacity_search(scenario_payload(cand), inp.slo, rec["capacity_per_replica_rps"], inp.settings)
        runs += res["des_runs"]
        caps.append(res["capacity_rps"])
    rec["capacity_range_rps"] = caps
    rec["max_rate_range_rps"] = [c * rec["replicas"] for c in caps]
    return runs


def _recommend(row: dict) -> dict:
    keys = ("candidate", "hardware", "tp", "ep", "layout", "techniques", "replicas", "gpus_per_replica", "gpus",
            "price_per_gpu_hour_usd", "cost_per_hour_usd", "usd_per_1m_output_tokens", "capacity_per_replica_rps",
            "max_rate_meeting_slo", "capacity_exact", "ttft_p90_s", "tpot_p90_s", "e2e_p90_s", "tokens_per_s_per_gpu",
            "tokens_per_s_per_user", "verified", "verify_reason", "bracket_hi_rps", "saturated_rps")
    rec = {k: _clean(row.get(k)) for k in keys}
    rec["techniques"] = json.loads(row["techniques"]) if row["techniques"] else []
    rec["cost_per_hour"] = rec["cost_per_hour_usd"]
    rec.update({k: _clean(v) for k, v in row.items() if k.startswith("verified_")})
    lay = parse_layout(row["layout"])
    ep = row.get("ep", 1)
    keep = ("role", "instances", "tp", "ep") if ep > 1 else ("role", "instances", "tp")  # ep shown for MoE EP only
    rec["pools"] = ([{"role": "EPD", "instances": row["replicas"], "tp": row["tp"], "ep": ep}] if lay.aggregated
                    else [{k: p[k] for k in keep} for p in lay.pools(row["tp"], row["replicas"], ep)])
    if ep == 1 and lay.aggregated:
        del rec["pools"][0]["ep"]
    return rec


def _verdict(rec: dict | None, df: pd.DataFrame, target: float, slo: dict, max_gpus: int | None) -> str:
    slo_txt = ", ".join(f"{k} <= {v:g} s" for k, v in slo.items())
    if rec is not None:
        tech = f" with {', '.join(map(str, rec['techniques']))}" if rec["techniques"] else ""
        hw = rec["candidate"].split(" ", 1)[0]
        hi = rec.get("bracket_hi_rps")
        cap = (f"; capacity {rec['capacity_per_replica_rps']:.4g} req/s per replica"
               + (f" (bracket {rec['capacity_per_replica_rps']:.4g}-{hi:.4g})" if hi else "")
               + (f", saturated throughput {rec['saturated_rps']:.4g}" if rec.get("saturated_rps") else ""))
        ep = f" ep{rec['ep']}" if (rec.get("ep") or 1) > 1 else ""
        unverified = f"; {rec['verify_reason']}" if rec.get("verified") is False and rec.get("verify_reason") else ""
        return (f"{rec['gpus']} x {hw} ({rec['replicas']} replica(s) of {rec['layout']} tp{rec['tp']}{ep}{tech}) "
                f"serve {target:g} req/s with {slo_txt} for ${rec['cost_per_hour_usd']:.2f}/hour{cap}{unverified}")
    counts = df.status.value_counts().to_dict()
    parts = [f"{n} {k.replace('_', ' ')}" for k, n in counts.items()]
    limit = f" within {max_gpus} GPUs" if max_gpus is not None else ""
    top = df.reason[df.reason.astype(bool)].value_counts()
    why = f"; most common reason ({top.iloc[0]}x): {top.index[0]}" if len(top) else ""
    return (f"no configuration meets {slo_txt} at {target:g} req/s{limit} ({', '.join(parts)} of {len(df)} "
            f"candidates{why}); relax the SLOs, allow more GPUs or other hardware")


__all__ = ["DEFAULT_LAYOUTS", "DEFAULT_TP", "Layout", "PlanResult", "parse_layout", "plan"]
