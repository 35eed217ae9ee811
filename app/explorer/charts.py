"""Altair chart builders. They only draw the frames they are given; each chart carries a `description` naming it, so
the tests can find it among the page's Vega-Lite specs."""

from __future__ import annotations

import altair as alt
import pandas as pd

STAGES = ["encode", "prefill", "decode"]
STAGE_COLORS = ["#8e6cc0", "#1f77b4", "#ff7f0e"]
PART_COLORS = {"visual tokens": "#d62728", "text tokens": "#7f7f7f"}  # the same red/grey on every page
SPLIT_STAGES = ["prefill: visual tokens", "prefill: text tokens"]  # the roofline's split prefill points
STAGE_SCALE = alt.Scale(domain=STAGES + SPLIT_STAGES, range=STAGE_COLORS + list(PART_COLORS.values()))


def stage_scale(stages) -> alt.Scale:
    """STAGE_SCALE's fixed colours for the stages drawn only: the legend listed 'prefill: visual tokens' and
    'prefill: text tokens' with the split off, red and grey entries with no point of that colour anywhere."""
    present = set(stages)
    pairs = [(s, c) for s, c in zip(STAGE_SCALE.domain, STAGE_SCALE.range, strict=True) if s in present]
    return alt.Scale(domain=[s for s, _ in pairs], range=[c for _, c in pairs]) if pairs else STAGE_SCALE
ROOF_COLORS = ["#333333", "#17becf"]  # device A, device B (datasheet roofs and their labels)
# every op kind of lvlmsim.ops.op, in a fixed order, so a shape means the same on every chart and every model
KINDS = ["gemm", "conv", "attn_prefill", "attn_decode", "attn_encoder", "elementwise", "allreduce", "moe_gemm",
         "attn_mla_prefill", "attn_mla_decode", "alltoall"]
# Shapes with an area, filled or hollow: Vega's 'stroke', 'wedge' and 'arrow' are lines, so an op drawn with them was
# invisible on the chart and a blank in the legend (deepseek-vl2's attn_mla_prefill and moe_gemm points), and
# 'triangle' repeats 'triangle-up'. The last four are SVG paths in Vega's unit square: star, hexagon, pentagon, bar.
SHAPES = ["circle", "square", "triangle-up", "triangle-down", "diamond", "cross", "triangle-right", "triangle-left",
          "M0,-1L0.24,-0.33L0.95,-0.31L0.39,0.13L0.59,0.81L0,0.41L-0.59,0.81L-0.39,0.13L-0.95,-0.31L-0.24,-0.33Z",
          "M0,-1L0.87,-0.5L0.87,0.5L0,1L-0.87,0.5L-0.87,-0.5Z", "M0,-1L0.95,-0.31L0.59,0.81L-0.59,0.81L-0.95,-0.31Z",
          "M-1,-0.45L1,-0.45L1,0.45L-1,0.45Z"]


def kind_scale(kinds) -> alt.Scale:
    """The kinds on this chart only (the legend lists what is drawn), each with its fixed shape (so a shape means
    the same on every chart); kinds unknown here get the shapes left over."""
    present = set(kinds)
    domain = [k for k in KINDS if k in present]
    extras = sorted(present - set(KINDS))
    spare = SHAPES[len(KINDS):] or SHAPES
    return alt.Scale(domain=domain + extras, range=[SHAPES[KINDS.index(k)] for k in domain]
                     + [spare[i % len(spare)] for i in range(len(extras))])
OP_TOOLTIP = [
    alt.Tooltip("op:N"), alt.Tooltip("stage:N"), alt.Tooltip("kind:N"), alt.Tooltip("module:N"),
    alt.Tooltip("flops:Q", title="FLOPs", format=".3~s"), alt.Tooltip("bytes:Q", title="bytes", format=".3~s"),
    alt.Tooltip("intensity:Q", title="FLOP/byte", format=".3~g"),
    alt.Tooltip("attained_tflops:Q", title="attained TFLOP/s", format=".3~g"),
    alt.Tooltip("time_ms:Q", title="time (ms, all calls)", format=".4~g"), alt.Tooltip("bound:N"),
    alt.Tooltip("count:Q", title="calls"), alt.Tooltip("source:N", title="efficiency source"),
    alt.Tooltip("effective_ridge:Q", title="its effective ridge (FLOP/byte)", format=".4~g"),
    alt.Tooltip("coincident:Q", title="ops at this point"),
]


