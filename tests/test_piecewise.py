"""Piecewise CUDA graphs (docs/cudagraph-modes.md): vLLM V1 before 0.11 issued every step as a graph replay per
layer and an eager attention call per layer; 0.11+ does so for steps with prefill tokens only. Decode-only graphs:
SGLang replays graphs of decode batches only and runs extend batches eagerly.

Oracles: the launch-queue recurrence stepped by hand; the uniform-dispatch case against launch_queue_s; the host
figures against the measured rows' arithmetic; StepCost's parts recombined by hand; estimate and simulate agree on a
lone request's TTFT under each mode.
"""

from __future__ import annotations

import pytest

import lvlmsim
from lvlmsim.cost.host import _cudagraph_mode, load_host_profile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.cost.runtime import (
    RUNTIMES,
    PiecewiseDispatch,
    eager_prefill,
    get_runtime,
    launch_queue_s,
    piecewise_dispatch,
    piecewise_step_s,
)
from lvlmsim.engine.api import simulate
from lvlmsim.engine.stepcost import StepCost
from lvlmsim.errors import SpecError
from lvlmsim.estimate import default_graph_config
from lvlmsim.ops.graph import llm_ops
from lvlmsim.ops.op import SeqWork
from lvlmsim.specs.registry import load_hardware, load_model

US = 1e-6
PW = PiecewiseDispatch(graph_replay_s=40 * US, attention_call_s=80 * US, eager_op_s=40 * US, source="test")


def _stepped_s(items: list[tuple[float, float]]) -> float:
    """The recurrence itself: host_issue_i = host_issue_{i-1} + dispatch_i, start = max(previous end, issue)."""
    issue = end = 0.0
    for gpu_s, dispatch_s in items:
        issue += dispatch_s
        end = max(end, issue) + gpu_s
    return end


def test_a_host_bound_step_costs_its_dispatch_chain_plus_the_last_item():
    """2 layers of 50 us pieces and 10 us attention, a 30 us head: the host (40 + 80 a layer) sets the pace; by hand
    the issues are at 40, 120, 160, 240, 280 (last piece) and 320 us (head), which ends at 350 us."""
    got = piecewise_step_s(100 * US, 20 * US, 30 * US, 2, PW)
    items = [(50 * US, 40 * US), (10 * US, 80 * US)] * 2 + [(0.0, 40 * US), (30 * US, 40 * US)]
    assert got == pytest.approx(350 * US, rel=1e-12)
    assert got == pytest.approx(_stepped_s(items), rel=1e-12)


def test_a_gpu_bound_step_costs_its_gpu_sum_plus_one_replay():
    """500 us pieces and 100 us attention a layer, a 300 us head: the GPU never waits after the first replay."""
    assert piecewise_step_s(1000 * US, 200 * US, 300 * US, 2, PW) == pytest.approx(1540 * US, rel=1e-12)


@pytest.mark.parametrize("layers", [1, 3, 28])
def test_uniform_dispatch_is_the_eager_launch_queue(layers):
    """With one dispatch for every item the per-item recurrence is launch_queue_s's."""
    d = 20 * US
    same = PiecewiseDispatch(d, d, d, "test")
    pieces, attn, head = 35 * US * layers, 7 * US * layers, 25 * US
    items = [(35 * US, 1.0), (7 * US, 1.0)] * layers + [(0.0, 1.0), (head, 1.0)]
    assert piecewise_step_s(pieces, attn, head, layers, same) == pytest.approx(launch_queue_s(items, d), rel=1e-12)


def test_host_figures_come_from_the_measured_rows():
    """A100 system: 43.8 us eager, 4.9 us graph; H100 system: 20.6 and 4.3 (lvlmsim.cost.runtime's sources); an
    attention call is two eager ops; a device without its own system's rows takes the H100 system's."""
    a100 = piecewise_dispatch(load_hardware("a100-sxm-80gb"))
    assert (a100.graph_replay_s, a100.attention_call_s) == pytest.approx((38.9 * US, 87.6 * US))
    h100 = piecewise_dispatch(load_hardware("h100-sxm"))
    assert (h100.graph_replay_s, h100.attention_call_s) == pytest.approx((16.3 * US, 41.2 * US))
    assert h100.graph_replay_s == pytest.approx(get_runtime("vllm").step_overhead_s)
    assert piecewise_dispatch(load_hardware("b200")) == h100


def test_each_runtime_version_states_its_cudagraph_mode():
    modes = {n: load_host_profile(n, api=False).cudagraph_mode
             for n in ("vllm-v1-piecewise", "vllm-v1", "vllm-v1-async", "vllm-v0", "sglang", "trtllm")}
    assert modes == {"vllm-v1-piecewise": "piecewise", "vllm-v1": "full_and_piecewise",
                     "vllm-v1-async": "full_and_piecewise", "vllm-v0": "full", "sglang": "decode_only",
                     "trtllm": "full"}
    assert load_host_profile("vllm-v1-piecewise").step_host_s == load_host_profile("vllm-v1").step_host_s


