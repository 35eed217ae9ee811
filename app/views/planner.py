"""Capacity planner: the cheapest configuration serving a target rate within latency SLOs (`lvlmsim.plan`), with the
Pareto front of $/hour vs p90 latency. The page only collects inputs, calls the planner and draws what it returns."""

from __future__ import annotations

import importlib

import altair as alt
import pandas as pd
import streamlit as st
from explorer.fmt import fmt_time
from explorer.state import USER_ERRORS, keep, sticky, uploaded

from lvlmsim.specs import registry

DEFAULT_SCENARIO = "llava-chat-h100"  # embedded in lvlmsim.specs.scenario, so it exists without a data folder
PLAN_MEMO = 4  # finished plans kept per session


def planner_present() -> bool:
    """A real, importable package (a half-written folder in a checkout does not count)."""
    try:
        mod = importlib.import_module("lvlmsim.planner")
    except ImportError:
        return False
    return getattr(mod, "__file__", None) is not None and hasattr(mod, "plan")


def plan_fn():
    """`lvlmsim.plan` (the public re-export) when present, else the planner's own."""
    import lvlmsim

    return getattr(lvlmsim, "plan", None) or importlib.import_module("lvlmsim.planner").plan


def run_plan(args: tuple, progress=None) -> dict:
    """plan() on the page's inputs, memoised per session (only plain frames and dicts are kept)."""
    memo: dict = st.session_state.setdefault("plan.memo", {})
    if args not in memo:
        from lvlmsim.planner import SearchSettings

        scenario, rate, slos, hardware, tps, layouts, max_gpus, probe_s, tol = args
        res = plan_fn()(scenario, target_rate=rate, slos=dict(slos), hardware=list(hardware), tp=list(tps),
                        layouts=list(layouts), max_gpus=max_gpus or None,
                        settings=SearchSettings(probe_duration_s=probe_s, tolerance=tol), executor="serial",
                        progress=progress)
        memo[args] = {"recommended": res.recommended, "verdict": res.verdict, "candidates": res.candidates,
                      "stats": res.stats}
        while len(memo) > PLAN_MEMO:
            memo.pop(next(iter(memo)))
    return memo[args]


def pareto_chart(cands: pd.DataFrame, latency: str) -> alt.LayerChart:
    """$/hour (x) vs p90 latency at the target (y) of every configuration meeting the SLOs; the front joined."""
    col = f"{latency}_s"
    frame = cands[cands.status == "feasible"][["candidate", "cost_per_hour_usd", col, "gpus", "replicas",
                                               "pareto_cost_latency"]].rename(columns={col: "latency_s"})
    frame = frame.assign(pareto=frame.pareto_cost_latency.astype(bool)).drop(columns="pareto_cost_latency")
    base = alt.Chart(frame)
    pts = base.mark_point(size=110, filled=True).encode(
        x=alt.X("cost_per_hour_usd:Q", title="$ per hour for the target rate", scale=alt.Scale(zero=False)),
        y=alt.Y("latency_s:Q", title=f"{latency.replace('_', ' ')} at the target rate (s)",
                scale=alt.Scale(type="log")),
        color=alt.Color("pareto:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#9e9e9e"]),
                        title="Pareto-optimal"),
        tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("cost_per_hour_usd:Q", title="$/hour", format=".2f"),
                 alt.Tooltip("latency_s:Q", title=latency, format=".4~g"), alt.Tooltip("gpus:Q"),
                 alt.Tooltip("replicas:Q")])
    front = base.transform_filter(alt.datum.pareto).mark_line(color="#d62728", strokeDash=[4, 2]).encode(
        x=alt.X("cost_per_hour_usd:Q"), y=alt.Y("latency_s:Q"), order=alt.Order("cost_per_hour_usd:Q"))
    return alt.layer(front, pts).properties(height=380, description="plan-pareto")


st.title("Capacity planner")
if not planner_present():
    st.info("The capacity planner (how many GPUs for a target rate under latency SLOs) arrives with "
            "`lvlmsim.planner`, which this version of lvlmsim does not have yet.")
    st.stop()

from lvlmsim.planner import DEFAULT_LAYOUTS, DEFAULT_TP  # noqa: E402

st.caption("For each candidate (hardware x tensor parallelism x layout), an analytic pre-screen drops the hopeless "
           "ones, a search over arrival rates with the discrete-event engine finds what one replica sustains within "
           "the SLOs, and replicas are added up to the target rate; the cheapest is then simulated as a whole fleet. "
           "The sidebar's single-request setup does not apply on this page.")