def roofline(points: pd.DataFrame, roofs: pd.DataFrame, ridges: pd.DataFrame,
             moves: pd.DataFrame | None = None, height: int = 520, hollow: str = "without techniques"
             ) -> alt.LayerChart:
    """Log-log roofline: the datasheet roof per device and dtype (solid, labelled), the effective roof of each stage
    (dashed, in the stage's colour), the datasheet ridges marked, every op a point; overhead-bound ops ringed.

    `points` has a `when` column ('with techniques' / 'without techniques', 'A: <hw>' / 'B: <hw>', or 'this
    request'); rows whose `when` equals `hollow` are drawn hollow. Points are placed at `x_drawn`/`y_drawn` (their
    true coordinates, spread by a few % where several ops coincide); tooltips show the true numbers.
    `roofs` has intensity, tflops, roof (a label), kind ('datasheet' or 'effective'), stage, device ('', 'A', 'B').
    `moves` (optional) holds two rows per op (before, after) joined by a line, so the shift is visible.
    """
    stages = stage_scale(set(points["stage"]) | set(roofs["stage"]))
    x_dom = [float(roofs["intensity"].min()), float(roofs["intensity"].max())]
    y_dom = [float(min(points["attained_tflops"].min(), roofs["tflops"].min())) / 2, float(roofs["tflops"].max()) * 3]
    x = alt.X("x_drawn:Q", scale=alt.Scale(type="log", domain=x_dom), title="arithmetic intensity (FLOP / byte)")
    y = alt.Y("y_drawn:Q", scale=alt.Scale(type="log", domain=y_dom), title="attained TFLOP/s")
    layers: list = []
    two = roofs["device"].nunique() > 1
    for i, (_, mine) in enumerate(roofs.groupby("device", sort=True)):
        colour, dash = ROOF_COLORS[i % len(ROOF_COLORS)], [[6, 4], [2, 3]][i % 2]
        sheet = mine[mine["kind"] == "datasheet"]
        layers.append(alt.Chart(sheet).mark_line(strokeWidth=2, clip=True, color=colour).encode(
            x=alt.X("intensity:Q", scale=alt.Scale(type="log", domain=x_dom)),
            y=alt.Y("tflops:Q", scale=alt.Scale(type="log", domain=y_dom)), detail=alt.Detail("roof:N"),
            tooltip=[alt.Tooltip("roof:N"), alt.Tooltip("tflops:Q", title="roof TFLOP/s", format=".4~g")]))
        ends = sheet.sort_values("intensity").groupby("roof").tail(1)
        if not two:  # two devices: the labels are stacked in the empty corner instead (roof_key)
            layers.append(alt.Chart(ends).mark_text(align="right", dx=-4, dy=-8, fontSize=11, color=colour).encode(
                x=alt.X("intensity:Q"), y=alt.Y("tflops:Q"), text=alt.Text("roof:N")))
        eff = mine[mine["kind"] == "effective"]
        if len(eff):  # dashed, in the stage's colour: the roof that stage's bound labels use
            layers.append(alt.Chart(eff).mark_line(strokeWidth=1.5, strokeDash=dash, clip=True).encode(
                x=alt.X("intensity:Q"), y=alt.Y("tflops:Q"), detail=alt.Detail("roof:N"),
                color=alt.Color("stage:N", scale=stages, title="stage"),
                tooltip=[alt.Tooltip("roof:N"), alt.Tooltip("tflops:Q", title="roof TFLOP/s", format=".4~g")]))
    ridge_rule = alt.Chart(ridges).mark_rule(color="#888", strokeDash=[4, 4]).encode(
        x=alt.X("ridge:Q"),
        tooltip=[alt.Tooltip("dtype:N"), alt.Tooltip("ridge:Q", title="ridge (FLOP/byte)", format=".4~g"),
                 alt.Tooltip("peak_tflops:Q", title="peak TFLOP/s", format=".4~g"),
                 alt.Tooltip("bw_tbps:Q", title="bandwidth TB/s", format=".4~g")])
    ridge_dot = alt.Chart(ridges).mark_point(shape="diamond", size=140, filled=True, color="#222").encode(
        x=alt.X("ridge:Q"), y=alt.Y("peak_tflops:Q"))
    if two:
        layers += [ridge_rule, ridge_dot, roof_key(roofs, ridges, x_dom, y_dom)]
    else:
        ridge_text = alt.Chart(ridges).mark_text(align="right", dx=-8, dy=-12, fontSize=11, color="#222").encode(
            x=alt.X("ridge:Q"), y=alt.Y("peak_tflops:Q"), text=alt.Text("label:N"))
        layers += [ridge_rule, ridge_dot, ridge_text]
    if moves is not None and not moves.empty:
        layers.append(alt.Chart(moves).mark_line(color="#999", strokeWidth=1).encode(
            x=alt.X("intensity:Q"), y=alt.Y("attained_tflops:Q"), detail=alt.Detail("key:N"),
            order=alt.Order("order:Q")))
    # size = time the op takes (all its calls): techniques that cut work shrink points even where they barely move
    size = alt.Size("time_ms:Q", title="time (ms, all calls)",
                    scale=alt.Scale(type="sqrt", range=[25, 900], domain=[0, float(points["time_ms"].max())]),
                    legend=alt.Legend(orient="bottom", direction="horizontal", symbolFillColor="#999",
                                      symbolStrokeColor="#999"))
    enc = dict(x=x, y=y, color=alt.Color("stage:N", scale=stages, title="stage"),
               shape=alt.Shape("kind:N", scale=kind_scale(points["kind"]), title="op kind"), size=size,
               tooltip=[alt.Tooltip("when:N")] + OP_TOOLTIP)
    layers.append(alt.Chart(points[points["when"] != hollow]).mark_point(
        filled=True, opacity=0.85).encode(**enc))
    before = points[points["when"] == hollow]
    if len(before):  # hollow: where the op was without the techniques, or the B device
        layers.append(alt.Chart(before).mark_point(filled=False, strokeWidth=1.5, opacity=0.8).encode(**enc))
    over = points[points["bound"] == "overhead"]
    if len(over):  # ringed: the per-kernel floor, not the roof, sets their time
        layers.append(alt.Chart(over.assign(label="overhead-bound (kernel floor)")).mark_point(
            shape="circle", size=600, filled=False, strokeWidth=1, color="#555", strokeDash=[2, 2]).encode(
            x=alt.X("x_drawn:Q"), y=alt.Y("y_drawn:Q"),
            tooltip=[alt.Tooltip("op:N"), alt.Tooltip("label:N", title="bound"),
                     alt.Tooltip("floor_s:Q", title="floor per call (s)", format=".3~g")]))
    return alt.layer(*layers).properties(height=height, description="roofline").interactive()


