"""What the explorer teaches beyond the headline, checked against the API: the MoE decode lesson on the Roofline page
(issue 12: decode reads the distinct experts the batch touches, so TPOT rises with the batch until every expert is
touched), which efficiency model priced an estimate and how sure it is (issue 11), the video as sent, and charts
where no op or combination hides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("altair")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.calibrate.profiles import profile_provenance  # noqa: E402
from lvlmsim.fmt import fmt_time, provenance_text  # noqa: E402
from lvlmsim.ops import op as op_kinds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "Home.py"
sys.path.insert(0, str(REPO / "app"))
sys.path.insert(0, str(REPO / "tests"))
from test_app import charts, rerun, set_sidebar  # noqa: E402


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=120).run()
    at.switch_page(f"views/{name}.py")
    return rerun(at)


def test_moe_roofline_teaches_experts_touched_and_tpot_against_batch():
    """qwen3-vl-30b-a3b routes to 8 of 128 experts: at batch 8 a decode step touches 128*(1-(1-8/128)^8) = 51.6
    experts per layer (hand-derived: 0.9375^8 = 0.5967), 8 at batch 1; the chart's TPOT is the API's at each batch."""
    at = set_sidebar(page("roofline"), model="qwen3-vl-30b-a3b", batch=8)
    text = "\n".join(m.value for m in at.markdown)
    assert "The MoE lesson" in text
    assert "8 of its 128 experts in each of its 48 MoE layers" in text
    assert "about **51.6** per layer at batch 8" in text and "(40% of the expert weights; 8 at batch 1)" in text
    tpot = {b: lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm", batch=b).tpot_s for b in (1, 8)}
    assert f"from {fmt_time(tpot[1])} at batch 1 to {fmt_time(tpot[8])} at batch 8, until every expert" in text
    assert tpot[8] > tpot[1]  # the lesson itself: more experts read per step
    spec, data = charts(at)["moe-batch"]
    frame = next(iter(data.values()))
    assert list(frame["batch"]) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert frame.loc[frame["batch"] == 8, "tpot_ms"].item() == pytest.approx(tpot[8] * 1e3)
    assert frame.loc[frame["batch"] == 1, "experts_touched"].item() == pytest.approx(8.0)
    assert list(frame["this_request"]) == [b == 8 for b in frame["batch"]]
    assert frame["experts_touched"].is_monotonic_increasing and frame["tpot_ms"].is_monotonic_increasing


def test_moe_lesson_at_batch_one_says_each_thing_once():
    """At the default batch 1 it read '23.42 ms at batch 1 and 23.42 ms at batch 1' and '8.0 per layer at batch 1
    (...; 8 at batch 1)' (seen in the browser on qwen3-vl-235b-a22b)."""
    at = set_sidebar(page("roofline"), model="qwen3-vl-30b-a3b")
    text = next(m.value for m in at.markdown if "The MoE lesson" in m.value)
    tpot1 = lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm").tpot_s
    assert "about **8.0** per layer at batch 1 (6% of the expert weights)." in text
    assert f"from {fmt_time(tpot1)} at batch 1, until every expert is touched" in text
    assert text.count("at batch 1") == 2


def test_dense_model_roofline_has_no_moe_lesson():
    at = page("roofline")
    assert "moe-batch" not in charts(at)
    assert not any("MoE lesson" in m.value for m in at.markdown)
    assert not [n for n in at.number_input if n.key == "roof.moe_skew"]  # no router to skew


