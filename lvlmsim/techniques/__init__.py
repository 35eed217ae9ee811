"""Efficiency techniques: validated configs with citations, and how each changes the pipeline.

Each technique is a small module: a pydantic config (`kind` + parameters + optional cited accuracy figure) and
one way of acting on the pipeline (token schedule, dtypes/bytes, KV bytes, tokenization, or an engine hook).

    parse_technique("fastv:layer=2,keep=0.5")     -> FastVConfig
    compose(model, hw, techniques, tp=1)          -> Composition (model copy, GraphConfig, op builders, hooks)
    apply_to_estimate(model, hw, techniques, ...) -> TechniqueEstimate (an Estimate with notes and accuracy)
    technique_table()                             -> rows of (kind, parameters, citation)
"""

from lvlmsim.techniques import (  # noqa: F401  (importing registers every kind)
    attention,
    kv_budget,
    pruning,
    quantization,
    resolution,
    reuse,
    speculative,
    token_reduction,
    tome,
)
from lvlmsim.techniques.apply import TechniqueEstimate, apply_to_estimate
from lvlmsim.techniques.base import (
    ACCURACY_DELTA_POINTS,
    REGISTRY,
    TechniqueConfig,
    load_techniques,
    parse_technique,
    technique_table,
    validate_technique,
)
from lvlmsim.techniques.compose import Composition, compose
from lvlmsim.techniques.kv_budget import KVBudgetConfig, KVBudgetPolicy
from lvlmsim.techniques.reuse import ReuseCache, ReuseConfig, encoder_entry_bytes, kv_entry_bytes
from lvlmsim.techniques.speculative import DecodeStepPolicy, SpeculativeDecodePolicy, expected_tokens

__all__ = [
    "ACCURACY_DELTA_POINTS", "REGISTRY", "Composition", "DecodeStepPolicy", "KVBudgetConfig", "KVBudgetPolicy",
    "ReuseCache", "ReuseConfig", "SpeculativeDecodePolicy", "TechniqueConfig", "TechniqueEstimate",
    "apply_to_estimate", "compose", "encoder_entry_bytes", "expected_tokens", "kv_entry_bytes", "load_techniques",
    "parse_technique", "technique_table", "validate_technique",
]
