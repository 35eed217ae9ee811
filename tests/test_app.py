"""The Streamlit explorer, page by page, with streamlit.testing.v1.AppTest: change a widget, then check that the
numbers shown (metrics, the data behind each Altair chart) equal what the public API returns for those inputs, and
that bad input ends as an error element, never an exception."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

pytest.importorskip("streamlit")
pytest.importorskip("altair")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.specs import registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "Home.py"
APP_DIR = str(REPO / "app")


def fmt_time(s: float) -> str:
    """The app's own formatter (app/explorer, which Home.py puts on sys.path)."""
    if APP_DIR not in sys.path:
        sys.path.insert(0, APP_DIR)
    from explorer.fmt import fmt_time as f

    return f(s)


# ------------------------------------------------------------------------------------------------------ helpers

def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, at.exception
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def set_sidebar(at: AppTest, **values) -> AppTest:
    """Set sidebar widgets by their setup name (model, width, ...) and rerun."""
    for name, value in values.items():
        widget = next(w for w in at.sidebar if getattr(w, "key", None) == f"sb.{name}")
        widget.set_value(value)
    return rerun(at)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def api_headline(model: str, hardware: str, **kw) -> dict[str, str]:
    est = lvlmsim.estimate(model, hardware, **kw)
    return {"TTFT": fmt_time(est.ttft_s), "TPOT": fmt_time(est.tpot_s), "E2E": fmt_time(est.e2e_s)}


def charts(at: AppTest) -> dict[str, tuple[dict, dict[str, pd.DataFrame]]]:
    """description -> (Vega-Lite spec, datasets by name) for every Altair chart on the page."""
    out = {}
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        data = {d.name: pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in el.proto.datasets}
        out[spec.get("description", "")] = (spec, data)
    return out


def layer_data(chart: tuple[dict, dict], pred) -> pd.DataFrame:
    """The dataset of the first layer (or the single chart) whose spec satisfies `pred`."""
    spec, data = chart
    layers = spec.get("layer", [spec])
    for layer in layers:
        if pred(layer):
            return data[layer["data"]["name"]] if "data" in layer else data[spec["data"]["name"]]
    raise AssertionError("no such layer")


def all_layers_data(chart: tuple[dict, dict], pred) -> pd.DataFrame:
    """The datasets of every layer whose spec satisfies `pred`, stacked."""
    spec, data = chart
    frames = [data[la["data"]["name"]] for la in spec.get("layer", [spec]) if pred(la)]
    assert frames, "no such layer"
    return pd.concat(frames, ignore_index=True)


def is_op_points(layer: dict) -> bool:
    return mark(layer) == "point" and "shape" in layer.get("encoding", {})


def mark(layer: dict) -> str:
    m = layer.get("mark")
    return m["type"] if isinstance(m, dict) else m


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [e.value for e in at.sidebar.error]


# ------------------------------------------------------------------------------------------------------ pages

def test_overview_headline_follows_the_sidebar():
    at = start()
    assert {k: metrics(at)[k] for k in ("TTFT", "TPOT", "E2E")} == api_headline("llava-1.5-7b", "h100-sxm")
    at = set_sidebar(at, model="qwen2-vl-7b", hardware="h200-sxm", width=1344, height=1008, output_tokens=64)
    want = api_headline("qwen2-vl-7b", "h200-sxm", image_size=(1344, 1008), output_tokens=64)
    assert {k: metrics(at)[k] for k in want} == want
    est = lvlmsim.estimate("qwen2-vl-7b", "h200-sxm", image_size=(1344, 1008), output_tokens=64)
    assert est.memory.verdict in [c.value for c in at.caption]
    assert at.metric[3].value.startswith(f"{est.memory.needed_bytes / 2**30:.1f} / ")
    table = at.dataframe[0].value
    assert list(table["stage"]) == ["preprocess", "encode", "prefill", "decode"]  # preprocess: host costs (off here)
    assert list(table["bound"]) == [s.bound for s in est.stages.values()]


