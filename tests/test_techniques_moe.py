"""Techniques composed with expert parallelism, routing skew and the runtime's launch regime: one pricing path.

Oracles: a technique that changes nothing gives exactly the plain estimate (a MoE model at ep 8, a dense model under
piecewise CUDA graphs and under the eager launch queue); the expert-parallel MoE rows a technique leaves by hand
(experts touched E(1 - (1 - k/E)^T) at the pruned T, the all-to-all message, fp8 expert weight bytes); estimate and
simulate agree on a lone request with a technique under each launch regime.
"""

from __future__ import annotations

import pytest

import lvlmsim
from lvlmsim.cost.memory import weight_bytes
from lvlmsim.engine.api import simulate
from lvlmsim.errors import InfeasibleError, LvlmsimError
from lvlmsim.ops.graph import param_counts
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.techniques import compose

MOE = "qwen3-vl-30b-a3b"  # 128 experts, top-8, hidden 2048, expert intermediate 768, 48 layers (its config.json)
NO_OP = "attention:kernel=flash"  # the default GraphConfig's kernel: a technique that changes nothing


def _same(a, b) -> None:
    """Two estimates identical in every stage time, op row and memory figure."""
    assert a.ttft_s == b.ttft_s and a.tpot_s == b.tpot_s and a.e2e_s == b.e2e_s
    for stage in a.stages:
        assert a.stages[stage].time_s == b.stages[stage].time_s, stage
    assert a.op_rows() == b.op_rows()
    assert a.memory.needed_bytes == b.memory.needed_bytes


def _rows(est, op: str, stage: str) -> list[dict]:
    return [r for r in est.op_rows() if r["op"] == op and r["stage"] == stage]


@pytest.mark.parametrize("moe_skew", [0.0, 1.2])
def test_a_no_op_technique_on_a_moe_model_at_ep8_is_the_plain_estimate(moe_skew):
    """Techniques act on the expert-parallel graph itself: all-to-all rows, experts touched, skew, sharded memory."""
    kw = dict(tp=8, ep=8, moe_skew=moe_skew, runtime="vllm", image_size="1344x1008", output_tokens=40)
    plain = lvlmsim.estimate(MOE, "h100-sxm", **kw)
    tech = lvlmsim.estimate(MOE, "h100-sxm", techniques=[NO_OP], **kw)
    _same(plain, tech)
    assert _rows(tech, "llm.moe_alltoall_dispatch", "decode")
    assert tech.to_dict()["graph_config"]["ep"] == 8 and tech.ep == 8


@pytest.mark.parametrize("runtime, host", [("vllm", "vllm-v1-piecewise"), ("vllm", "vllm-v1"), ("eager", None)])
def test_a_no_op_technique_pays_the_same_launch_regime_as_the_plain_path(runtime, host):
    """The bug: with a technique, api.estimate dropped the piecewise wait and the eager launch queue (pricing each op
    at body + eager floor instead), so a technique's gain was measured against a different runtime."""
    kw = dict(runtime=runtime, host=host, image_size="640x480", output_tokens=40)
    plain = lvlmsim.estimate("qwen2.5-vl-7b", "a100-sxm-80gb", **kw)
    tech = lvlmsim.estimate("qwen2.5-vl-7b", "a100-sxm-80gb", techniques=[NO_OP], **kw)
    _same(plain, tech)
    wait = "runtime.dispatch_wait" if runtime == "eager" else "runtime.piecewise_wait"
    assert _rows(tech, wait, "prefill")


def test_token_pruning_touches_fewer_experts_by_the_formula():
    """visionzip:tokens=8 with an 8-token prompt leaves T = 16 prefill tokens. Balanced top-8 of 128 experts touches
    128 * (1 - (120/128)^16) = 82.42 experts, 10.303 on each of 8 devices; each device computes 16 * 8 / 8 = 16
    token-expert pairs and sends (16 / 8) * 8 * 2048 * 2 B = 65,536 B to the all-to-all. Decode: T = 1, k = 8
    experts, 1 per device."""
    est = lvlmsim.estimate(MOE, "h100-sxm", tp=8, ep=8, image_size="448x448", prompt_tokens=8, output_tokens=2,
                           techniques=["visionzip:tokens=8"])
    (up,) = _rows(est, "llm.moe_experts_up", "prefill")
    pairs, n, k, touched, held = up["shape"]
    assert (pairs, n, k, held) == (16.0, 2 * 768, 2048, 16)
    assert touched == pytest.approx(128 * (1 - (120 / 128) ** 16) / 8, abs=1e-3)
    assert touched == pytest.approx(10.303, abs=1e-3)
    (a2a,) = _rows(est, "llm.moe_alltoall_dispatch", "prefill")
    assert a2a["shape"] == (65_536, 8)
    (dec,) = _rows(est, "llm.moe_experts_up", "decode")
    assert dec["shape"][3] == 1.0


