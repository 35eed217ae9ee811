"""Capacity planner: the cheapest configuration serving a target rate within latency SLOs (`lvlmsim.plan`), with the
Pareto front of $/hour vs p90 latency. The page only collects inputs, calls the planner and draws what it returns."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st
from explorer.fmt import fmt_pct, fmt_time, fmt_usd, provenance_text
from explorer.plan_table import NO_FIGURE, candidates_table, missing_placeholder
from explorer.state import USER_ERRORS, keep, sticky, uploaded, use_sidebar_button
from explorer.ui import chart

import lvlmsim
from lvlmsim.specs import registry

DEFAULT_SCENARIO = "llava-chat-h100"  # embedded in lvlmsim.specs.scenario, so it exists without a data folder
PLAN_MEMO = 4  # finished plans kept per session


def run_plan(args: tuple, progress=None) -> dict:
    """plan() on the page's inputs, memoised per session (only plain frames and dicts are kept)."""
    memo: dict = st.session_state.setdefault("plan.memo", {})
    if args not in memo:
        from lvlmsim.planner import SearchSettings

        scenario, rate, slos, hardware, tps, eps, layouts, max_gpus, probe_s, tol, robust, with_range = args
        res = lvlmsim.plan(scenario, target_rate=rate, slos=dict(slos), hardware=list(hardware), tp=list(tps),
                           ep=list(eps), layouts=list(layouts), max_gpus=max_gpus or None,
                           settings=SearchSettings(probe_duration_s=probe_s, tolerance=tol), executor="serial",
                           progress=progress, robust=robust, capacity_range=with_range)
        named = res.to_dict()
        memo[args] = {"recommended": res.recommended, "verdict": res.verdict, "candidates": res.candidates,
                      "stats": res.stats, "deploy": named.get("deploy"),
                      "named": {k: named.get(k) for k in ("scenario", "model", "hardware", "workload")}}
        while len(memo) > PLAN_MEMO:
            memo.pop(next(iter(memo)))
    return memo[args]


def pareto_chart(cands: pd.DataFrame, latency: str) -> alt.LayerChart:
    """$/hour (x) vs p90 latency at the target (y) of every configuration meeting the SLOs, coloured by GPU type;
    the Pareto front joined and ringed."""
    col = f"{latency}_s"
    frame = cands[cands.status == "feasible"][["candidate", "hardware", "cost_per_hour_usd", col, "gpus", "replicas",
                                               "pareto_cost_latency"]].rename(columns={col: "latency_s"})
    frame = frame.assign(pareto=frame.pareto_cost_latency.astype(bool)).drop(columns="pareto_cost_latency")
    base = alt.Chart(frame)
    pts = base.mark_point(size=110, filled=True).encode(
        x=alt.X("cost_per_hour_usd:Q", title="$ per hour for the target rate", scale=alt.Scale(zero=False)),
        y=alt.Y("latency_s:Q", title=f"{latency.replace('_', ' ')} at the target rate (s)",
                scale=alt.Scale(type="log")),
        color=alt.Color("hardware:N", title="GPU"),
        tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("cost_per_hour_usd:Q", title="$/hour", format="$,.2f"),
                 alt.Tooltip("latency_s:Q", title=latency, format=".4~g"), alt.Tooltip("gpus:Q"),
                 alt.Tooltip("replicas:Q"), alt.Tooltip("pareto:N", title="Pareto-optimal")])
    ring = base.transform_filter(alt.datum.pareto).mark_point(size=320, color="#d62728", strokeWidth=1.5).encode(
        x=alt.X("cost_per_hour_usd:Q"), y=alt.Y("latency_s:Q"))
    front = base.transform_filter(alt.datum.pareto).mark_line(color="#d62728", strokeDash=[4, 2]).encode(
        x=alt.X("cost_per_hour_usd:Q"), y=alt.Y("latency_s:Q"), order=alt.Order("cost_per_hour_usd:Q"))
    return alt.layer(front, ring, pts).properties(height=340, description="plan-pareto")