def test_sidebar_setup_survives_a_page_switch():
    at = start()
    at = set_sidebar(at, model="internvl2.5-8b", images=2)
    at.switch_page("views/breakdown.py")
    at = rerun(at)
    assert at.sidebar.selectbox(key="sb.model").value == "internvl2.5-8b"
    assert metrics(at)["TTFT"] == api_headline("internvl2.5-8b", "h100-sxm", images=2)["TTFT"]


def test_roofline_points_ridge_and_roof_come_from_the_api():
    at = start("roofline")
    at = set_sidebar(at, model="qwen2-vl-7b", width=672, height=448, batch=4)
    kw = dict(image_size=(672, 448), batch=4)
    assert metrics(at)["TTFT"] == api_headline("qwen2-vl-7b", "h100-sxm", **kw)["TTFT"]
    chart = charts(at)["roofline"]
    pts = all_layers_data(chart, is_op_points)
    est = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", **kw)
    ops = est.ops_frame()
    ops = ops[(ops["flops"] > 0) & (ops["bytes"] > 0)]
    got = pts.set_index(["stage", "op", "layers"]).sort_index()
    want = ops.set_index(["stage", "op", "layers"]).sort_index()
    assert list(got.index) == list(want.index)
    for col in ("intensity", "attained_tflops", "flops", "bytes", "time_s"):
        assert got[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-9)
    assert list(got["bound"]) == list(want["bound"])
    assert set(pts["stage"]) == {"encode", "prefill", "decode"}
    hw = registry.load_hardware("h100-sxm")
    ridges = layer_data(chart, lambda la: mark(la) == "rule")
    for r in ridges.itertuples():
        assert r.ridge == pytest.approx(hw.ridge_point(r.dtype))
        assert r.peak_tflops == pytest.approx(hw.peak_flops(r.dtype) / 1e12)
    roof = layer_data(chart, lambda la: mark(la) == "line" and la["encoding"]["y"]["field"] == "tflops")
    assert roof["tflops"].max() == pytest.approx(hw.peak_flops(ridges["dtype"].iloc[0]) / 1e12)
    # the teaching notes quote this request's numbers
    md = " ".join(m.value for m in at.markdown)
    assert f"{est.stages['prefill'].visual_flops_share:.0%}" in md


def overlay_kind() -> str:
    """FastV (the brief's example) when the real module is there, else the stand-in's first kind."""
    from lvlmsim.techniques import technique_table

    kinds = [row[0] for row in technique_table()]
    return "fastv" if "fastv" in kinds else kinds[0]


def test_roofline_overlays_the_points_before_and_after_techniques():
    kind = overlay_kind()
    at = start("roofline")
    at.sidebar.multiselect(key="sb.tech_kinds").set_value([kind])
    at = rerun(at)
    setup = at.session_state["setup"]
    assert len(setup.techniques) == 1 and setup.techniques[0].startswith(kind), errors(at)
    chart = charts(at)["roofline"]
    pts = all_layers_data(chart, is_op_points)
    assert set(pts["when"]) == {"with techniques", "without techniques"}
    for when, techs in (("with techniques", list(setup.techniques)), ("without techniques", [])):
        ops = lvlmsim.estimate("llava-1.5-7b", "h100-sxm", techniques=techs).ops_frame()
        ops = ops[(ops["flops"] > 0) & (ops["bytes"] > 0)].set_index(["stage", "op", "layers"]).sort_index()
        got = pts[pts["when"] == when].set_index(["stage", "op", "layers"]).sort_index()
        assert list(got.index) == list(ops.index)
        assert got["intensity"].to_numpy() == pytest.approx(ops["intensity"].to_numpy())
        assert got["time_s"].to_numpy() == pytest.approx(ops["time_s"].to_numpy())
    assert metrics(at)["TTFT"] == fmt_time(lvlmsim.estimate(techniques=list(setup.techniques)).ttft_s)
    # FastV drops visual tokens after layer 2: prefill ops move, and the chart draws the moves
    moves = layer_data(chart, lambda la: mark(la) == "line" and "detail" in la.get("encoding", {})
                       and la["encoding"]["detail"].get("field") == "key")
    assert len(moves) >= 2 and set(moves["order"]) == {0, 1}


