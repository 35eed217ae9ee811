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
