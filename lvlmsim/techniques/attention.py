"""Attention kernel choice: FlashAttention (scores stay on chip) or naive attention (scores round-trip HBM)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from pydantic import Field

from lvlmsim.ops.op import GraphConfig
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_KERNEL, TechniqueConfig, register


@register
class AttentionConfig(TechniqueConfig):
    """FlashAttention (Dao et al., NeurIPS 2022; FA2 ICLR 2024; FA3 arXiv 2407.08608) vs naive attention.

    Acts through GraphConfig.flash_attention: naive attention adds the softmax FLOPs and writes+reads the score and
    probability matrices (heads x query-key pairs each) in every attention op, ViT and LLM. Kernel efficiency
    differences beyond that traffic come from the calibration profile, not from here.
    """

    kind: Literal["attention"] = "attention"
    kernel: Literal["flash", "naive"] = Field("flash", description="attention kernel")

    citation: ClassVar[str] = ("Dao et al., FlashAttention, NeurIPS 2022 (arXiv 2205.14135); FlashAttention-2, ICLR "
                               "2024 (arXiv 2307.08691); Shah et al., FlashAttention-3 (arXiv 2407.08608)")
    stage: ClassVar[str] = "encode + prefill + decode (attention ops)"
    acts_on: ClassVar[str] = "attention op bytes/FLOPs (GraphConfig.flash_attention)"
    order: ClassVar[int] = ORDER_KERNEL

    def transform_config(self, cfg: GraphConfig, model: ModelSpec) -> GraphConfig:
        return dataclasses.replace(cfg, flash_attention=self.kernel == "flash")

    def notes(self, model: ModelSpec) -> list[str]:
        if self.kernel == "naive":
            return ["attention: naive kernel: score and probability matrices round-trip device memory"]
        return []
