"""Roofline: every op of the three stages on the device's roofline (datasheet and effective roofs), before and after
the selected techniques, or beside a second device (A/B). The sentences under the chart are generated from the same
op table the points come from (explorer.roofline_data), so they cannot contradict it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import yaml
from explorer import charts
from explorer.data import estimate_or_stop, hardware, moe_batch_sweep, provenance
from explorer.fmt import provenance_text
from explorer.plan_table import missing_placeholder
from explorer.roofline_data import (
    moe_lesson,
    op_points,
    plottable,
    roofs_for,
    split_prefill,
    teaching_notes,
    window_lesson,
)
from explorer.state import current_setup, fixed_resize_note, keep, moe_skew_widget, save_upload, sticky
from explorer.ui import chart, headline, reproduce

from lvlmsim.specs import registry


def technique_moves(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two rows per op that moved (before, after), joined by a line on the chart. Ops pair by stage and name: a
    technique may split an op's layer range (FastV: layers 0-1 keep every token, 2-31 half), so one "before" point
    can lead to several "after" points."""
    both = before.merge(after, on=["stage", "op"], suffixes=("_b", "_a"))
    moved = both[~(np.isclose(both["intensity_b"], both["intensity_a"])
                   & np.isclose(both["attained_tflops_b"], both["attained_tflops_a"]))]
    return pd.DataFrame(
        [{"key": f"{r.key_b}>{r.layers_a}", "order": 0, "intensity": r.intensity_b,
          "attained_tflops": r.attained_tflops_b} for r in moved.itertuples()]
        + [{"key": f"{r.key_b}>{r.layers_a}", "order": 1, "intensity": r.intensity_a,
            "attained_tflops": r.attained_tflops_a} for r in moved.itertuples()],
        columns=["key", "order", "intensity", "attained_tflops"])


st.title("Roofline")
setup = current_setup()
setup = setup.with_(moe_skew=moe_skew_widget(setup.model, "roof.moe_skew"))  # MoE models only
est = estimate_or_stop(setup)
headline(est)
hw = hardware(setup.hardware)
others = [h for h in registry.hardware_ids() if h != setup.hardware]
key = sticky("roof.compare", "")
if st.session_state[key] not in ("", *others):
    st.session_state[key] = ""
compare = st.selectbox("Compare with (A/B)", ["", *others], key=key,
                       format_func=lambda h: h or "no second device",
                       help="Draw the same request on a second device: its roofs and its ops (hollow) on one chart.")
keep(key)

moves = None
hollow = "without techniques"
model_spec = registry.load_model(setup.model)
mha_twin = None
twin_label = ""
if model_spec.llm.mla is not None and not compare:
    mla_key = sticky("roof.mla_vs_mha", False)
    heads = model_spec.llm.num_heads
    gqa_kv = max(d for d in range(1, min(8, heads) + 1) if heads % d == 0)  # 8 KV heads, as common GQA LLMs have
    if st.checkbox("MLA next to MHA / GQA", key=mla_key,
                   help="Draw the same request on the same model with its latent attention replaced by standard "
                        "attention (hollow): the KV it no longer reads."):
        kinds = {"mha": f"MHA: same heads ({heads} KV heads)", "gqa": f"GQA: {gqa_kv} KV heads"}
        kind = st.radio("Standard attention to draw", list(kinds), format_func=kinds.get, horizontal=True,
                        key=sticky("roof.mla_twin", "mha"),
                        help="MHA: one KV head per query head (the model's own heads); GQA: the grouped-query "
                             f"attention a dense model of this size runs ({gqa_kv} KV heads, each shared by "
                             f"{heads // gqa_kv} query heads).")
        keep("roof.mla_twin")
        twin = model_spec.with_mha_attention() if kind == "mha" else model_spec.with_gqa_attention(gqa_kv)
        twin_label = kinds[kind]
        mha_twin = str(save_upload(f"{twin.id}.yaml", yaml.safe_dump(twin.model_dump(mode="json")).encode()))
    keep(mla_key)
if mha_twin is not None:
    points = op_points(est, f"MLA: {model_spec.id}")
    other = op_points(estimate_or_stop(setup.with_(model=mha_twin)), twin_label)
    all_points = pd.concat([points, other], ignore_index=True)
    roofs, ridges = roofs_for(hw, all_points, float(all_points["intensity"].min()) / 3,
                              float(all_points["intensity"].max()) * 3)
    hollow = twin_label
elif compare:
    est_b = estimate_or_stop(setup.with_(hardware=compare))
    hw_b = hardware(compare)
    points = op_points(est, f"A: {hw.id}")
    other = op_points(est_b, f"B: {hw_b.id}")
    x_lo = float(min(points["intensity"].min(), other["intensity"].min())) / 3
    x_hi = float(max(points["intensity"].max(), other["intensity"].max())) * 3
    roofs, ridges = roofs_for(hw, points, x_lo, x_hi, device="A")
    roofs_b, ridges_b = roofs_for(hw_b, other, x_lo, x_hi, device="B")
    roofs, ridges = pd.concat([roofs, roofs_b], ignore_index=True), pd.concat([ridges, ridges_b], ignore_index=True)
    hollow = f"B: {hw_b.id}"
    all_points = pd.concat([points, other], ignore_index=True)