def roof_key(roofs: pd.DataFrame, ridges: pd.DataFrame, x_dom: list[float], y_dom: list[float]) -> alt.Chart:
    """Two devices' datasheet roofs and ridges named in the plot's empty top-left corner, one line each in the
    device's roof colour. Placed at their roofs' ends and ridges, as for one device, B's labels ran over A's roof
    and B's own points (the two ridges sit a few hundred FLOP/B apart)."""
    lines = []
    for i, (dev, mine) in enumerate(roofs.groupby("device", sort=True)):
        mine_ridges = ridges[ridges["device"] == dev] if "device" in ridges else ridges.iloc[0:0]
        sheets = mine[mine["kind"] == "datasheet"]["roof"].drop_duplicates()
        for roof, (_, r) in zip(sheets, mine_ridges.iterrows(), strict=False):
            lines.append({"text": f"{roof}: ridge {r['ridge']:.0f} FLOP/B, {r['peak_tflops']:.0f} TFLOP/s",
                          "colour": ROOF_COLORS[i % len(ROOF_COLORS)]})
    key = pd.DataFrame(lines).assign(x=x_dom[0] * 1.3, y=[y_dom[1] / 1.6 / 2.2 ** k for k in range(len(lines))])
    return alt.Chart(key).mark_text(align="left", baseline="middle", fontSize=11).encode(
        x=alt.X("x:Q"), y=alt.Y("y:Q"), text=alt.Text("text:N"), color=alt.Color("colour:N", scale=None))


