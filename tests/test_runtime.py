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