def throughput_chart(cands: pd.DataFrame) -> alt.Chart:
    """Output tokens/s per GPU (the operator's efficiency) vs tokens/s per user (what a user sees), at the operating
    point, one point per feasible configuration coloured by GPU type: the trade-off aiconfigurator users read."""
    frame = cands[cands.status == "feasible"][["candidate", "hardware", "tokens_per_s_per_gpu",
                                               "tokens_per_s_per_user", "pareto_throughput"]].dropna(
        subset=["tokens_per_s_per_gpu", "tokens_per_s_per_user"])
    return alt.Chart(frame).mark_point(size=110, filled=True).encode(
        x=alt.X("tokens_per_s_per_user:Q", title="output tokens/s per user (1 / p50 TPOT)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("tokens_per_s_per_gpu:Q", title="output tokens/s per GPU", scale=alt.Scale(zero=False)),
        color=alt.Color("hardware:N", title="GPU"),
        shape=alt.Shape("pareto_throughput:N", title="Pareto-optimal"),
        tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("tokens_per_s_per_gpu:Q", format=",.0f"),
                 alt.Tooltip("tokens_per_s_per_user:Q", format=",.1f")],
    ).properties(height=340, description="plan-throughput")


def capacity_text(rec: dict) -> str:
    """The recommendation's capacity bracket from the search, and its p10-p90 range when it was asked for."""
    reps = rec.get("replicas") or 1
    out = ""
    if rec.get("bracket_hi_rps") is not None:
        out += (f" Capacity within the SLOs: {rec['capacity_per_replica_rps'] * reps:.3g}-"
                f"{rec['bracket_hi_rps'] * reps:.3g} req/s (the search's bracket).")
    if rec.get("max_rate_range_rps"):
        lo, hi = rec["max_rate_range_rps"]
        out += (f" With the cost model at the pessimistic / optimistic end of its uncertainty band: {lo:.3g} / "
                f"{hi:.3g} req/s.")
    return out


def price_inputs(hw_ids: list[str]) -> dict[str, float]:
    """Editable $/GPU-hour per GPU type, defaulting to the hardware file's price (its date and source shown)."""
    prices = {}
    with st.expander("Prices ($ per GPU-hour) — edit to use your own"):
        cols = st.columns(min(len(hw_ids), 4) or 1)
        for i, hw_id in enumerate(hw_ids):
            try:
                spec = hardware_spec(hw_id)
            except USER_ERRORS:
                continue
            key = sticky(f"plan.price.{hw_id}", float(spec.price_per_hour_usd))
            prices[hw_id] = float(cols[i % len(cols)].number_input(
                f"{hw_id} $/GPU-h", min_value=0.0, step=0.1, format="%.3f", key=key,
                help=f"default ${spec.price_per_hour_usd:g} ({spec.price_date}): {spec.price_source}"))
            keep(key)
    return prices


def hardware_spec(ref: str):
    return registry.load_hardware(ref)


def capacity_cell(r: dict) -> str:
    """'4.4-4.53 req/s' (the search's bracket) or '15.8 req/s' where the bracket's top is unknown (NaN in the frame;
    it was drawn as '15.8-nan req/s')."""
    hi = r.get("capacity_hi_rps")
    top = f"-{hi:.3g}" if hi is not None and math.isfinite(hi) else ""
    return f"{r['capacity_rps']:.3g}{top} req/s"


def per_gpu_table(cands: pd.DataFrame, rate: float, prices: dict[str, float]) -> pd.DataFrame:
    """lvlmsim.planner.summary.by_hardware at the page's prices, humanised for reading (lvlmsim.fmt)."""
    from lvlmsim.planner.summary import by_hardware, by_hardware_frame

    frame = by_hardware_frame(by_hardware(cands, rate, prices))
    rows = []
    for r in frame.to_dict("records"):
        ok = bool(r["feasible"])
        rows.append({
            "GPU": r["hardware"], "best configuration": r["candidate"] if ok else "—",
            "GPUs": str(r["gpus"]) if ok else "—", "$/GPU-hour": fmt_usd(r["price_per_gpu_hour_usd"]),
            "$/hour": fmt_usd(r["cost_per_hour_usd"]) if ok else "—",
            "$/month": fmt_usd(r["cost_per_month_usd"]) if ok else "—",
            # '≥', not '>=': st.table reads a cell as Markdown, and '>= 691%' was drawn as a quote of '= 691%'
            "headroom": (("" if r["capacity_exact"] else "≥ ") + fmt_pct(r["headroom_pct"])) if ok else "—",
            "capacity": capacity_cell(r) if ok else "—",
            "TTFT p90": fmt_time(r["ttft_p90_s"]) if ok else "—", "TPOT p90": fmt_time(r["tpot_p90_s"]) if ok else "—",
            "verdict": "meets the SLOs" if ok else f"not possible because {r['reason']}",
        })
    return pd.DataFrame(rows)