def stage_time_bars(frame: pd.DataFrame) -> alt.Chart:
    """Time per stage, stacked by op kind; `frame` has stage, kind, time_ms."""
    return alt.Chart(frame).mark_bar().encode(
        y=alt.Y("stage:N", sort=STAGES, title=None),
        x=alt.X("time_ms:Q", stack="zero", title="time (ms)"),
        color=alt.Color("kind:N", title="op kind"),
        order=alt.Order("kind:N"),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("kind:N"),
                 alt.Tooltip("time_ms:Q", title="time (ms)", format=".4~g"),
                 alt.Tooltip("share:Q", title="share of stage", format=".1%")],
    ).properties(height=170, description="stage-times")


def visual_share_bars(frame: pd.DataFrame) -> alt.Chart:
    """Share of each quantity caused by visual vs text tokens; `frame` has quantity, part, value, label."""
    return alt.Chart(frame).mark_bar().encode(
        y=alt.Y("quantity:N", title=None, sort=None),
        x=alt.X("value:Q", stack="normalize", title="share", axis=alt.Axis(format="%")),
        color=alt.Color("part:N", scale=alt.Scale(domain=list(PART_COLORS), range=list(PART_COLORS.values())),
                        title=None),
        tooltip=[alt.Tooltip("quantity:N"), alt.Tooltip("part:N"), alt.Tooltip("label:N", title="amount"),
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=190, description="visual-share")


def sweep_lines(frame: pd.DataFrame, x: str, x_title: str, description: str, x_sort: list | None = None,
                log_x: bool = False) -> alt.Chart:
    """Long-form sweep: `frame` has the x column, metric, ms, plus visual_tokens for the tooltip."""
    enc_x = alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(type="log") if log_x else alt.Undefined)
    frame = frame[frame["ms"] > 0]  # log axis: a text-only point has no encode time
    return alt.Chart(frame).mark_line(point=True).encode(
        x=enc_x, y=alt.Y("ms:Q", title="time (ms, log scale)", scale=alt.Scale(type="log")),
        color=alt.Color("metric:N", title=None, sort=["TTFT", "encode", "prefill", "TPOT"]),
        tooltip=[alt.Tooltip(f"{x}:Q", title=x_title), alt.Tooltip("metric:N"), alt.Tooltip("ms:Q", format=".4~g"),
                 alt.Tooltip("visual_tokens:Q", title="visual tokens")] + (
            [alt.Tooltip("size:N")] if "size" in frame else []),
    ).properties(height=260, description=description)


def memory_bar(parts: pd.DataFrame, limits: pd.DataFrame) -> alt.LayerChart:
    """Weights / KV / activations / runtime stacked against the usable and total capacity; values in GiB."""
    bar = alt.Chart(parts).mark_bar(size=40).encode(
        x=alt.X("gib:Q", stack="zero", title="GiB per device"),
        color=alt.Color("part:N", sort=list(parts["part"]), title=None,
                        legend=alt.Legend(orient="bottom", columns=4, labelLimit=220)),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("part:N"), alt.Tooltip("gib:Q", title="GiB", format=".3f")],
    )
    rules = alt.Chart(limits).mark_rule(strokeWidth=2, strokeDash=[5, 3], color="#222").encode(
        x=alt.X("gib:Q"), tooltip=[alt.Tooltip("limit:N"), alt.Tooltip("gib:Q", format=".2f")])
    text = alt.Chart(limits).mark_text(align="right", baseline="top", dx=-4, dy=2, fontSize=11, color="#222").encode(
        x=alt.X("gib:Q"), y=alt.value(0), text=alt.Text("limit:N"))
    # autosize "fit" counts the legend in the height: 170 leaves ~60 px for the bar itself
    return alt.layer(bar, rules, text).properties(height=170, description="memory")


