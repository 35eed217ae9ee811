"""Overview: the sidebar's request, stage by stage, with the headline numbers."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from explorer.data import estimate_or_stop, provenance, try_estimate
from explorer.fmt import fmt_si, fmt_time, provenance_text
from explorer.state import current_setup, follow, keep, moe_experts, sticky
from explorer.ui import headline, reproduce

from lvlmsim.specs import registry


def _ep(est) -> str:
    """' ep2' for an expert-parallel estimate, '' at EP 1 (a dense model's captions stay as they were)."""
    return f" ep{est.ep}" if est.ep != 1 else ""


def side_by_side(a, b) -> pd.DataFrame:
    """A and B's headline and per-stage numbers in one table (plain strings, lvlmsim.fmt), with B relative to A."""
    def ratio(x: float, y: float) -> str:
        return f"{y / x:.2f}x" if x else "n/a"

    rows = [{"quantity": q, "A": fmt_time(x), "B": fmt_time(y), "B / A": ratio(x, y)}
            for q, x, y in (("TTFT", a.ttft_s, b.ttft_s), ("TPOT", a.tpot_s, b.tpot_s), ("E2E", a.e2e_s, b.e2e_s))]
    for name in a.stages:
        if name in b.stages:
            x, y = a.stages[name], b.stages[name]
            rows.append({"quantity": f"{name} ({x.bound} / {y.bound})", "A": fmt_time(x.time_s),
                         "B": fmt_time(y.time_s), "B / A": ratio(x.time_s, y.time_s)})
    rows.append({"quantity": "visual tokens", "A": f"{a.visual_tokens:,}", "B": f"{b.visual_tokens:,}",
                 "B / A": ratio(a.visual_tokens, b.visual_tokens)})
    rows.append({"quantity": "memory", "A": "fits" if a.memory.fits else "does not fit",
                 "B": "fits" if b.memory.fits else "does not fit", "B / A": ""})
    return pd.DataFrame(rows)

st.title("lvlmsim explorer")
st.caption("What does it cost to serve this vision-language model, on this hardware, under this traffic, with these "
           "techniques, and why? Set up a request in the sidebar; every number below comes from `lvlmsim.estimate`.")

setup = current_setup()
est = estimate_or_stop(setup)
headline(est)

st.subheader(f"{est.model_id} on {est.hardware_id}")
st.markdown(
    f"**{est.visual_tokens}** visual tokens (ViT tokens: {est.vit_tokens}), **{est.prompt_tokens}** prompt tokens, "
    f"**{est.output_tokens}** output tokens; batch {est.batch}, tp {est.tp}"
    f"{f', ep {est.ep}' if est.ep != 1 else ''}, efficiency profile `{est.profile}`."
)
rows = [{"stage": name, "time": fmt_time(s.time_s), "FLOPs": fmt_si(s.flops, "FLOP"), "bytes": fmt_si(s.bytes, "B"),
         "bound": s.bound, "visual share of FLOPs": f"{s.visual_flops_share:.0%}"} for name, s in est.stages.items()]
st.dataframe(pd.DataFrame(rows), hide_index=True, key="overview-stages")
for note in est.notes:
    if note not in (est.memory.verdict, est.provenance.get("transfer_note")):  # both drawn already
        st.info(note)
st.caption(est.memory.verdict)
reproduce(setup, "print(est.ttft_s, est.tpot_s, est.e2e_s, est.memory.verdict)")
st.download_button("Download stages (CSV)", pd.DataFrame(rows).assign(model=est.model_id, hardware=est.hardware_id)
                   .to_csv(index=False).encode(), file_name="lvlmsim-stages.csv", mime="text/csv",
                   key="overview-csv")

st.subheader("Side by side (A/B)")
st.caption("A is the sidebar's request; B is the same request with another model, device or tensor parallelism.")
c = st.columns(3)
models, hws = registry.model_ids(), registry.hardware_ids()
kb = {"model": follow("ab.model", setup.model if setup.model in models else models[0]),
      "hardware": sticky("ab.hardware", "l40s" if setup.hardware != "l40s" else "h100-sxm"),
      "tp": sticky("ab.tp", setup.tp)}
b_model = c[0].selectbox("B: model", models, key=kb["model"])
b_hw = c[1].selectbox("B: hardware", hws, key=kb["hardware"])
b_tp = c[2].number_input("B: TP", min_value=1, max_value=64, step=1, key=kb["tp"])
keep(*kb.values())
# B keeps the sidebar's EP when its model is a mixture of experts too; a dense B runs EP 1 (ep > 1 is refused there)
b_ep = setup.ep if moe_experts(b_model) else 1
est_b, err_b = try_estimate(setup.with_(model=b_model, hardware=b_hw, tp=int(b_tp), ep=b_ep))
if err_b is not None:  # named as B's: "tp: 3 does not divide ..." read as the sidebar's TP before
    st.error(f"B: {err_b}")
    st.stop()
st.table(side_by_side(est, est_b).set_index("quantity"))
prov_a, prov_b = provenance(setup.hardware, setup.profile), provenance(b_hw, setup.profile)
st.caption(f"A: {est.model_id} on {est.hardware_id} tp{est.tp}{_ep(est)}, {provenance_text(prov_a)}; B: "
           f"{est_b.model_id} on {est_b.hardware_id} tp{est_b.tp}{_ep(est_b)}, {provenance_text(prov_b)}; "
           "same images, text lengths, batch, profile and techniques.")
if prov_a["profile_kind"] != prov_b["profile_kind"]:  # as `plan` warns when a comparison mixes them
    how = {"measured": "from its own measured kernels", "transferred": "by transfer", "flat": "by the flat derate"}
    st.info(f"A is priced {how.get(prov_a['profile_kind'], prov_a['profile_kind'])}, B "
            f"{how.get(prov_b['profile_kind'], prov_b['profile_kind'])}: the two sides' expected errors differ (see "
            "above), so read a small B / A difference with care.")

st.markdown(
    """
**Pages**
- **Roofline**: every op of encode, prefill and decode on the device's roofline, and how techniques move them.
- **Request breakdown**: time per stage, what the visual tokens cost, how cost grows with resolution and image
  count, and the memory budget.
- **Serving simulation**: the discrete-event engine under a request rate: latency CDFs against SLOs, batch size,
  queue and KV occupancy over time, per-request table.
- **Technique comparison**: combinations of techniques against latency, throughput, memory and a user-supplied
  accuracy delta, with the Pareto front.
- **Capacity planner**: the cheapest hardware, tensor parallelism and replica count that serve a target request
  rate within latency SLOs, with the Pareto front of cost against latency and the commands to deploy it.
"""
)
