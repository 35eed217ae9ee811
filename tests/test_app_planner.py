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

from lvlmsim.fmt import fmt_pct, fmt_time, fmt_usd  # noqa: E402
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
    assert at.selectbox(key="plan.scenario").value == path  # the upload is what Plan will plan
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
    at.button(key="plan.go").click()
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
    assert shown["$ per hour"] == fmt_usd(rec["cost_per_hour"])
    assert any("Recommended" in s.value for s in at.success)
    banner = next(m.value for m in at.markdown if m.value.startswith("**Planned**"))
    assert "planner-app-test" in banner or "small.yaml" in banner
    assert "llava-1.5-7b" in banner and "`h100-sxm`" in banner and "`l40s`" in banner and "1024x768" in banner
    # which efficiency model priced each device (issue 11), as `lvlmsim plan` prints it: the scenario forces the
    # flat derate, so both are 'flat' with no error estimate and no mixed-comparison note
    for hw_id in ("h100-sxm", "l40s"):
        assert f"{hw_id}: priced by roofline-default (flat roofline derate, no error estimate)" in [
            c.value for c in at.caption]
    assert not any("compares devices priced" in i.value for i in at.info)

    # one row per GPU type, the figures of by_hardware() at the hardware files' prices
    table = at.table[0].value
    for hw_id, row in res.by_hardware().items():
        got = table.loc[hw_id]
        if row["feasible"]:
            assert got["$/hour"] == fmt_usd(row["cost_per_hour_usd"])
            assert got["$/month"] == fmt_usd(row["cost_per_month_usd"])
            assert got["headroom"] == ("" if row["capacity_exact"] else "≥ ") + fmt_pct(row["headroom_pct"])
            hi = row.get("capacity_hi_rps")
            top = f"-{hi:.3g}" if hi is not None and hi == hi else ""  # no '-nan' for an unsearched top
            assert got["capacity"] == f"{row['capacity_rps']:.3g}{top} req/s"
            assert got["TTFT p90"] == fmt_time(row["ttft_p90_s"])
        else:
            assert got["verdict"] == f"not possible because {row['reason']}"
    # an edited price redraws the table without planning again
    at.number_input(key="plan.price.l40s").set_value(10.0)
    at.run()
    table = at.table[0].value
    row = res.by_hardware(prices={"l40s": 10.0})["l40s"]
    if row["feasible"]:
        assert table.loc["l40s", "$/hour"] == fmt_usd(row["cost_per_hour_usd"])
    assert table.loc["l40s", "$/GPU-hour"] == fmt_usd(10.0)
    assert "vllm serve llava-hf/llava-1.5-7b-hf" in at.code[0].value
    if rec.get("bracket_hi_rps") is not None:  # the capacity bracket the search ended with, for the whole fleet
        reps = rec["replicas"]
        want = (f"{rec['capacity_per_replica_rps'] * reps:.3g}-{rec['bracket_hi_rps'] * reps:.3g} req/s "
                "(the search's bracket)")
        assert any(want in c.value for c in at.caption)

    # every candidate, a missing figure drawn as '—' (Streamlit drew 'None'), the numbers as plan() gives them
    cand = next(d for d in at.dataframe if "status" in d.value)
    assert cand.proto.placeholder == "—"
    assert list(cand.value.candidate) == list(res.candidates.candidate)
    assert list(cand.value.cost_per_hour_usd.fillna(-1)) == list(res.candidates.cost_per_hour_usd.fillna(-1))

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
    at.button(key="plan.go").click()
    at.run()
    assert not at.exception, at.exception
    assert any("at least one SLO, one hardware" in e.value for e in at.error)


def test_sidebar_request_becomes_the_planned_scenario_in_one_click():
    """The planner page plans the sidebar's model, hardware, images and text lengths (no YAML), and says so."""
    at = start()
    at.sidebar.selectbox(key="sb.model").set_value("qwen2-vl-7b")
    at.sidebar.selectbox(key="sb.preset").set_value("documents")
    at.run()
    assert at.sidebar.number_input(key="sb.width").value == 1700  # the preset filled the request
    at.button(key="plan.use-sidebar").click()
    at.run()
    assert not at.exception, at.exception
    box = at.selectbox(key="plan.scenario")
    assert box.value.endswith("sidebar-request.yaml")
    assert "sidebar request: qwen2-vl-7b on h100-sxm tp1, 1 x 1700x2200" in box.format_func(box.value)
    sc = load_scenario(box.value)
    assert (sc.model, sc.hardware, sc.workload.prompt_tokens.value, sc.workload.output_tokens.value) == (
        "qwen2-vl-7b", "h100-sxm", 200, 400)
    assert [(c.width, c.height) for c in sc.workload.image_size] == [(1700, 2200)]
    # the serving page picks the same scenario
    at.switch_page("views/serving.py").run()
    assert at.selectbox(key="sim.scenario").value == box.value


def test_a_changed_sidebar_after_taking_its_request_is_said():
    """The planner keeps the request taken when the button was pressed; once the sidebar differs the page says so,
    naming both, and the notice goes away when the new request is taken."""
    at = start()
    at.sidebar.selectbox(key="sb.model").set_value("qwen2-vl-7b")
    at.run()
    at.button(key="plan.use-sidebar").click()
    at.run()
    assert not [i for i in at.info if "has changed since" in i.value]
    at.sidebar.number_input(key="sb.width").set_value(1344)
    at.run()
    notes = [i.value for i in at.info if "has changed since" in i.value]
    assert len(notes) == 1, [i.value for i in at.info]
    assert notes[0] == ("This page uses the sidebar request: qwen2-vl-7b on h100-sxm tp1, 1 x 336x336, 64->128 tokens. "
                        "The sidebar has changed since (now qwen2-vl-7b on h100-sxm tp1, 1 x 1344x336, 64->128 "
                        "tokens); press *Use the sidebar's request* to use it.")
    at.button(key="plan.use-sidebar").click()
    at.run()
    assert not [i for i in at.info if "has changed since" in i.value]