def test_roofline_draws_mla_decode_next_to_mha_of_the_same_heads():
    """DeepSeek-VL2: ticking "MLA next to MHA / GQA" (MHA by default) adds the same request on the model with plain
    multi-head attention (ModelSpec.with_mha_attention): its decode attention reads 32 heads x (128 K + 128 V) per
    key instead of the 576-value latent, so it sits far left of the MLA point on the intensity axis."""
    at = start("roofline")
    at = set_sidebar(at, model="deepseek-vl2")
    at.checkbox(key="roof.mla_vs_mha").check()
    at = rerun(at)
    pts = all_layers_data(charts(at)["roofline"], is_op_points)
    assert set(pts["when"]) == {"MLA: deepseek-vl2", "MHA: same heads (32 KV heads)"}
    mla = pts[(pts["when"] == "MLA: deepseek-vl2") & (pts["kind"] == "attn_mla_decode")]
    mha = pts[(pts["when"] == "MHA: same heads (32 KV heads)") & (pts["stage"] == "decode")
              & (pts["kind"] == "attn_decode")]
    assert len(mla) == 1 and len(mha) == 1
    assert mla["intensity"].iloc[0] > 10 * mha["intensity"].iloc[0]
    twin = lvlmsim.load_model("deepseek-vl2").with_mha_attention()
    assert twin.llm.mla is None and twin.llm.num_kv_heads == twin.llm.num_heads == 32


def test_breakdown_charts_match_the_api():
    at = start("breakdown")
    at = set_sidebar(at, model="qwen2-vl-7b", width=896, height=672, images=2, prompt_tokens=100)
    kw = dict(images=2, image_size=(896, 672), prompt_tokens=100)
    est = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", **kw)
    ch = charts(at)
    assert {"stage-times", "visual-share", "resolution-sweep", "count-sweep", "memory"} <= set(ch)

    bars = layer_data(ch["stage-times"], lambda la: True)
    for stage, res in est.stages.items():
        assert bars[bars["stage"] == stage]["time_s"].sum() == pytest.approx(res.time_s)

    share = layer_data(ch["visual-share"], lambda la: True).set_index(["quantity", "part"])["value"]
    text_only = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", images=0, image_size=(896, 672), prompt_tokens=100)
    assert share["FLOPs", "visual tokens"] == pytest.approx(
        sum(s.flops for s in est.stages.values()) - sum(s.flops for s in text_only.stages.values()))
    assert share["KV cache", "visual tokens"] + share["KV cache", "text tokens"] == pytest.approx(
        est.memory.request_kv_bytes)
    assert share["E2E time", "visual tokens"] == pytest.approx(est.e2e_s - text_only.e2e_s)

    res = layer_data(ch["resolution-sweep"], lambda la: True)
    for size, group in res.groupby("size"):
        w, h = (int(v) for v in size.split("x"))
        e = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", images=2, image_size=(w, h), prompt_tokens=100)
        row = group.set_index("metric")
        assert row.loc["TTFT", "s"] == pytest.approx(e.ttft_s)
        assert row.loc["TPOT", "s"] == pytest.approx(e.tpot_s)
        assert int(row.loc["TTFT", "visual_tokens"]) == e.visual_tokens
    assert "896x672" in set(res["size"])

    cnt = layer_data(ch["count-sweep"], lambda la: True)
    for n, group in cnt.groupby("images"):
        e = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", images=int(n), image_size=(896, 672), prompt_tokens=100)
        assert group.set_index("metric").loc["TTFT", "s"] == pytest.approx(e.ttft_s)

    mem = layer_data(ch["memory"], lambda la: mark(la) == "bar").set_index("part")["gib"]
    assert mem.sum() * 2**30 == pytest.approx(est.memory.needed_bytes)
    assert mem["weights: llm"] * 2**30 == pytest.approx(est.memory.weights_by_module["llm"])
    limits = layer_data(ch["memory"], lambda la: mark(la) == "rule").set_index("limit")["gib"]
    assert limits["capacity"] * 2**30 == pytest.approx(est.memory.capacity_bytes)
    assert limits["usable"] * 2**30 == pytest.approx(est.memory.usable_bytes)