st.title("Capacity planner")
from lvlmsim.planner import DEFAULT_LAYOUTS, DEFAULT_TP  # noqa: E402
from lvlmsim.planner.summary import pool_label  # noqa: E402

st.caption("For each candidate (hardware x tensor and expert parallelism x layout), an analytic pre-screen "
           "drops the hopeless ones, a search over arrival rates with the discrete-event engine finds what one "
           "replica sustains within the SLOs, and replicas are added up to the target rate; the cheapest is then "
           "simulated as a whole fleet. Press *Use the sidebar's request* to plan the sidebar's model, hardware, TP, "
           "EP, images and text lengths over the selected scenario's arrivals and serving settings.")
use_sidebar_button("plan.scenario", "plan.use-sidebar")
scenarios = (registry.scenario_ids() or [DEFAULT_SCENARIO]) + list(uploaded("scenario"))
labels = uploaded("scenario")
hardware_ids = registry.hardware_ids() + list(uploaded("hardware"))
hw_labels = uploaded("hardware")
k = {
    "scenario": sticky("plan.scenario", DEFAULT_SCENARIO if DEFAULT_SCENARIO in scenarios else scenarios[0]),
    "rate": sticky("plan.rate", 20.0), "ttft": sticky("plan.ttft", 1.0), "tpot": sticky("plan.tpot", 0.05),
    "e2e": sticky("plan.e2e", 0.0), "hardware": sticky("plan.hardware", ["h100-sxm", "l40s"]),
    "tp": sticky("plan.tp", list(DEFAULT_TP)), "ep": sticky("plan.ep", [1]),
    "layouts": sticky("plan.layouts", ["agg"]),
    "max_gpus": sticky("plan.max_gpus", 0), "probe_s": sticky("plan.probe_s", 30.0), "tol": sticky("plan.tol", 0.05),
    "robust": sticky("plan.robust", False), "range": sticky("plan.range", False),
}
if st.session_state[k["scenario"]] not in scenarios:
    st.session_state[k["scenario"]] = scenarios[0]
st.session_state[k["hardware"]] = [h for h in st.session_state[k["hardware"]] if h in hardware_ids]
with st.form("plan"):
    c = st.columns([2, 1, 1])
    scenario = c[0].selectbox("Scenario", scenarios, key=k["scenario"], format_func=lambda s: labels.get(s, s))
    rate = c[1].number_input("Target rate (req/s)", min_value=0.01, max_value=100_000.0, step=1.0, key=k["rate"])
    max_gpus = c[2].number_input("Max GPUs (0 = no limit)", min_value=0, max_value=100_000, step=1, key=k["max_gpus"])
    c = st.columns(3)
    slo = {"ttft_p90": c[0].number_input("TTFT p90 SLO (s)", min_value=0.0, step=0.1, key=k["ttft"],
                                         help="0 = no threshold"),
           "tpot_p90": c[1].number_input("TPOT p90 SLO (s)", min_value=0.0, step=0.01, format="%.3f", key=k["tpot"]),
           "e2e_p90": c[2].number_input("E2E p90 SLO (s)", min_value=0.0, step=1.0, key=k["e2e"])}
    c = st.columns(4)
    hardware = c[0].multiselect("Hardware", hardware_ids, key=k["hardware"], format_func=lambda h: hw_labels.get(h, h))
    tps = c[1].multiselect("Tensor-parallel degrees", [1, 2, 4, 8], key=k["tp"])
    eps = c[2].multiselect("Expert-parallel degrees", [1, 2, 4, 8], key=k["ep"],
                           help="Mixture-of-experts models: each EP is tried with every TP it divides (`plan --ep`); "
                                "a candidate whose EP does not divide its TP and the experts is dropped with the "
                                "reason in its row. A dense model takes EP 1 only.")
    layouts = c[3].multiselect("Layouts", list(dict.fromkeys(["agg", *DEFAULT_LAYOUTS, "E+PD:1:1", "E+P+D:1:1:1"])),
                               key=k["layouts"], help="agg = colocated replicas; E/P/D = encode, prefill, decode "
                               "pools with instance counts per replica")
    with st.expander("Search settings"):
        c = st.columns(2)
        probe_s = c[0].number_input("Seconds of arrivals per probe", min_value=1.0, max_value=3600.0, step=5.0,
                                    key=k["probe_s"])
        tol = c[1].number_input("Capacity tolerance", min_value=0.01, max_value=0.5, step=0.01, key=k["tol"])
        c = st.columns(2)
        robust = c[0].checkbox("Robust: price at the pessimistic (p90) end of the cost model's band",
                               key=k["robust"], help="Every kernel family at the p90 of its held-out error band, so "
                               "the answer holds if the cost model is optimistic.")
        with_range = c[1].checkbox("Capacity range (p10-p90 of the band)", key=k["range"],
                                   help="Two more capacity searches for the recommendation, with every kernel "
                                   "family at the p90 and at the p10 end of its band.")
    go = st.form_submit_button("Plan", type="primary", key="plan.go")