def test_moe_router_skew_reaches_the_estimate_and_the_lesson():
    """Issue 12's skew on the Roofline page: the headline and every point of the lesson's chart are
    lvlmsim.estimate(..., moe_skew=1.2)'s, the experts touched are the graph's at that skew (fewer than balanced
    routing's, drawn beside them), and the lesson names both counts."""
    from lvlmsim.ops.graph import experts_touched

    at = set_sidebar(page("roofline"), model="qwen3-vl-30b-a3b", batch=8)
    at.number_input(key="roof.moe_skew").set_value(1.2)
    at = rerun(at)
    skewed = {b: lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm", batch=b, moe_skew=1.2).tpot_s
              for b in (1, 8, 256)}
    assert next(m.value for m in at.metric if m.label == "TPOT") == fmt_time(skewed[8])
    assert skewed[8] < lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm", batch=8).tpot_s  # else the test is blind
    spec, data = charts(at)["moe-batch"]
    frame = next(iter(data.values())).set_index("batch")
    for b, tpot_s in skewed.items():
        assert frame.loc[b, "tpot_ms"] == pytest.approx(tpot_s * 1e3)
    for b in frame.index:
        assert frame.loc[b, "experts_touched"] == pytest.approx(experts_touched(128, 8, b, 1.2))
        assert frame.loc[b, "experts_balanced"] == pytest.approx(experts_touched(128, 8, b))
    assert (frame.loc[2:, "experts_touched"] < frame.loc[2:, "experts_balanced"]).all()
    assert "experts_balanced" in str(spec)  # the balanced line is drawn
    text = next(m.value for m in at.markdown if "The MoE lesson" in m.value)
    assert (f"with router skew 1.2 (expert i picked with probability ∝ i^−1.2; balanced routing would touch "
            f"{experts_touched(128, 8, 8):.1f}), about **{experts_touched(128, 8, 8, 1.2):.1f}** per layer at batch 8"
            in text)
    assert "moe_skew=1.2" in next(c.value for c in at.caption if "experts_touched(E, k, B" in c.value)


def test_moe_router_skew_with_techniques_composes_on_the_page_as_in_the_api():
    """Techniques act on the skewed routing's graph (tests/test_techniques_moe.py); the page shows the API's
    estimate, no error."""
    at = set_sidebar(page("roofline"), model="qwen3-vl-30b-a3b", tech_extra="kv_quant:bits=8")
    at.number_input(key="roof.moe_skew").set_value(0.5)
    at = rerun(at)
    assert not at.error
    est = lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm", techniques=["kv_quant:bits=8"], moe_skew=0.5)
    assert est.graph_config.moe_skew == 0.5 and est.graph_config.kv_dtype == "fp8"


@pytest.mark.parametrize("hardware, kind", [("h100-sxm", "measured"), ("l40s", "transferred")])
def test_headline_says_which_model_priced_the_estimate(hardware, kind):
    """A device with its own fitted profile reads 'measured'; one priced by the device-general model 'transferred',
    each with the expected error the API's provenance gives."""
    at = set_sidebar(page("overview"), hardware=hardware)
    prov = profile_provenance(lvlmsim.load_hardware(hardware), "auto")
    assert prov["profile_kind"] == kind
    want = f"{hardware}: {provenance_text(prov)}. 80% band"
    assert any(c.value.startswith(want) for c in at.caption), [c.value for c in at.caption]
    assert f"expected error ~{prov['expected_error_pct']:.0f}%" in want
    est = lvlmsim.estimate("llava-1.5-7b", hardware)
    assert f"{fmt_time(est.band_keys()['ttft_s_p90'])} · TPOT" in "\n".join(c.value for c in at.caption)  # readable


def test_flat_profile_headline_has_no_error_estimate():
    at = set_sidebar(page("overview"), profile="default")
    assert any(c.value.startswith("h100-sxm: priced by roofline-default (flat roofline derate, no error estimate)")
               for c in at.caption)


def test_overview_ab_names_a_mixed_comparison():
    """A (h100-sxm, its own profile) against B (l40s, the general model): the A/B caption names both and a note
    says the two are priced differently."""
    at = page("overview")
    assert at.selectbox(key="ab.hardware").value == "l40s"
    assert any("A is priced from its own measured kernels, B by transfer" in i.value for i in at.info)


def test_every_op_kind_has_a_visible_fixed_shape():
    """Vega's 'stroke', 'wedge' and 'arrow' are lines: ops drawn with them vanished from the roofline (deepseek-vl2's
    attn_mla_prefill). Each kind of lvlmsim.ops.op gets its own shape with an area, the same on every chart, and the
    legend lists only the kinds drawn."""
    from explorer.charts import kind_scale

    kinds = [op_kinds.GEMM, op_kinds.CONV, op_kinds.ATTN_PREFILL, op_kinds.ATTN_DECODE, op_kinds.ATTN_ENCODER,
             op_kinds.ELEMENTWISE, op_kinds.ALLREDUCE, op_kinds.MOE_GEMM, op_kinds.ALLTOALL, op_kinds.ATTN_MLA_PREFILL,
             op_kinds.ATTN_MLA_DECODE]
    assert len(kinds) == 11
    scale = kind_scale(kinds).to_dict()
    shapes = dict(zip(scale["domain"], scale["range"], strict=True))
    assert len(set(shapes.values())) == len(kinds)
    assert not set(shapes.values()) & {"stroke", "wedge", "arrow"}
    small = kind_scale(["moe_gemm", "gemm"]).to_dict()
    assert small["domain"] == ["gemm", "moe_gemm"]
    assert dict(zip(small["domain"], small["range"], strict=True)) == {k: shapes[k] for k in small["domain"]}


