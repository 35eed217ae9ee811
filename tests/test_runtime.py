"""Runtime overhead specs: registry, errors, the floor-swapping profile wrapper, constants vs the measured data."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvlmsim.cost.profile import DEFAULT_PROFILE, EfficiencyProfile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.cost.runtime import RUNTIMES, RuntimeSpec, get_runtime
from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import elementwise, gemm
from lvlmsim.ops.op import GraphConfig
from lvlmsim.specs.registry import load_hardware
from tests.shared_data import MEASURED

REPO = Path(__file__).resolve().parents[1]
H100 = load_hardware("h100-sxm")




def test_registry_and_errors():
    assert set(RUNTIMES) == {"vllm", "sglang", "trtllm", "eager"}
    for name, rt in RUNTIMES.items():
        assert get_runtime(name) is rt and rt.name == name and rt.source
        assert 0 < rt.kernel_floor_s < 1e-3 and 0 <= rt.step_overhead_s < 1e-2
    assert get_runtime(" VLLM ") is RUNTIMES["vllm"]
    with pytest.raises(SpecError, match=r"--runtime: unknown runtime 'hf'; allowed: vllm, sglang, trtllm, eager"):
        get_runtime("hf")
    # eager issues every op from Python: its floor and step overhead exceed the CUDA-graph engines'
    assert RUNTIMES["eager"].kernel_floor_s > 3 * RUNTIMES["vllm"].kernel_floor_s
    assert RUNTIMES["eager"].step_overhead_s > RUNTIMES["vllm"].step_overhead_s


def test_apply_swaps_only_the_floor():
    cfg = GraphConfig()
    tiny = elementwise("n", "decode", "llm", 4096, cfg)
    big = gemm("g", "prefill", "llm", 8192, 8192, 8192, cfg)
    wrapped = RUNTIMES["eager"].apply(DEFAULT_PROFILE)
    assert isinstance(wrapped, EfficiencyProfile) and wrapped.name == "roofline-default+eager"
    e0, e1 = DEFAULT_PROFILE.efficiency(tiny, H100), wrapped.efficiency(tiny, H100)
    assert (e1.compute, e1.memory, e1.source) == (e0.compute, e0.memory, e0.source)
    assert e1.floor_s == RUNTIMES["eager"].kernel_floor_s
    # a profile floor above the runtime's is kept (max of the two)
    high = RuntimeSpec("x", 1e-6, 0.0, "test").apply(DEFAULT_PROFILE)
    assert high.efficiency(tiny, H100).floor_s == DEFAULT_PROFILE.floor_s
    t_tiny = CostModel(H100, wrapped).cost(tiny).time_s
    assert t_tiny >= RUNTIMES["eager"].kernel_floor_s
    t_big0, t_big1 = CostModel(H100).cost(big).time_s, CostModel(H100, wrapped).cost(big).time_s
    assert t_big1 / t_big0 < 1.02  # large kernels barely notice the runtime


@pytest.mark.shared_data
@pytest.mark.skipif(MEASURED is None, reason="../shared/data/measured is not next to this checkout")
def test_constants_match_the_measured_data():
    import pandas as pd

    aic = MEASURED / "aiconfigurator" / "data" / "h100_sxm"
    ca = pd.read_csv(aic / "comm/vllm/0.24.0/custom_allreduce_perf.csv")
    small = ca[(ca.message_size <= 8192) & (ca.num_gpus == 2)]
    eager = small[small.backend == "vllm_eager"].latency.median() * 1e-3
    graph = small[small.backend == "vllm_graph"].latency.median() * 1e-3
    assert RUNTIMES["eager"].kernel_floor_s == pytest.approx(eager, rel=0.02)
    assert RUNTIMES["vllm"].step_overhead_s == pytest.approx(eager - graph, rel=0.02)
    g = pd.read_csv(aic / "gemm/vllm/0.24.0/gemm_perf.csv")
    g = g[(g.gemm_dtype == "bfloat16") & (2.0 * g.m * g.n * g.k <= 2**21) & (g.n * g.k <= 65536)]
    assert RUNTIMES["vllm"].kernel_floor_s == pytest.approx(g.latency.median() * 1e-3, rel=0.03)


def test_profile_fitted_under_the_runtime_keeps_its_floors():
    from lvlmsim.calibrate.model import FamilyFit, FittedProfile

    params = {"ec_max": 0.3, "em_max": 0.8, "b0": 1e6, "pb": 1.0, "boost": 0.05, "bc": 3e7, "pc": 2.0, "floor_s": 1e-6,
              "overlap": 0.1}
    fam = {"elementwise": FamilyFit(kind="elementwise", params=params)}
    graph = FittedProfile("g", "h100-sxm", fam, meta={"timing_regime": "cuda_graph"})
    eager = FittedProfile("e", "h100-sxm", fam, meta={"timing_regime": "eager"})
    op = elementwise("llm.norm", "decode", "llm", 4096, GraphConfig())
    assert RUNTIMES["vllm"].apply(graph).efficiency(op, H100).floor_s == 1e-6  # CUDA-graph fit under a graph engine
    assert RUNTIMES["vllm"].apply(eager).efficiency(op, H100).floor_s == RUNTIMES["vllm"].kernel_floor_s
    assert RUNTIMES["eager"].apply(graph).efficiency(op, H100).floor_s == RUNTIMES["eager"].kernel_floor_s
    assert RUNTIMES["eager"].apply(eager).efficiency(op, H100).floor_s == 1e-6


def test_enforce_eager_swaps_the_engines_graph_costs_for_eager_ones():
    """vLLM --enforce-eager (or -O0), SGLang --disable-cuda-graph: the same engine issuing every kernel from Python
    takes the eager floor and step overhead; without the flag the runtime is unchanged."""
    from lvlmsim.cost.runtime import serving_runtime

    assert serving_runtime("vllm") is RUNTIMES["vllm"] and serving_runtime("eager", True) is RUNTIMES["eager"]
    for name in ("vllm", "sglang", "trtllm"):
        rt = serving_runtime(name, enforce_eager=True)
        assert rt.name == f"{name}-eager" and not rt.cuda_graphs
        assert (rt.kernel_floor_s, rt.step_overhead_s) == (RUNTIMES["eager"].kernel_floor_s,
                                                           RUNTIMES["eager"].step_overhead_s)


def test_enforce_eager_needs_an_engine_runtime():
    from pydantic import ValidationError

    from lvlmsim.specs.serving import ServingSpec

    assert ServingSpec(runtime="vllm", enforce_eager=True).enforce_eager
    for runtime in (None, "eager"):
        with pytest.raises(ValidationError, match="enforce_eager: needs serving.runtime vllm"):
            ServingSpec(runtime=runtime, enforce_eager=True)


def test_an_eager_server_decodes_slower_by_at_least_the_step_overhead_difference():
    """Same run with and without CUDA graphs: every kernel costs at least as much eagerly (the floor is a max) and
    every step adds the eager step overhead instead of one graph launch, so each decode step is longer by at least
    the difference of the two step overheads; the run's profile is named after the eager engine."""
    from lvlmsim.engine.api import simulate

    def tpot_s(eager: bool):
        sc = {"id": "eager-check", "model": "qwen2.5-vl-7b", "hardware": "h100-sxm", "seed": 0,
              "workload": {"requests": 2, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 64,
                           "output_tokens": 16, "images": 0},
              "serving": {"runtime": "vllm", "host_costs": False, "enforce_eager": eager}}
        res = simulate(sc)
        return float(res.requests.tpot_s.mean()), res.meta

    graph_s, _ = tpot_s(False)
    eager_s, meta = tpot_s(True)
    gap_s = RUNTIMES["eager"].step_overhead_s - RUNTIMES["vllm"].step_overhead_s
    assert eager_s >= graph_s + gap_s * (1 - 1e-9)
    assert "vllm-eager" in str(meta)


