"""The roofline page's sentences never contradict its chart or the API's op table: for several model/hardware pairs
every op a sentence names has the bound the API gives it, sits on the side of its effective ridge the bound implies,
and the effective roof the chart draws is the one those labels use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.fmt import fmt_pct, fmt_time, fmt_usd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "Home.py"
OP_SENTENCE = re.compile(r"`(?P<op>[\w.]+)` \(intensity (?P<i>[\d.e+-]+) FLOP/byte vs its effective ridge "
                         r"(?P<r>[\d.e+-]+) FLOP/byte\) is \*\*(?P<bound>\w+)-bound\*\*(?P<rest>[^.]*)")
PAIRS = [("llava-1.5-7b", "h100-sxm"), ("qwen2-vl-7b", "l4"), ("internvl2.5-8b", "a100-sxm-80gb")]


def roofline_notes(model: str, hardware: str) -> str:
    at = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    at.switch_page("views/roofline.py").run()
    at.sidebar.selectbox(key="sb.model").set_value(model)
    at.sidebar.selectbox(key="sb.hardware").set_value(hardware)
    at.run()
    assert not at.exception, at.exception
    return "\n".join(m.value for m in at.markdown)


def check_sentences(text: str, model: str, hardware: str) -> int:
    """Every op sentence against the API's op table; returns how many were checked."""
    ops = lvlmsim.estimate(model, hardware).ops_frame()
    found = list(OP_SENTENCE.finditer(text))
    for m in found:
        rows = ops[ops["op"] == m["op"]]
        assert len(rows), m["op"]
        assert m["bound"] in set(rows["bound"]), (m["op"], m["bound"], set(rows["bound"]))
        i, r = float(m["i"]), float(m["r"])
        if m["bound"] == "memory":
            assert i < r and "left of its effective ridge" in m["rest"]
        elif m["bound"] == "compute":
            assert i >= r * 0.999 and "right of its effective ridge" in m["rest"]
        # the ridge quoted is the one the API's times imply: compute-bound iff compute_s >= memory_s
        row = rows.iloc[(rows["intensity"] - i).abs().argmin()]
        assert r == pytest.approx(row["intensity"] * row["memory_s"] / row["compute_s"], rel=5e-3)
    return len(found)


@pytest.mark.parametrize("model, hardware", PAIRS)
def test_every_roofline_sentence_agrees_with_the_api(model, hardware):
    text = roofline_notes(model, hardware)
    assert check_sentences(text, model, hardware) >= 3  # one per stage at least
    est = lvlmsim.estimate(model, hardware)
    drawn = set(est.ops_frame()["stage"])  # a host-side stage (preprocess) has no ops on the roofline
    for stage, s in ((k, v) for k, v in est.stages.items() if k in drawn):
        assert f"**{stage}** ({fmt_time(s.time_s)}; the API labels the stage *{s.bound}*-bound)" in text


def test_llava_says_it_ignores_the_image_size():
    assert "resizes every image to 336x336 px" in roofline_notes("llava-1.5-7b", "h100-sxm")


def test_formatters_humanise():
    assert fmt_time(3112.588) == "51.9 min" and fmt_time(9000) == "2.5 h" and fmt_time(1.5) == "1.500 s"
    assert fmt_usd(3.0) == "$3.00" and fmt_usd(4380.0) == "$4,380" and fmt_usd(None) == "n/a"
    assert fmt_pct(18.35) == "18%"



def test_split_prefill_points_share_their_time_by_the_visual_flops_share():
    import json

    at = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    at.switch_page("views/roofline.py").run()
    at.toggle(key="roof.split").set_value(True)
    at.run()
    assert not at.exception, at.exception
    import io

    import pyarrow as pa

    el = next(c for c in at.get("vega_lite_chart") if json.loads(c.proto.spec).get("description") == "roofline")
    frames = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in el.proto.datasets]
    pts = next(f for f in frames if "stage" in f and "op" in f and len(f) > 10)
    ops = lvlmsim.estimate().ops_frame()
    pre = ops[(ops["stage"] == "prefill") & (ops["flops"] > 0) & (ops["bytes"] > 0)]
    vis = pts[pts["stage"] == "prefill: visual tokens"].set_index(["op", "layers"])
    txt = pts[pts["stage"] == "prefill: text tokens"].set_index(["op", "layers"])
    assert "prefill" not in set(pts["stage"])
    for r in pre.itertuples():
        got = vis["time_s"].get((r.op, r.layers), 0.0) + txt["time_s"].get((r.op, r.layers), 0.0)
        assert got == pytest.approx(r.time_s)
        assert vis["time_s"].get((r.op, r.layers), 0.0) == pytest.approx(r.time_s * r.visual_flops_share)
