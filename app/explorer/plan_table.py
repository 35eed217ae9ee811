"""The Capacity planner's "All candidates" table as a person reads it (the page draws it; tests check it here)."""

from __future__ import annotations

import inspect

import pandas as pd
import streamlit as st

NO_FIGURE = "—"
# the figures before the reason: the reason column (wide, empty for a feasible candidate) pushed TPOT and the
# throughputs past the page's edge
COLUMNS = ("rank", "candidate", "status", "replicas", "gpus", "cost_per_hour_usd", "capacity_per_replica_rps",
           "ttft_p90_s", "tpot_p90_s", "tokens_per_s_per_gpu", "tokens_per_s_per_user", "reason", "des_runs",
           "verified")
TEXT = ("candidate", "status", "reason", "verified")
# why a candidate has no figures, for a row whose reason is empty
WHY = {"pruned": "pruned by the analytic pre-screen", "infeasible": "infeasible in the engine",
       "over_max_gpus": "needs more GPUs than Max GPUs"}


def candidates_table(cands: pd.DataFrame) -> pd.DataFrame:
    """plan()'s candidates for reading: the shown columns in order, figures as numbers (missing ones as nulls, which
    the page draws as NO_FIGURE), and an empty reason filled with the status that left the row without figures."""
    frame = cands[[c for c in COLUMNS if c in cands]].copy()
    for c in frame:
        if c not in TEXT:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    if "reason" in frame and "status" in frame:
        blank = frame["reason"].isna() | (frame["reason"].astype(str).str.strip() == "")
        frame["reason"] = frame["reason"].where(~blank, frame["status"].map(WHY)).fillna("")
    return frame


def missing_placeholder() -> dict:
    """st.dataframe's `placeholder` (the text of a missing cell; Streamlit draws 'None' without it), where this
    Streamlit has it (added late in 2025, streamlit#12968); pandas Styler's na_rep is not used for null cells."""
    return {"placeholder": NO_FIGURE} if "placeholder" in inspect.signature(st.dataframe).parameters else {}
