"""The engine against its oracles, on random workloads (hypothesis): the reference fcfs scheduler (per sequence, no
aggregates, heaps or fast path: lvlmsim.engine.reference) and the engine's own general path with the decode fast
path switched off must both give per-request timelines identical to the engine's, float for float."""

from __future__ import annotations

import math
from contextlib import contextmanager

import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvlmsim.calibrate.profiles import resolve_profile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.blocks import BlockManager
from lvlmsim.engine.cluster import Cluster, build_pool
from lvlmsim.engine.instance import LlmInstance
from lvlmsim.engine.reference import ReferenceInstance
from lvlmsim.engine.router import make_router
from lvlmsim.engine.workload import stream
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.scenario import load_scenario

MODEL, HW = load_model("llava-1.5-7b"), load_hardware("h100-sxm")
COST = CostModel(HW, resolve_profile(HW, None))


def _with_blocks(pool, blocks: int) -> None:
    """A small KV pool, so that random workloads preempt."""
    pool.total_blocks = blocks
    for inst in pool.instances:
        inst.kv = BlockManager(blocks, inst.kv.size)


def _reference(env, pool, serving) -> None:
    inst = pool.instances[0]
    ref = ReferenceInstance(
        env, inst.name, inst.pool, inst.coster, total_blocks=pool.total_blocks, block_size=serving.block_size,
        max_num_seqs=serving.max_num_seqs, max_num_batched_tokens=serving.max_num_batched_tokens,
        chunked_prefill=serving.chunked_prefill, encoder_budget=serving.encoder_budget,
        encoder_cache=serving.encoder_cache, overhead_s=inst.overhead_s)
    pool.instances = [ref]
    pool.router = make_router(serving.router, pool.instances)


def timelines(doc: dict, blocks: int, engine: str) -> list[tuple]:
    """Per-request records of one run: engine 'fast' (the real one), 'general' (fast path off) or 'reference'."""
    sc = load_scenario(doc)
    wl = stream(sc.workload, MODEL, sc.seed)
    env = simpy.Environment()
    pool = build_pool(env, MODEL, sc.serving.pool_list()[0], HW, sc.serving, wl, COST)
    _with_blocks(pool, blocks)
    if engine == "reference":
        _reference(env, pool, sc.serving)
    Cluster(env, MODEL, sc.serving, [pool], wl)
    env.run()

    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    return [tuple(clean(getattr(r, k)) for k in ("id", "arrival_s", "queue_s", "encode_start_s", "encode_end_s",
                                                 "first_token_s", "finish_s", "preemptions", "status"))
            for r in wl.requests]


workloads = st.fixed_dictionaries({
    "requests": st.integers(3, 40),
    "rate": st.floats(0.5, 200.0),
    "prompts": st.lists(st.integers(1, 2500), min_size=1, max_size=4),
    "outputs": st.lists(st.integers(1, 300), min_size=1, max_size=4),
    "images": st.sampled_from([0.0, 0.5, 1.0]),
    "max_num_seqs": st.integers(1, 24),
    "tokens": st.integers(24, 4096),
    "chunked": st.booleans(),
    "blocks": st.integers(40, 600),
    "seed": st.integers(0, 2**16),
})


def scenario_doc(w: dict) -> dict:
    images = w["images"]
    return {
        "model": "llava-1.5-7b", "hardware": "h100-sxm", "seed": w["seed"],
        "serving": {"max_num_seqs": w["max_num_seqs"], "max_num_batched_tokens": max(w["tokens"], w["max_num_seqs"]),
                    "chunked_prefill": w["chunked"]},
        "workload": {
            "requests": w["requests"], "arrival": {"kind": "poisson", "rate_rps": w["rate"]},
            "prompt_tokens": {"kind": "empirical", "values": w["prompts"]},
            "output_tokens": {"kind": "empirical", "values": w["outputs"]},
            "images": {"kind": "empirical", "values": [0, 1]} if images == 0.5 else {"kind": "fixed", "value": images},
        },
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads)
def test_engine_matches_the_reference_fcfs_scheduler(w: dict):
    doc = scenario_doc(w)
    assert timelines(doc, w["blocks"], "fast") == timelines(doc, w["blocks"], "reference")


@contextmanager
def general_path_only():
    """The decode fast path switched off for the runs inside."""
    LlmInstance.use_fast_path = False
    try:
        yield
    finally:
        LlmInstance.use_fast_path = True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads)
def test_decode_fast_path_matches_the_general_path(w: dict):
    doc = scenario_doc(w)
    fast = timelines(doc, w["blocks"], "fast")
    with general_path_only():
        assert timelines(doc, w["blocks"], "fast") == fast


def test_the_oracle_workloads_preempt_and_reject():
    """The random workloads reach the paths that matter: a small KV pool preempts, and a request that can never fit
    is rejected, in both engines alike."""
    w = {"requests": 40, "rate": 100.0, "prompts": [2000, 300], "outputs": [300, 50], "images": 1.0,
         "max_num_seqs": 24, "tokens": 4096, "chunked": True, "blocks": 120, "seed": 1}
    fast = timelines(scenario_doc(w), 120, "fast")
    assert sum(t[7] for t in fast) > 0  # preemptions
    assert sum(t[8] == "rejected" for t in fast) > 0  # 2000 + 576 + 300 tokens need more than 120 blocks of 16
    assert fast == timelines(scenario_doc(w), 120, "reference")
    with general_path_only():
        assert fast == timelines(scenario_doc(w), 120, "fast")