def test_text_only_request_breakdown_says_so_instead_of_dividing_by_nothing():
    at = start("breakdown")
    at = set_sidebar(at, images=0)
    assert any("no images or video" in i.value for i in at.info)
    assert "visual-share" not in charts(at)


def test_planner_page_renders_without_exception():
    # the planner's numbers are checked against lvlmsim.plan in tests/test_app_planner.py
    at = start("planner")
    assert not at.exception


# ------------------------------------------------------------------------------------------------------ bad input

def test_infeasible_setup_shows_the_api_message_inline():
    at = start("roofline")
    at = set_sidebar(at, tp=3)
    assert any("tp: 3 does not divide" in e for e in errors(at)), errors(at)
    assert not at.get("vega_lite_chart")


def test_bad_model_upload_shows_an_error_and_a_good_one_is_used():
    at = start()
    bad = yaml.safe_load((REPO / "workloads/models/llava-1.5-7b.yaml").read_text())
    bad["llm"]["num_heads"] = -4
    at.sidebar.file_uploader(key="up.model").set_value(("broken.yaml", yaml.safe_dump(bad).encode(),
                                                         "application/x-yaml"))
    at = rerun(at)
    msg = " ".join(errors(at))
    assert "broken.yaml" in msg and "num_heads" in msg, msg
    assert at.sidebar.selectbox(key="sb.model").value == "llava-1.5-7b"

    good = yaml.safe_load((REPO / "workloads/models/llava-1.5-7b.yaml").read_text())
    good["id"] = "my-llava"
    good["llm"]["num_layers"] = 16
    at.sidebar.file_uploader(key="up.model").set_value(("my-llava.yaml", yaml.safe_dump(good).encode(),
                                                         "application/x-yaml"))
    at = rerun(at)
    path = at.sidebar.selectbox(key="sb.model").value
    assert path.endswith("my-llava.yaml") and not errors(at)
    assert {k: metrics(at)[k] for k in ("TTFT", "TPOT", "E2E")} == api_headline(path, "h100-sxm")


def test_malformed_hardware_upload_is_an_error_not_a_traceback():
    at = start("roofline")
    at.sidebar.file_uploader(key="up.hardware").set_value(("gpu.yaml", b"id: [unclosed\n", "application/x-yaml"))
    at = rerun(at)
    assert any("gpu.yaml" in e and "YAML" in e for e in errors(at)), errors(at)
    assert at.get("vega_lite_chart")  # the page still works with the previous hardware


def test_bad_technique_string_shows_an_error_and_no_exception():
    at = start("roofline")
    at.sidebar.text_area(key="sb.tech_extra").set_value("no-such-technique:keep=2")
    at = rerun(at)
    assert any("no-such-technique" in e for e in errors(at)), errors(at)
    assert at.session_state["setup"].techniques == ()
    assert at.get("vega_lite_chart")
    # a bad parameter in a kind's own box: the same, naming the parameter
    kind = overlay_kind()
    at.sidebar.text_area(key="sb.tech_extra").set_value("")
    at.sidebar.multiselect(key="sb.tech_kinds").set_value([kind])
    at = rerun(at)
    at.sidebar.text_input(key=f"sb.tech_params.{kind}").set_value("nonsense=1")
    at = rerun(at)
    assert any("nonsense" in e for e in errors(at)), errors(at)
    assert at.session_state["setup"].techniques == ()


# ------------------------------------------------------------------------------------------------------ techniques