# ---------------------------------------------------------------------------------------------------------------------
# the launch queue of eager steps (issue 13, wave 5)

def _queue_by_hand(gpu_s: list[float], dispatch_s: float) -> float:
    """The recurrence itself, launch by launch: the host issues one kernel every `dispatch_s`; a kernel starts when
    it is issued and the previous one has ended; the step ends with the last kernel."""
    host = end = 0.0
    for g in gpu_s:
        host += dispatch_s
        end = max(end, host) + g
    return end


def test_launch_queue_of_long_kernels_is_the_gpu_sum_and_of_short_ones_the_dispatch_sum():
    """h = 10 us. Three 50 us kernels: the GPU never waits after the first dispatch, 10 + 150 = 160 us. Three 2 us
    kernels: the host sets the pace, 3 x 10 + the last 2 = 32 us. The additive composition would give 180 and 36."""
    from lvlmsim.cost.runtime import launch_queue_s

    assert launch_queue_s([(50e-6, 1)] * 3, 10e-6) == pytest.approx(160e-6)
    assert launch_queue_s([(50e-6, 3)], 10e-6) == pytest.approx(160e-6)
    assert launch_queue_s([(2e-6, 1)] * 3, 10e-6) == pytest.approx(32e-6)
    assert launch_queue_s([(2e-6, 3)], 10e-6) == pytest.approx(32e-6)
    assert launch_queue_s([], 10e-6) == 0.0


