"""The roofline page's frames and its teaching sentences, all read from the API's op table (`Estimate.ops_frame()`).

Nothing here re-derives a bound: the cost model labels each op (`bound`) from its compute time and memory time at the
profile's efficiencies, so an op is compute-bound exactly when its intensity is at or right of its *effective* ridge,
`intensity * memory_s / compute_s` (both times come from the API). The chart draws the datasheet roof and that
effective roof; every sentence quotes the op table's own labels and numbers, so text, chart and table agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.fmt import fmt_time
from lvlmsim.estimate import Estimate
from lvlmsim.specs.hardware import HardwareSpec

JITTER = 1.07  # coincident points are spread by powers of this factor on the log axes (a few %), never merged


def plottable(frame: pd.DataFrame) -> pd.DataFrame:
    """Ops that have a place on log-log axes (zero FLOPs or zero bytes, e.g. an embedding gather or a collective
    with no HBM traffic, do not)."""
    ok = (frame["flops"] > 0) & (frame["bytes"] > 0) & (frame["attained_tflops"] > 0)
    return frame[ok]


def _spread(frame: pd.DataFrame) -> pd.DataFrame:
    """x_drawn/y_drawn: the true coordinates, with ops that would hide each other (same point to 3 digits) fanned
    out diagonally around it; `coincident` counts them."""
    key = frame["intensity"].map(lambda v: f"{v:.3g}") + "|" + frame["attained_tflops"].map(lambda v: f"{v:.3g}")
    key = frame["when"] + "|" + key
    n = key.map(key.value_counts())
    k = frame.groupby(key).cumcount()
    factor = np.power(JITTER, k - (n - 1) / 2.0)
    return frame.assign(coincident=n, x_drawn=frame["intensity"] * factor, y_drawn=frame["attained_tflops"] / factor)


def op_points(est: Estimate, when: str) -> pd.DataFrame:
    """The estimate's plottable ops with `when`, time in ms, a join key and each op's effective ridge."""
    f = plottable(est.ops_frame())
    f = f.assign(when=when, time_ms=f["time_s"] * 1e3, key=f["stage"] + "/" + f["op"] + "/" + f["layers"],
                 effective_ridge=f["intensity"] * f["memory_s"] / f["compute_s"].where(f["compute_s"] > 0))
    return _spread(f)


def split_prefill(points: pd.DataFrame) -> pd.DataFrame:
    """Each prefill point as two at the same coordinates: 'prefill: visual tokens' and 'prefill: text tokens', their
    size (time) and FLOPs split by the op's visual share of FLOPs (from the API), then fanned out like any
    coincident points. Other stages are unchanged."""
    pre = points[points["stage"] == "prefill"]
    if pre.empty:
        return points
    parts = []
    for part, share in (("visual tokens", pre["visual_flops_share"]), ("text tokens", 1 - pre["visual_flops_share"])):
        parts.append(pre.assign(stage=f"prefill: {part}", time_s=pre["time_s"] * share,
                                time_ms=pre["time_ms"] * share, flops=pre["flops"] * share))
    split = pd.concat(parts, ignore_index=True)
    split = split[split["time_s"] > 0]
    rest = points[points["stage"] != "prefill"]
    return _spread(pd.concat([rest.drop(columns=["coincident", "x_drawn", "y_drawn"]), split.drop(
        columns=["coincident", "x_drawn", "y_drawn"])], ignore_index=True))


def _median_weighted(values: pd.Series, weights: pd.Series) -> float:
    order = np.argsort(values.to_numpy())
    v, w = values.to_numpy()[order], weights.to_numpy()[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, cum[-1] / 2.0)])


def effective_rates(points: pd.DataFrame) -> tuple[float, float]:
    """(FLOP/s, bytes/s) the cost model grants an op per call, time-weighted median over the ops: the effective
    roof's flat part and slope. With a flat profile every op has the same two numbers."""
    calls = points["count"].clip(lower=1)
    flops_s = (points["flops"] / calls) / points["compute_s"]
    bytes_s = (points["bytes"] / calls) / points["memory_s"]
    ok = np.isfinite(flops_s) & np.isfinite(bytes_s) & (points["time_s"] > 0)
    w = points.loc[ok, "time_s"]
    return _median_weighted(flops_s[ok], w), _median_weighted(bytes_s[ok], w)


