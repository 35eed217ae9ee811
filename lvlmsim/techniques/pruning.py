"""In-LLM visual token pruning: a per-layer schedule of how many visual tokens survive (GraphConfig.visual_keep).

Layer convention, everywhere in lvlmsim: `layer=K` means "after the first K decoder layers". FastV's K=2 prunes after
the 2nd layer, so layers 1-2 (1-based) = 0-1 (0-based) see every visual token and layers 3..32 (1-based) = 2..31
(0-based) see the kept ones. That is exactly GraphConfig.visual_keep = ((K, kept_fraction),), whose layers are
0-based "from this layer on". Pruned tokens' K/V are not kept for the later layers, so prefill FLOPs, the KV cache
and every decode step's KV reads shrink (the graph and the memory model both honour visual_keep).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import SOFTMAX_FLOPS_PER_SCORE, elementwise, layer_segments, visual_tokens_kept
from lvlmsim.ops.op import GraphConfig, Op, SeqWork
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_IN_LLM, TechniqueConfig, register


class InLLMSchedule(TechniqueConfig):
    """Shared: the schedule, its checks against the model, and the GraphConfig it produces."""

    stage: ClassVar[str] = "prefill + decode + KV memory"
    acts_on: ClassVar[str] = "per-layer token schedule (GraphConfig.visual_keep)"
    order: ClassVar[int] = ORDER_IN_LLM

    def claims(self) -> tuple[str, ...]:
        return ("in_llm_schedule",)

    def keep_schedule(self, model: ModelSpec) -> tuple[tuple[int, float], ...]:
        """((first 0-based layer that sees the reduced set, fraction of the ORIGINAL visual tokens kept), ...)."""
        raise NotImplementedError

    min_layer: ClassVar[int] = 1  # attention-guided pruning needs at least one layer's scores

    def check(self, model: ModelSpec, hw: HardwareSpec, tp: int) -> None:
        n = model.llm.num_layers
        field = self.layer_field()
        for layer, _ in self.keep_schedule(model):
            if not self.min_layer <= layer < n:
                raise SpecError(f"technique '{self.kind}': {field}: {layer} must be in {self.min_layer}..{n - 1} "
                                f"(prune after that many of the {n} decoder layers of '{model.id}')")

    def layer_field(self) -> str:
        return "layer"

    def transform_config(self, cfg: GraphConfig, model: ModelSpec) -> GraphConfig:
        from dataclasses import replace

        return replace(cfg, visual_keep=self.keep_schedule(model))

    def notes(self, model: ModelSpec) -> list[str]:
        n = model.llm.num_layers
        if model.image_tokens_in_kv_of_cross_attention:
            return [f"{self.kind}: no effect on '{model.id}': its image tokens are not in the decoder sequence"]
        parts = [f"layers {a}-{b} keep {frac:.1%}" for a, b, frac in layer_segments(n, self.keep_schedule(model))]
        return [f"{self.kind}: visual tokens per 0-based decoder layer: " + "; ".join(parts)
                + " (pruned tokens' KV is not kept for later layers)"]


def _visual_before(frac_before: float, seqs: Sequence[SeqWork]) -> list[int]:
    return [visual_tokens_kept(s.visual_new, frac_before) for s in seqs]


@register
class FastVConfig(InLLMSchedule):
    """FastV (Chen et al., ECCV 2024, arXiv 2403.06764): after layer K, drop the visual tokens that receive the least
    attention. `keep` is the fraction KEPT (the paper's R is the fraction dropped: R=50% is keep=0.5).

    Cost of the selection: FastV ranks tokens by the attention they receive in layer K (0-based K-1), which
    FlashAttention does not materialise; that layer's scores are therefore computed as naive attention would:
    the softmax (5 FLOPs/score) and one write+read of S and P (4 passes over heads x query-key pairs). With naive
    attention (attention:kernel=naive) the scores already exist and nothing is added.
    """

    kind: Literal["fastv"] = "fastv"
    layer: PositiveInt = Field(2, description="K: prune after the first K decoder layers (1-based count)")
    keep: float = Field(0.5, ge=0.0, le=1.0, description="fraction of visual tokens kept after layer K")

    citation: ClassVar[str] = "Chen et al., An Image is Worth 1/2 Tokens After Layer 2 (FastV), ECCV 2024 " \
                              "(arXiv 2403.06764)"

    def keep_schedule(self, model: ModelSpec) -> tuple[tuple[int, float], ...]:
        return ((self.layer, self.keep),)

    def prefill_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork], past_visual: Sequence[int]
    ) -> list[Op]:
        if not cfg.flash_attention or not any(s.visual_new for s in seqs):
            return []
        heads = max(1, model.llm.num_heads // cfg.tp)
        # layer K-1 (0-based) is before the cut: it sees every token; causal pairs q*p + q(q+1)/2 per sequence
        pairs = float(sum(s.new_tokens * s.past_tokens + s.new_tokens * (s.new_tokens + 1) / 2 for s in seqs
                          if s.visual_new))
        lay = self.layer - 1
        return [elementwise("technique.fastv.attention_scores", "prefill", "llm", heads * pairs, cfg,
                            SOFTMAX_FLOPS_PER_SCORE, reads=2, writes=2, layer_range=(lay, lay), visual_share=1.0)]


def last_query_rank_op(
    name: str, model: ModelSpec, cfg: GraphConfig, n_visual: float, layer: int
) -> Op:
    """Scores of the last instruction token against `n_visual` visual keys (summed over the batch) in one layer:
    2*head_dim FLOPs per score plus the softmax, reading those keys from the KV cache."""
    lm = model.llm
    heads = max(1, lm.num_heads // cfg.tp)
    kv_heads = max(1, lm.num_kv_heads // cfg.tp)
    key_bytes = n_visual * kv_heads * lm.head_dim * DTYPE_BYTES[cfg.kv_dtype]
    return elementwise(name, "prefill", "llm", heads * n_visual, cfg, 2.0 * lm.head_dim + SOFTMAX_FLOPS_PER_SCORE,
                       reads=0, writes=1, extra_read_bytes=key_bytes, layer_range=(layer, layer), visual_share=1.0)


@register
class PyramidDropConfig(InLLMSchedule):
    """PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247): split the decoder into stages; at the end of each
    stage keep a fraction `ratio` (lambda) of the visual tokens that entered it, ranked by the last instruction
    token's attention. Default: 4 stages, drops after layers n/4, n/2, 3n/4 (8/16/24 of 32), lambda = 0.5, so
    100% / 50% / 25% / 12.5% of the visual tokens per stage.

    Selection cost per drop: one query (the last instruction token) against the surviving visual keys.
    """

    kind: Literal["pyramiddrop"] = "pyramiddrop"
    layers: list[PositiveInt] | None = Field(None, description="drop after these many layers (default n/4,n/2,3n/4)")
    ratio: float = Field(0.5, gt=0.0, le=1.0, description="lambda: fraction of a stage's visual tokens kept")

    citation: ClassVar[str] = "Xing et al., PyramidDrop, CVPR 2025 (arXiv 2410.17247)"

    @field_validator("layers")
    @classmethod
    def _increasing(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(b <= a for a, b in zip(v, v[1:], strict=False))):
            raise ValueError("must be a non-empty, strictly increasing list of layer counts, e.g. 8/16/24")
        return v

    def layer_field(self) -> str:
        return "layers"

    def stage_layers(self, model: ModelSpec) -> list[int]:
        n = model.llm.num_layers
        return list(self.layers) if self.layers is not None else [n // 4, n // 2, 3 * n // 4]

    def keep_schedule(self, model: ModelSpec) -> tuple[tuple[int, float], ...]:
        return tuple((lay, self.ratio ** (i + 1)) for i, lay in enumerate(self.stage_layers(model)))

    def prefill_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork], past_visual: Sequence[int]
    ) -> list[Op]:
        ops = []
        frac_before = 1.0
        for lay, frac in self.keep_schedule(model):
            n_vis = float(sum(_visual_before(frac_before, seqs)))
            if n_vis:
                ops.append(last_query_rank_op("technique.pyramiddrop.rank", model, cfg, n_vis, lay - 1))
            frac_before = frac
        return ops


@register
class TokenScheduleConfig(InLLMSchedule):
    """A general in-LLM schedule: `schedule=2:0.5/16:0.25` keeps 50% of the visual tokens after 2 layers and 25%
    after 16 (fractions of the ORIGINAL count, non-increasing: pruned tokens' KV is gone). For FitPrune-style or
    SparseVLM-style recipes; no selection cost is added (give it through a dedicated technique if it matters).
    """

    kind: Literal["token_schedule"] = "token_schedule"
    min_layer: ClassVar[int] = 0
    schedule: list[tuple[int, float]] = Field(min_length=1, description="(after this many layers, kept fraction) pairs")

    citation: ClassVar[str] = ("general schedule; e.g. Ye et al., FitPrune, AAAI 2025 (arXiv 2409.10197); Zhang et "
                               "al., SparseVLM, ICML 2025 (arXiv 2410.04417)")

    @field_validator("schedule")
    @classmethod
    def _check(cls, v: list[tuple[int, float]]) -> list[tuple[int, float]]:
        layers = [a for a, _ in v]
        fracs = [b for _, b in v]
        if any(a < 0 for a in layers):
            raise ValueError("layers must be >= 0")
        if any(not 0.0 <= f <= 1.0 for f in fracs):
            raise ValueError("kept fractions must be in [0, 1]")
        if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
            raise ValueError("layers must be strictly increasing, e.g. 2:0.5/16:0.25")
        if any(b > a for a, b in zip(fracs, fracs[1:], strict=False)):
            raise ValueError("kept fractions must not increase with depth (pruned tokens' KV is gone)")
        return v

    def layer_field(self) -> str:
        return "schedule"

    def keep_schedule(self, model: ModelSpec) -> tuple[tuple[int, float], ...]:
        return tuple((int(a), float(b)) for a, b in self.schedule)
