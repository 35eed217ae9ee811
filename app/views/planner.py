"""Capacity planner: shown only once `lvlmsim.planner` exists; until then the page says so."""

from __future__ import annotations

import importlib

import streamlit as st


def planner_present() -> bool:
    """A real, importable package (a half-written folder in a checkout does not count)."""
    try:
        mod = importlib.import_module("lvlmsim.planner")
    except ImportError:
        return False
    return getattr(mod, "__file__", None) is not None


st.title("Capacity planner")
if not planner_present():
    st.info("The capacity planner (how many GPUs for a target rate under latency SLOs) arrives with "
            "`lvlmsim.planner`, which this version of lvlmsim does not have yet.")
    st.stop()

st.info("`lvlmsim.planner` is installed; its page is not wired into the explorer yet. Use it from Python or the "
        "CLI (`lvlmsim plan --help`).")
