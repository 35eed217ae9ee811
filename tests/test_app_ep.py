"""The explorer's expert-parallel (EP) setting (issue 12): the sidebar's EP reaches `lvlmsim.estimate` as `--ep` does
on the CLI, is greyed out for a dense model, leaves an infeasible EP to the API's one-line error, and travels in the
shareable URL and setup JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.fmt import fmt_time  # noqa: E402
from tests.app_checks import app_with  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "Home.py"
MOE = "qwen3-vl-30b-a3b"  # 128 routed experts, 8 per token




def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [e.value for e in at.sidebar.error]


def cli_tpot_s(*args: str) -> float:
    """TPOT from `python -m lvlmsim estimate ... --json`, the figure the issue compares the explorer with."""
    out = subprocess.run([sys.executable, "-m", "lvlmsim", "estimate", *args, "--json"], cwd=REPO, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)["tpot_s"]


def test_sidebar_ep_gives_the_cli_tpot():
    at = app_with({"model": MOE, "hardware": "h100-sxm", "tp": "2"})
    ep1 = metric(at, "TPOT")
    at.sidebar.number_input(key="sb.ep").set_value(2)
    at = rerun(at)
    want = cli_tpot_s("--model", MOE, "--hardware", "h100-sxm", "--tp", "2", "--ep", "2")
    assert metric(at, "TPOT") == fmt_time(want)
    assert fmt_time(want) != ep1, "EP 2 must change this request's TPOT, or the test cannot tell EP was passed"


def test_dense_model_greys_out_ep_and_runs_ep_1():
    at = app_with({"model": MOE, "tp": "2", "ep": "2"})
    assert not at.sidebar.number_input(key="sb.ep").disabled
    at.sidebar.selectbox(key="sb.model").set_value("llava-1.5-7b")
    at = rerun(at)
    ep = at.sidebar.number_input(key="sb.ep")
    assert ep.disabled and "dense" in ep.help
    assert not errors(at)  # the kept value 2 is not sent: a dense model runs EP 1
    assert metric(at, "TPOT") == fmt_time(lvlmsim.estimate("llava-1.5-7b", "h100-sxm", tp=2).tpot_s)
    assert "ep" not in at.query_params


def test_infeasible_ep_is_the_api_one_line_error():
    at = app_with({"model": MOE, "tp": "2", "ep": "4"})
    with pytest.raises(lvlmsim.LvlmsimError) as exc:
        lvlmsim.estimate(MOE, "h100-sxm", tp=2, ep=4)
    assert str(exc.value) in errors(at) and "\n" not in str(exc.value)
    assert not at.metric


def test_url_and_setup_json_round_trip_ep():
    at = app_with({"model": MOE, "tp": "4", "ep": "4"})
    assert at.sidebar.number_input(key="sb.ep").value == 4
    assert at.query_params["ep"] in ("4", ["4"])
    assert metric(at, "TPOT") == fmt_time(lvlmsim.estimate(MOE, "h100-sxm", tp=4, ep=4).tpot_s)
    setup = at.session_state["setup"]
    sys.path.insert(0, str(REPO / "app"))
    from explorer.share import as_dict

    assert as_dict(setup) == {"model": MOE, "tp": 4, "ep": 4}
    fresh = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    fresh.sidebar.file_uploader(key="share.upload").set_value(
        ("setup.json", json.dumps(as_dict(setup)).encode(), "application/json"))
    fresh = rerun(rerun(fresh))
    assert fresh.sidebar.number_input(key="sb.ep").value == 4 and fresh.session_state["setup"].ep == 4
    at.sidebar.number_input(key="sb.ep").set_value(1)
    at = rerun(at)
    assert "ep" not in at.query_params  # the default is left out, as every field's is


def test_bad_ep_in_the_url_is_named():
    at = app_with({"model": MOE, "ep": "0"})
    assert any("ep: expected a whole number in 1..64, got '0'" in w.value for w in at.warning)


def test_planner_searches_the_sidebar_ep_as_plan_ep_does():
    """The sidebar's EP goes into the scenario the planner takes, and the page's EP degrees reach plan(ep=...): the
    candidates are plan()'s own, an ep2 one among them."""
    from lvlmsim.planner import SearchSettings, plan
    from lvlmsim.specs.scenario import load_scenario

    at = app_with({"model": MOE, "tp": "2", "ep": "2", "output_tokens": "48"})
    at.switch_page("views/planner.py")
    at = rerun(at)
    at.button(key="plan.use-sidebar").click()
    at = rerun(at)
    box = at.selectbox(key="plan.scenario")
    assert f"sidebar request: {MOE} on h100-sxm tp2 ep2" in box.format_func(box.value)
    sc = load_scenario(box.value)
    assert (sc.model, sc.serving.tp, sc.serving.ep) == (MOE, 2, 2)
    at.number_input(key="plan.rate").set_value(4.0)
    at.multiselect(key="plan.hardware").set_value(["h100-sxm"])
    at.multiselect(key="plan.tp").set_value([2])
    at.multiselect(key="plan.ep").set_value([1, 2])
    at.number_input(key="plan.probe_s").set_value(10.0)
    at.number_input(key="plan.tol").set_value(0.1)
    at.button(key="plan.go").click()
    at = rerun(at)
    res = plan(box.value, target_rate=4.0, slos={"ttft_p90": 1.0, "tpot_p90": 0.05}, hardware=["h100-sxm"], tp=[2],
               ep=[1, 2], layouts=["agg"], settings=SearchSettings(probe_duration_s=10.0, tolerance=0.1),
               executor="serial")
    cand = next(d for d in at.dataframe if "status" in d.value)
    assert list(cand.value.candidate) == list(res.candidates.candidate)
    assert "h100-sxm tp2 ep2 agg" in list(cand.value.candidate)
    assert {m.label: m.value for m in at.metric}["Configuration"] == res.recommended["candidate"]
    assert "ep=[1, 2]" in at.code[-1].value  # the page's 'Reproduce in Python'
