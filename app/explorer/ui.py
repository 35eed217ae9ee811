"""Page furniture shared by every page: the headline numbers and the "reproduce in Python" box."""

from __future__ import annotations

import streamlit as st

from explorer.fmt import GIB, band_text, fmt_time, provenance_text
from explorer.state import Setup
from lvlmsim.estimate import Estimate


def headline(est: Estimate) -> None:
    """TTFT, TPOT, E2E and the memory verdict of the sidebar's request, as st.metric; under them which efficiency
    model priced it (the estimate's own provenance: measured on this device, transferred or flat, with its expected
    error) and the p10-p90 band; for a device outside every category the model was fitted on (an AMD GPU), its
    transfer note as a warning, on every page that draws the headline."""
    c = st.columns(4)
    c[0].metric("TTFT", fmt_time(est.ttft_s), help=f"time to first token = encode + prefill = {est.ttft_s!r} s")
    c[1].metric("TPOT", fmt_time(est.tpot_s), help=f"time per output token after the first = {est.tpot_s!r} s")
    c[2].metric("E2E", fmt_time(est.e2e_s), help=f"end to end = {est.e2e_s!r} s")
    mem = est.memory
    c[3].metric("Memory", f"{mem.needed_bytes / GIB:.1f} / {mem.usable_bytes / GIB:.1f} GiB",
                delta="fits" if mem.fits else "does not fit", delta_color="normal" if mem.fits else "inverse",
                delta_arrow="off", help=mem.verdict)
    prov = est.provenance
    head = f"{est.hardware_id}: {provenance_text(prov)}. " if prov else ""
    # band_text separates TTFT / TPOT / E2E with two spaces, which HTML collapses ('124.81 ms TPOT 5.49 ms')
    st.caption(head + band_text(est.band_keys()).replace("  ", " · "))
    if prov.get("transfer_note"):  # a device outside every category the model was fitted on: its error is unknown
        st.warning(prov["transfer_note"])
    if not mem.fits:
        st.warning(mem.verdict)


def chart(chart, container=None, **kwargs) -> None:
    """st.altair_chart without Altair's JSON-schema validation of the spec (about a third of a redraw's time):
    the charts are built by explorer.charts from fixed code, and their tests render them. Streamlit turns the
    spec's inline datasets into Arrow exactly as it does for an Altair chart. For small charts (Altair's inline
    limit of 5000 rows per dataset); the serving page's per-request curves stay on st.altair_chart."""
    spec = chart.to_dict(validate=False)
    (container or st).vega_lite_chart(spec, **{"width": "stretch", **kwargs})


def reproduce(setup: Setup, extra: str = "") -> None:
    with st.expander("Reproduce in Python"):
        st.code(setup.python() + ("\n" + extra if extra else ""), language="python")