def test_in_llm_pruning_touches_fewer_experts_from_its_layer_on():
    """fastv:layer=2,keep=0.25 on a 448x448 image (198 visual tokens) + 8 prompt tokens: layers 0-1 route T = 206
    tokens (all 16 experts of each device touched), layers 2-47 route 8 + floor(198 / 4) = 57:
    128 * (1 - (120/128)^57) / 8 = 15.596 experts per device, 57 pairs."""
    est = lvlmsim.estimate(MOE, "h100-sxm", tp=8, ep=8, image_size="448x448", prompt_tokens=8, output_tokens=2,
                           techniques=["fastv:layer=2,keep=0.25"])
    assert est.visual_tokens == 198
    early, late = sorted(_rows(est, "llm.moe_experts_up", "prefill"), key=lambda r: r["layers"])
    assert (early["layers"], early["shape"][0], early["count"]) == ("0-1", 206.0, 2)
    assert early["shape"][3] == pytest.approx(128 * (1 - (120 / 128) ** 206) / 8, abs=1e-3)
    assert (late["layers"], late["shape"][0], late["count"]) == ("2-47", 57.0, 46)
    assert late["shape"][3] == pytest.approx(128 * (1 - (120 / 128) ** 57) / 8, abs=1e-3)
    assert late["shape"][3] == pytest.approx(15.596, abs=1e-3)


def test_fp8_weights_halve_every_experts_bytes_and_the_weights_per_gpu():
    """weight_quant fp8 on the LLM: a decode step's grouped up-GEMM reads 1 expert x 2048 x 1536 x 1 B = 3,145,728 B
    of weights per device (bf16: 6,291,456 B); the device holds all the LLM's parameters (all 128 experts) / tp
    at 1 B each."""
    kw = dict(tp=8, ep=8, image_size="448x448", prompt_tokens=8, output_tokens=2)
    bf16 = lvlmsim.estimate(MOE, "h100-sxm", **kw)
    fp8 = lvlmsim.estimate(MOE, "h100-sxm", techniques=["weight_quant:scheme=fp8,module=llm"], **kw)
    m = load_model(MOE)
    for est, nbytes in ((bf16, 2), (fp8, 1)):
        (dec,) = [c.op for c in est.stages["decode"].ops if c.op.name == "llm.moe_experts_up"]
        assert dec.weight_bytes == 1 * 2048 * 1536 * nbytes
        assert weight_bytes(m, est.graph_config)["llm"] == param_counts(m)["llm"] * nbytes / 8


def test_compose_carries_ep_and_skew_and_refuses_an_infeasible_ep_by_name():
    m, hw = load_model(MOE), load_hardware("h100-sxm")
    comp = compose(m, hw, ["fastv:layer=2,keep=0.5"], tp=8, ep=8, moe_skew=1.0)
    assert (comp.cfg.ep, comp.cfg.moe_skew, comp.cfg.visual_keep) == (8, 1.0, ((2, 0.5),))
    with pytest.raises(InfeasibleError, match=r"ep: 3 must divide tp \(4\).*allowed: 1, 2, 4"):
        compose(m, hw, ["fastv"], tp=4, ep=3)
    with pytest.raises(InfeasibleError, match="ep: qwen2.5-vl-7b has no mixture-of-experts layers; allowed: 1"):
        lvlmsim.estimate("qwen2.5-vl-7b", "h100-sxm", tp=2, ep=2, techniques=["fastv"])
    with pytest.raises(LvlmsimError, match="moe_skew"):
        lvlmsim.estimate(MOE, "h100-sxm", techniques=["fastv"], moe_skew=-1.0)


LONE = {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 64, "output_tokens": 8,
        "images": 1, "image_size": "640x480"}


@pytest.mark.parametrize("model, hardware, tp, ep, runtime, host, techs", [
    (MOE, "h100-sxm", 8, 8, "vllm", "vllm-v1-piecewise", ["fastv:layer=2,keep=0.5"]),
    (MOE, "h100-sxm", 8, 8, "vllm", "vllm-v1", ["weight_quant:scheme=fp8,module=llm", "visionzip:tokens=32"]),
    ("qwen2.5-vl-7b", "a100-sxm-80gb", 1, 1, "eager", False, ["fastv:layer=2,keep=0.5"]),
])
def test_a_lone_request_with_techniques_gets_the_same_ttft_from_estimate_and_simulate(model, hardware, tp, ep,
                                                                                       runtime, host, techs):
    """The engine composes the pool's techniques at its ep and prices the target's step under the same launch
    regime as the estimate (piecewise graphs, the eager launch queue)."""
    est = lvlmsim.estimate(model, hardware, tp=tp, ep=ep, runtime=runtime, host=host, techniques=techs,
                           image_size="640x480", prompt_tokens=64, output_tokens=8)
    sc = {"id": "lone", "model": model, "hardware": hardware, "techniques": techs,
          "serving": {"runtime": runtime, "host_costs": host, "tp": tp, "ep": ep}, "workload": LONE}
    df = simulate(sc).requests
    assert df.ttft_s[0] == pytest.approx(est.ttft_s, rel=1e-9)


