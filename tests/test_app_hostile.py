"""Hostile input to the explorer's widgets (wave 8, found in a real browser): each case was a traceback, a silent
clamp or a confusing result before, and is now one message naming the field and what it allows, with the person's
other inputs kept. Share-URL values, setup JSON, uploads, and the planner's table of candidates without figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.fmt import fmt_time  # noqa: E402

APP_DIR = Path(__file__).resolve().parents[1] / "app"
ENTRY = APP_DIR / "Home.py"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


def app(params: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def share_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


# ------------------------------------------------------------------------------------------------ share URL / JSON
@pytest.mark.parametrize(("values", "problem"), [
    # over the widget's maximum: Streamlit put the widget's minimum in its place (tp 1, 0 prompt tokens), unsaid
    ({"tp": "1000"}, "tp: expected a whole number in 1..64, got '1000'"),
    ({"prompt_tokens": "2000000"}, "prompt_tokens: expected a whole number in 0..1000000, got '2000000'"),
    ({"width": 10**30}, "width: expected a whole number in 1..16384, got 1000000000000000000000000000000"),
    # NaN and inf were applied to the video box as they were
    ({"video_s": "nan"}, "video_s: expected a number of seconds in 0..3600, got 'nan'"),
    ({"video_s": "inf"}, "video_s: expected a number of seconds in 0..3600, got 'inf'"),
    ({"height": "1.5"}, "height: expected a whole number in 1..16384, got '1.5'"),
    ({"batch": "-3"}, "batch: expected a whole number in 1..4096, got '-3'"),
    ({"images": "\U0001f600"}, "images: expected a whole number in 0..64, got '\U0001f600'"),
    ({"tp": True}, "tp: expected a whole number in 1..64, got True"),
    # a JSON setup's non-string technique was a TypeError traceback
    ({"tech": 5}, "tech: expected technique strings such as 'fastv:layer=2,keep=0.5', got 5"),
    ({"model": ["a"]}, "model: unknown ['a']; allowed: "),
])
def test_share_values_out_of_the_widgets_range_are_named(values, problem):
    from explorer.share import parse

    good, problems = parse(values)
    assert good == {} and len(problems) == 1 and problems[0].startswith(problem), problems


def test_share_value_messages_do_not_echo_a_huge_value():
    from explorer.share import SHOWN_CHARS, parse

    _, problems = parse({"model": "x" * 5000, "y" * 5000: 1})
    assert all(len(p) < 2 * SHOWN_CHARS + 600 for p in problems), [len(p) for p in problems]


def test_share_values_at_the_bounds_are_taken():
    from explorer.share import parse

    good, problems = parse({"tp": "64", "images": "0", "video_s": "3600", "width": "16384.0"})
    assert problems == [] and good == {"tp": 64, "images": 0, "video_s": 3600.0, "width": 16384}


def test_url_with_values_past_the_widgets_keeps_the_defaults_and_says_so():
    """?tp=1000&prompt_tokens=2000000&video_s=nan: the page ran tp 1 and 0 prompt tokens and then showed 'a request
    needs at least one prompt or visual token'; now every value is named, the rest of the URL is applied."""
    at = app({"tp": "1000", "prompt_tokens": "2000000", "video_s": "nan", "output_tokens": "77"})
    warn = " ".join(share_warnings(at))
    assert "tp: expected a whole number in 1..64, got '1000'" in warn
    assert "prompt_tokens: expected a whole number in 0..1000000" in warn and "video_s: expected a number" in warn
    assert at.sidebar.number_input(key="sb.tp").value == 1
    assert at.sidebar.number_input(key="sb.output_tokens").value == 77
    assert not [e.value for e in at.error]
    want = fmt_time(lvlmsim.estimate(output_tokens=77).ttft_s)
    assert next(m.value for m in at.metric if m.label == "TTFT") == want


def test_setup_json_past_the_widgets_is_named():
    at = app()
    at.sidebar.file_uploader(key="share.upload").set_value(
        ("s.json", json.dumps({"width": 10**30, "tp": 99, "images": 2}).encode(), "application/json"))
    at.run()
    assert not at.exception
    warn = " ".join(share_warnings(at))
    assert "width: expected a whole number in 1..16384" in warn and "tp: expected a whole number in 1..64" in warn
    assert at.sidebar.number_input(key="sb.width").value == 336 and at.sidebar.number_input(key="sb.images").value == 2


# ------------------------------------------------------------------------------------------------------ uploads
def test_scenario_upload_with_an_unknown_model_is_refused_at_upload():
    """It was 'loaded scenario x (nope on h100-sxm)' and failed only when run or planned."""
    at = app(page="serving")
    at.sidebar.file_uploader(key="up.scenario").set_value(
        ("s.yaml", b"id: x\nmodel: nope\nhardware: h100-sxm\n", "application/x-yaml"))
    at.run()
    assert not at.exception
    errs = [e.value for e in at.sidebar.error]
    assert any(e.startswith("s.yaml: unknown model 'nope'") for e in errs), errs
    uploads = at.session_state["uploads"]["scenario"] if "uploads" in at.session_state else {}
    assert not any(p.endswith("s.yaml") for p in uploads)


