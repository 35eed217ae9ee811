"""The Capacity planner's "All candidates" table as a person reads it (the page draws it; tests check it here)."""

from __future__ import annotations

import pandas as pd

NO_FIGURE = "—"
# the candidates table's columns, in order, with the format of each figure
CANDIDATE_COLUMNS = {"rank": "{:.0f}", "candidate": None, "status": None, "reason": None, "replicas": "{:.0f}",
                     "gpus": "{:.0f}", "cost_per_hour_usd": "${:,.2f}", "capacity_per_replica_rps": "{:.3g}",
                     "ttft_p90_s": "{:.3g}", "tpot_p90_s": "{:.3g}", "tokens_per_s_per_gpu": "{:,.0f}",
                     "tokens_per_s_per_user": "{:.1f}", "des_runs": "{:.0f}", "verified": None}


def candidates_table(cands: pd.DataFrame):
    """plan()'s candidates for reading: every missing figure (a pruned or infeasible candidate has no capacity, cost
    or latency) shows NO_FIGURE instead of Streamlit's "None", and an empty reason says which status left it without
    figures; the numbers underneath stay numbers, so the columns still sort."""
    show = [c for c in CANDIDATE_COLUMNS if c in cands]
    frame = cands[show].copy()
    if "reason" in frame and "status" in frame:
        blank = frame["reason"].isna() | (frame["reason"].astype(str).str.strip() == "")
        why = {"pruned": "pruned by the analytic pre-screen", "infeasible": "infeasible in the engine",
               "over_max_gpus": "needs more GPUs than Max GPUs"}
        frame.loc[blank, "reason"] = frame.loc[blank, "status"].map(why).fillna("")
    formats = {c: CANDIDATE_COLUMNS[c] or str for c in frame}
    for c, f in formats.items():
        if f is not str:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame.style.format(formats, na_rep=NO_FIGURE)  # one call: a second format() resets the first (pandas 3)