def test_video_as_sent_changes_the_tokens_as_the_cli_does():
    """Issue 12: the explorer takes the video's size and frame rate (`--video-size`, `--video-fps`). A 10 s 1080p clip
    at 30 fps on Qwen2-VL is 7202 visual tokens (estimate --video-size 1920x1080 --video-fps 30), not the 2562 of
    the model's default frame size; the headline, the reproduce box and the share URL all carry it."""
    at = set_sidebar(page("overview"), model="qwen2-vl-7b", images=0, video_s=10.0)
    assert "**2562** visual tokens" in "\n".join(m.value for m in at.markdown)
    at = set_sidebar(at, video_width=1920, video_height=1080, video_fps=30.0)
    est = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=10.0, video_size=(1920, 1080),
                           video_fps=30.0)
    assert est.visual_tokens == 7202
    assert "**7202** visual tokens" in "\n".join(m.value for m in at.markdown)
    assert {m.label: m.value for m in at.metric}["TTFT"] == fmt_time(est.ttft_s)
    assert "video_size=(1920, 1080), video_fps=30.0" in at.code[0].value
    assert at.query_params["video_width"] == "1920" and at.query_params["video_fps"] == "30.0"


def test_half_a_video_size_is_an_error_and_ignored():
    at = set_sidebar(page("overview"), model="qwen2-vl-7b", images=0, video_s=10.0)
    at = set_sidebar(at, video_width=1920)  # a clip first: its size is greyed out without one
    assert any(e.value.startswith("video size: give both width and height") for e in at.sidebar.error)
    assert "**2562** visual tokens" in "\n".join(m.value for m in at.markdown)


def test_video_preset_sends_a_640x360_clip():
    """The 'video' preset's 640x360 used to fill the *image* size, which a video-only request ignores."""
    at = set_sidebar(page("overview"), model="qwen2-vl-7b")
    at.sidebar.selectbox(key="sb.preset").set_value("video")
    at = rerun(at)
    assert (at.sidebar.number_input(key="sb.video_width").value,
            at.sidebar.number_input(key="sb.video_height").value) == (640, 360)
    est = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=30.0, video_size=(640, 360), video_fps=30.0,
                           prompt_tokens=40, output_tokens=120)
    assert f"**{est.visual_tokens}** visual tokens" in "\n".join(m.value for m in at.markdown)


def test_sidebar_video_as_sent_reaches_the_serving_scenario():
    """'Use the sidebar's request' on Serving / Capacity planner: the clip's size and frame rate go into the scenario's
    video spec (width, height, source_fps), so the engine tokenizes the same clip as the headline."""
    from explorer.state import DEFAULTS, Setup, scenario_from_sidebar

    from lvlmsim.specs.scenario import load_scenario

    setup = Setup(**{**DEFAULTS, "model": "qwen2-vl-7b", "images": 0, "video_s": 10.0, "video_width": 1920,
                     "video_height": 1080, "video_fps": 30.0})
    video = load_scenario(scenario_from_sidebar("llava-chat-h100", setup)).workload.video
    assert (video.width, video.height, video.source_fps) == (1920, 1080, 30.0)


