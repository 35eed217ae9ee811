"""Shareable state: the URL's query parameters seed the sidebar, the URL follows the sidebar, a setup JSON loads,
and a bad parameter is a one-line message naming it (never an exception)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.fmt import fmt_time  # noqa: E402
from tests.app_checks import app_with  # noqa: E402


def ttft(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "TTFT")


def test_url_seeds_the_sidebar_and_the_numbers():
    at = app_with({"model": "qwen2-vl-7b", "hardware": "l4", "width": "1344", "height": "1008",
                   "prompt_tokens": "200", "tech": "fastv:layer=2,keep=0.5"})
    assert at.sidebar.selectbox(key="sb.model").value == "qwen2-vl-7b"
    assert at.sidebar.number_input(key="sb.width").value == 1344
    want = lvlmsim.estimate("qwen2-vl-7b", "l4", image_size=(1344, 1008), prompt_tokens=200,
                            techniques=["fastv:layer=2,keep=0.5"]).ttft_s
    assert ttft(at) == fmt_time(want)


def test_url_follows_the_sidebar_and_leaves_defaults_out():
    at = app_with({})
    assert dict(at.query_params) == {}
    at.sidebar.number_input(key="sb.prompt_tokens").set_value(300)
    at.run()
    assert at.query_params["prompt_tokens"] in ("300", ["300"])
    assert "model" not in at.query_params


def test_bad_parameters_are_named_and_dropped():
    at = app_with({"model": "gpt-9", "width": "wide", "colour": "red"})
    warnings = " ".join(w.value for w in at.warning)
    assert "model: unknown 'gpt-9'" in warnings and "width: expected a whole number in 1..16384, got 'wide'" in warnings
    assert "colour: not a setup field" in warnings
    assert at.sidebar.selectbox(key="sb.model").value == "llava-1.5-7b"


def test_setup_json_round_trips():
    at = app_with({"model": "internvl2.5-8b", "images": "2"})
    doc = {"model": "internvl2.5-8b", "images": 2}
    at.sidebar.file_uploader(key="share.upload").set_value(("s.json", json.dumps({**doc, "tp": 2}).encode(),
                                                            "application/json"))
    at.run()
    assert at.sidebar.number_input(key="sb.tp").value == 2
    assert at.session_state["setup"].tp == 2
