"""Overview: the sidebar's request, stage by stage, with the headline numbers."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from explorer.data import estimate_or_stop
from explorer.fmt import fmt_si, fmt_time
from explorer.state import current_setup
from explorer.ui import headline, reproduce

st.title("lvlmsim explorer")
st.caption("What does it cost to serve this vision-language model, on this hardware, under this traffic, with these "
           "techniques, and why? Set up a request in the sidebar; every number below comes from `lvlmsim.estimate`.")

setup = current_setup()
est = estimate_or_stop(setup)
headline(est)

st.subheader(f"{est.model_id} on {est.hardware_id}")
st.markdown(
    f"**{est.visual_tokens}** visual tokens (ViT tokens: {est.vit_tokens}), **{est.prompt_tokens}** prompt tokens, "
    f"**{est.output_tokens}** output tokens; batch {est.batch}, tp {est.tp}, efficiency profile `{est.profile}`."
)
rows = [{"stage": name, "time": fmt_time(s.time_s), "FLOPs": fmt_si(s.flops, "FLOP"), "bytes": fmt_si(s.bytes, "B"),
         "bound": s.bound, "visual share of FLOPs": f"{s.visual_flops_share:.0%}"} for name, s in est.stages.items()]
st.dataframe(pd.DataFrame(rows), hide_index=True, key="overview-stages")
for note in est.notes:
    if note != est.memory.verdict:
        st.info(note)
st.caption(est.memory.verdict)
reproduce(setup, "print(est.ttft_s, est.tpot_s, est.e2e_s, est.memory.verdict)")

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
"""
)