def test_technique_matrix_and_pareto_come_from_the_api():
    at = start("techniques")
    spec = at.text_area(key="tech.list").value.splitlines()
    assert spec
    frame = next(d.value for d in at.dataframe if "combination" in d.value)
    assert len(frame) == 2 ** len(spec)
    base = frame[frame["combination"] == "baseline (none)"].iloc[0]
    assert base["ttft_ms"] == pytest.approx(lvlmsim.estimate().ttft_s * 1e3)
    one = frame[frame["combination"] == spec[0]].iloc[0]
    e = lvlmsim.estimate(techniques=[spec[0]])
    assert one["tpot_ms"] == pytest.approx(e.tpot_s * 1e3)
    assert one["memory_gib"] == pytest.approx(e.memory.needed_bytes / 2**30)
    scatter = layer_data(charts(at)["pareto"], lambda la: mark(la) == "point")
    assert len(scatter) == len(frame) and scatter["pareto"].any()
    assert sorted(scatter["ttft_ms"]) == pytest.approx(sorted(frame["ttft_ms"]))

    # fewer techniques, another cost axis, another model: the matrix and the chart follow
    at.text_area(key="tech.list").set_value(spec[-1])
    at.selectbox(key="tech.cost").set_value("memory_gib")
    at = set_sidebar(at, model="internvl2.5-8b")
    frame = next(d.value for d in at.dataframe if "combination" in d.value)
    assert list(frame["combination"]) == ["baseline (none)", spec[-1]], errors(at)
    e = lvlmsim.estimate("internvl2.5-8b", techniques=[spec[-1]])
    assert frame.iloc[1]["memory_gib"] == pytest.approx(e.memory.needed_bytes / 2**30)
    spec_json, _ = charts(at)["pareto"]
    assert any(la.get("encoding", {}).get("x", {}).get("field") == "memory_gib" for la in spec_json["layer"])


def test_conflicting_techniques_show_an_error_row_and_accuracy_reaches_the_chart():
    at = start("techniques")
    at.text_area(key="tech.list").set_value(
        "pool:factor=4\nprumerge:keep=0.055\nfastv:layer=2,keep=0.5,accuracy_delta=-1.5,accuracy_source=paper")
    at = rerun(at)
    assert any("cannot be composed" in e for e in errors(at)), errors(at)
    frame = next(d.value for d in at.dataframe if "combination" in d.value)
    assert len(frame) == 8 - 2  # the two combinations holding both pool and prumerge fail, shown as errors
    fastv = frame[frame["combination"].str.startswith("fastv")].iloc[0]
    assert fastv["accuracy_delta"] == -1.5  # the cited delta pre-fills the editor and reaches the matrix
    scatter = layer_data(charts(at)["pareto"], lambda la: mark(la) == "point")
    assert sorted(scatter["accuracy_delta"]) == sorted(frame["accuracy_delta"])


# ------------------------------------------------------------------------------------------------------ serving

def number(at: AppTest, label: str):
    return next(w for w in at.number_input if w.label == label)


def api_simulation(ref: str, slos: dict, trace: str | None = None, **kw):
    """What the page runs, written out with the public API."""
    from lvlmsim.engine.api import simulate
    from lvlmsim.specs.scenario import load_scenario
    from lvlmsim.specs.workload import TraceArrival

    sc = load_scenario(ref)
    sc = sc.model_copy(update={"slos": sc.slos.model_copy(update=slos)})
    if trace:
        sc = sc.model_copy(update={"workload": sc.workload.model_copy(
            update={"arrival": TraceArrival(path=trace), "requests": None})})
    return simulate(sc, **kw)