def test_an_unknown_cudagraph_mode_is_a_one_line_error():
    with pytest.raises(SpecError, match="cudagraph_mode: unknown mode 'graphs'; allowed: full, piecewise"):
        _cudagraph_mode("vllm-x", {"cudagraph_mode": "graphs"})


def _coster(decode_too: bool | None, runtime: str = "vllm"):
    """StepCost of Qwen3-VL-2B (Qwen3-1.7B's language model) on an A100 under `runtime`'s CUDA-graph floor;
    piecewise when `decode_too` is not None (True: every step, False: steps with prefill tokens)."""
    from lvlmsim.calibrate.profiles import resolve_profile

    m = load_model("qwen3-vl-2b")
    cfg = default_graph_config(m, 1)
    hw = load_hardware("a100-sxm-80gb")
    cm = CostModel(hw, get_runtime(runtime).apply(resolve_profile(hw, None)))
    sc = StepCost(m, cfg, cm)
    if decode_too is not None:
        sc.set_piecewise(piecewise_dispatch(hw), decode=decode_too)
    return m, sc


def test_full_and_piecewise_keeps_decode_and_issues_prefill_piecewise():
    m, plain = _coster(None)
    _, mixed = _coster(False)
    assert mixed.decode_s(1, 500) == plain.decode_s(1, 500)
    chunk = ((128, 0, 0, 0, 0, True),)
    plain_s = plain.step_s(0, 0, chunk)
    tok = plain._tok[("prefill", 128, (128,), False, 0)]
    head = plain._head[("prefill", 1)]
    attn = plain_s - tok - head
    want = piecewise_step_s(tok, attn, head, m.llm.num_layers, piecewise_dispatch(load_hardware("a100-sxm-80gb")))
    assert mixed.step_s(0, 0, chunk) == pytest.approx(want, rel=1e-12)
    assert mixed.step_s(0, 0, chunk) > plain_s


def test_piecewise_decode_of_a_small_model_is_host_bound_on_an_a100():
    """Qwen3-1.7B's shapes: 28 layers x (38.9 + 87.6) us of issue time, about 3.5 ms, against its decode kernels."""
    m, plain = _coster(None)
    _, pw = _coster(True)
    gpu_s = plain.decode_s(1, 500)
    chain_s = m.llm.num_layers * (38.9 + 87.6) * US
    assert pw.decode_s(1, 500) >= max(gpu_s, chain_s)


@pytest.mark.parametrize("host", ["vllm-v1-piecewise", "vllm-v1"])
def test_a_lone_request_gets_the_same_ttft_from_estimate_and_simulate_in_each_mode(host):
    est = lvlmsim.estimate("qwen2.5-vl-7b", "a100-sxm-80gb", image_size="640x480", prompt_tokens=64, output_tokens=8,
                           runtime="vllm", host=host)
    sc = {"id": "lone", "model": "qwen2.5-vl-7b", "hardware": "a100-sxm-80gb",
          "serving": {"runtime": "vllm", "host_costs": host},
          "workload": {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 64,
                       "output_tokens": 8, "images": 1, "image_size": "640x480"}}
    df = simulate(sc).requests
    assert df.ttft_s[0] == pytest.approx(est.ttft_s, rel=1e-9)
    rows = {o.op.name for o in est.stages["prefill"].ops}
    assert "runtime.piecewise_wait" in rows
    decode_rows = {o.op.name for o in est.stages["decode"].ops}
    assert ("runtime.piecewise_wait" in decode_rows) == (host == "vllm-v1-piecewise")


def test_eager_prefill_dispatch_comes_from_the_measured_rows():
    """One eager op: 43.8 us on the A100 system, 20.6 us on the H100 system (the `eager` runtime's floor); a device
    without its own system's rows (B200, MI300X) takes the H100 system's."""
    assert eager_prefill(load_hardware("a100-sxm-80gb")).dispatch_s == pytest.approx(43.8 * US)
    h100 = eager_prefill(load_hardware("h100-sxm"))
    assert h100.dispatch_s == pytest.approx(20.6 * US) == pytest.approx(RUNTIMES["eager"].kernel_floor_s)
    assert eager_prefill(load_hardware("b200")) == h100 == eager_prefill(load_hardware("mi300x"))


def test_decode_only_keeps_decode_and_issues_prefill_through_the_launch_queue():
    """SGLang's extend step: the request's op list (lvlmsim.ops.graph.llm_ops, in graph order) at the CUDA-graph
    profile's kernel times, one 43.8 us dispatch per launch on the A100 system; decode steps unchanged."""
    m, plain = _coster(None, "sglang")
    _, sc = _coster(None, "sglang")
    hw = load_hardware("a100-sxm-80gb")
    sc.set_eager_prefill(eager_prefill(hw))
    assert sc.decode_s(1, 500) == plain.decode_s(1, 500)
    ops = llm_ops(m, (SeqWork(new_tokens=128, past_tokens=0, emits_token=True),), "prefill", sc.cfg)
    items = [(sc.cm.cost(op).time_s, float(op.count), op.layer_range) for op in ops]
    want = launch_queue_s(items, 43.8 * US)
    chunk = ((128, 0, 0, 0, 0, True),)
    assert sc.step_s(0, 0, chunk) == pytest.approx(want, rel=1e-9)
    assert sc.step_s(0, 0, chunk) > plain.step_s(0, 0, chunk)