def test_dominated_combinations_are_not_hidden_under_pareto_ones():
    """The technique page's figures (qwen2-vl-7b, h100-sxm, 2 x 1344x1008; TTFT ms, accuracy delta): each
    dominated combination sat 0.08-0.14 ms right of a Pareto-optimal one with the same delta, under its marker, so 8
    combinations showed as 4 points. Each is now drawn one marker lower (one nudge step); the Pareto ones and a
    point with no near neighbour stay where they are."""
    import pandas as pd
    from explorer.charts import nudge_steps

    ttft = pd.Series([143.748, 143.608, 142.970, 142.830, 109.984, 109.906, 109.206, 109.128, 126.0])
    delta = pd.Series([0.0, 0.0, -0.2, -0.2, -0.6, -0.6, -0.8, -0.8, -0.4])
    pareto = pd.Series([False, True, False, True, False, True, False, True, False])
    assert list(nudge_steps(ttft, delta, pareto)) == [1, 0, 1, 0, 1, 0, 1, 0, 0]

def test_roofline_explains_windowed_layers_from_the_op_table():
    """gemma-3-27b: 52 of 62 layers slide over 1024 tokens (10 global, every 6th). KV per token, hand-derived:
    62 layers x 16 KV heads x 128 x 2 (K, V) x 2 bytes = 496 KiB; beyond the window only the 10 global layers
    grow, 80 KiB. The per-call decode times quoted are the API's (time / calls of each attention op)."""
    at = set_sidebar(page("roofline"), model="gemma-3-27b", prompt_tokens=4000)
    text = "\n".join(m.value for m in at.markdown)
    assert "**Windowed layers.** 52 of the 62 decoder layers of gemma-3-27b attend within a sliding window" in text
    assert "grows by 80 KiB per token beyond the window instead of 496 KiB" in text
    ops = lvlmsim.estimate("gemma-3-27b", "h100-sxm", prompt_tokens=4000).ops_frame()
    dec = ops[ops["stage"] == "decode"].set_index("op")
    per_call = {op: dec.loc[op, "time_s"] / dec.loc[op, "count"] for op in ("llm.attention.sliding", "llm.attention")}
    assert per_call["llm.attention.sliding"] < per_call["llm.attention"]  # 4,388 tokens of context vs 1,024
    assert (f"takes {fmt_time(per_call['llm.attention.sliding'])} in a windowed layer (`llm.attention.sliding`) "
            f"against {fmt_time(per_call['llm.attention'])} in a global one") in text


def test_roofline_ab_names_both_devices_provenance_and_legend_lists_drawn_stages():
    """Roofline A/B (h100-sxm vs l40s): the caption says which model priced each and that they differ (issue 11);
    the stage legend lists the stages drawn, not the split-prefill entries while the split is off."""
    at = page("roofline")
    at.selectbox(key="roof.compare").set_value("l40s")
    at = rerun(at)
    caption = "\n".join(c.value for c in at.caption)
    for hw in ("h100-sxm", "l40s"):
        prov = profile_provenance(lvlmsim.load_hardware(hw), "auto")
        assert f"= {hw}, {provenance_text(prov)}" in caption
    assert "priced by different kinds of efficiency model" in caption
    spec, _ = charts(at)["roofline"]
    colors = [la.get("encoding", {}).get("color", {}) for la in spec["layer"]]
    domains = {tuple(c["scale"]["domain"]) for c in colors if c.get("field") == "stage" and "scale" in c}
    assert domains == {("encode", "prefill", "decode")}


def test_kv_occupancy_axis_is_a_percentage():
    """The Serving page's KV series is used / total KV blocks: its axis read '0.05' under 'KV occupancy', no unit."""
    import pandas as pd
    from explorer.charts import timeseries

    frame = pd.DataFrame({"t_s": [0.0, 1.0], "value": [0.02, 0.05]})
    spec = timeseries(frame, "t_s", "KV in use (%)").to_dict()
    assert spec["encoding"]["y"]["axis"]["format"] == ".0%"
    assert timeseries(frame, "t_s", "batch size").to_dict()["encoding"]["y"]["axis"]["format"] == ".3~g"


