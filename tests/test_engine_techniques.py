"""Techniques applied inside the engine: token pruning, quantization, speculative decoding, clear refusals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import lvlmsim
from lvlmsim.engine.api import simulate
from lvlmsim.errors import InfeasibleError, LvlmsimError, SpecError
from lvlmsim.specs.registry import scenarios_dir
from lvlmsim.specs.scenario import default_scenario, load_scenario

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCENARIO = scenarios_dir() / "llava-fastv-kvq-spec.yaml"


def scenario(techniques=(), **over) -> dict:
    doc = default_scenario().model_dump(mode="json")
    doc["techniques"] = list(techniques)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k].update(v)
        else:
            doc[k] = v
    return doc


def conserved(res) -> None:
    s = res.summary
    assert s["requests"] == s["completed"] + s["rejected"] + s["in_flight"] == len(res.requests)


def run(techniques=(), n=300, rate=4.0, seed=1, **over):
    return simulate(scenario(techniques, **over), requests=n, rate=rate, seed=seed)


def mean(res, col):
    return res.summary[col]["mean"]


# -------------------------------------------------------------------------------------------------------------------
# the shipped scenario


def test_scenario_runs_end_to_end_with_conservation_and_reports_the_techniques():
    res = simulate(SCENARIO, requests=300)
    conserved(res)
    assert res.summary["completed"] == 300
    tech = res.summary["techniques"]
    assert [t["kind"] for t in tech["applied"]] == ["fastv", "kv_quant", "speculative"]
    assert {a["technique"] for a in tech["accuracy"]} == {t["label"] for t in tech["applied"]}
    assert tech["speculative"]["expected_tokens_per_round"] == pytest.approx((1 - 0.8**5) / 0.2)
    assert tech["notes"]
    base = simulate(scenario(), requests=300)
    # all three together: faster first tokens (FastV, lighter decode), much faster decoding (speculation)
    assert mean(res, "ttft_s") < mean(base, "ttft_s")
    assert mean(res, "tpot_s") < 0.6 * mean(base, "tpot_s")
    assert res.meta["pools"][0]["kv_blocks"] > 3 * base.meta["pools"][0]["kv_blocks"]


def test_same_seed_same_results_with_techniques():
    a = simulate(SCENARIO, requests=200, seed=5)
    b = simulate(SCENARIO, requests=200, seed=5)
    pd.testing.assert_frame_equal(a.requests, b.requests)
    assert a.summary == b.summary


def test_no_technique_output_has_no_techniques_entry():
    assert "techniques" not in run(n=50).summary


def test_identity_technique_matches_the_plain_engine():
    """attention:kernel=flash is the default GraphConfig: the technique path must price exactly like the plain one."""
    plain = run(n=200)
    ident = run(["attention:kernel=flash"], n=200)
    for col in ("first_token_s", "finish_s"):
        a, b = plain.requests[col].to_numpy(), ident.requests[col].to_numpy()
        assert a == pytest.approx(b, rel=1e-9)


# -------------------------------------------------------------------------------------------------------------------
# each technique's effect


def test_fastv_lowers_mean_ttft():
    base, fv = run(), run(["fastv:layer=2,keep=0.5"])
    conserved(fv)
    assert mean(fv, "ttft_s") < 0.9 * mean(base, "ttft_s")
    assert mean(fv, "tpot_s") < mean(base, "tpot_s")


def test_pre_llm_reduction_cuts_the_visual_tokens_of_requests():
    base, vz = run(n=50), run(["visionzip:tokens=64"], n=50)
    assert set(base.requests.visual_tokens) == {576}
    assert set(vz.requests.visual_tokens) == {64}
    assert mean(vz, "ttft_s") < mean(base, "ttft_s")


def test_kv_quant_int4_fits_more_sequences():
    base, q = run(n=50), run(["kv_quant:bits=4"], n=50)
    b0, b4 = base.meta["pools"][0]["kv_blocks"], q.meta["pools"][0]["kv_blocks"]
    assert b4 >= 3.9 * b0  # fp16 -> int4: 4x the tokens in the same KV budget
    # under memory pressure: fewer preemptions with the smaller cache
    tight = {"gpu_memory_utilization": 0.22}
    p0 = run(n=300, rate=30.0, serving=tight)
    p4 = run(["kv_quant:bits=4"], n=300, rate=30.0, serving=tight)
    conserved(p0)
    conserved(p4)
    assert 0 < p4.requests.preemptions.sum() < p0.requests.preemptions.sum()
    assert mean(p4, "ttft_s") < mean(p0, "ttft_s")


def test_weight_quant_w4a16_frees_memory_for_kv():
    base, q = run(n=50), run(["weight_quant:scheme=w4a16"], n=50)
    assert q.meta["pools"][0]["kv_blocks"] > base.meta["pools"][0]["kv_blocks"]
    assert mean(q, "tpot_s") < mean(base, "tpot_s")


# -------------------------------------------------------------------------------------------------------------------
# speculative decoding (fluid model: a decode step emits one token per sequence and costs round / E)


def test_speculative_alpha_zero_is_never_faster():
    base = run(rate=2.0)
    for gamma in (1, 4):
        s = run([f"speculative:alpha=0,gamma={gamma}"], rate=2.0)
        conserved(s)
        assert mean(s, "tpot_s") >= mean(base, "tpot_s")


def test_speculative_high_acceptance_is_faster_at_low_load_like_the_estimate():
    base = run(rate=1.0)
    s = run(["speculative:alpha=0.9,gamma=4"], rate=1.0)
    conserved(s)
    ratio = mean(s, "tpot_s") / mean(base, "tpot_s")
    assert ratio < 0.5
    e0 = lvlmsim.estimate("llava-1.5-7b", "h100-sxm")
    e1 = lvlmsim.estimate("llava-1.5-7b", "h100-sxm", techniques=["speculative:alpha=0.9,gamma=4"])
    assert ratio == pytest.approx(e1.tpot_s / e0.tpot_s, rel=0.15)
    # metrics stay in real tokens: every completed request produced its output tokens
    done = s.requests[s.requests.status == "completed"]
    assert (done.output_tokens >= 1).all()


def test_speculative_reserves_lookahead_kv_slots():
    base = run(n=50)
    s = run(["speculative:alpha=0.8,gamma=4"], n=50)
    # heads' weights take memory (fewer blocks); lookahead slots are reserved per sequence
    assert s.meta["pools"][0]["kv_blocks"] < base.meta["pools"][0]["kv_blocks"]


# -------------------------------------------------------------------------------------------------------------------
# multi-pool and refusals


def test_techniques_in_disaggregated_pools():
    doc = load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
    doc["techniques"] = ["resolution_cap:max_pixels=401408", "kv_quant:bits=8"]
    res = simulate(doc, requests=120)
    conserved(res)
    base = simulate("qwen25vl-epd-h100", requests=120)
    assert res.requests.visual_tokens.mean() < base.requests.visual_tokens.mean()
    assert mean(res, "ttft_s") < mean(base, "ttft_s")


def test_llm_weight_scheme_does_not_bind_an_encoder_only_pool():
    doc = load_scenario("qwen25vl-epd-l4-encoder").model_dump(mode="json")
    for p in doc["serving"]["pools"]:
        if p["role"] == "E":
            p["hardware"] = "a100-sxm-80gb"  # no fp8: fine, it runs only the vision encoder
    doc["techniques"] = ["weight_quant:scheme=fp8"]
    res = simulate(doc, requests=60)
    conserved(res)
    assert [t["kind"] for t in res.summary["techniques"]["applied"]] == ["weight_quant"]
    doc["techniques"] = ["weight_quant:scheme=fp8,module=vision"]
    with pytest.raises(InfeasibleError, match="pool 'E'"):
        simulate(doc, requests=10)


@pytest.mark.parametrize("techs, match", [
    (["reuse:capacity_entries=64", "fastv"], "'reuse' with scope=both and 'fastv'.*scope=encoder"),
    (["reuse:scope=kv,capacity_entries=64", "kv_budget:tokens=256"], "'reuse' with scope=kv and 'kv_budget'"),
    (["kv_budget:tokens=256", "pyramiddrop"], "'kv_budget' and 'pyramiddrop'"),
])
def test_combinations_the_engine_cannot_model_are_refused_by_name(techs, match):
    with pytest.raises(LvlmsimError, match=match):
        run(techs, n=10)


def test_image_kv_reuse_on_a_cross_attention_model_is_refused_but_the_encoder_cache_runs():
    with pytest.raises(LvlmsimError, match="cross-attention.*scope=encoder"):
        run(["reuse:capacity_entries=64"], n=10, model="llama-3.2-11b-vision")
    doc = scenario(["reuse:scope=encoder,capacity_entries=64"], model="llama-3.2-11b-vision")
    doc["workload"]["session"] = {"turns": 3, "think_time_s": 1.0}  # every turn re-sends the session's image
    res = simulate(doc, requests=30, rate=1.0, seed=1)
    conserved(res)
    enc = res.summary["reuse"]["encoder_cache"]
    assert (enc["hits"], enc["misses"]) == (20, 10)  # 10 sessions x 3 turns: the first turn misses, two hit


def test_technique_the_device_cannot_run_names_technique_and_pool():
    with pytest.raises(InfeasibleError, match=r"pool '.*' \(a100-sxm-80gb.*weight_quant.*fp8"):
        run(["weight_quant:scheme=fp8"], n=10, hardware="a100-sxm-80gb")


def test_conflicting_techniques_are_refused():
    with pytest.raises(SpecError, match="fastv.*pyramiddrop|pyramiddrop.*fastv"):
        run(["fastv", "pyramiddrop"], n=10)


def test_unknown_technique_is_refused():
    with pytest.raises(LvlmsimError):
        run(["nosuchthing:x=1"], n=10)


def test_tome_refused_on_spatial_merge_model():
    doc = load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
    doc["techniques"] = ["tome:r=8"]
    with pytest.raises(SpecError, match="tome"):
        simulate(doc, requests=10)


def test_itl_stays_finite_under_speculation():
    s = run(["speculative:alpha=0.7,gamma=3"], n=100)
    assert all(math.isfinite(x) for x in s.requests.tpot_s.dropna())


def test_speculative_with_a_draft_model_holds_its_weights_and_kv():
    base = run(n=60, rate=2.0, model="llava-1.5-13b")
    s = run(["speculative:alpha=0.8,gamma=4,draft=llava-1.5-7b"], n=60, rate=2.0, model="llava-1.5-13b")
    conserved(s)
    assert s.summary["completed"] == 60
    assert s.meta["pools"][0]["kv_blocks"] < 0.6 * base.meta["pools"][0]["kv_blocks"]


@pytest.mark.parametrize(("model", "techs", "who", "needle"), [
    ("llama-3.2-11b-vision", ["reuse:scope=kv,capacity_entries=4"], "reuse", "cross-attention layers"),
    ("llava-1.5-7b", ["reuse:scope=both,capacity_entries=4", "fastv"], "reuse", "'fastv': in-LLM pruning"),
    ("llava-1.5-7b", ["kv_budget:tokens=256", "reuse:scope=kv,capacity_entries=4"], "reuse", "one or the other"),
    ("llava-1.5-7b", ["pyramiddrop", "kv_budget:tokens=256"], "kv_budget", "'pyramiddrop'"),
])
def test_engine_refusals_are_declared_by_the_techniques(model, techs, who, needle):
    """Each refusal comes from the technique that declares it (TechniqueConfig.engine_refusal); the simulator
    refuses by name, and the same combination still prices in the estimate."""
    import lvlmsim
    from lvlmsim.engine.api import engine_refusal
    from lvlmsim.specs.registry import load_model
    from lvlmsim.techniques import load_techniques

    m = load_model(model)
    loaded = load_techniques(techs)
    owner = next(t for t in loaded if t.kind == who)
    why = owner.engine_refusal([t for t in loaded if t is not owner], m)
    assert why is not None and needle in why
    assert engine_refusal(loaded, m) == why
    assert lvlmsim.estimate(model, techniques=techs).e2e_s > 0


def test_engine_runs_what_no_technique_refuses():
    from lvlmsim.engine.api import engine_refusal
    from lvlmsim.specs.registry import load_model
    from lvlmsim.techniques import load_techniques

    ok = load_techniques(["reuse:scope=encoder,capacity_entries=4", "fastv", "weight_quant:scheme=w4a16"])
    assert engine_refusal(ok, load_model("llava-1.5-7b")) is None
