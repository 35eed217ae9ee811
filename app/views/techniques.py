"""Technique comparison: every combination of a few techniques against latency, throughput, memory and a
accuracy delta (cited from each technique's paper, editable), with the cost-vs-quality Pareto front."""

from __future__ import annotations

import zlib
from itertools import combinations

import pandas as pd
import streamlit as st
from explorer import charts
from explorer.data import estimate_or_stop, try_estimate
from explorer.fmt import GIB
from explorer.state import (
    USER_ERRORS,
    current_setup,
    follow,
    keep,
    sticky,
    suggested_techniques,
)
from explorer.ui import chart, headline

MAX_TECHNIQUES = 5  # 2**5 = 32 estimates: still well under a second
COSTS = {"ttft_ms": "TTFT (ms)", "tpot_ms": "TPOT (ms)", "e2e_ms": "E2E (ms)", "memory_gib": "memory needed (GiB)",
         "ms_per_token": "ms per output token of the batch (1 / throughput)"}


def pareto_mask(cost: pd.Series, quality: pd.Series) -> list[bool]:
    """True where no other row is at least as cheap and at least as good, and strictly better in one."""
    c, q = cost.to_list(), quality.to_list()
    out = []
    for i in range(len(c)):
        dominated = any(c[j] <= c[i] and q[j] >= q[i] and (c[j] < c[i] or q[j] > q[i]) for j in range(len(c)))
        out.append(not dominated)
    return out


def label(combo: tuple[str, ...]) -> str:
    return " + ".join(combo) if combo else "baseline (none)"


def cited_default(cfg) -> tuple[float, str]:
    """The accuracy delta a technique line starts with, and where it comes from: the line's own accuracy_delta,
    else its paper's figure when the line uses the paper's setting, else 0 with the reason there is none."""
    if getattr(cfg, "accuracy_delta", None) is not None:
        return float(cfg.accuracy_delta), f"your line: {cfg.accuracy_source}"
    fig = literature_figures().get(cfg.kind)
    if fig is not None and fig.matches(cfg):
        return fig.delta_points, fig.citation()
    if fig is not None:
        return 0.0, f"the paper's figure ({fig.delta_points:+g}) is for {fig.setting}; this line differs: enter yours"
    return 0.0, "no cited figure: " + unconfirmed_kinds().get(cfg.kind, "none recorded")


st.title("Technique comparison")
from lvlmsim.techniques import ACCURACY_DELTA_POINTS, parse_technique  # noqa: E402
from lvlmsim.techniques.literature import literature_figures, unconfirmed_kinds  # noqa: E402

setup = current_setup()
est = estimate_or_stop(setup)
headline(est)

if setup.techniques:
    suggested = list(setup.techniques)
else:
    suggested = suggested_techniques(setup=setup)
text = st.text_area("Techniques to compare, one `kind:key=value,...` per line (every combination is estimated)",
                    key=follow("tech.list", "\n".join(suggested)), height=110)
cands: list[str] = []
cited: dict[str, tuple[float, str]] = {}  # line -> (default accuracy delta, its source)
for line in (x.strip() for x in text.splitlines()):
    if not line:
        continue
    try:
        cfg = parse_technique(line)
    except USER_ERRORS as exc:
        st.error(f"{exc} (left out)")
        continue
    if line not in cands:
        cands.append(line)
    cited[line] = cited_default(cfg)
if len(cands) > MAX_TECHNIQUES:
    st.warning(f"Only the first {MAX_TECHNIQUES} techniques are combined ({2 ** MAX_TECHNIQUES} estimates).")
    cands = cands[:MAX_TECHNIQUES]

st.markdown("**Accuracy delta per technique** (percentage points on the source's benchmark, negative = worse; "
            "lvlmsim does not estimate accuracy). Defaults: the line's own `accuracy_delta=`, else the figure the "
            "technique's own paper reports for the same setting (cited in *source*), else 0. Edit them to your own "
            "eval. A combination's delta is taken as the sum of its techniques' deltas.")
acc_in = pd.DataFrame({"technique": cands, "accuracy_delta": [cited[c][0] for c in cands],
                       "source": [cited[c][1] for c in cands]})
editor_key = f"tech.acc.{zlib.crc32(chr(10).join(cands).encode())}"  # a new list of techniques, a fresh editor
lo, hi = ACCURACY_DELTA_POINTS  # the grid refuses a value outside them ('1e400' typed there arrives as 1400)
acc = st.data_editor(acc_in, key=editor_key, hide_index=True, disabled=["technique", "source"],
                     column_config={"accuracy_delta": st.column_config.NumberColumn(
                         "accuracy delta (points)", step=0.1, format="%.2f", min_value=lo, max_value=hi,
                         help=f"percentage points, {lo:g} to {hi:g}"),
                                    "source": st.column_config.TextColumn("source", width="large")})