def test_roofline_draws_mla_decode_next_to_gqa_of_the_same_size():
    """Issue 16: MLA decode next to GQA for the same model size. DeepSeek-VL2 (32 heads) against its GQA twin with 8
    KV heads (ModelSpec.with_gqa_attention): GQA decode attention reads 8 x (128 K + 128 V) values per key for 32
    heads' work, 4x the intensity of the MHA twin (about heads / kv_heads = 4 FLOP/B, docs/attention-families.md),
    still far left of MLA's ~60 FLOP/B."""
    at = set_sidebar(page("roofline"), model="deepseek-vl2")
    at.checkbox(key="roof.mla_vs_mha").check()
    at = rerun(at)
    at.radio(key="roof.mla_twin").set_value("gqa")
    at = rerun(at)
    from test_app import all_layers_data, is_op_points

    pts = all_layers_data(charts(at)["roofline"], is_op_points)
    assert set(pts["when"]) == {"MLA: deepseek-vl2", "GQA: 8 KV heads"}
    dec = pts[pts["stage"] == "decode"]
    mla = dec[dec["kind"] == "attn_mla_decode"]["intensity"].item()
    gqa = dec[(dec["when"] == "GQA: 8 KV heads") & (dec["kind"] == "attn_decode")]["intensity"].item()
    mha = lvlmsim.estimate(lvlmsim.load_model("deepseek-vl2").with_mha_attention(), "h100-sxm").ops_frame()
    mha_i = mha[(mha["stage"] == "decode") & (mha["kind"] == "attn_decode")]["intensity"].item()
    assert gqa == pytest.approx(4 * mha_i, rel=0.05) and 3 < gqa < 5
    assert mla > 10 * gqa


def test_gqa_twin_of_an_mla_model():
    from lvlmsim.errors import SpecError

    spec = lvlmsim.load_model("deepseek-vl2")
    twin = spec.with_gqa_attention(8)
    assert (twin.id, twin.llm.mla, twin.llm.num_kv_heads, twin.llm.head_dim) == ("deepseek-vl2-gqa8", None, 8, 128)
    assert spec.with_gqa_attention(32).id == spec.with_mha_attention().id == "deepseek-vl2-mha"
    with pytest.raises(SpecError, match="kv_heads: expected a divisor of the 32 attention heads"):
        spec.with_gqa_attention(5)


def test_video_size_and_fps_are_greyed_out_without_a_video():
    """A control that does nothing is greyed out: the clip's size and fps while Video seconds is 0."""
    at = page("overview")
    boxes = [at.sidebar.number_input(key=f"sb.{k}") for k in ("video_width", "video_height", "video_fps")]
    assert all(b.disabled for b in boxes)
    at = set_sidebar(at, model="qwen2-vl-7b", images=0, video_s=10.0)
    assert not any(at.sidebar.number_input(key=f"sb.{k}").disabled for k in ("video_width", "video_height",
                                                                             "video_fps"))


def test_roofline_sentence_for_a_collective_has_no_nan_ridge():
    """llama-4-scout at tp 4 on mi300x: the encoder's largest op is its all-reduce, which has no compute time and so
    no effective ridge; the sentence read 'vs its effective ridge nan FLOP/byte'."""
    at = set_sidebar(page("roofline"), model="llama-4-scout", tp=4, hardware="mi300x")
    text = "\n".join(m.value for m in at.markdown)
    assert "nan" not in text
    assert ("`vision.allreduce` (intensity 0.5 FLOP/byte; no effective ridge: it has no compute time) is "
            "**communication-bound**: the link between devices, not the roofs, sets its time") in text


def test_page_defaults_follow_the_sidebar_until_the_person_edits_them():
    """Techniques suggested for llava-1.5-7b (tome among them) stayed after the sidebar moved to qwen2-vl-7b, whose
    projector tome cannot merge: two red errors for techniques the person never chose. Left untouched, the list
    now follows the sidebar; edited, it is the person's and stays. The same for B's model on the Overview."""
    from explorer.state import DEFAULTS, Setup, suggested_techniques

    at = page("techniques")
    assert at.text_area(key="tech.list").value.startswith("tome")
    at = set_sidebar(at, model="qwen2-vl-7b")
    want = suggested_techniques(setup=Setup(**{**DEFAULTS, "model": "qwen2-vl-7b"}))
    assert at.text_area(key="tech.list").value == "\n".join(want) and not at.error
    at.text_area(key="tech.list").set_value("kv_quant:bits=8")
    at = set_sidebar(rerun(at), model="internvl2.5-8b")
    assert at.text_area(key="tech.list").value == "kv_quant:bits=8"

    at = set_sidebar(page("overview"), model="qwen2-vl-7b", images=0, video_s=20.0)
    assert at.selectbox(key="ab.model").value == "qwen2-vl-7b" and not at.error  # B read 'llava ... no video policy'