@pytest.mark.parametrize(("kind", "name", "data", "message"), [
    ("model", "m.yaml", bytes(range(256)), "m.yaml: not UTF-8 text (byte 0x80 at offset 128)"),
    ("model", "m.yaml", b"", "m.yaml: empty, no fields; expected a mapping of fields for ModelSpec"),
    ("trace", "t.csv", b"time,tokens\n0.1,5\n", "t.csv: t.csv:1: missing column(s) arrival_s, prompt_tokens, "
                                                  "output_tokens (header has: time, tokens)"),
])
def test_upload_errors_name_the_file_not_its_saved_copy(kind, name, data, message):
    """The message quoted the app's temporary copy (/tmp/lvlmsim-app-uploads/<hash>/m.yaml), a path the person never
    gave; it names their file now."""
    at = app()
    at.sidebar.file_uploader(key=f"up.{kind}").set_value((name, data, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [message]


def test_a_trace_of_one_instant_is_a_message_on_the_serving_page():
    """A trace whose arrivals are all at t=0 has no rate to rescale: a TraceError traceback on the page before."""
    at = app(page="serving")
    at.sidebar.file_uploader(key="up.trace").set_value(
        ("burst.csv", b"arrival_s,prompt_tokens,output_tokens\n0,5,5\n0,6,5\n", "text/csv"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errs = [e.value for e in at.error]
    assert any(e.startswith("Traffic: burst.csv (uploaded): all arrivals at the same time; cannot rescale")
               for e in errs), errs
    assert at.selectbox(key="sim.trace").value.endswith("burst.csv")  # the choice stays, to be changed


# ----------------------------------------------------------------------------------------- planner's candidates
def test_candidates_without_figures_keep_nulls_and_say_why():
    """Pruned / infeasible rows have no capacity, cost or latency: Streamlit drew 'None' in those cells and the reason
    was cut to a few characters. The figures stay numbers (nulls, drawn as NO_FIGURE by the page's placeholder; the
    browser screenshot shows it), and an empty reason says which status left the row without figures."""
    from explorer.plan_table import COLUMNS, candidates_table, missing_placeholder

    none = dict.fromkeys(("rank", "replicas", "cost_per_hour_usd", "capacity_per_replica_rps", "ttft_p90_s",
                          "tpot_p90_s", "tokens_per_s_per_gpu", "tokens_per_s_per_user", "des_runs", "verified"))
    cands = pd.DataFrame([
        {"rank": 1, "candidate": "h100-sxm tp1 agg", "status": "feasible", "reason": "", "replicas": 1, "gpus": 1,
         "cost_per_hour_usd": 3.0, "capacity_per_replica_rps": 15.8, "ttft_p90_s": 0.0243, "tpot_p90_s": 0.00691,
         "tokens_per_s_per_gpu": 323.4, "tokens_per_s_per_user": 153.94, "des_runs": 7, "verified": True,
         "pareto_cost_latency": True},
        {**none, "candidate": "l40s tp1 agg", "status": "pruned", "reason": "does not fit: needs 145 GiB", "gpus": 1},
        {**none, "candidate": "l40s tp2 agg", "status": "infeasible", "reason": None, "gpus": 2, "des_runs": 3}])
    table = candidates_table(cands)
    assert list(table.columns) == list(COLUMNS)  # the page's columns, in order; internal ones left out
    assert list(table.reason) == ["", "does not fit: needs 145 GiB", "infeasible in the engine"]
    assert pd.api.types.is_numeric_dtype(table.cost_per_hour_usd) and table.cost_per_hour_usd.isna().sum() == 2
    assert missing_placeholder() == {"placeholder": NO_FIGURE_WANT}


NO_FIGURE_WANT = "—"


def test_overview_b_tp_that_cannot_run_is_named_as_b():
    """'tp: 3 does not divide ...' under the A/B table read as the sidebar's TP (which was 1)."""
    at = app()
    at.number_input(key="ab.tp").set_value(3)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["B: tp: 3 does not divide the 32 attention heads of llava-1.5-7b; "
                                           "allowed: 1, 2, 4, 8, 16, 32"]
    assert next(m.value for m in at.metric if m.label == "TTFT") == fmt_time(lvlmsim.estimate().ttft_s)  # A stays


def test_share_warnings_stand_above_the_page_until_the_setup_changes():
    """They stood at the foot of the sidebar, under the expanders, where a person did not see them."""
    at = app({"tp": "1000"})
    assert [w.value for w in at.main.warning] == ["setup not applied: tp: expected a whole number in 1..64, got '1000'"]
    at.switch_page("views/roofline.py").run()
    assert len(at.main.warning) == 1  # on every page while the setup is the shared one
    at.sidebar.number_input(key="sb.prompt_tokens").set_value(100)
    at.run()
    assert not at.exception and not [w for w in at.main.warning if "setup not applied" in w.value]


def test_accuracy_editor_takes_only_percentage_points():
    """The grid's number editor drops the 'e' of '1e400' (it arrived as 1400 points and was summed into the matrix);
    the column now carries the API's bound, so the grid keeps a typed value within -100..100."""
    from lvlmsim.techniques import ACCURACY_DELTA_POINTS

    at = app(page="techniques")
    editor = next(d for d in at.dataframe if d.proto.editing_mode and "accuracy_delta" in d.proto.columns)
    cfg = json.loads(editor.proto.columns)["accuracy_delta"]["type_config"]
    assert (cfg["min_value"], cfg["max_value"]) == ACCURACY_DELTA_POINTS == (-100.0, 100.0)