with st.expander("Accuracy figures from each technique's own paper"):
    lit = [{"technique": k, "delta_points": f.delta_points, "benchmark": f.benchmark, "model": f.model,
            "setting": f.setting, "citation": f"{f.paper}; {f.table}", "url": f.url}
           for k, f in literature_figures().items()]
    st.dataframe(pd.DataFrame(lit), hide_index=True, key="tech-literature",
                 column_config={"url": st.column_config.LinkColumn("url")})
    st.caption("No figure is shipped for: " + "; ".join(f"**{k}**: {why}" for k, why in unconfirmed_kinds().items()))
delta = dict(zip(acc["technique"], acc["accuracy_delta"].fillna(0.0), strict=True))

base = setup.with_(techniques=())
rows = []
for r in range(len(cands) + 1):
    for combo in combinations(cands, r):
        e, err = try_estimate(base.with_(techniques=combo))
        if e is None:
            st.error(f"{label(combo)}: {err}")
            continue
        rows.append({"combination": label(combo), "ttft_ms": e.ttft_s * 1e3, "tpot_ms": e.tpot_s * 1e3,
                     "e2e_ms": e.e2e_s * 1e3,
                     "throughput_tok_s": e.batch / e.tpot_s if e.tpot_s else float("nan"),
                     "ms_per_token": e.tpot_s / e.batch * 1e3,
                     "memory_gib": e.memory.needed_bytes / GIB, "fits": e.memory.fits,
                     "visual_tokens": e.visual_tokens,
                     "accuracy_delta": float(sum(delta.get(t, 0.0) for t in combo))})
matrix = pd.DataFrame(rows)
if matrix.empty:
    st.stop()

cost = st.selectbox("Cost axis", list(COSTS), format_func=COSTS.get, key=sticky("tech.cost", "ttft_ms"))
keep("tech.list", "tech.cost")
matrix["pareto"] = pareto_mask(matrix[cost], matrix["accuracy_delta"])
# label the Pareto-optimal points only (hover shows the rest); ties share one label
matrix["label"] = ""
for _, group in matrix[matrix["pareto"]].groupby([matrix[cost].round(9), "accuracy_delta"]):
    matrix.loc[group.index[0], "label"] = " | ".join(group["combination"])
st.subheader("Every combination")
# the accuracy delta next to the combination: at the table's end it was cut off at the page's edge
order = ["combination", "accuracy_delta", *(c for c in matrix if c not in ("combination", "accuracy_delta", "label"))]
st.dataframe(matrix.drop(columns=["label"]), hide_index=True, key="tech-matrix", column_order=order, column_config={
    "combination": st.column_config.TextColumn("combination", width="large"),
    "ttft_ms": st.column_config.NumberColumn("TTFT (ms)", format="%.3f"),
    "tpot_ms": st.column_config.NumberColumn("TPOT (ms)", format="%.4f"),
    "e2e_ms": st.column_config.NumberColumn("E2E (ms)", format="%.2f"),
    "throughput_tok_s": st.column_config.NumberColumn("tokens/s", format="%.1f",
                                                      help="decode throughput of the batch: batch / TPOT"),
    "ms_per_token": st.column_config.NumberColumn("ms/token", format="%.4f", help="1 / throughput"),
    "memory_gib": st.column_config.NumberColumn("memory (GiB)", format="%.2f", help="memory needed per device"),
    "visual_tokens": st.column_config.NumberColumn("visual tokens"),
    "accuracy_delta": st.column_config.NumberColumn("accuracy delta", format="%.2f"),
})
st.subheader("Cost vs quality")
chart(charts.pareto_scatter(matrix, cost, COSTS[cost]))
st.caption("Red: Pareto-optimal combinations (no other is both cheaper and at least as accurate). A grey point "
           "just below a red one is a combination that would hide under it, drawn a marker lower (hover for its "
           "numbers). Each row is `lvlmsim.estimate(..., techniques=[...])` with the sidebar's request.")
st.download_button("Download every combination (CSV)", matrix.drop(columns=["label"]).assign(
    model=setup.model, hardware=setup.hardware).to_csv(index=False).encode(), file_name="lvlmsim-techniques.csv",
    mime="text/csv", key="tech-csv")
