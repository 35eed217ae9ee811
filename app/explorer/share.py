"""The sidebar's setup in the page's URL (`st.query_params`) and as a JSON file, so a view can be shared.

On a session's first run, query parameters (`?model=qwen2-vl-7b&hardware=l4&width=1344&tech=fastv:...`) seed the
sidebar; after every run the URL is rewritten to the current setup (defaults left out, so a plain URL stays plain).
A value that is not valid is dropped with a one-line message naming the parameter and what it allows.
"""

from __future__ import annotations

import json
import math

import streamlit as st

from explorer.state import BOUNDS, DEFAULTS, PROFILES, Setup
from lvlmsim.specs import registry

NUMERIC = {"images": int, "width": int, "height": int, "video_s": float, "prompt_tokens": int, "output_tokens": int,
           "batch": int, "tp": int, "video_width": int, "video_height": int, "video_fps": float,
           "ep": int}
SHOWN_CHARS = 60  # of a refused value, in its message (a 5000-character parameter is not echoed whole)


def _choices(key: str) -> list[str]:
    return {"model": registry.model_ids, "hardware": registry.hardware_ids, "profile": lambda: list(PROFILES)}[key]()


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _shown(raw) -> str:
    return _clip(repr(raw))


def _number(key: str, raw) -> tuple[float | int | None, str | None]:
    """(value, None) for a number the sidebar's widget accepts (a whole number for a count, finite, within the
    widget's bounds), else (None, a message naming the field and the allowed range). Streamlit silently replaced an
    out-of-range value with the widget's minimum (?tp=1000 ran tp 1, ?prompt_tokens=2000000 ran 0 prompt tokens) and
    took NaN and inf as they were."""
    lo, hi = BOUNDS[key]
    whole = NUMERIC[key] is int
    unit = "frames per second" if key == "video_fps" else "seconds"
    allowed = f"a whole number in {lo}..{hi}" if whole else f"a number of {unit} in {lo:g}..{hi:g}"
    try:
        v = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or (whole and not v.is_integer()) or not lo <= v <= hi:
        return None, f"{key}: expected {allowed}, got {_shown(raw)}"
    return (int(v) if whole else v), None


def parse(values: dict) -> tuple[dict, list[str]]:
    """Sidebar values (session-state keys without the `sb.` prefix) from URL/JSON values, and the problems found."""
    good, problems = {}, []
    for key, raw in values.items():
        if key in NUMERIC:
            v, problem = _number(key, raw)
            if problem:
                problems.append(problem)
                continue
            good[key] = v
        elif key in ("model", "hardware", "profile"):
            allowed = _choices(key)
            if isinstance(raw, str) and raw in allowed:
                good[key] = raw
            else:
                problems.append(f"{key}: unknown {_shown(raw)}; allowed: {', '.join(allowed)}")
        elif key == "tech":
            lines = raw if isinstance(raw, list) else [raw]
            if all(isinstance(t, str) for t in lines):
                good["tech_extra"] = "\n".join(lines)
            else:
                problems.append(f"tech: expected technique strings such as 'fastv:layer=2,keep=0.5', got "
                                f"{_shown(raw)}")
        else:
            problems.append(f"{_clip(str(key))}: not a setup field; allowed: {', '.join([*DEFAULTS, 'tech'])}")
    return good, problems


def apply(values: dict) -> None:
    good, problems = parse(values)
    for key, v in good.items():
        st.session_state[f"sb.{key}"] = v
    if "tech_extra" in good:
        st.session_state["sb.tech_kinds"] = []  # the shared strings carry every technique with its parameters
    st.session_state["share.problems"] = problems
    st.session_state.pop("share.problems_for", None)


def seed_from_url() -> None:
    """Once per session, before the sidebar is drawn: the URL's setup becomes the sidebar's."""
    if st.session_state.get("share.seeded"):
        return
    st.session_state["share.seeded"] = True
    qp = st.query_params
    values = {k: (qp.get_all(k) if k == "tech" else qp.get(k)) for k in qp.keys()}
    if values:
        apply(values)


def as_dict(setup: Setup) -> dict:
    """The setup's fields that differ from the defaults (techniques as their strings)."""
    out = {k: getattr(setup, k) for k in DEFAULTS if getattr(setup, k) != DEFAULTS[k]}
    if setup.techniques:
        out["tech"] = list(setup.techniques)
    return out


def write_url(setup: Setup) -> None:
    want = {k: (v if isinstance(v, list) else str(v)) for k, v in as_dict(setup).items()}
    have = {k: (st.query_params.get_all(k) if k == "tech" else st.query_params.get(k))
            for k in st.query_params.keys()}
    if have != want:
        st.query_params.from_dict(want)


def _load_json() -> None:
    f = st.session_state.get("share.upload")
    if f is None:
        return
    try:
        values = json.loads(f.getvalue())
        if not isinstance(values, dict):
            raise ValueError("a JSON object of setup fields")
    except ValueError as exc:
        st.session_state["share.problems"] = [f"{f.name}: not a setup file ({exc})"]
        st.session_state.pop("share.problems_for", None)
        return
    apply(values)


def share_widgets(setup: Setup) -> None:
    """In the sidebar: the URL note, the setup as JSON to download, a JSON to load."""
    with st.expander("Share this setup"):
        st.caption("The page's address holds this setup: copy it from the browser to share the view.")
        st.download_button("Download setup (JSON)", json.dumps(as_dict(setup), indent=2).encode(),
                           file_name="lvlmsim-setup.json", mime="application/json", key="share.download")
        st.file_uploader("Load a setup (JSON)", type=["json"], key="share.upload", on_change=_load_json)


def show_problems(setup: Setup) -> None:
    """Above the page (at the foot of the sidebar they went unseen): what a shared URL or setup file held that was
    not applied, one warning per field, until the person changes the setup."""
    problems = st.session_state.get("share.problems") or []
    if not problems:
        return
    if st.session_state.setdefault("share.problems_for", setup) != setup:
        st.session_state["share.problems"] = []
        return
    for p in problems:
        st.warning(f"setup not applied: {p}")
