"""Serving simulation: the discrete-event engine for a scenario at a request rate, with latency CDFs against SLOs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st
from explorer import charts
from explorer.fmt import fmt_time
from explorer.state import USER_ERRORS, keep, sticky, uploaded, use_sidebar_button

from lvlmsim.specs import registry

METRICS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))
# KV occupancy is used / total KV blocks, a share: its axis read '0.05' with no unit
SERIES = {"batch_size": "batch size", "queue_len": "queue length", "kv_occupancy": "KV in use (%)"}
TIME_COLUMNS = ("t_s", "time_s", "time", "t")
SIM_MEMO = 8  # finished runs kept per session: going back to an earlier input shows it at once
DEFAULT_SCENARIO = "llava-chat-h100"  # embedded in lvlmsim.specs.scenario, so it exists without a data folder


def build_scenario(ref: str, trace: str | None, slos: dict[str, float]):
    """The chosen scenario with the page's SLOs (and, if picked, the uploaded trace as its arrivals), as the engine's
    own Scenario object, so `simulate` computes goodput against exactly the thresholds drawn on the CDFs."""
    from lvlmsim.specs.scenario import load_scenario
    from lvlmsim.specs.workload import TraceArrival

    sc = load_scenario(ref)
    update = {"slos": sc.slos.model_copy(update={k: (v if v > 0 else None) for k, v in slos.items()})}
    if trace:
        update["workload"] = sc.workload.model_copy(update={"arrival": TraceArrival(path=trace), "requests": None})
    return sc.model_copy(update=update)


def run_simulation(ref: str, trace: str | None, slos: tuple, rate: float, requests: int, seed: int,
                   progress=None) -> dict:
    """`simulate(scenario, requests=..., rate=..., seed=...)`, memoised per session on its inputs.

    Not st.cache_data: the run reports progress to a bar on the page while it goes, and only plain frames and the
    summary dict are kept (the result object also holds the scenario)."""
    memo: dict = st.session_state.setdefault("sim.memo", {})
    key = (ref, trace, slos, rate, requests, seed)
    if key not in memo:
        from lvlmsim.engine.api import simulate

        res = simulate(build_scenario(ref, trace, dict(slos)), requests=requests, rate=rate, seed=seed,
                       progress=progress)
        from lvlmsim.calibrate.profiles import transfer_notes

        # devices outside every category the general model was fitted on, as `lvlmsim simulate` prints them
        notes = transfer_notes([p["hardware"] for p in res.meta.get("pools") or []], res.scenario.profile)
        memo[key] = {"requests": res.requests, "timeseries": res.timeseries, "summary": dict(res.summary),
                     "transfer_notes": notes}
        while len(memo) > SIM_MEMO:
            memo.pop(next(iter(memo)))
    return memo[key]


def run_label(key: tuple, labels: dict) -> str:
    """A memoised run's inputs in words (scenario, traffic, rate, requests, seed)."""
    ref, trace, _, rate, n, seed = key
    return (f"{labels.get(ref, ref)}" + (" + trace" if trace else "") + f" at {rate:g} req/s, {n} requests, "
            f"seed {seed}")


def progress_callback(bar):
    """Adapts the engine's `progress(done, total)` to a Streamlit progress bar."""
    def report(done, total=None) -> None:
        frac = done / total if total else float(done)
        frac = min(max(frac, 0.0), 1.0)
        bar.progress(frac, text=f"simulating… {done}/{total} requests" if total else f"simulating… {frac:.0%}")
    return report