def test_launch_queue_of_a_mixed_step_follows_the_recurrence_by_hand():
    """h = 10 us. A 50 us kernel then three 5 us ones: issued at 10, 20, 30, 40 us; the first runs 10-60, the others
    queue behind it, 60-65-70-75: 75 us (the host ran ahead during the long one). Reversed, the host paces the
    short ones (10-15, 20-25, 30-35) and the long one runs 40-90: 90 us. Three layers of [norm 2 us twice, GEMM
    30 us] (op list: norm count 6, GEMM count 3): issued every 10 us, 9 launches, the GEMMs end at 60, 94, 128 us."""
    from lvlmsim.cost.runtime import launch_queue_s

    h = 10e-6
    assert launch_queue_s([(50e-6, 1), (5e-6, 1), (5e-6, 1), (5e-6, 1)], h) == pytest.approx(75e-6)
    assert launch_queue_s([(5e-6, 1), (5e-6, 1), (5e-6, 1), (50e-6, 1)], h) == pytest.approx(90e-6)
    assert launch_queue_s([(2e-6, 6), (30e-6, 3)], h) == pytest.approx(128e-6)
    assert _queue_by_hand([2e-6, 2e-6, 30e-6] * 3, h) == pytest.approx(128e-6)


@pytest.mark.parametrize("seed", range(20))
def test_launch_queue_equals_the_recurrence_launch_by_launch(seed):
    """Random steps in lvlmsim's op-list form (single launches around a run of per-layer ops, count = layers x
    launches a layer) against the recurrence over the launches spelled out in layer order."""
    import random

    from lvlmsim.cost.runtime import launch_queue_s

    rng = random.Random(seed)
    h = rng.uniform(1e-6, 40e-6)
    layers = rng.randint(2, 9)
    pro = [(rng.uniform(0, 60e-6), 1) for _ in range(rng.randint(0, 2))]
    per_layer = [(rng.uniform(0, 60e-6), rng.choice((1, 1, 2))) for _ in range(rng.randint(1, 6))]
    while sum(k == 2 for _, k in per_layer) > sum(k == 1 for _, k in per_layer):
        per_layer.append((rng.uniform(0, 60e-6), 1))  # the layer count is the run's most common count
    epi = [(rng.uniform(0, 200e-6), 1) for _ in range(rng.randint(0, 3))]
    listed = pro + [(g, k * layers) for g, k in per_layer] + epi
    spelled = [g for g, _ in pro] + [g for _ in range(layers) for g, k in per_layer for _ in range(k)]
    spelled += [g for g, _ in epi]
    assert launch_queue_s(listed, h) == pytest.approx(_queue_by_hand(spelled, h), rel=1e-12)


def test_only_eager_runtimes_over_other_regimes_take_the_launch_queue():
    """CUDA-graph runtimes keep op-by-op pricing (unchanged); an eager runtime over a profile fitted on eager launches
    keeps its fitted floors (they hold the dispatch); any other eager profile prices kernels by its base profile and
    dispatches at the eager floor."""
    from lvlmsim.calibrate.model import FittedProfile
    from lvlmsim.cost.runtime import launch_queue_profile, serving_runtime

    assert launch_queue_profile(DEFAULT_PROFILE) is None
    assert launch_queue_profile(RUNTIMES["vllm"].apply(DEFAULT_PROFILE)) is None
    assert launch_queue_profile(RUNTIMES["eager"].apply(DEFAULT_PROFILE)) == (DEFAULT_PROFILE, 2.06e-5)
    assert launch_queue_profile(serving_runtime("sglang", True).apply(DEFAULT_PROFILE)) == (DEFAULT_PROFILE, 2.06e-5)
    eager_fit = FittedProfile("e", "h100-sxm", {}, meta={"timing_regime": "eager"})
    assert launch_queue_profile(RUNTIMES["eager"].apply(eager_fit)) is None


