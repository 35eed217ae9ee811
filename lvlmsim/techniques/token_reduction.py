"""Pre-LLM visual token reduction: keep fewer ViT outputs before the projector, paying for the selection step.

Every LLM layer, the KV cache and every decode step then see fewer visual tokens; the ViT itself still runs on all
patches. The selection step is costed with the graph's op builders as a pass over the ViT outputs (and the attention
row it ranks tokens by, recomputed because FlashAttention does not expose scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from lvlmsim.ops.graph import SOFTMAX_FLOPS_PER_SCORE, elementwise
from lvlmsim.ops.op import GraphConfig, Op
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_PRE_LLM, TechniqueConfig, register
from lvlmsim.techniques.tokens import TransformedTokenization, candidates_per_seq, rescale


class PreLLMReduction(TechniqueConfig):
    """Shared logic: how many LLM tokens survive, the tokenization rewrite, and the selection ops."""

    tokens: PositiveInt | None = Field(None, description="visual tokens kept per image (LLM tokens)")
    keep: float | None = Field(None, gt=0.0, le=1.0, description="fraction of visual tokens kept")

    stage: ClassVar[str] = "encode (+ every LLM stage through fewer visual tokens)"
    acts_on: ClassVar[str] = "tokenization (fewer projector/LLM tokens) + a selection op in encode"
    order: ClassVar[int] = ORDER_PRE_LLM
    default_amount: ClassVar[tuple[str, Any]] = ("keep", 0.5)

    @model_validator(mode="before")
    @classmethod
    def _one_amount(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in cls.amount_fields() if data.get(k) is not None]
            if len(given) > 1:
                raise ValueError(f"{'/'.join(given)}: give only one of {', '.join(cls.amount_fields())}")
            if not given:
                data = {**data, cls.default_amount[0]: cls.default_amount[1]}
        return data

    @classmethod
    def amount_fields(cls) -> tuple[str, ...]:
        return ("tokens", "keep")

    @classmethod
    def param_summary(cls) -> list[str]:
        name, value = cls.default_amount
        one = " | ".join(f"{k}=" + (repr(value) if k == name else "unset") for k in cls.amount_fields())
        rest = [p for p in super().param_summary() if p.split("=")[0] not in cls.amount_fields()]
        return [f"{one} (one of them)"] + rest

    def claims(self) -> tuple[str, ...]:
        return ("pre_llm_reduction",)

    def kept_llm(self, tok: ImageTokenization) -> int:
        n = tok.llm_tokens
        if self.tokens is not None:
            return min(n, self.tokens)
        return min(n, max(1, math.floor(n * (self.keep or 1.0) + 1e-9)))

    def transform_tokenization(self, tok: ImageTokenization, model: ModelSpec) -> ImageTokenization:
        if tok.llm_tokens == 0:
            return tok
        kept = self.kept_llm(tok)
        return rescale(tok, model, kept, f"{self.kind} keeps {kept} of {tok.llm_tokens} visual tokens")

    def encode_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, toks: Sequence[ImageTokenization], batch: int
    ) -> list[Op]:
        cands: list[int] = []
        kept: list[float] = []
        for t in toks:
            if not isinstance(t, TransformedTokenization) or not t.reduced_from_projector_in:
                continue
            per_seq = candidates_per_seq(t, model)
            total = sum(per_seq) or 1
            cands.extend(per_seq)
            kept.extend(t.projector_in_tokens * n / total for n in per_seq)  # kept tokens split like the candidates
        if not cands:
            return []
        return [op for op in self.selection_ops(model, cfg, cands * batch, kept * batch) if op.flops or op.bytes]

    def selection_ops(self, model: ModelSpec, cfg: GraphConfig, cands: list[int], kept: list[float]) -> list[Op]:
        raise NotImplementedError

    def notes(self, model: ModelSpec) -> list[str]:
        amount = f"{self.tokens} tokens per image" if self.tokens is not None else f"{self.keep:.0%} of visual tokens"
        extra = "; a resampler's query count is fixed, so only its input shrinks" \
            if model.projector.fixed_output_tokens else ""
        return [f"{self.kind}: keeps {amount} before the projector{extra}"]


def score_row_pass(name: str, model: ModelSpec, cfg: GraphConfig, cands: list[int]) -> Op:
    """The ViT attention scores a selection step ranks tokens by, recomputed for one layer.

    With a CLS token: its row only (one query per sequence, as VisionZip/PruMerge use). Without one: every query
    (tokens are ranked by the attention they receive), i.e. L^2 scores per head. QK^T is 2*head_dim FLOPs per score,
    plus the softmax; the pass reads the queries/keys it needs and writes the scores.
    """
    v = model.vision
    heads = max(1, v.num_heads // cfg.tp)
    act = DTYPE_BYTES[cfg.act_dtype]
    cls = int(v.cls_token)
    lens = [n + cls for n in cands]
    rows = [1 if cls else L for L in lens]
    scores = float(sum(heads * r * L for r, L in zip(rows, lens, strict=True)))
    qk_bytes = sum((L + r) * heads * v.head_dim * act for r, L in zip(rows, lens, strict=True))
    return elementwise(name, "encode", "vision", scores, cfg, 2.0 * v.head_dim + SOFTMAX_FLOPS_PER_SCORE, reads=0,
                       writes=1, extra_read_bytes=qk_bytes, visual_share=1.0)


def similarity_pass(name: str, model: ModelSpec, cfg: GraphConfig, pairs: float, cands: list[int]) -> Op:
    """Dot products between token features (hidden size) for `pairs` token pairs, then an argmax/assignment."""
    h = model.vision.hidden_size
    act = DTYPE_BYTES[cfg.act_dtype]
    return elementwise(name, "encode", "vision", pairs, cfg, 2.0 * h + 1.0, reads=0, writes=1,
                       extra_read_bytes=sum(cands) * h * act, visual_share=1.0)


@register
class VisionZipConfig(PreLLMReduction):
    """VisionZip (Yang et al., CVPR 2025, arXiv 2412.04467): keep the tokens the CLS attends to most (dominant) plus
    a few contextual tokens, each the merge of similar remaining tokens. Text-agnostic, before the projector.

    Default 64 tokens per image (54 dominant + 10 contextual of LLaVA-1.5's 576). Selection cost: the CLS attention
    row of one ViT layer plus the similarity of every remaining token to the contextual targets.
    """

    kind: Literal["visionzip"] = "visionzip"
    dominant_fraction: float = Field(54 / 64, ge=0.0, le=1.0, description="share of kept tokens that are dominant")

    citation: ClassVar[str] = "Yang et al., VisionZip, CVPR 2025 (arXiv 2412.04467)"
    default_amount: ClassVar[tuple[str, Any]] = ("tokens", 64)

    def selection_ops(self, model: ModelSpec, cfg: GraphConfig, cands: list[int], kept: list[float]) -> list[Op]:
        pairs = 0.0
        for n, k in zip(cands, kept, strict=True):
            dom = k * self.dominant_fraction
            pairs += max(0.0, n - dom) * (k - dom)
        return [score_row_pass("technique.visionzip.scores", model, cfg, cands),
                similarity_pass("technique.visionzip.merge", model, cfg, pairs, cands)]


@register
class PruMergeConfig(PreLLMReduction):
    """LLaVA-PruMerge (Shang et al., ICCV 2025, arXiv 2403.15388): keep the CLS-attention outliers (IQR rule), then
    merge every pruned token into its nearest kept tokens (kNN). Adaptive: ~32 of 576 tokens (5.5%) on average;
    PruMerge+ keeps ~25% (keep=0.25). The count is the paper's average, not a per-image prediction.
    """

    kind: Literal["prumerge"] = "prumerge"

    citation: ClassVar[str] = "Shang et al., LLaVA-PruMerge, ICCV 2025 (arXiv 2403.15388)"
    default_amount: ClassVar[tuple[str, Any]] = ("keep", 0.055)

    def selection_ops(self, model: ModelSpec, cfg: GraphConfig, cands: list[int], kept: list[float]) -> list[Op]:
        pairs = float(sum(n * k for n, k in zip(cands, kept, strict=True)))
        return [score_row_pass("technique.prumerge.scores", model, cfg, cands),
                similarity_pass("technique.prumerge.knn_merge", model, cfg, pairs, cands)]


@register
class PoolConfig(PreLLMReduction):
    """Spatial pooling of ViT outputs before the projector (TokenPacker-style compression, Matryoshka/M3 scales):
    `factor` tokens become one (4 = 2x2 pooling: 576 -> 144), or a fixed `tokens` count per image.

    Costed as one elementwise pass over the ViT outputs; TokenPacker's own point-to-region cross-attention
    projector is not modelled beyond that pass.
    """

    kind: Literal["pool"] = "pool"
    factor: PositiveInt | None = Field(None, ge=2, description="ViT tokens pooled into one LLM token")

    citation: ClassVar[str] = ("Li et al., TokenPacker (arXiv 2407.02392); Cai et al., Matryoshka Multimodal Models, "
                               "ICLR 2025 (arXiv 2405.17430)")
    default_amount: ClassVar[tuple[str, Any]] = ("factor", 4)

    @classmethod
    def amount_fields(cls) -> tuple[str, ...]:
        return ("tokens", "keep", "factor")

    def kept_llm(self, tok: ImageTokenization) -> int:
        if self.factor is not None:
            return max(1, tok.llm_tokens // self.factor)
        return super().kept_llm(tok)

    def selection_ops(self, model: ModelSpec, cfg: GraphConfig, cands: list[int], kept: list[float]) -> list[Op]:
        h = model.vision.hidden_size
        n = float(sum(cands))
        out_ratio = sum(kept) / n if n else 1.0
        return [elementwise("technique.pool", "encode", "vision", n * h, cfg, 1.0, reads=1, writes=out_ratio,
                            visual_share=1.0)]

    def notes(self, model: ModelSpec) -> list[str]:
        if self.factor is not None:
            return [f"pool: {self.factor} ViT tokens pooled into one before the projector"]
        return super().notes(model)