keep(*k.values())

slos = tuple((key, float(v)) for key, v in slo.items() if v > 0)
args = (scenario, float(rate), slos, tuple(hardware), tuple(int(t) for t in tps), tuple(int(e) for e in eps),
        tuple(layouts), int(max_gpus), float(probe_s), float(tol), bool(robust), bool(with_range))
if go:
    if not slos or not hardware or not tps or not eps or not layouts:
        st.error("Give at least one SLO, one hardware, one tensor-parallel degree, one expert-parallel degree and "
                 "one layout.")
        st.stop()
    bar = st.progress(0.0, text="searching…")

    def report(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"capacity search {done}/{total} candidates")

    try:
        st.session_state["plan.result"] = (args, run_plan(args, progress=report))
    except USER_ERRORS as exc:
        st.session_state.pop("plan.result", None)
        bar.empty()
        st.error(str(exc))
        st.stop()
    bar.empty()

stored = st.session_state.get("plan.result")
if stored is None:
    st.info("Choose a scenario, a target rate, SLOs and the hardware to consider, then plan.")
    st.stop()
ran_args, result = stored
if ran_args != args:
    st.caption("Showing the last plan; the inputs above changed since — plan again to update.")

rec = result["recommended"]
cands = result["candidates"]
stats = result["stats"]
named = result.get("named") or {"scenario": ran_args[0]}
st.markdown(f"**Planned** scenario `{labels.get(ran_args[0], named.get('scenario'))}` — model `{named.get('model')}` — "
            f"GPUs {', '.join(f'`{h}`' for h in ran_args[3])} — {ran_args[1]:g} req/s — workload: "
            f"{named.get('workload', 'as the scenario says')}")
if rec is None:
    st.error(f"No configuration meets the SLOs: {result['verdict']}")
else:
    st.success(f"Recommended: {result['verdict']}")
    c = st.columns([2, 1, 1])  # two rows of three: long values (a configuration, a rate) are never cut
    c[0].metric("Configuration", rec["candidate"])
    c[1].metric("GPUs", f"{rec['gpus']}", help=f"{rec['replicas']} replica(s) x {rec['gpus_per_replica']} GPU(s)")
    c[2].metric("$ per hour", fmt_usd(rec["cost_per_hour"]),
                help=f"{fmt_usd(rec['usd_per_1m_output_tokens'])} per 1M output tokens at the target rate")
    c = st.columns([2, 1, 1])
    c[0].metric("Max rate within SLOs", f"{rec['max_rate_meeting_slo']:.3g} req/s",
                help=f"{rec['capacity_per_replica_rps']:.3g} req/s per replica x {rec['replicas']}")
    c[1].metric("TTFT p90", fmt_time(rec["ttft_p90_s"]) if rec.get("ttft_p90_s") is not None else "n/a")
    c[2].metric("TPOT p90", fmt_time(rec["tpot_p90_s"]) if rec.get("tpot_p90_s") is not None else "n/a")
    st.caption("Pools: " + ", ".join(pool_label(p) for p in rec["pools"])
               + (" — verified by simulating the whole fleet at the target rate." if rec.get("verified") else "")
               + capacity_text(rec))
st.caption(f"{stats['candidates']} candidates: {stats['pruned_analytic']} removed by the analytic pre-screen, "
           f"{stats['searched']} searched with {stats['des_runs']} simulations "
           f"({stats['des_runs_per_candidate_mean']:.1f} per candidate) in {stats['wall_s']:.1f} s.")

for hw_id, prov in (stats.get("profiles") or {}).items():  # issue 11: which model priced each device, how sure
    st.caption(f"{hw_id}: {provenance_text(prov)}")
if stats.get("provenance_note"):
    st.info(f"This plan {stats['provenance_note']}.")
for note in stats.get("transfer_notes") or []:  # a device outside every category the model was fitted on
    st.warning(note)

st.subheader("Per GPU type")
hw_seen = list(dict.fromkeys(cands["hardware"]))
prices = price_inputs(hw_seen)
table = per_gpu_table(cands, ran_args[1], prices)
st.table(table.set_index("GPU"))  # a plain HTML table: every cell readable (and copyable) as text
from lvlmsim.planner.summary import LOW_HEADROOM_PCT, by_hardware  # noqa: E402