def test_eager_engine_steps_are_the_launch_queue_over_the_step_ops():
    """StepCost under an eager runtime equals the launch queue over the whole step's `llm_ops` at the base profile's
    kernel times (Qwen2.5-VL-7B: one attention op a layer, so the attention slot is the graph's own); a decode of
    one sequence is dispatch-bound (above the GPU sum, below the op-by-op eager sum), a 2048-token prefill
    GPU-bound (within 1% of the GPU sum + one dispatch)."""
    from lvlmsim.cost.runtime import launch_queue_s, serving_runtime
    from lvlmsim.engine.stepcost import DECODE_REL_TOL, StepCost, reference_step_s
    from lvlmsim.estimate import default_graph_config
    from lvlmsim.ops.graph import llm_ops
    from lvlmsim.ops.op import SeqWork
    from lvlmsim.specs.registry import load_model

    m = load_model("qwen2.5-vl-7b")
    cfg = default_graph_config(m, 1)
    eager = CostModel(H100, serving_runtime("vllm", True).apply(DEFAULT_PROFILE))
    gpu = CostModel(H100, DEFAULT_PROFILE)
    coster = StepCost(m, cfg, eager)
    assert coster.dispatch_s == 2.06e-5
    chunk = (2048, 0, 0, 0, 0, True)
    ops = llm_ops(m, (SeqWork(new_tokens=2048, past_tokens=0, emits_token=True),), "prefill", cfg)
    queued = launch_queue_s([(gpu.cost(op).time_s, op.count) for op in ops], 2.06e-5)
    assert coster.step_s(0, 0, [chunk]) == pytest.approx(queued, rel=1e-12)
    assert coster.step_s(0, 0, [chunk]) == pytest.approx(reference_step_s(m, cfg, eager, [], [chunk]), rel=1e-12)
    assert queued == pytest.approx(gpu.time_s(ops) + 2.06e-5, rel=0.01)
    one = llm_ops(m, (SeqWork(new_tokens=1, past_tokens=500, emits_token=True),), "decode", cfg)
    dec = coster.step_s(1, 500)
    # a decode-only step rounds its attention to the 1.01 grid (stepcost's documented bound, DECODE_REL_TOL)
    assert dec == pytest.approx(reference_step_s(m, cfg, eager, [(500, 0, 0)]), rel=DECODE_REL_TOL)
    launches = sum(op.count for op in one)
    assert launches * 2.06e-5 < dec < CostModel(H100, eager.profile).time_s(one)
    assert dec > gpu.time_s(one)


def test_eager_estimate_prices_each_stage_by_the_launch_queue_with_a_dispatch_wait_row():
    """lvlmsim.estimate under the eager runtime: the prefill stage is the launch queue over its ops at GPU time plus
    the eager step overhead; its op rows are the kernels' GPU times and one `runtime.dispatch_wait` row holds what
    the queue adds (at least one dispatch, since the first kernel waits for its issue)."""
    import lvlmsim
    from lvlmsim.cost.runtime import launch_queue_s
    from lvlmsim.estimate import default_graph_config
    from lvlmsim.ops.graph import llm_ops
    from lvlmsim.ops.op import SeqWork
    from lvlmsim.specs.registry import load_model

    est = lvlmsim.estimate("qwen2.5-vl-7b", "h100-sxm", images=0, prompt_tokens=64, output_tokens=4, runtime="eager")
    m = load_model("qwen2.5-vl-7b")
    ops = llm_ops(m, (SeqWork(new_tokens=64, past_tokens=0, emits_token=True),), "prefill", default_graph_config(m, 1))
    gpu = CostModel(H100, est.cost_profile.base)
    queued = launch_queue_s([(gpu.cost(op).time_s, op.count) for op in ops], RUNTIMES["eager"].kernel_floor_s)
    prefill = est.stages["prefill"]
    assert prefill.time_s == pytest.approx(queued + RUNTIMES["eager"].step_overhead_s, rel=1e-9)
    waits = [c for c in prefill.ops if c.op.name == "runtime.dispatch_wait"]
    assert len(waits) == 1 and waits[0].total_time_s >= RUNTIMES["eager"].kernel_floor_s