def ecdf(frame: pd.DataFrame, slos: pd.DataFrame) -> alt.LayerChart:
    """Empirical CDFs (frame: metric, seconds, fraction) with one dashed SLO line per metric (slos: metric, slo_s)."""
    line = alt.Chart(frame).mark_line(interpolate="step-after").encode(
        x=alt.X("seconds:Q", title="seconds"), y=alt.Y("fraction:Q", title="fraction of requests",
                                                     scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("metric:N", title=None, legend=None),
        tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("seconds:Q", format=".4~g"),
                 alt.Tooltip("fraction:Q", format=".1%")])
    rule = alt.Chart(slos).mark_rule(strokeDash=[6, 3], color="#d62728").encode(
        x=alt.X("slo_s:Q"), tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("slo_s:Q", title="SLO (s)")])
    return alt.layer(line, rule).properties(height=220)


def ecdf_runs(frame: pd.DataFrame, slos: pd.DataFrame) -> alt.LayerChart:
    """One metric's empirical CDF per run (frame: run, seconds, fraction), coloured by run, with the SLO line."""
    line = alt.Chart(frame).mark_line(interpolate="step-after").encode(
        x=alt.X("seconds:Q", title="seconds"), y=alt.Y("fraction:Q", title="fraction of requests",
                                                     scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("run:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical",
                                                                labelLimit=360)),
        strokeDash=alt.condition(alt.datum.run == "this run", alt.value([1, 0]), alt.value([5, 3])),
        tooltip=[alt.Tooltip("run:N"), alt.Tooltip("seconds:Q", format=".4~g"),
                 alt.Tooltip("fraction:Q", format=".1%")])
    rule = alt.Chart(slos).mark_rule(strokeDash=[6, 3], color="#d62728").encode(
        x=alt.X("slo_s:Q"), tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("slo_s:Q", title="SLO (s)")])
    return alt.layer(line, rule).properties(height=260)


def timeseries(frame: pd.DataFrame, x: str, series: str) -> alt.Chart:
    """One engine time series (frame: x, value, optionally instance) as step lines, one per serving instance."""
    color = (alt.Color("instance:N", title="instance", legend=alt.Legend(orient="bottom"))
             if "instance" in frame and frame["instance"].nunique() > 1 else alt.value("#1f77b4"))
    return alt.Chart(frame).mark_line(interpolate="step-after", strokeWidth=1.2).encode(
        x=alt.X(f"{x}:Q", title="simulated time (s)"),
        y=alt.Y("value:Q", title=series, axis=alt.Axis(format=".0%" if series.endswith("(%)") else ".3~g")),
        color=color,
        tooltip=[alt.Tooltip(f"{x}:Q", title="t (s)", format=".4~g"), alt.Tooltip("value:Q", title=series,
                                                                                   format=".4~g")]
        + ([alt.Tooltip("instance:N")] if "instance" in frame else []),
    ).properties(height=200, title=series, description=f"timeseries-{series}")


NEAR = (0.015, 0.03)  # share of the x and y spans within which two markers overlap on the chart
NUDGE = 0.04  # share of the y span a marker that would hide under another is moved down (about one marker)


def nudge_steps(x: pd.Series, y: pd.Series, first: pd.Series) -> pd.Series:
    """How many markers' heights to move each point down so none hides another: a point drawn within NEAR of
    earlier ones moves one step per such point. `first` (the Pareto-optimal ones) keep their true place; the rest
    are nudged. On the technique page 8 combinations showed as 4 points: each dominated one sat under a Pareto one
    0.1 ms away."""
    span_x = float(x.max() - x.min()) or 1.0
    span_y = float(y.max() - y.min()) or 1.0
    order = list(x.index[first.to_numpy()]) + list(x.index[~first.to_numpy()])
    placed: list = []
    out = pd.Series(0, index=x.index)
    for i in order:
        out[i] = sum(abs(x[i] - x[j]) < NEAR[0] * span_x and abs(y[i] - y[j]) < NEAR[1] * span_y for j in placed)
        placed.append(i)
    return out