scenarios = (registry.scenario_ids() or [DEFAULT_SCENARIO]) + list(uploaded("scenario"))
labels = uploaded("scenario")
hardware_ids = registry.hardware_ids() + list(uploaded("hardware"))
hw_labels = uploaded("hardware")
k = {
    "scenario": sticky("plan.scenario", DEFAULT_SCENARIO if DEFAULT_SCENARIO in scenarios else scenarios[0]),
    "rate": sticky("plan.rate", 20.0), "ttft": sticky("plan.ttft", 1.0), "tpot": sticky("plan.tpot", 0.05),
    "e2e": sticky("plan.e2e", 0.0), "hardware": sticky("plan.hardware", ["h100-sxm", "l40s"]),
    "tp": sticky("plan.tp", list(DEFAULT_TP)), "layouts": sticky("plan.layouts", ["agg"]),
    "max_gpus": sticky("plan.max_gpus", 0), "probe_s": sticky("plan.probe_s", 30.0), "tol": sticky("plan.tol", 0.05),
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
    c = st.columns(3)
    hardware = c[0].multiselect("Hardware", hardware_ids, key=k["hardware"], format_func=lambda h: hw_labels.get(h, h))
    tps = c[1].multiselect("Tensor-parallel degrees", [1, 2, 4, 8], key=k["tp"])
    layouts = c[2].multiselect("Layouts", list(dict.fromkeys(["agg", *DEFAULT_LAYOUTS, "E+PD:1:1", "E+P+D:1:1:1"])),
                               key=k["layouts"], help="agg = colocated replicas; E/P/D = encode, prefill, decode "
                               "pools with instance counts per replica")
    with st.expander("Search settings"):
        c = st.columns(2)
        probe_s = c[0].number_input("Seconds of arrivals per probe", min_value=1.0, max_value=3600.0, step=5.0,
                                    key=k["probe_s"])
        tol = c[1].number_input("Capacity tolerance", min_value=0.01, max_value=0.5, step=0.01, key=k["tol"])
    go = st.form_submit_button("Plan", type="primary")
keep(*k.values())

slos = tuple((key, float(v)) for key, v in slo.items() if v > 0)
args = (scenario, float(rate), slos, tuple(hardware), tuple(int(t) for t in tps), tuple(layouts), int(max_gpus),
        float(probe_s), float(tol))
if go:
    if not slos or not hardware or not tps or not layouts:
        st.error("Give at least one SLO, one hardware, one tensor-parallel degree and one layout.")
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
if rec is None:
    st.error(f"No configuration meets the SLOs: {result['verdict']}")
else:
    st.success(f"Recommended: {result['verdict']}")
    c = st.columns(6)
    c[0].metric("Configuration", rec["candidate"])
    c[1].metric("GPUs", f"{rec['gpus']}", help=f"{rec['replicas']} replica(s) x {rec['gpus_per_replica']} GPU(s)")
    c[2].metric("$ per hour", f"{rec['cost_per_hour']:.2f}",
                help=f"${rec['usd_per_1m_output_tokens']:.3g} per 1M output tokens at the target rate")
    c[3].metric("Max rate within SLOs", f"{rec['max_rate_meeting_slo']:.3g} req/s",
                help=f"{rec['capacity_per_replica_rps']:.3g} req/s per replica x {rec['replicas']}")
    c[4].metric("TTFT p90", fmt_time(rec["ttft_p90_s"]) if rec.get("ttft_p90_s") is not None else "n/a")
    c[5].metric("TPOT p90", fmt_time(rec["tpot_p90_s"]) if rec.get("tpot_p90_s") is not None else "n/a")
    st.caption("Pools: " + ", ".join(f"{p['role']} {p['instances']} x tp{p['tp']}" for p in rec["pools"])
               + (" — verified by simulating the whole fleet at the target rate." if rec.get("verified") else ""))
st.caption(f"{stats['candidates']} candidates: {stats['pruned_analytic']} removed by the analytic pre-screen, "
           f"{stats['searched']} searched with {stats['des_runs']} simulations "
           f"({stats['des_runs_per_candidate_mean']:.1f} per candidate) in {stats['wall_s']:.1f} s.")

latency = stats.get("pareto_latency", "ttft_p90")
if (cands.status == "feasible").any():
    st.subheader("Pareto front: cost vs latency")
    st.altair_chart(pareto_chart(cands, latency), width="stretch")
st.subheader("All candidates")
show = [c for c in ("rank", "candidate", "status", "reason", "replicas", "gpus", "cost_per_hour_usd",
                    "capacity_per_replica_rps", "ttft_p90_s", "tpot_p90_s", "tokens_per_s_per_gpu",
                    "tokens_per_s_per_user", "des_runs", "verified") if c in cands]
st.dataframe(cands[show], hide_index=True, key="plan-candidates")
st.download_button("Download CSV", cands.to_csv(index=False).encode(), file_name="lvlmsim-plan.csv", mime="text/csv",
                   key="plan-csv")
with st.expander("Reproduce in Python"):
    import lvlmsim

    sc, r, sl, hw, tp_, lay, mg, ps, tl = ran_args
    fn = "lvlmsim.plan" if hasattr(lvlmsim, "plan") else "lvlmsim.planner.plan"
    st.code(
        "import lvlmsim\nimport lvlmsim.planner\nfrom lvlmsim.planner import SearchSettings\n"
        f"res = {fn}({sc!r}, target_rate={r!r}, slos={dict(sl)!r}, hardware={list(hw)!r}, tp={list(tp_)!r},\n"
        f"    layouts={list(lay)!r}, max_gpus={mg or None!r}, "
        f"settings=SearchSettings(probe_duration_s={ps!r}, tolerance={tl!r}))\n"
        "res.recommended, res.candidates, res.pareto", language="python")