def test_a_short_eager_prefill_of_a_small_model_is_host_bound():
    """A 1-token extend of Qwen3-1.7B's shapes: every launch waits for its dispatch, so the step lasts at least
    launches x 43.8 us (28 layers x the graph's per-layer ops, plus embedding and head), more than its kernels."""
    m, plain = _coster(None, "sglang")
    _, sc = _coster(None, "sglang")
    sc.set_eager_prefill(eager_prefill(load_hardware("a100-sxm-80gb")))
    ops = llm_ops(m, (SeqWork(new_tokens=1, past_tokens=0, emits_token=True),), "prefill", sc.cfg)
    launches = sum(op.count for op in ops)
    assert launches > 10 * m.llm.num_layers
    step_s = sc.step_s(0, 0, ((1, 0, 0, 0, 0, True),))
    assert step_s >= launches * 43.8 * US > plain.step_s(0, 0, ((1, 0, 0, 0, 0, True),))


def test_eager_prefill_does_not_apply_to_an_eager_runtime():
    """Under the eager runtime every step is already in the launch queue at its own dispatch; nothing changes."""
    from lvlmsim.calibrate.profiles import resolve_profile

    m = load_model("qwen3-vl-2b")
    hw = load_hardware("a100-sxm-80gb")
    cm = CostModel(hw, get_runtime("eager").apply(resolve_profile(hw, None)))
    a, b = StepCost(m, default_graph_config(m, 1), cm), StepCost(m, default_graph_config(m, 1), cm)
    b.set_eager_prefill(eager_prefill(hw))
    chunk = ((64, 0, 0, 0, 0, True),)
    assert b.step_s(0, 0, chunk) == a.step_s(0, 0, chunk)


def test_a_lone_request_under_sglang_gets_the_same_ttft_from_estimate_and_simulate():
    """SGLang's host profile (decode_only): the estimate's prefill carries the launch queue's wait, decode none."""
    est = lvlmsim.estimate("qwen2.5-vl-7b", "h100-sxm", image_size="640x480", prompt_tokens=64, output_tokens=8,
                           runtime="sglang", host="sglang")
    sc = {"id": "lone", "model": "qwen2.5-vl-7b", "hardware": "h100-sxm",
          "serving": {"runtime": "sglang", "host_costs": "sglang"},
          "workload": {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 64,
                       "output_tokens": 8, "images": 1, "image_size": "640x480"}}
    df = simulate(sc).requests
    assert df.ttft_s[0] == pytest.approx(est.ttft_s, rel=1e-9)
    assert "runtime.dispatch_wait" in {o.op.name for o in est.stages["prefill"].ops}
    assert "runtime.dispatch_wait" in {o.op.name for o in est.stages["encode"].ops}
    assert "runtime.dispatch_wait" not in {o.op.name for o in est.stages["decode"].ops}


def test_decode_only_issues_the_vision_encoder_through_the_launch_queue():
    """SGLang runs its ViT eagerly (graphs for it are opt-in): an encoder batch of one 448x448 image of
    Qwen2.5-VL-7B is its encode_ops (lvlmsim.ops.graph) through the launch queue at 20.6 us a launch on an H100."""
    from lvlmsim.calibrate.profiles import resolve_profile
    from lvlmsim.ops.graph import encode_ops
    from lvlmsim.ops.tokenization import tokenize_image

    m = load_model("qwen2.5-vl-7b")
    hw = load_hardware("h100-sxm")
    cfg = default_graph_config(m, 1)
    cm = CostModel(hw, get_runtime("sglang").apply(resolve_profile(hw, None)))
    plain, sc = StepCost(m, cfg, cm), StepCost(m, cfg, cm)
    sc.set_eager_prefill(eager_prefill(hw))
    tok = tokenize_image(m, 448, 448)
    lens = tuple(tok.vit_seq_lens)
    ops = encode_ops(m, lens, tok.projector_in_tokens, tok.llm_tokens, cfg)
    want = launch_queue_s([(cm.cost(op).time_s, float(op.count), op.layer_range) for op in ops], 20.6 * US)
    got = sc.encode_s(lens, tok.projector_in_tokens, tok.llm_tokens)
    assert got == pytest.approx(want, rel=1e-12)
    assert got > plain.encode_s(lens, tok.projector_in_tokens, tok.llm_tokens) == pytest.approx(cm.time_s(ops))