low = [h for h, r in by_hardware(cands, ran_args[1], prices).items()
       if r["feasible"] and r["headroom_pct"] is not None and r["headroom_pct"] < LOW_HEADROOM_PCT]
if low:
    st.warning(f"Under {LOW_HEADROOM_PCT:.0f}% headroom on {', '.join(low)}: a burst above the target rate, or a "
               "model error of that size, breaks the SLOs; the capacity search tolerance is "
               f"{stats['settings'].get('tolerance', 'n/a')}.")
st.caption("Headroom: how far the fleet's capacity within the SLOs exceeds the target rate; '≥' marks a lower "
           "bound (that capacity was searched only until its replica count was settled; the recommended one is "
           "searched to the tolerance, see Search settings). $/month = $/hour x 730.")

latency = stats.get("pareto_latency", "ttft_p90")
if (cands.status == "feasible").any():
    c = st.columns(2)
    c[0].markdown("**Cost vs latency** (ringed: Pareto-optimal)")
    chart(container=c[0], chart=pareto_chart(cands, latency))
    c[1].markdown("**Throughput per GPU vs per user**")
    chart(container=c[1], chart=throughput_chart(cands))
if result.get("deploy"):
    st.subheader("Deploy the recommendation")
    c = st.columns(2)
    c[0].code(result["deploy"]["vllm"], language="bash")
    c[1].code(result["deploy"]["sglang"], language="bash")
    st.caption("Flags from the scenario's serving settings (max_num_seqs, max_num_batched_tokens, "
               "gpu_memory_utilization, chunked prefill) and the recommended tensor parallelism.")
st.subheader("All candidates")
st.dataframe(candidates_table(cands), hide_index=True, key="plan-candidates", **missing_placeholder(),
             column_config={"reason": st.column_config.TextColumn("reason", width="large"),
                            "cost_per_hour_usd": st.column_config.NumberColumn("$/hour", format="dollar"),
                            "capacity_per_replica_rps": st.column_config.NumberColumn("req/s per replica",
                                                                                      format="%.3g"),
                            "ttft_p90_s": st.column_config.NumberColumn("TTFT p90 (s)", format="%.3g"),
                            "tpot_p90_s": st.column_config.NumberColumn("TPOT p90 (s)", format="%.3g"),
                            "tokens_per_s_per_gpu": st.column_config.NumberColumn("tok/s per GPU", format="%,.0f"),
                            "tokens_per_s_per_user": st.column_config.NumberColumn("tok/s per user",
                                                                                   format="%.1f")})
st.caption(f"{NO_FIGURE}: no figure for that candidate; *reason* says why (pruned by the analytic pre-screen, "
           "infeasible in the engine, or over Max GPUs). Rank counts the candidates that meet the SLOs.")
csv = cands.assign(**{k: v for k, v in named.items() if v is not None}, target_rate_rps=ran_args[1])
c = st.columns(2)
c[0].download_button("Download candidates (CSV)", csv.to_csv(index=False).encode(), file_name="lvlmsim-plan.csv",
                     mime="text/csv", key="plan-csv")
c[1].download_button("Download per-GPU table (CSV)", table.assign(**{k: v for k, v in named.items() if v})
                     .to_csv(index=False).encode(), file_name="lvlmsim-plan-by-gpu.csv", mime="text/csv",
                     key="plan-gpu-csv")
with st.expander("Reproduce in Python"):
    import lvlmsim

    sc, r, sl, hw, tp_, ep_, lay, mg, ps, tl, rb, rg = ran_args
    fn = "lvlmsim.plan" if hasattr(lvlmsim, "plan") else "lvlmsim.planner.plan"
    st.code(
        "import lvlmsim\nimport lvlmsim.planner\nfrom lvlmsim.planner import SearchSettings\n"
        f"res = {fn}({sc!r}, target_rate={r!r}, slos={dict(sl)!r}, hardware={list(hw)!r}, tp={list(tp_)!r},\n"
        f"    ep={list(ep_)!r}, layouts={list(lay)!r}, max_gpus={mg or None!r}, "
        f"settings=SearchSettings(probe_duration_s={ps!r}, tolerance={tl!r}), robust={rb!r}, "
        f"capacity_range={rg!r})\n"
        f"res.recommended, res.by_hardware(prices={prices!r}), res.deploy()", language="python")