def pareto_scatter(frame: pd.DataFrame, cost: str, cost_title: str) -> alt.LayerChart:
    """Cost (x, lower is better) vs accuracy delta (y, higher is better); the Pareto-optimal ones joined by a line.
    A dominated point that would hide under a Pareto-optimal one nearby is drawn a marker lower (`y_drawn`; its
    tooltip keeps the true numbers)."""
    steps = nudge_steps(frame[cost], frame["accuracy_delta"], frame["pareto"].astype(bool))
    span_y = float(frame["accuracy_delta"].max() - frame["accuracy_delta"].min()) or 1.0
    frame = frame.assign(y_drawn=frame["accuracy_delta"] - steps * NUDGE * span_y)
    base = alt.Chart(frame)
    pts = base.mark_point(size=110, filled=True).encode(
        x=alt.X(f"{cost}:Q", title=cost_title, scale=alt.Scale(zero=False, padding=30)),
        y=alt.Y("y_drawn:Q", title="accuracy delta (points, user-supplied)",
                scale=alt.Scale(zero=False, padding=30), axis=alt.Axis(format=".2~f")),
        color=alt.Color("pareto:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#9e9e9e"]),
                        title="Pareto-optimal"),
        tooltip=[alt.Tooltip("combination:N"), alt.Tooltip(f"{cost}:Q", title=cost_title, format=".4~g"),
                 alt.Tooltip("accuracy_delta:Q", format=".3~g")],
    )
    y_title = "accuracy delta (points, user-supplied)"  # on every layer: two field names would merge into one title
    front = base.transform_filter(alt.datum.pareto).mark_line(color="#d62728", strokeDash=[4, 2]).encode(
        x=alt.X(f"{cost}:Q"), y=alt.Y("accuracy_delta:Q", title=y_title), order=alt.Order(f"{cost}:Q"))
    # labels run right of their point, but leftwards in the right half (they ran past the plot into the legend)
    mid = float(frame[cost].min() + frame[cost].max()) / 2
    labels = [base.transform_filter((alt.datum.label != "") & cond).mark_text(
        align=align, dx=dx, dy=-8, fontSize=11, limit=460).encode(
        x=alt.X(f"{cost}:Q"), y=alt.Y("accuracy_delta:Q", title=y_title), text=alt.Text("label:N"))
        for cond, align, dx in ((alt.datum[cost] <= mid, "left", 8), (alt.datum[cost] > mid, "right", -8))]
    return alt.layer(front, pts, *labels).properties(height=380, description="pareto")