def test_simulate_refuses_an_infeasible_ep_with_techniques_by_pool_and_field():
    sc = {"id": "bad", "model": MOE, "hardware": "h100-sxm", "techniques": ["fastv"],
          "serving": {"tp": 4, "ep": 3}, "workload": LONE}
    with pytest.raises(LvlmsimError, match=r"ep: 3 must divide tp \(4\)"):
        simulate(sc)


def test_the_planner_screens_techniques_with_expert_parallelism_in_not_out():
    """plan's analytic screen refused every technique set at ep > 1; now the engine decides, as it does at ep 1."""
    from lvlmsim.planner.plan import _Analytic
    from lvlmsim.specs.scenario import load_scenario

    sc = load_scenario("qwen3vl-moe-h200")
    screen = _Analytic(sc, {90}).screen
    hw = load_hardware("h200-sxm")
    assert screen(hw, 8, {"ttft_p90": 2.0}, ["fastv:layer=2,keep=0.5"], 8) == ("", {})
    assert screen(hw, 8, {"ttft_p90": 2.0}, ["fastv:layer=2,keep=0.5"], 3)[0].startswith("ep: 3 must divide tp (8)")


def _stepped_launches_s(ops, gpu_s, dispatch_s: float, layers: int) -> float:
    """The launch queue stepped launch by launch in the order a host issues a step: the ops before the layers, then
    layer by layer every per-layer op whose range holds that layer (count / layers-in-range launches each), then
    the ops after (gpu_end = max(gpu_end, host_issue) + g, host_issue += dispatch)."""
    per_layer = [i for i, op in enumerate(ops) if op.count > 1]
    first, last = per_layer[0], per_layer[-1]
    order = [(gpu_s(op), op.count) for op in ops[:first]]
    for layer in range(layers):
        for op in ops[first:last + 1]:
            a, b = op.layer_range
            if a <= layer <= b:
                order.append((gpu_s(op), op.count // (b - a + 1)))
    order += [(gpu_s(op), op.count) for op in ops[last + 1:]]
    host = end = 0.0
    for g, k in order:
        for _ in range(k):
            host += dispatch_s
            end = max(end, host) + g
    return end


def test_the_eager_launch_queue_of_a_fastv_step_is_the_stepped_recurrence():
    """FastV's decode step lists layers 0-1 and 2-27 as two segments; the queue's summary took them as one layer
    repeated 26 times (7.07 ms for Qwen2.5-VL-7B on an H100 at 2,000 past tokens against 6.26 ms stepped), so FastV
    made eager decode 12.5% slower. Summarised per segment it is the stepped recurrence, as the plain step is."""
    import dataclasses

    from lvlmsim.calibrate.profiles import resolve_profile
    from lvlmsim.cost.roofline import CostModel
    from lvlmsim.cost.runtime import get_runtime, launch_queue_profile, launch_queue_s
    from lvlmsim.ops.graph import llm_ops
    from lvlmsim.ops.op import SeqWork, default_graph_config

    m, hw = load_model("qwen2.5-vl-7b"), load_hardware("h100-sxm")
    base, dispatch_s = launch_queue_profile(get_runtime("eager").apply(resolve_profile(hw, None)))
    cm = CostModel(hw, base)
    for keep in ((), ((2, 0.5),)):
        cfg = dataclasses.replace(default_graph_config(m, 1), visual_keep=keep)
        ops = llm_ops(m, (SeqWork(new_tokens=1, past_tokens=2000),), "decode", cfg, (1500,))
        queued = launch_queue_s([(cm.cost(op).time_s, float(op.count), op.layer_range) for op in ops], dispatch_s)
        stepped = _stepped_launches_s(ops, lambda op: cm.cost(op).time_s, dispatch_s, m.llm.num_layers)
        assert queued == pytest.approx(stepped, rel=1e-12)
    kw = dict(runtime="eager", image_size="1344x1008", output_tokens=64)
    plain = lvlmsim.estimate("qwen2.5-vl-7b", "h100-sxm", **kw)
    fastv = lvlmsim.estimate("qwen2.5-vl-7b", "h100-sxm", techniques=["fastv:layer=2,keep=0.5"], **kw)
    assert fastv.tpot_s <= plain.tpot_s