else:
    points = op_points(est, "with techniques" if setup.techniques else "this request")
    all_points = points
    if setup.techniques:
        before = op_points(estimate_or_stop(setup.with_(techniques=())), "without techniques")
        all_points = pd.concat([before, points], ignore_index=True)
        moves = technique_moves(before, points)
    roofs, ridges = roofs_for(hw, points, float(all_points["intensity"].min()) / 3,
                              float(all_points["intensity"].max()) * 3)
split = st.toggle("Split prefill points into visual and text tokens", key=sticky("roof.split", False),
                  help="Each prefill op drawn twice at its place: red for the share of its FLOPs the visual tokens "
                       "cause, grey for the text tokens' (the same colours as on Request breakdown).")
keep("roof.split")
drawn = split_prefill(all_points) if split else all_points
chart(charts.roofline(drawn, roofs, ridges, moves, hollow=hollow))

hidden = est.ops_frame()
hidden = hidden[~hidden.index.isin(plottable(hidden).index)]
cap = (f"{hw.name}: memory bandwidth {hw.mem_bw_gbps:g} GB/s. Solid roof: datasheet; dashed, in each stage's "
       "colour: that stage's effective roof (the profile's efficiencies, which the bound labels use). Colour = "
       "stage, shape = op kind, size = time; ringed = overhead-bound. Each point is one op with all its calls in "
       "that stage (hover for FLOPs, bytes, time, bound and its own effective ridge).")
if len(hidden):
    cap += f" Not on log axes (zero FLOPs or bytes): {', '.join(sorted(set(hidden['op'])))}."
if mha_twin is not None:
    cap += (f" Filled: the model as released (MLA); hollow: the same model with standard attention ({twin_label}). "
            "Decode attention moves right with MLA: the latent is read once for all heads.")
elif compare:
    prov_a, prov_b = provenance(setup.hardware, setup.profile), provenance(compare, setup.profile)
    cap += (f" Filled: A = {hw.id}, {provenance_text(prov_a)}; hollow: B = {compare}, {provenance_text(prov_b)}; the "
            "same request.")
    if prov_a["profile_kind"] != prov_b["profile_kind"]:  # issue 11: a comparison that mixes them says so
        cap += " A and B are priced by different kinds of efficiency model, so their expected errors differ."
elif setup.techniques:
    cap += " Hollow points: the same request without techniques; grey lines show how each op moved."
else:
    cap += " Pick techniques in the sidebar to see how they move the points, or a second device to compare."
st.caption(cap)

st.subheader("Reading the roofline")
notes = teaching_notes(est, hw, points, roofs[roofs["device"] != "B"], setup.batch)
note = fixed_resize_note(setup.model)
if note and setup.images:
    notes.append(note)
window = window_lesson(est, model_spec.id, model_spec.llm.local_attention, model_spec.llm.num_layers)
if window:
    notes.append(window)
st.markdown("\n".join(f"- {n}" for n in notes))
moe = model_spec.llm.moe
if moe is not None:  # issue 12's lesson: the weights a decode step reads grow with the batch
    sweep = moe_batch_sweep(setup)
    lesson = moe_lesson(model_spec.id, moe, model_spec.llm.num_layers - len(moe.dense_layers), sweep, setup.batch,
                        setup.moe_skew)
    if lesson:
        st.subheader("Mixture of experts: TPOT against the batch")
        chart(charts.moe_batch_chart(sweep, setup.moe_skew))
        st.markdown(lesson)
        skew_args = f", skew={setup.moe_skew:g}" if setup.moe_skew else ""
        st.caption("The same request at each batch size (`lvlmsim.estimate(..., batch=B"
                   + (f", moe_skew={setup.moe_skew:g}" if setup.moe_skew else "") + ").tpot_s`); ringed: the "
                   f"sidebar's batch. Experts touched: `lvlmsim.ops.graph.experts_touched(E, k, B{skew_args})`, the "
                   "count the operator graph prices the expert weight reads with"
                   + (" (faint dotted: balanced routing, skew 0)." if setup.moe_skew else ".")
                   + ("" if sweep["fits"].all() else " Batches "
                      + ", ".join(str(int(b)) for b in sweep.loc[~sweep["fits"], "batch"])
                      + " do not fit in memory on this device (priced anyway, to show the trend)."))
with st.expander("Every op (the numbers behind the points)"):
    ops = all_points.drop(columns=["x_drawn", "y_drawn", "key"])
    st.dataframe(ops, hide_index=True, key="roofline-ops", **missing_placeholder(),  # '—', not 'None'
                 column_config={"flops": st.column_config.NumberColumn("FLOPs", format="%.3e"),
                                "bytes": st.column_config.NumberColumn("bytes", format="%.3e"),
                                "intensity": st.column_config.NumberColumn("FLOP/byte", format="%.3g"),
                                "time_s": st.column_config.NumberColumn("time (s)", format="%.3e"),
                                "attained_tflops": st.column_config.NumberColumn("TFLOP/s", format="%.3g"),
                                "effective_ridge": st.column_config.NumberColumn("effective ridge", format="%.3g")})
    st.download_button("Download ops (CSV)", ops.assign(model=setup.model).to_csv(index=False).encode(),
                       file_name="lvlmsim-roofline-ops.csv", mime="text/csv", key="roofline-csv")
reproduce(setup, "est.ops_frame()[['stage', 'op', 'kind', 'intensity', 'attained_tflops', 'time_s', 'bound']]")
