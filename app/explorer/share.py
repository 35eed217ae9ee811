"""The sidebar's setup in the page's URL (`st.query_params`) and as a JSON file, so a view can be shared.

On a session's first run, query parameters (`?model=qwen2-vl-7b&hardware=l4&width=1344&tech=fastv:...`) seed the
sidebar; after every run the URL is rewritten to the current setup (defaults left out, so a plain URL stays plain).
A value that is not valid is dropped with a one-line message naming the parameter and what it allows.
"""

from __future__ import annotations

import json

import streamlit as st

from explorer.state import DEFAULTS, PROFILES, Setup
from lvlmsim.specs import registry

NUMERIC = {"images": int, "width": int, "height": int, "video_s": float, "prompt_tokens": int, "output_tokens": int,
           "batch": int, "tp": int}
MINIMUM = {"images": 0, "width": 1, "height": 1, "video_s": 0.0, "prompt_tokens": 0, "output_tokens": 1, "batch": 1,
           "tp": 1}


def _choices(key: str) -> list[str]:
    return {"model": registry.model_ids, "hardware": registry.hardware_ids, "profile": lambda: list(PROFILES)}[key]()


def parse(values: dict) -> tuple[dict, list[str]]:
    """Sidebar values (session-state keys without the `sb.` prefix) from URL/JSON values, and the problems found."""
    good, problems = {}, []
    for key, raw in values.items():
        if key in NUMERIC:
            try:
                v = NUMERIC[key](raw)
            except (TypeError, ValueError):
                problems.append(f"{key}: expected a number, got '{raw}'")
                continue
            if v < MINIMUM[key]:
                problems.append(f"{key}: must be >= {MINIMUM[key]}, got {v}")
                continue
            good[key] = v
        elif key in ("model", "hardware", "profile"):
            allowed = _choices(key)
            if raw in allowed:
                good[key] = raw
            else:
                problems.append(f"{key}: unknown '{raw}'; allowed: {', '.join(allowed)}")
        elif key == "tech":
            good["tech_extra"] = "\n".join(raw if isinstance(raw, list) else [raw])
        else:
            problems.append(f"{key}: not a setup field; allowed: {', '.join([*DEFAULTS, 'tech'])}")
    return good, problems


def apply(values: dict) -> None:
    good, problems = parse(values)
    for key, v in good.items():
        st.session_state[f"sb.{key}"] = v
    if "tech_extra" in good:
        st.session_state["sb.tech_kinds"] = []  # the shared strings carry every technique with its parameters
    st.session_state["share.problems"] = problems


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
        return
    apply(values)


def share_widgets(setup: Setup) -> None:
    """In the sidebar: the URL note, the setup as JSON to download, a JSON to load; problems of the last load."""
    with st.expander("Share this setup"):
        st.caption("The page's address holds this setup: copy it from the browser to share the view.")
        st.download_button("Download setup (JSON)", json.dumps(as_dict(setup), indent=2).encode(),
                           file_name="lvlmsim-setup.json", mime="application/json", key="share.download")
        st.file_uploader("Load a setup (JSON)", type=["json"], key="share.upload", on_change=_load_json)
    for p in st.session_state.get("share.problems") or []:
        st.warning(f"setup not applied: {p}")
