"""Techniques reach the engine only through declared hooks, collected by compose(); with no technique the engine holds
the identity composition, and the analytic estimate prices its stages through one implementation (price_stages)."""

from __future__ import annotations

from typing import Literal

import simpy

from lvlmsim.calibrate.profiles import resolve_profile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.cluster import build_pool
from lvlmsim.engine.workload import Workload
from lvlmsim.estimate import PlainPipeline, price_stages
from lvlmsim.ops.op import default_graph_config
from lvlmsim.ops.tokenization import tokenize_image
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.serving import PoolSpec, ServingSpec
from lvlmsim.techniques.base import TechniqueConfig
from lvlmsim.techniques.compose import Composition, compose
from lvlmsim.techniques.kv_budget import KVBudgetPolicy

LLAVA = load_model("llava-1.5-7b")
H100 = load_hardware("h100-sxm")


class KeepSixtyFour(TechniqueConfig):
    """A one-file engine-level technique, unknown to compose() and the engine: it only overrides a hook."""

    kind: Literal["test_keep64"] = "test_keep64"

    def kv_after_prefill(self) -> KVBudgetPolicy:
        return KVBudgetPolicy(64)


def test_identity_composition_asks_nothing_of_the_engine():
    comp = Composition.identity(LLAVA, default_graph_config(LLAVA, 1))
    assert comp.kv_policy() is None and comp.admission_cache() is None
    assert comp.reserved_weight_bytes() == 0.0 and comp.extra_kv_bytes_per_token() == 0.0
    assert comp.tokens_per_step == 1.0


def test_compose_collects_each_techniques_declared_hooks():
    comp = compose(LLAVA, H100, ["kv_budget:tokens=128,mode=rolling", "reuse:hit_rate=0.5,capacity_entries=10"])
    assert comp.kv_policy() == KVBudgetPolicy(128, "rolling", False)
    assert comp.admission_cache().hit_rate == 0.5
    # a LLaVA-1.5-7B draft drafts text: its language model (Vicuna-7B, about 6.74e9 parameters) x 2 bytes (fp16)
    # is held next to the target's weights
    spec = compose(LLAVA, H100, ["speculative:alpha=0.7,gamma=3,draft=llava-1.5-7b"])
    assert 6.6e9 * 2 < spec.reserved_weight_bytes() < 6.9e9 * 2
    # its KV per text token is the target's own: 2 (K,V) x 32 layers x 4096 x 2 B = 512 KiB
    assert spec.extra_kv_bytes_per_token() == 2 * 32 * 4096 * 2


def test_a_new_engine_technique_is_one_class_overriding_a_hook():
    comp = compose(LLAVA, H100, [KeepSixtyFour()])
    assert comp.kv_policy() == KVBudgetPolicy(64)
    serving = ServingSpec()
    pool = build_pool(simpy.Environment(), LLAVA, PoolSpec(role="PD"), H100, serving, Workload(lambda: iter(()), 0),
                      CostModel(H100, resolve_profile(H100, None)), comp=comp)
    assert all(inst.kv_policy == KVBudgetPolicy(64) for inst in pool.instances)


def test_identity_pipeline_prices_like_the_identity_composition():
    cfg = default_graph_config(LLAVA, 1)
    cm = CostModel(H100, resolve_profile(H100, None))
    toks = [tokenize_image(LLAVA, 336, 336)]
    plain = price_stages(PlainPipeline(LLAVA, cfg), cm, toks, 64, 40, 2, cross=False)
    ident = price_stages(Composition.identity(LLAVA, cfg), cm, toks, 64, 40, 2, cross=False)
    for stage in ("encode", "prefill", "decode"):
        assert plain[stage].time_s == ident[stage].time_s > 0
        assert plain[stage].flops == ident[stage].flops
