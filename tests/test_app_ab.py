"""Side by side: Overview's A/B table is the API's two estimates; the Serving page overlays an earlier run's CDFs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.fmt import fmt_time  # noqa: E402

ENTRY = Path(__file__).resolve().parents[1] / "app" / "Home.py"


def test_overview_side_by_side_is_the_api_twice():
    at = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    at.selectbox(key="ab.hardware").set_value("l4")
    at.number_input(key="ab.tp").set_value(2)
    at.run()
    assert not at.exception, at.exception
    table = at.table[0].value
    a = lvlmsim.estimate("llava-1.5-7b", "h100-sxm")
    b = lvlmsim.estimate("llava-1.5-7b", "l4", tp=2)
    assert table.loc["TTFT", "A"] == fmt_time(a.ttft_s) and table.loc["TTFT", "B"] == fmt_time(b.ttft_s)
    assert table.loc["TPOT", "B / A"] == f"{b.tpot_s / a.tpot_s:.2f}x"
    assert f"decode ({a.stages['decode'].bound} / {b.stages['decode'].bound})" in table.index


def test_serving_overlays_an_earlier_run():
    at = AppTest.from_file(str(ENTRY), default_timeout=180).run()
    at.switch_page("views/serving.py").run()
    for r in (2.0, 6.0):  # widgets fetched afresh after every run
        next(n for n in at.number_input if n.label == "Requests").set_value(40)
        next(n for n in at.number_input if n.label == "Request rate (req/s)").set_value(r)
        at.button(key="sim.go").click()
        at.run()
        assert not at.exception, at.exception
    box = at.multiselect(key="sim.overlay")
    assert len(box.options) == 1 and "at 2 req/s, 40 requests" in box.options[0]
    box.set_value(box.options)
    at.run()
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    runs = [c for c, s in zip(at.get("vega_lite_chart"), specs, strict=True)
            if s.get("description", "").startswith("cdf-runs-")]
    assert len(runs) == 3  # TTFT, TPOT, E2E
    data = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in runs[0].proto.datasets]
    frame = next(d for d in data if "run" in d)
    assert set(frame["run"]) == {"this run", box.options[0]}


def test_technique_suggestions_follow_the_model_and_request():
    """Suggested techniques run on the chosen model and change its end-to-end time; a text-only request gets no
    visual-token pruning."""
    import sys

    sys.path.insert(0, str(ENTRY.parent))
    from explorer.state import DEFAULTS, Setup, suggested_techniques

    for setup in (Setup(**DEFAULTS), Setup(**{**DEFAULTS, "model": "qwen2-vl-7b", "width": 1344, "height": 1008}),
                  Setup(**{**DEFAULTS, "images": 0})):
        base = lvlmsim.estimate(setup.model, setup.hardware, **setup.kwargs()).e2e_s
        picks = suggested_techniques(setup=setup)
        assert picks
        for text in picks:
            e2e = lvlmsim.estimate(setup.model, setup.hardware, **{**setup.kwargs(), "techniques": [text]}).e2e_s
            assert e2e != pytest.approx(base, rel=1e-9)
    assert not any(t.startswith("fastv") for t in suggested_techniques(setup=Setup(**{**DEFAULTS, "images": 0})))