def roofs_for(hw: HardwareSpec, points: pd.DataFrame, x_lo: float, x_hi: float, device: str = ""
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Datasheet roof per dtype (bandwidth slope then flat peak), one effective roof per stage (what the profile
    grants that stage's kernels: a decode GEMM with one row per sequence gets far less of the peak than a prefill
    GEMM), and the datasheet ridges. `device` ('A'/'B') prefixes the labels when two devices share the chart."""
    roofs, ridges = [], []
    bw = hw.mem_bw_bytes_per_s
    prefix = f"{device}: " if device else ""
    for dt in sorted(set(points["dtype"])) or [next(iter(hw.peak_tflops))]:
        if not hw.supports(dt):
            continue
        peak = hw.peak_flops(dt)
        ridge = hw.ridge_point(dt)
        lo, hi = min(x_lo, ridge / 10), max(x_hi, ridge * 10)
        for x in (lo, ridge, hi):
            roofs.append({"roof": f"{prefix}{hw.id} datasheet ({dt})", "kind": "datasheet", "dtype": dt,
                          "stage": "", "device": device, "intensity": x, "tflops": min(peak, x * bw) / 1e12})
        ridges.append({"dtype": dt, "device": device, "ridge": ridge, "peak_tflops": peak / 1e12, "bw_tbps": bw / 1e12,
                       "label": f"{prefix}ridge {ridge:.0f} FLOP/B ({dt}, {peak / 1e12:.0f} TFLOP/s)"})
        for stage, mine in points[points["dtype"] == dt].groupby("stage", sort=False):
            e_flops, e_bw = effective_rates(mine)
            e_ridge = e_flops / e_bw
            for x in (lo, e_ridge, hi):
                roofs.append({"roof": f"{prefix}{hw.id} {stage} effective ({dt}, {e_flops / peak:.0%} of peak, "
                                      f"{e_bw / bw:.0%} of bandwidth)", "kind": "effective", "dtype": dt,
                              "stage": stage, "device": device, "intensity": x,
                              "tflops": min(e_flops, x * e_bw) / 1e12})
    return pd.DataFrame(roofs), pd.DataFrame(ridges)


SIDE = {"memory": "left of", "compute": "at or right of"}
WHY = {"memory": "bytes moved, not FLOPs, set its time",
       "compute": "the arithmetic units, not memory, set its time"}


def op_sentence(r) -> str:
    """One op's place, in words that follow from its own row (the checks in the browser test parse this form)."""
    if not np.isfinite(r.effective_ridge):  # a collective: no compute time, so no ridge (it printed 'ridge nan')
        why = ("the link between devices, not the roofs, sets its time" if r.bound == "communication"
               else "the roofs do not set its time")
        return (f"`{r.op}` (intensity {r.intensity:.3g} FLOP/byte; no effective ridge: it has no compute time) is "
                f"**{r.bound}-bound**: {why}")
    head = (f"`{r.op}` (intensity {r.intensity:.3g} FLOP/byte vs its effective ridge {r.effective_ridge:.3g} "
            f"FLOP/byte) is **{r.bound}-bound**")
    if r.bound in SIDE:
        return f"{head}: it sits {SIDE[r.bound]} its effective ridge, so {WHY[r.bound]}"
    if r.bound == "overhead":
        return (f"{head}: the per-kernel floor ({fmt_time(r.floor_s)} per call) exceeds its roofline time "
                f"({fmt_time(max(r.compute_s, r.memory_s))}), so it sits below the roof whatever its intensity")
    return head


def stage_sentence(est: Estimate, stage: str, pts: pd.DataFrame) -> str | None:
    """Share of the stage's time by bound, and its largest op."""
    mine = pts[pts["stage"] == stage]
    if mine.empty:
        return None
    share = mine.groupby("bound")["time_s"].sum() / mine["time_s"].sum()
    parts = ", ".join(f"{'<1%' if v < 0.005 else f'{v:.0%}'} {b}-bound"
                      for b, v in share.sort_values(ascending=False).items())
    top = mine.loc[mine["time_s"].idxmax()]
    st_ = est.stages[stage]
    return (f"**{stage}** ({fmt_time(st_.time_s)}; the API labels the stage *{st_.bound}*-bound): of the time of its "
            f"drawn ops, {parts}. Its largest op, {op_sentence(top)}.")


def teaching_notes(est: Estimate, hw: HardwareSpec, pts: pd.DataFrame, roofs: pd.DataFrame,
                   batch: int) -> list[str]:
    """Every sentence of "Reading the roofline", generated from this request's op table."""
    notes = []
    for r in roofs[roofs["kind"] == "datasheet"].drop_duplicates("dtype").itertuples():
        ridge = hw.ridge_point(r.dtype)
        eff = roofs[(roofs["kind"] == "effective") & (roofs["dtype"] == r.dtype)].groupby("stage", sort=False)
        e_txt = "; ".join(f"{stage} {float(g['intensity'].iloc[1]):.3g}" for stage, g in eff)
        if e_txt:
            e_txt = (f" With the efficiencies of profile `{est.profile}`, each stage's kernels get their own "
                     f"effective roof (dashed, in the stage's colour), with ridges at {e_txt} FLOP/byte: the cost "
                     "model calls an op compute-bound exactly when it sits at or right of its own effective ridge, "
                     "so read the labels against the dashed roofs.")
        notes.append(f"**The ridge point** of {hw.name} for {r.dtype} is **{ridge:.3g} FLOP/byte** (peak FLOP/s "
                     f"divided by memory bandwidth, from the datasheet; solid roof).{e_txt}")
    for stage in ("encode", "prefill", "decode"):
        s = stage_sentence(est, stage, pts)
        if s:
            notes.append(s)
    dec = pts[(pts["stage"] == "decode") & (pts["kind"] == "gemm")]
    if len(dec):
        i = dec["flops"].sum() / dec["bytes"].sum()
        labels = dec.groupby("bound")["time_s"].sum().sort_values(ascending=False)
        notes.append(f"**Why decode GEMMs sit where they do.** A decode step makes one token per sequence, so each "
                     f"weight read from memory serves {batch} multiply-add(s) per weight: their intensity is about "
                     f"**{i:.3g} FLOP/byte** at batch {batch}, and the API labels "
                     f"{labels.iloc[0] / labels.sum():.0%} of their time *{labels.index[0]}*-bound. Batching more "
                     "sequences moves them right, towards the ridge.")
    pre = est.stages["prefill"]
    vis = 0 if est.image_tokens_in_cross_attention else est.visual_tokens
    notes.append(f"**What the visual tokens do to prefill.** Prefill runs all {est.context_tokens} context tokens at "
                 f"once, {vis} of them visual; visual tokens cause **{pre.visual_flops_share:.0%}** of prefill FLOPs "
                 "here: more pixels mean more tokens, more FLOPs, a longer TTFT and a larger KV cache for every "
                 "decode step to read.")
    for name, stage in est.stages.items():
        if name not in ("encode", "prefill", "decode") and stage.time_s > 0:
            notes.append(f"**{name}** ({fmt_time(stage.time_s)}) is host-side work with no GPU FLOPs or bytes, so "
                         "it has no point on the roofline; it still adds to TTFT.")
    over = pts[pts["bound"] == "overhead"]
    if len(over):
        notes.append(f"**Overhead-bound ops** (ringed, {over['op'].nunique()} of them): each call's work takes "
                     f"less than the runtime's per-kernel floor ({fmt_time(float(over['floor_s'].median()))} per "
                     "call), so they sit below both roofs whatever their intensity.")
    many = pts[pts["coincident"] > 1]
    if len(many):
        notes.append(f"{len(many)} ops share a point with another op; they are fanned out by a few % so none hides "
                     "another (the tooltip gives the true numbers and how many share the point).")
    return notes


def moe_lesson(model_id: str, moe, moe_layers: int, sweep: pd.DataFrame, batch: int,
               skew: float = 0.0) -> str | None:
    """The MoE decode lesson in words, from `data.moe_batch_sweep` (the API's TPOT and the graph's expert count):
    a decode step reads the weights of the distinct experts its tokens touch, so TPOT rises with the batch until
    every expert is touched; with a router `skew`, how many fewer than balanced routing touches. None for a dense
    model or an empty sweep."""
    if moe is None or sweep.empty or batch not in set(sweep["batch"]):
        return None
    E, k = moe.num_experts, moe.experts_per_token
    row = sweep[sweep["batch"] == batch].iloc[0]
    one = sweep.iloc[0]
    at_one = f"; {one['experts_touched']:.3g} at batch 1" if batch != 1 else ""
    full = sweep[sweep["experts_touched"] >= 0.99 * E]
    then = (f"until every expert is touched (99% of them from batch {int(full.iloc[0]['batch'])}, TPOT "
            f"{fmt_time(full.iloc[0]['tpot_ms'] / 1e3)}); past that only the KV cache read grows"
            if len(full) else f"and keeps rising up to batch {int(sweep.iloc[-1]['batch'])}: even then not every "
            "expert is touched")
    return (f"**The MoE lesson: decode reads the experts the batch touches.** {model_id} routes each token to {k} of "
            f"its {E} experts in each of its {moe_layers} MoE layers. A decode step makes one token per sequence and "
            f"reads the weights of the *distinct* experts those tokens touch: {_routing(skew, row)}, about "
            f"**{row['experts_touched']:.1f}** per layer at batch {batch} "
            f"({row['experts_share']:.0%} of the expert weights{at_one}). So TPOT "
            f"rises with the batch, from {fmt_time(one['tpot_ms'] / 1e3)} at batch {int(one['batch'])}"
            + (f" to {fmt_time(row['tpot_ms'] / 1e3)} at batch {batch}" if batch != int(one["batch"]) else "")
            + f", {then}. A dense model reads all its weights at every batch size.")


def _routing(skew: float, row) -> str:
    """How the lesson's expert count is routed: the balanced formula, or the skew with balanced routing's count."""
    if not skew:
        return "with balanced routing E·(1−(1−k/E)^B)"
    return (f"with router skew {skew:g} (expert i picked with probability ∝ i^−{skew:g}; balanced routing would touch "
            f"{row['experts_balanced']:.1f})")


def window_lesson(est: Estimate, model_id: str, local, num_layers: int) -> str | None:
    """Issue 16's windowed layers in words, from the API's op table: how many decoder layers attend locally, and what
    one decode attention call costs in a windowed layer against a global one at this context. None when the model
    has no local attention or the table has no windowed decode op."""
    if local is None:
        return None
    ops = est.ops_frame()
    dec = ops[(ops["stage"] == "decode") & ops["op"].str.startswith("llm.attention")]
    windowed = dec[dec["op"] == f"llm.attention.{local.kind}"]
    full = dec[dec["op"] == "llm.attention"]
    if windowed.empty or full.empty:
        return None
    w, n_global = local.window_tokens, len(local.global_layers)
    how = (f"within a sliding window of the last {w:,} tokens" if local.kind == "sliding"
           else f"within their own chunk of {w:,} tokens")
    per_call = {name: float(f["time_s"].sum() / f["count"].sum()) for name, f in (("w", windowed), ("g", full))}
    longest = est.context_tokens + est.output_tokens
    where = (f"Past {w:,} tokens a windowed layer reads the KV of at most {w:,} of them" if longest > w else
             f"This request ({longest:,} tokens at its last step) stays inside the window, so both read the same KV; "
             f"past {w:,} tokens a windowed layer reads the KV of at most {w:,} of them")
    return (f"**Windowed layers.** {num_layers - n_global} of the {num_layers} decoder layers of {model_id} attend "
            f"{how}; the other {n_global} attend to the whole context. {where}: one decode attention call takes "
            f"{fmt_time(per_call['w'])} in a windowed layer (`{windowed['op'].iloc[0]}`) against "
            f"{fmt_time(per_call['g'])} in a global one (`llm.attention`) here, and the KV cache grows by "
            f"{est.memory.kv_bytes_per_token_beyond_window / 1024:,.0f} KiB per token beyond the window instead of "
            f"{est.memory.kv_bytes_per_token / 1024:,.0f} KiB.")
