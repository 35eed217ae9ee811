"""The explorer read as a person (wave 11's screenshots): text that ran over lines and points, labels that wrapped
out of line, figures pushed past the page's edge by a wide column."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("altair")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.specs import registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "app") not in sys.path:
    sys.path.insert(0, str(REPO / "app"))

from explorer import charts  # noqa: E402
from explorer.plan_table import COLUMNS  # noqa: E402
from explorer.roofline_data import op_points, roofs_for  # noqa: E402


def _roofline(hardware: tuple[str, ...]) -> dict:
    """The roofline page's chart for the default request on one device, or on two as its A/B does."""
    points, roofs, ridges = [], [], []
    for dev, hw_id in zip("AB", hardware, strict=False):
        pts = op_points(lvlmsim.estimate("qwen2-vl-7b", hw_id), f"{dev}: {hw_id}")
        points.append(pts)
    allp = pd.concat(points, ignore_index=True)
    lo, hi = float(allp["intensity"].min()) / 3, float(allp["intensity"].max()) * 3
    for dev, hw_id, pts in zip("AB", hardware, points, strict=False):
        r, d = roofs_for(registry.load_hardware(hw_id), pts, lo, hi, device=dev if len(hardware) > 1 else "")
        roofs.append(r)
        ridges.append(d)
    chart = charts.roofline(allp, pd.concat(roofs, ignore_index=True), pd.concat(ridges, ignore_index=True),
                            hollow=f"B: {hardware[-1]}")
    return chart.to_dict()


def _text_layers(spec: dict) -> list[dict]:
    marks = [(la, la["mark"]["type"] if isinstance(la["mark"], dict) else la["mark"]) for la in spec["layer"]]
    return [la for la, m in marks if m == "text"]


def test_ab_roofline_names_both_devices_roofs_in_the_empty_corner():
    """H100 vs L40S: B's ridge label ('B: ridge 419 FLOP/B ...') was drawn across A's dashed roof, and 'B: l40s
    datasheet (bf16)' over B's own roof and points. Both devices' roofs are named in one key, top left, where the
    roofs are orders of magnitude lower, each line in its roof's colour."""
    spec = _roofline(("h100-sxm", "l40s"))
    texts = _text_layers(spec)
    assert len(texts) == 1
    key = spec["datasets"][texts[0]["data"]["name"]]
    h100, l40s = registry.load_hardware("h100-sxm"), registry.load_hardware("l40s")
    assert [k["text"] for k in key] == [
        f"A: h100-sxm datasheet (bf16): ridge {h100.ridge_point('bf16'):.0f} FLOP/B, "
        f"{h100.peak_flops('bf16') / 1e12:.0f} TFLOP/s",
        f"B: l40s datasheet (bf16): ridge {l40s.ridge_point('bf16'):.0f} FLOP/B, "
        f"{l40s.peak_flops('bf16') / 1e12:.0f} TFLOP/s",
    ]
    assert [k["colour"] for k in key] == charts.ROOF_COLORS
    # at the left edge, above both roofs there: ~330 px of text spans under two decades of intensity
    x_left = min(k["x"] for k in key)
    for hw in (h100, l40s):
        roof_there_tflops = x_left * 100 * hw.mem_bw_bytes_per_s / 1e12
        assert min(k["y"] for k in key) > 10 * roof_there_tflops


def test_one_device_roofline_labels_its_roof_and_ridge_in_place():
    spec = _roofline(("h100-sxm",))
    fields = sorted(la["encoding"]["text"]["field"] for la in _text_layers(spec))
    assert fields == ["label", "roof"]


def test_plan_candidates_show_the_figures_before_the_reason():
    """The reason column (wide, empty for every feasible candidate) pushed TPOT p90 and the throughputs past the
    page's edge; the figures come first now, the reason after them."""
    figures = ("replicas", "gpus", "cost_per_hour_usd", "capacity_per_replica_rps", "ttft_p90_s", "tpot_p90_s",
               "tokens_per_s_per_gpu", "tokens_per_s_per_user")
    assert max(COLUMNS.index(c) for c in figures) < COLUMNS.index("reason")
    assert COLUMNS[:3] == ("rank", "candidate", "status")


def test_technique_table_shows_the_accuracy_delta_beside_the_combination():
    """At the table's end 'accuracy delta' was cut off at the page's edge behind eight cost columns."""
    at = AppTest.from_file(str(REPO / "app" / "Home.py"), default_timeout=120).run()
    at.switch_page("views/techniques.py").run()
    assert not at.exception, at.exception
    table = next(d for d in at.dataframe if "combination" in d.value)
    assert list(table.proto.column_order)[:2] == ["combination", "accuracy_delta"]
    assert set(table.proto.column_order) == set(table.value.columns)  # every column still shown


def test_video_size_labels_fit_their_half_width_column():
    """'Video height (px)' with its help icon wrapped to two lines, its box dropped below its neighbour's."""
    at = AppTest.from_file(str(REPO / "app" / "Home.py"), default_timeout=120).run()
    labels = {w.key: w.label for w in at.sidebar.number_input}
    assert labels["sb.video_width"] == "Video width" and labels["sb.video_height"] == "Video height"
    helps = {w.key: w.help for w in at.sidebar.number_input}
    assert helps["sb.video_width"].startswith("Pixels.") and helps["sb.video_height"].startswith("Pixels.")
    assert len(labels["sb.video_height"]) <= len(labels["sb.width"])  # 'Image height (px)' fits without a help icon