def test_serving_simulation_shows_the_engine_results():
    at = start("serving")
    scenario = at.selectbox(key="sim.scenario").value
    number(at, "Requests").set_value(60)
    number(at, "Request rate (req/s)").set_value(4.0)
    number(at, "TTFT SLO (s)").set_value(0.03)
    at.button(key="sim.go").click()
    at = rerun(at)
    slos = {"ttft_s": 0.03, "tpot_s": number(at, "TPOT SLO (s)").value, "e2e_s": number(at, "E2E SLO (s)").value}
    res = api_simulation(scenario, slos, requests=60, rate=4.0, seed=number(at, "Seed").value)
    table = next(d.value for d in at.dataframe if "ttft_s" in d.value)
    assert len(table) == len(res.requests)
    assert table["ttft_s"].to_numpy() == pytest.approx(res.requests["ttft_s"].to_numpy(), nan_ok=True)
    assert metrics(at)["TTFT p90"] == fmt_time(res.summary["ttft_s"]["p90"])
    assert metrics(at)["Goodput (req/s)"] == f"{res.summary['goodput_rps']:.3g}"
    ch = charts(at)
    cdf = layer_data(ch["cdf-TTFT"], lambda la: mark(la) == "line")
    assert sorted(cdf["seconds"]) == pytest.approx(sorted(res.requests["ttft_s"].dropna()))
    assert layer_data(ch["cdf-TTFT"], lambda la: mark(la) == "rule")["slo_s"].tolist() == [0.03]
    ts = layer_data(ch["timeseries-batch size"], lambda la: True)
    assert ts["value"].tolist() == res.timeseries["batch_size"].tolist()
    assert at.get("download_button")

    # a visit to another page keeps the inputs and the last run
    at.switch_page("views/overview.py")
    at = rerun(at)
    at.switch_page("views/serving.py")
    at = rerun(at)
    assert number(at, "Requests").value == 60 and number(at, "TTFT SLO (s)").value == 0.03
    assert metrics(at)["Goodput (req/s)"] == f"{res.summary['goodput_rps']:.3g}"
    assert not any("inputs above changed" in c.value for c in at.caption)


def test_uploaded_trace_is_replayed_and_a_bad_scenario_is_an_error(tmp_path):
    at = start("serving")
    trace = "arrival_s,prompt_tokens,output_tokens,images,image_width,image_height\n" + "".join(
        f"{0.25 * i},{40 + i},{20 + 2 * i},1,640,480\n" for i in range(12))
    at.sidebar.file_uploader(key="up.trace").set_value(("my-trace.csv", trace.encode(), "text/csv"))
    at = rerun(at)
    assert not errors(at), errors(at)
    path = at.selectbox(key="sim.trace").value
    assert path.endswith("my-trace.csv")
    at.button(key="sim.go").click()
    at = rerun(at)
    table = next(d.value for d in at.dataframe if "ttft_s" in d.value)
    assert len(table) == 12 and list(table["prompt_tokens"]) == [40 + i for i in range(12)]

    at.sidebar.file_uploader(key="up.scenario").set_value(("bad.yaml", b"id: x\nmodel: llava-1.5-7b\n",
                                                            "application/x-yaml"))
    at = rerun(at)
    assert any("bad.yaml" in e and "hardware" in e for e in errors(at)), errors(at)


def test_serving_page_reports_cross_turn_reuse_of_the_reuse_scenario():
    at = start("serving")
    at.selectbox(key="sim.scenario").set_value("multiturn-chat-reuse")
    at = rerun(at)  # a new scenario brings its own defaults into the inputs
    number(at, "Requests").set_value(120)
    at.button(key="sim.go").click()
    at = rerun(at)
    res = api_simulation("multiturn-chat-reuse", {"ttft_s": number(at, "TTFT SLO (s)").value,
                                                  "tpot_s": number(at, "TPOT SLO (s)").value,
                                                  "e2e_s": number(at, "E2E SLO (s)").value},
                         requests=120, rate=number(at, "Request rate (req/s)").value, seed=number(at, "Seed").value)
    kv = res.summary["reuse"]["kv_cache"]
    line = next(m.value for m in at.markdown if m.value.startswith("Cross-turn reuse"))
    assert f"image-KV cache hit rate **{kv['hit_rate']:.0%}** ({kv['hits']} of {kv['hits'] + kv['misses']}" in line