def moe_batch_chart(frame: pd.DataFrame, skew: float = 0.0) -> alt.LayerChart:
    """The MoE decode lesson: TPOT (ms, left axis, the decode colour) and the distinct experts one decode step
    touches per MoE layer at the router `skew` (right axis, grey, dashed; with a skew, balanced routing's count
    faint beside it) against the batch size (log 2); the setup's own batch ringed. `frame` is
    data.moe_batch_sweep's."""
    x = alt.X("batch:Q", title="batch (sequences decoded together)", scale=alt.Scale(type="log", base=2),
              axis=alt.Axis(values=sorted(set(frame["batch"])), format="d"))
    tip = [alt.Tooltip("batch:Q"), alt.Tooltip("tpot_ms:Q", title="TPOT (ms)", format=".4~g"),
           alt.Tooltip("experts_touched:Q", title="experts touched per layer", format=".1f"),
           alt.Tooltip("experts_share:Q", title="share of the expert weights read", format=".0%"),
           alt.Tooltip("fits:N", title="fits in memory")]
    base = alt.Chart(frame)
    tpot = base.mark_line(point=alt.OverlayMarkDef(color=STAGE_COLORS[2]), color=STAGE_COLORS[2]).encode(
        x=x, y=alt.Y("tpot_ms:Q", title="TPOT (ms)", axis=alt.Axis(titleColor=STAGE_COLORS[2])), tooltip=tip)
    y_experts = alt.Y("experts_touched:Q", title="experts touched per MoE layer", axis=alt.Axis(titleColor="#7f7f7f"))
    experts = base.mark_line(point=alt.OverlayMarkDef(color="#7f7f7f"), color="#7f7f7f", strokeDash=[5, 3]).encode(
        x=x, y=y_experts, tooltip=tip)
    if skew:  # balanced routing's count on the same axis, faint, so the skew's effect is read off the gap
        tip = [*tip, alt.Tooltip("experts_balanced:Q", title="experts touched, balanced routing", format=".1f")]
        balanced = base.mark_line(color="#bdbdbd", strokeDash=[2, 2]).encode(
            x=x, y=alt.Y("experts_balanced:Q"), tooltip=tip)
        experts = alt.layer(experts.encode(tooltip=tip), balanced)
    mine = base.transform_filter(alt.datum.this_request).mark_point(
        size=320, color="#d62728", strokeWidth=1.5).encode(x=x, y=alt.Y("tpot_ms:Q"), tooltip=tip)
    return (alt.layer(alt.layer(tpot, mine), experts).resolve_scale(y="independent")
            .properties(height=260, description="moe-batch"))


BENCH_COLORS = {"TTFT": "#1f77b4", "E2E": "#ff7f0e"}  # prefill's and decode's colours: first token, then the rest


def bench_long(requests: pd.DataFrame) -> pd.DataFrame:
    """The completed requests of a bench run as one row per request and metric: sent_s (when the client sent it),
    metric (TTFT or E2E), ms, and share (the fraction of requests at or below it: the empirical CDF)."""
    parts = []
    for col, name in (("ttft_s", "TTFT"), ("e2e_s", "E2E")):
        f = pd.DataFrame({"request_id": requests["request_id"], "sent_s": requests["arrival_s"], "metric": name,
                          "ms": requests[col] * 1e3}).sort_values("ms")
        f["share"] = (pd.RangeIndex(1, len(f) + 1) / max(len(f), 1)).to_numpy()
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


def bench_requests_chart(long: pd.DataFrame) -> alt.Chart:
    """Each completed request's TTFT and E2E (ms, log) against the time the client sent it (s)."""
    color = alt.Color("metric:N", title=None, scale=alt.Scale(domain=list(BENCH_COLORS),
                                                               range=list(BENCH_COLORS.values())))
    return alt.Chart(long).mark_circle(size=22, opacity=0.7).encode(
        x=alt.X("sent_s:Q", title="sent at (s from the first request)"),
        y=alt.Y("ms:Q", title="latency (ms)", scale=alt.Scale(type="log")), color=color,
        tooltip=[alt.Tooltip("request_id:Q", title="request"), alt.Tooltip("metric:N"),
                 alt.Tooltip("ms:Q", title="ms", format=".4~g"), alt.Tooltip("sent_s:Q", title="sent at (s)",
                                                                              format=".3~f")],
    ).properties(height=280, description="bench-requests")


def bench_cdf_chart(long: pd.DataFrame) -> alt.Chart:
    """The distribution of TTFT and E2E over the completed requests: share of requests at or below each latency."""
    color = alt.Color("metric:N", title=None, scale=alt.Scale(domain=list(BENCH_COLORS),
                                                               range=list(BENCH_COLORS.values())))
    return alt.Chart(long).mark_line(interpolate="step-after").encode(
        x=alt.X("ms:Q", title="latency (ms)", scale=alt.Scale(type="log")),
        y=alt.Y("share:Q", title="share of requests", axis=alt.Axis(format="%")), color=color,
        tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("ms:Q", title="ms", format=".4~g"),
                 alt.Tooltip("share:Q", title="share of requests at or below", format=".1%")],
    ).properties(height=280, description="bench-cdf")
