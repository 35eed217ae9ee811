"""The explorer's Capacity planner page (AppTest): plan a small uploaded scenario and check that the recommended
configuration and the Pareto chart show exactly what `plan()` returns for those inputs; bad input is a message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

pytest.importorskip("streamlit")
pytest.importorskip("altair")
from streamlit.testing.v1 import AppTest  # noqa: E402

from lvlmsim.planner import SearchSettings, plan  # noqa: E402
from lvlmsim.specs.scenario import load_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "Home.py"


def small_scenario() -> dict:
    d = load_scenario("llava-chat-h100").model_dump(mode="json")
    d.update(id="planner-app-test", profile="default")
    d["workload"]["output_tokens"] = {"kind": "lognormal", "mean": 48, "std": 30, "max": 192}
    return d


def start() -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    assert not at.exception, at.exception
    at.switch_page("views/planner.py").run()
    assert not at.exception, at.exception
    return at


def upload_scenario(at: AppTest) -> str:
    data = yaml.safe_dump(small_scenario()).encode()
    at.sidebar.file_uploader(key="up.scenario").set_value(("small.yaml", data, "application/x-yaml"))
    at.run()
    assert not at.exception, at.exception
    path = next(p for p in at.session_state["uploads"]["scenario"] if p.endswith("small.yaml"))
    assert "small.yaml (uploaded)" in at.selectbox(key="plan.scenario").options
    return path


def charts(at: AppTest) -> dict:
    out = {}
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        data = {d.name: pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in el.proto.datasets}
        out[spec.get("description", "")] = (spec, data)
    return out


def test_planner_page_shows_what_plan_returns():
    at = start()
    assert any("then plan" in i.value for i in at.info)
    path = upload_scenario(at)
    at.selectbox(key="plan.scenario").set_value(path)
    at.number_input(key="plan.rate").set_value(12.0)
    at.multiselect(key="plan.hardware").set_value(["h100-sxm", "l40s"])
    at.multiselect(key="plan.tp").set_value([1])
    at.multiselect(key="plan.layouts").set_value(["agg"])
    at.number_input(key="plan.probe_s").set_value(10.0)
    at.number_input(key="plan.tol").set_value(0.1)
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception, at.exception

    res = plan(path, target_rate=12.0, slos={"ttft_p90": 1.0, "tpot_p90": 0.05}, hardware=["h100-sxm", "l40s"],
               tp=[1], layouts=["agg"], settings=SearchSettings(probe_duration_s=10.0, tolerance=0.1),
               executor="serial")
    rec = res.recommended
    assert rec is not None
    shown = {m.label: m.value for m in at.metric}
    assert shown["Configuration"] == rec["candidate"]
    assert shown["GPUs"] == str(rec["gpus"])
    assert shown["$ per hour"] == f"{rec['cost_per_hour']:.2f}"
    assert any("Recommended" in s.value for s in at.success)

    spec, data = charts(at)["plan-pareto"]
    frame = next(iter(data.values()))
    feas = res.candidates[res.candidates.status == "feasible"]
    assert sorted(frame.candidate) == sorted(feas.candidate)
    assert set(frame[frame.pareto].candidate) == set(res.pareto.candidate)
    by = frame.set_index("candidate")
    for r in feas.itertuples():
        assert by.loc[r.candidate, "cost_per_hour_usd"] == pytest.approx(r.cost_per_hour_usd)
        assert by.loc[r.candidate, "latency_s"] == pytest.approx(r.ttft_p90_s)


def test_planner_page_bad_input_is_a_message():
    at = start()
    at.multiselect(key="plan.hardware").set_value([])
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert any("at least one SLO, one hardware" in e.value for e in at.error)
