"""The explorer reads the estimate's own provenance (issue 11, wave 10): a device outside every category the
device-general model was fitted on (an AMD GPU) shows the API's transfer note under the headline of every page that
draws it, once; and the technique table composes with expert parallelism, as lvlmsim.estimate now does."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import lvlmsim  # noqa: E402
from tests.app_checks import app_with  # noqa: E402

MOE = "qwen3-vl-30b-a3b"  # 128 routed experts, 8 per token


def on_page(params: dict, page: str):
    at = app_with(params)
    if page != "overview":
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", ["overview", "roofline", "breakdown", "techniques"])
def test_transferred_amd_device_shows_the_apis_transfer_note_once(page):
    at = on_page({"model": "llava-1.5-7b", "hardware": "mi300x"}, page)
    est = lvlmsim.estimate("llava-1.5-7b", "mi300x")
    note = est.provenance["transfer_note"]
    assert note and note.startswith("mi300x is transferred: priced by the device-general model")
    shown = [w.value for w in at.warning] + [i.value for i in at.info]
    assert shown.count(note) == 1, shown
    assert any(c.value.startswith(f"mi300x: priced by {est.provenance['profile']} (transferred")
               for c in at.caption), [c.value for c in at.caption]


def test_measured_device_shows_no_transfer_note():
    at = on_page({"model": "llava-1.5-7b", "hardware": "h100-sxm"}, "roofline")
    assert not any("is transferred" in w.value for w in at.warning)


def test_technique_table_composes_with_expert_parallelism():
    """tp 2 / ep 2 on the MoE model: every combination is a row with the API's figures, none an error."""
    at = on_page({"model": MOE, "hardware": "h100-sxm", "tp": "2", "ep": "2"}, "techniques")
    at.text_area[0].set_value("fastv\nkv_quant:bits=8").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "combination" in d.value.columns)
    assert len(table) == 4
    row = table.set_index("combination").loc["fastv + kv_quant:bits=8"]
    est = lvlmsim.estimate(MOE, "h100-sxm", tp=2, ep=2, techniques=["fastv", "kv_quant:bits=8"])
    assert row["tpot_ms"] == pytest.approx(est.tpot_s * 1e3, rel=1e-12)
    ep1 = lvlmsim.estimate(MOE, "h100-sxm", tp=2, techniques=["fastv", "kv_quant:bits=8"])
    assert est.tpot_s != ep1.tpot_s, "ep 2 must change the figure, or the test cannot tell ep reached the table"


def test_planner_page_shows_plans_transfer_note():
    """plan's stats carry one transfer note per device outside every fitted category (the CLI prints them); the
    planner page showed only 'transferred, expected error ~14%' for mi300x."""

    from lvlmsim.calibrate.profiles import transfer_notes
    from lvlmsim.specs.scenario import load_scenario

    d = load_scenario("llava-chat-h100").model_dump(mode="json")
    d.update(id="planner-transfer-test", hardware="mi300x")
    d["workload"]["output_tokens"] = {"kind": "lognormal", "mean": 48, "std": 30, "max": 192}
    at = _page_with_scenario("views/planner.py", "plan.scenario", d)
    at.number_input(key="plan.rate").set_value(4.0)
    at.multiselect(key="plan.hardware").set_value(["mi300x"])
    at.multiselect(key="plan.tp").set_value([1])
    at.multiselect(key="plan.layouts").set_value(["agg"])
    at.number_input(key="plan.probe_s").set_value(10.0)
    at.button(key="plan.go").click()
    at.run()
    assert not at.exception, at.exception
    notes = transfer_notes(["mi300x"], None)  # what plan's stats['transfer_notes'] holds (lvlmsim.planner.plan)
    assert len(notes) == 1 and notes[0].startswith("mi300x is transferred")
    assert [w.value for w in at.warning].count(notes[0]) == 1, [w.value for w in at.warning]


def test_serving_page_shows_the_runs_transfer_note():
    """`lvlmsim simulate` prints a transfer note per pool device outside every fitted category; the Serving page
    printed none for a scenario on mi300x."""

    from lvlmsim.calibrate.profiles import transfer_notes
    from lvlmsim.specs.scenario import load_scenario

    d = load_scenario("llava-chat-h100").model_dump(mode="json")
    d.update(id="serving-transfer-test", hardware="mi300x")
    at = _page_with_scenario("views/serving.py", "sim.scenario", d)
    next(n for n in at.number_input if n.label == "Requests").set_value(20)
    at.button(key="sim.go").click()
    at.run()
    assert not at.exception, at.exception
    notes = transfer_notes(["mi300x"], None)
    assert len(notes) == 1 and [w.value for w in at.warning].count(notes[0]) == 1, [w.value for w in at.warning]


def _page_with_scenario(page: str, select_key: str, scenario: dict):
    """The page with `scenario` uploaded from the sidebar as amd.yaml and chosen in its scenario box."""
    import yaml

    at = app_with({})
    at.switch_page(page).run()
    at.sidebar.file_uploader(key="up.scenario").set_value(("amd.yaml", yaml.safe_dump(scenario).encode(), "text/yaml"))
    at.run()
    path = next(p for p in at.session_state["uploads"]["scenario"] if p.endswith("amd.yaml"))
    at.selectbox(key=select_key).set_value(path)
    return at