def ecdf_frame(req: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for col, name in METRICS:
        if col not in req:
            continue
        v = np.sort(req[col].dropna().to_numpy(dtype=float))
        if not len(v):
            continue
        parts.append(pd.DataFrame({"metric": name, "seconds": v, "fraction": np.arange(1, len(v) + 1) / len(v)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["metric", "seconds", "fraction"])


def timeseries_long(ts: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Long form of the engine's time series: one row per (time, instance, series)."""
    tcol = next((c for c in TIME_COLUMNS if c in ts), ts.columns[0])
    series = [c for c in ts.columns if c != tcol and pd.api.types.is_numeric_dtype(ts[c])]
    ids = [tcol] + (["instance"] if "instance" in ts else [])
    long = ts.melt(id_vars=ids, value_vars=series, var_name="series", value_name="value")
    long["series"] = long["series"].map(lambda s: SERIES.get(s, s))
    return long, tcol


def fmt_opt_time(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt_time(v)


def _pct(summary: dict, key: str, p: str):
    v = summary.get(key)
    return v.get(p) if isinstance(v, dict) else None


st.title("Serving simulation")
st.caption("The discrete-event engine (`simulate`) serves a stream of requests: the scenario sets the model, "
           "hardware, workload and serving policy; here you choose the arrival rate, the number of requests, the "
           "seed and the SLOs. Press *Use the sidebar's request* to serve the sidebar's model, hardware, images and "
           "text lengths with the selected scenario's arrivals and serving settings.")

scenarios = (registry.scenario_ids() or [DEFAULT_SCENARIO]) + list(uploaded("scenario"))
labels = uploaded("scenario")
traces = uploaded("trace")
sticky("sim.scenario", DEFAULT_SCENARIO if DEFAULT_SCENARIO in scenarios else scenarios[0])
sticky("sim.trace", "")
if st.session_state["sim.scenario"] not in scenarios:
    st.session_state["sim.scenario"] = scenarios[0]
if st.session_state["sim.trace"] not in ("", *traces):
    st.session_state["sim.trace"] = ""
use_sidebar_button("sim.scenario", "sim.use-sidebar")
c = st.columns([2, 2])
ref = c[0].selectbox("Scenario", scenarios, key="sim.scenario", format_func=lambda s: labels.get(s, s))
trace = c[1].selectbox("Traffic", ["", *traces], key="sim.trace",
                       format_func=lambda t: f"replay {traces[t]}" if t else "the scenario's workload",
                       help="Upload a CSV/JSONL trace in the sidebar to replay it with this scenario's model and "
                            "serving setup.")
try:
    from lvlmsim.specs.scenario import load_scenario

    sc = load_scenario(ref)
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()
if sc.description:
    st.caption(f"**{sc.id}**: {sc.description}")
arrival = sc.workload.arrival
native_rate = getattr(arrival, "rate_rps", None)
if trace:
    from lvlmsim.engine.trace import trace_mean_rate

    try:  # this page time-scales a trace to the chosen rate: a trace of one instant has no rate (a traceback before)
        native_rate = trace_mean_rate(trace)
    except USER_ERRORS as exc:
        st.error(f"Traffic: {traces[trace]}: {str(exc).replace(f'{trace}: ', '')}; pick a trace whose arrivals span "
                 "some time, or the scenario's workload")
        st.stop()
wkey = f"{ref}|{trace}"  # widgets keyed by scenario: a new scenario brings its own defaults
defaults = {"rate": float(native_rate or 1.0), "requests": int(sc.workload.requests or 500) if not trace else 500,
            "seed": int(sc.seed), "slo_ttft": float(sc.slos.ttft_s or 1.0), "slo_tpot": float(sc.slos.tpot_s or 0.05),
            "slo_e2e": float(sc.slos.e2e_s or 15.0)}
k = {name: sticky(f"sim.{name}.{wkey}", value) for name, value in defaults.items()}
with st.form("sim"):
    c = st.columns(3)
    rate = c[0].number_input("Request rate (req/s)", min_value=0.01, max_value=100_000.0, step=1.0, key=k["rate"],
                             help="Poisson/gamma/constant arrivals: their rate; a trace: time-scaled to this mean "
                                  "rate; chat sessions: sessions per second")
    n_req = c[1].number_input("Requests", min_value=1, max_value=200_000, step=100, key=k["requests"])
    seed = c[2].number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key=k["seed"])
    c = st.columns(3)
    slo = {"ttft_s": c[0].number_input("TTFT SLO (s)", min_value=0.0, step=0.1, key=k["slo_ttft"],
                                       help="0 = no threshold"),
           "tpot_s": c[1].number_input("TPOT SLO (s)", min_value=0.0, step=0.01, format="%.3f", key=k["slo_tpot"]),
           "e2e_s": c[2].number_input("E2E SLO (s)", min_value=0.0, step=1.0, key=k["slo_e2e"])}
    go = st.form_submit_button("Run simulation", type="primary", key="sim.go")

keep("sim.scenario", "sim.trace", *k.values())
trace = trace or None
args = (ref, trace, tuple(sorted(slo.items())), float(rate), int(n_req), int(seed))
if go:
    bar = st.progress(0.0, text="simulating…")
    try:
        st.session_state["sim.result"] = (args, run_simulation(*args, progress=progress_callback(bar)))
    except USER_ERRORS as exc:
        st.session_state.pop("sim.result", None)
        bar.empty()
        st.error(str(exc))
        st.stop()
    bar.empty()

stored = st.session_state.get("sim.result")
if stored is None:
    st.info("Choose a scenario, a rate and a request count, then run the simulation.")
    st.stop()
ran_args, result = stored
if ran_args != args:
    st.caption("Showing the last run; the inputs above changed since — run again to update.")
ran_slo = dict(ran_args[2])
try:
    from lvlmsim.specs.request_overrides import describe

    named = describe(load_scenario(ran_args[0]), rate=ran_args[3])
except USER_ERRORS:
    named = {"scenario": ran_args[0]}
st.markdown(f"**Simulated** scenario `{labels.get(ran_args[0], named['scenario'])}` — model `{named.get('model')}` — "
            f"hardware `{named.get('hardware')}` — workload: {named.get('workload', 'as the scenario says')}"
            + (" (trace replay)" if ran_args[1] else ""))

summary = result["summary"]
req = result["requests"]
c = st.columns(6)
c[0].metric("Throughput (req/s)", f"{summary['throughput_rps']:.3g}",
            help=f"completed requests per second; {summary.get('output_tokens_per_s', float('nan')):.4g} output "
                 "tokens/s")
c[1].metric("Goodput (req/s)", f"{summary['goodput_rps']:.3g}", help="completed requests/s within every SLO")
c[2].metric("TTFT p50", fmt_opt_time(_pct(summary, "ttft_s", "p50")))
c[3].metric("TTFT p90", fmt_opt_time(_pct(summary, "ttft_s", "p90")))
c[4].metric("TTFT p99", fmt_opt_time(_pct(summary, "ttft_s", "p99")))
c[5].metric("TPOT p90", fmt_opt_time(_pct(summary, "tpot_s", "p90")))
sat = summary.get("saturation")
verdict = sat.get("verdict") if isinstance(sat, dict) else sat
line = (f"{summary.get('completed', len(req))} of {summary.get('requests', len(req))} requests completed, "
        f"{summary.get('rejected', 0)} rejected, {summary.get('in_flight', 0)} still in flight; "
        f"saturation: **{verdict}**")
if summary.get("usd_per_1m_output_tokens") is not None and verdict == "backlogged":
    line += "; no $ per 1M output tokens: a backlogged run's cost per token depends on when it is cut off"
elif summary.get("usd_per_1m_output_tokens") is not None:
    line += f"; ${summary['usd_per_1m_output_tokens']:.3g} per 1M output tokens on {summary.get('gpus', '?')} GPU(s)"
st.markdown(line + ".")
for note in result.get("transfer_notes", []):
    st.warning(note)
reuse = summary.get("reuse")
if reuse:
    caches = [(name, reuse.get(key))
              for key, name in (("encoder_cache", "encoder cache"), ("kv_cache", "image-KV cache"))]
    parts = [f"{name} hit rate **{c['hit_rate']:.0%}** ({c['hits']} of {c['hits'] + c['misses']} lookups)"
             for name, c in caches if c and c["hits"] + c["misses"]]
    st.markdown("Cross-turn reuse: " + ("; ".join(parts) or "no image ids to look up")
                + f"; {reuse['images_not_encoded']} of {reuse['images_seen']} images not encoded, "
                f"{reuse['prefill_tokens_saved']:,} prefill tokens saved.")
if verdict == "backlogged":
    rule = sat.get("rule", "") if isinstance(sat, dict) else ""
    st.warning(f"The engine reports **backlogged** ({rule}): at this rate the queue keeps growing, so latencies "
               "depend on how long the run lasts.")

st.subheader("Latency CDFs")
ecdf = ecdf_frame(req)
earlier = {run_label(k, labels): k for k in st.session_state.get("sim.memo", {}) if k != ran_args}
overlay = st.multiselect("Overlay earlier runs (A/B: their CDFs beside this run's)", list(earlier),
                         key="sim.overlay", help="The last runs of this session are kept; pick any to compare.")
runs = [ecdf.assign(run="this run")] + [
    ecdf_frame(st.session_state["sim.memo"][earlier[lab]]["requests"]).assign(run=lab)
    for lab in overlay if earlier.get(lab) in st.session_state.get("sim.memo", {})]
for col, (key, name) in zip(st.columns(len(METRICS)), METRICS, strict=True):
    part = ecdf[ecdf["metric"] == name]
    if part.empty:
        continue
    limit = ran_slo.get(key, 0.0)
    slos = pd.DataFrame([{"metric": name, "slo_s": limit}] if limit > 0 else [], columns=["metric", "slo_s"])
    with col:
        if len(runs) > 1:
            both = pd.concat(runs, ignore_index=True)
            st.altair_chart(charts.ecdf_runs(both[both["metric"] == name], slos).properties(
                title=name, description=f"cdf-runs-{name}"), width="stretch")
        else:
            st.altair_chart(charts.ecdf(part, slos).properties(title=name, description=f"cdf-{name}"),
                            width="stretch")
        if limit > 0:
            met = float((part["seconds"] <= limit).mean())
            st.caption(f"{met:.1%} of completed requests within the {name} SLO of {limit:g} s")

st.subheader("Over time")
ts = result["timeseries"]
if ts is not None and len(ts):
    long, tcol = timeseries_long(ts)
    names = list(dict.fromkeys(long["series"]))
    for col, name in zip(st.columns(max(len(names), 1)), names, strict=False):
        with col:
            part = long[long["series"] == name].drop(columns=["series"])
            st.altair_chart(charts.timeseries(part, tcol, name), width="stretch")
    st.caption("Sampled at engine steps (decimated); one line per serving instance.")

st.subheader("Per-request results")
st.dataframe(req, hide_index=True, key="sim-requests")
st.download_button("Download CSV", req.assign(**named).to_csv(index=False).encode(), file_name="lvlmsim-requests.csv",
                   mime="text/csv", key="sim-csv")
with st.expander("Reproduce in Python"):
    slo_txt = ", ".join(f"{k}={v!r}" for k, v in ran_slo.items() if v > 0)
    trace_txt = (f"\nsc = sc.model_copy(update={{'workload': sc.workload.model_copy(update={{'arrival': "
                 f"TraceArrival(path={ran_args[1]!r}), 'requests': None}})}})" if ran_args[1] else "")
    st.code(
        "from lvlmsim.engine.api import simulate\nfrom lvlmsim.specs.scenario import load_scenario\n"
        + ("from lvlmsim.specs.workload import TraceArrival\n" if ran_args[1] else "")
        + f"sc = load_scenario({ran_args[0]!r})\nsc = sc.model_copy(update={{'slos': sc.slos.model_copy(update="
        f"dict({slo_txt}))}}){trace_txt}\nres = simulate(sc, requests={ran_args[4]}, rate={ran_args[3]!r}, "
        f"seed={ran_args[5]})\nres.summary, res.requests, res.timeseries", language="python")
