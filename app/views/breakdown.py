"""Request breakdown: where the time goes, what the visual tokens cost, how cost scales, and the memory budget."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from explorer import charts
from explorer.data import count_sweep, estimate_or_stop, resolution_sweep
from explorer.fmt import GIB, fmt_si, fmt_time
from explorer.state import current_setup
from explorer.ui import chart, headline, reproduce

from lvlmsim.estimate import Estimate


def stage_kind_times(est: Estimate) -> pd.DataFrame:
    ops = est.ops_frame()
    f = ops.groupby(["stage", "kind"], as_index=False)["time_s"].sum()
    f["time_ms"] = f["time_s"] * 1e3
    totals = {name: s.time_s for name, s in est.stages.items()}
    f["share"] = [t / totals[s] if totals[s] else 0.0 for s, t in zip(f["stage"], f["time_s"], strict=True)]
    return f


def visual_vs_text(est: Estimate, text_only: Estimate) -> pd.DataFrame:
    """What the visual input causes = this request minus the same request without images or video (both from
    `lvlmsim.estimate`); attention between text and visual tokens counts as caused by the visual tokens."""
    def totals(e: Estimate) -> dict[str, float]:
        return {"FLOPs": sum(s.flops for s in e.stages.values()),
                "bytes moved": sum(s.bytes for s in e.stages.values()),
                "KV cache": e.memory.request_kv_bytes * e.batch,
                "E2E time": e.e2e_s}
    with_v, without = totals(est), totals(text_only)
    units = {"FLOPs": "FLOP", "bytes moved": "B", "KV cache": "B", "E2E time": "s"}
    rows = []
    for q in with_v:
        visual = max(with_v[q] - without[q], 0.0)
        text = with_v[q] - visual
        for part, v in (("visual tokens", visual), ("text tokens", text)):
            label = fmt_time(v) if units[q] == "s" else fmt_si(v, units[q])
            rows.append({"quantity": q, "part": part, "value": v, "label": label,
                         "share": v / with_v[q] if with_v[q] else 0.0})
    return pd.DataFrame(rows)


def memory_parts(est: Estimate) -> tuple[pd.DataFrame, pd.DataFrame]:
    mem = est.memory
    parts = [(f"weights: {m}", b) for m, b in mem.weights_by_module.items()]
    other = mem.weights_bytes - sum(mem.weights_by_module.values())
    if other > 0:
        parts.append(("weights: other", other))
    parts += [(f"KV cache ({est.batch} seq)", mem.request_kv_bytes * est.batch),
              ("activations (peak)", mem.activation_peak_bytes), ("runtime reserve", mem.reserved_bytes)]
    f = pd.DataFrame([{"row": "memory", "part": p, "gib": b / GIB, "order": i} for i, (p, b) in enumerate(parts)])
    limits = pd.DataFrame([{"limit": "usable", "gib": mem.usable_bytes / GIB},
                           {"limit": "capacity", "gib": mem.capacity_bytes / GIB}])
    return f, limits


def long_sweep(f: pd.DataFrame, x: str) -> pd.DataFrame:
    names = {"ttft_s": "TTFT", "encode_s": "encode", "prefill_s": "prefill", "tpot_s": "TPOT"}
    keep = [x, "visual_tokens"] + (["size"] if "size" in f else [])
    out = f.melt(id_vars=keep, value_vars=list(names), var_name="metric", value_name="s")
    out["metric"] = out["metric"].map(names)
    out["ms"] = out["s"] * 1e3
    return out


st.title("Request breakdown")
setup = current_setup()
est = estimate_or_stop(setup)
headline(est)

st.subheader("Time per stage")
chart(charts.stage_time_bars(stage_kind_times(est)))
st.caption(" · ".join(f"{n}: {fmt_time(s.time_s)} ({s.bound}-bound)" for n, s in est.stages.items())
           + ". Decode is all output tokens after the first.")

st.subheader("Visual vs text tokens")
if est.visual_tokens == 0:
    st.info("This request has no images or video: everything is caused by text tokens.")
else:
    text_only = estimate_or_stop(setup.with_(images=0, video_s=0.0))
    chart(charts.visual_share_bars(visual_vs_text(est, text_only)))
    st.caption(f"{est.visual_tokens} visual tokens and {est.prompt_tokens} prompt tokens per request. Share caused by "
               "the visual input = this request minus the same request with `images=0, video_s=0`. Op-level "
               "attribution of FLOPs (`visual_flops_share`): "
               + ", ".join(f"{n} {s.visual_flops_share:.0%}" for n, s in est.stages.items()) + ".")

st.subheader("How cost grows with resolution and image count")
c1, c2 = st.columns(2)
with c1:
    res = resolution_sweep(setup)
    if res.empty:
        st.info("No image size in the sweep is valid for this model.")
    else:
        chart(charts.sweep_lines(long_sweep(res, "megapixels"), "megapixels", "megapixels per image",
                                 "resolution-sweep", log_x=True))
        st.caption(f"{max(setup.images, 1)} image(s) at {', '.join(res['size'])} (the sidebar's aspect ratio); "
                   f"visual tokens: {', '.join(str(v) for v in res['visual_tokens'])}.")
with c2:
    cnt = count_sweep(setup)
    if cnt.empty:
        st.info("No image count in the sweep is valid for this setup.")
    else:
        chart(charts.sweep_lines(long_sweep(cnt, "images"), "images", "images per request", "count-sweep"))
        st.caption(f"{setup.width}x{setup.height} images; visual tokens: "
                   f"{', '.join(str(v) for v in cnt['visual_tokens'])}.")

st.subheader("Memory per device")
parts, limits = memory_parts(est)
chart(charts.memory_bar(parts, limits))
st.caption(est.memory.verdict + f". KV per text token {est.memory.kv_bytes_per_token / 1024:.0f} KiB, per visual "
           f"token {est.memory.kv_bytes_per_visual_token / 1024:.0f} KiB.")
named = {"model": setup.model, "hardware": setup.hardware}
c = st.columns(2)
c[0].download_button("Download resolution sweep (CSV)", res.assign(**named).to_csv(index=False).encode(),
                     file_name="lvlmsim-resolution-sweep.csv", mime="text/csv", key="breakdown-res-csv")
c[1].download_button("Download image-count sweep (CSV)", cnt.assign(**named).to_csv(index=False).encode(),
                     file_name="lvlmsim-count-sweep.csv", mime="text/csv", key="breakdown-count-csv")
reproduce(setup, "text_only = lvlmsim.estimate(..., images=0, video_s=0)  # the visual share is est minus this")
