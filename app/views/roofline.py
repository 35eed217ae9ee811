"""Roofline: every op of the three stages on the device's roofline, before and after the selected techniques."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from explorer import charts
from explorer.data import estimate_or_stop, hardware
from explorer.fmt import fmt_time
from explorer.state import current_setup
from explorer.ui import headline, reproduce

from lvlmsim.estimate import Estimate
from lvlmsim.specs.hardware import HardwareSpec


def plottable(frame: pd.DataFrame) -> pd.DataFrame:
    """Ops that have a place on log-log axes (zero FLOPs or zero bytes, e.g. an embedding gather or a collective
    with no HBM traffic, do not)."""
    ok = (frame["flops"] > 0) & (frame["bytes"] > 0) & (frame["attained_tflops"] > 0)
    return frame[ok]


def op_points(est: Estimate, when: str) -> pd.DataFrame:
    f = est.ops_frame()
    f = f.assign(when=when, time_ms=f["time_s"] * 1e3, key=f["stage"] + "/" + f["op"] + "/" + f["layers"])
    return f


def roofs_for(hw: HardwareSpec, dtypes: list[str], x_lo: float, x_hi: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Roof polylines (bandwidth slope then flat peak) and ridge points, from the hardware spec's own numbers."""
    roofs, ridges = [], []
    bw = hw.mem_bw_bytes_per_s
    for dt in dtypes:
        if not hw.supports(dt):
            continue
        peak = hw.peak_flops(dt)
        ridge = hw.ridge_point(dt)
        lo, hi = min(x_lo, ridge / 10), max(x_hi, ridge * 10)
        for x in (lo, ridge, hi):
            roofs.append({"dtype": dt, "intensity": x, "tflops": min(peak, x * bw) / 1e12})
        ridges.append({"dtype": dt, "ridge": ridge, "peak_tflops": peak / 1e12, "bw_tbps": bw / 1e12,
                       "label": f"ridge {ridge:.0f} FLOP/B ({dt}, {peak / 1e12:.0f} TFLOP/s)"})
    return pd.DataFrame(roofs), pd.DataFrame(ridges)


st.title("Roofline")
setup = current_setup()
est = estimate_or_stop(setup)
headline(est)
hw = hardware(setup.hardware)

after = plottable(op_points(est, "with techniques" if setup.techniques else "this request"))
moves = None
points = after
if setup.techniques:
    base = estimate_or_stop(setup.with_(techniques=()))
    before = plottable(op_points(base, "without techniques"))
    points = pd.concat([before, after], ignore_index=True)
    # pair each op with itself by stage and name: a technique may split an op's layer range (FastV: layers 0-1 keep
    # every token, 2-31 half), so one "before" point can lead to several "after" points
    both = before.merge(after, on=["stage", "op"], suffixes=("_b", "_a"))
    moved = both[~(np.isclose(both["intensity_b"], both["intensity_a"])
                   & np.isclose(both["attained_tflops_b"], both["attained_tflops_a"]))]
    moves = pd.DataFrame(
        [{"key": f"{r.key_b}>{r.layers_a}", "order": 0, "intensity": r.intensity_b,
          "attained_tflops": r.attained_tflops_b} for r in moved.itertuples()]
        + [{"key": f"{r.key_b}>{r.layers_a}", "order": 1, "intensity": r.intensity_a,
            "attained_tflops": r.attained_tflops_a} for r in moved.itertuples()],
        columns=["key", "order", "intensity", "attained_tflops"])

dtypes = sorted(set(points["dtype"])) or [next(iter(hw.peak_tflops))]
roofs, ridges = roofs_for(hw, dtypes, float(points["intensity"].min()) / 3, float(points["intensity"].max()) * 3)
st.altair_chart(charts.roofline(points, roofs, ridges, moves), width="stretch")

hidden = est.ops_frame()
hidden = hidden[~hidden.index.isin(plottable(hidden).index)]
cap = (f"{hw.name}: memory bandwidth {hw.mem_bw_gbps:g} GB/s; colour = stage, shape = op kind, size = time; each "
       "point is one op with all its calls in that stage (hover for FLOPs, bytes, time and bound).")
if len(hidden):
    cap += f" Not on log axes (zero FLOPs or bytes): {', '.join(sorted(set(hidden['op'])))}."
if setup.techniques:
    cap += " Hollow points: the same request without techniques; grey lines show how each op moved."
else:
    cap += " Pick techniques in the sidebar to see how they move the points."
st.caption(cap)

# Teaching notes, with this request's own numbers
pre, dec = est.stages["prefill"], est.stages["decode"]
ops = est.ops_frame()
dec_gemm = ops[(ops["stage"] == "decode") & (ops["kind"] == "gemm")]
pre_gemm = ops[(ops["stage"] == "prefill") & (ops["kind"] == "gemm")]
ridge_txt = ", ".join(f"{r.ridge:.0f} FLOP/byte for {r.dtype}" for r in ridges.itertuples())
dec_i = dec_gemm["flops"].sum() / dec_gemm["bytes"].sum() if len(dec_gemm) else float("nan")
pre_i = pre_gemm["flops"].sum() / pre_gemm["bytes"].sum() if len(pre_gemm) else float("nan")
st.subheader("Reading the roofline")
st.markdown(
    f"""
- **The ridge point** ({ridge_txt}) is peak FLOP/s divided by memory bandwidth. Ops to its left cannot be fed fast
  enough from memory (bandwidth-bound, on the slope); ops to its right are limited by the arithmetic units (the flat
  roof). Points sit below the roof by the efficiency of the calibration profile (`{est.profile}`).
- **Why decode sits on the bandwidth slope.** A decode step produces one token per sequence, so every weight
  matrix is read from memory to do just {setup.batch} multiply-add(s) per weight: the decode GEMMs here have an
  intensity of about **{dec_i:.1f} FLOP/byte**, far left of the ridge. Decode's time ({fmt_time(dec.time_s)}, bound:
  *{dec.bound}*) is set by bytes moved (weights plus the whole KV cache, visual tokens included) — batching more
  sequences moves these points right, towards the ridge.
- **What the visual tokens do to prefill.** Prefill runs all {est.context_tokens} context tokens at once; of these,
  {0 if est.image_tokens_in_cross_attention else est.visual_tokens} are visual, so the prefill GEMMs reuse each
  weight ~{est.context_tokens * setup.batch} times (intensity **{pre_i:.0f} FLOP/byte**) and sit on the flat,
  compute-bound roof. Visual tokens cause **{pre.visual_flops_share:.0%}** of prefill FLOPs here: more pixels mean
  more tokens, more FLOPs, a longer TTFT — and a larger KV cache for every decode step to read.
- **Encode** (the vision encoder) is compute-bound for the same reason: hundreds of patches per image share each weight.
"""
)
with st.expander("Every op (the numbers behind the points)"):
    st.dataframe(ops, hide_index=True, key="roofline-ops")
reproduce(setup, "est.ops_frame()[['stage', 'op', 'kind', 'intensity', 'attained_tflops', 'time_s', 'bound']]")
