"""Speculative decoding: a cheap drafter proposes gamma tokens, the target verifies them in one (gamma+1)-token pass.

A decode-step policy: `DecodeStepPolicy` (plain decoding, one token per step) and `SpeculativeDecodePolicy` share
one interface; SpeculativeConfig hands its policy to the Composition through the `decode_step_policy` engine hook.
What the serving engine uses (lvlmsim.engine.stepcost and cluster, through the Composition):

    policy.step_ops(seqs, past_visual)              # [(op, weight), ...] of ONE round of this decode batch
    policy.tokens_per_step                          # expected tokens per sequence per round (the fluid model
                                                    # divides a round's time by it; the engine never samples)
    policy.lookahead_tokens                         # KV slots a sequence reserves for a round (gamma + 1)
    policy.prefill_extra_ops(seqs, past_visual)     # the draft model's own prefill (via comp.prefill_extra_ops)
    policy.extra_weight_bytes(), .extra_kv_bytes()  # draft weights and KV held on each device (via the hooks
                                                    # comp.reserved_weight_bytes / extra_kv_bytes_per_token)

`step_time_s` and `sample_tokens` (the accepted drafts of one round, drawn) are not on the engine's path; tests use
them to check the expectation the fluid model relies on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal, Protocol

from pydantic import Field, PositiveInt, field_validator, model_validator

from lvlmsim.cost.memory import check_tp, kv_bytes_per_token, weight_bytes
from lvlmsim.cost.roofline import CostModel
from lvlmsim.ops.graph import NORM_FLOPS_PER_ELEM, allreduce, elementwise, gemm, llm_ops
from lvlmsim.ops.op import GraphConfig, Op, SeqWork, default_graph_config
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_DECODE, TechniqueConfig, register

OpsTransform = Callable[[Sequence[Op]], list[Op]]


class _Random(Protocol):
    def random(self) -> float: ...


def expected_tokens(alpha: float, gamma: int) -> float:
    """Expected tokens per verification step: sum_{i=0..gamma} alpha^i = (1 - alpha^(gamma+1)) / (1 - alpha).

    (Leviathan et al. 2023, eq. 1; alpha = per-token acceptance rate, i.i.d.)
    """
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def _identity(ops: Sequence[Op]) -> list[Op]:
    return list(ops)


def renamed(ops: Sequence[Op], prefix: str) -> list[Op]:
    """Draft ops keep their shapes but get their own names, so reports and op merging keep them apart."""
    return [dataclasses.replace(op, name=prefix + op.name) for op in ops]


class DecodeStepPolicy:
    """Plain decoding: every decoding sequence gains one token per step."""

    tokens_per_step: float = 1.0
    lookahead_tokens: int = 1

    def __init__(self, model: ModelSpec, cfg: GraphConfig, transform: OpsTransform | None = None):
        self.model, self.cfg = model, cfg
        self.transform = transform or _identity

    def target_step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        return self.transform(llm_ops(self.model, tuple(seqs), "decode", self.cfg, tuple(past_visual)))

    def step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        """(op, weight) pairs of one step; an op's cost counts `weight` times."""
        return [(op, 1.0) for op in self.target_step_ops(seqs, past_visual)]

    def step_time_s(self, cm: CostModel, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> float:
        return sum(cm.cost(op).total_time_s * w for op, w in self.step_ops(seqs, past_visual))

    def sample_tokens(self, rng: _Random) -> int:
        return 1

    def prefill_extra_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        return []

    def adds_prefill_ops(self) -> bool:
        """Whether prefill_extra_ops can return anything (the engine skips asking when not)."""
        return False

    def extra_weight_bytes(self) -> float:
        """Weights besides the target's the policy keeps on each device (a draft model, drafting heads)."""
        return 0.0

    def extra_kv_bytes(self, text_tokens: float, visual_tokens: float) -> float:
        """KV bytes per sequence besides the target's (the draft model's cache)."""
        return 0.0


class SpeculativeDecodePolicy(DecodeStepPolicy):
    """Draft gamma tokens, verify gamma+1 positions in one target pass; expected_tokens(alpha, gamma) per step."""

    def __init__(
        self, model: ModelSpec, cfg: GraphConfig, transform: OpsTransform | None, *, gamma: int, alpha: float,
        draft_model: ModelSpec | None = None, draft_cfg: GraphConfig | None = None, head_overhead: float = 0.0,
        draft_sees_visual: bool = False,
    ):
        super().__init__(model, cfg, transform)
        self.gamma, self.alpha = gamma, alpha
        self.draft_model, self.draft_cfg = draft_model, draft_cfg
        self.head_overhead = head_overhead
        self.draft_sees_visual = draft_sees_visual
        self.tokens_per_step = expected_tokens(alpha, gamma)
        self.lookahead_tokens = gamma + 1

    def _draft_past(self, s: SeqWork, pv: int) -> int:
        return s.past_tokens if self.draft_sees_visual else max(0, s.past_tokens - pv)

    def verify_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        """The target's pass over gamma+1 new positions per sequence, logits for all of them."""
        g1 = self.gamma + 1
        verify = tuple(dataclasses.replace(s, new_tokens=g1, visual_new=0) for s in seqs)
        ops = llm_ops(self.model, verify, "decode", self.cfg, tuple(past_visual))
        rows = g1 * sum(1 for s in seqs if s.emits_token)
        return self.transform(_widen_lm_head(ops, self.model, self.cfg, rows))

    def draft_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        pv = list(past_visual) or [0] * len(seqs)
        if self.draft_model is None:
            # self-drafting heads (Medusa/EAGLE): each drafted token costs head_overhead of one target step
            w = self.gamma * self.head_overhead
            if not w:
                return []
            return [(op, w) for op in renamed(self.target_step_ops(seqs, pv), "draft_heads.")]
        assert self.draft_cfg is not None
        out: list[tuple[Op, float]] = []
        for j in range(self.gamma):
            dseqs = tuple(SeqWork(new_tokens=1, past_tokens=self._draft_past(s, v) + j, emits_token=True)
                          for s, v in zip(seqs, pv, strict=True))
            out.extend((op, 1.0) for op in renamed(llm_ops(self.draft_model, dseqs, "decode", self.draft_cfg),
                                                   "draft."))
        return out

    def step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        return self.draft_ops(seqs, past_visual) + [(op, 1.0) for op in self.verify_ops(seqs, past_visual)]

    def sample_tokens(self, rng: _Random) -> int:
        """1 + the number of leading drafts accepted (each with probability alpha), at most gamma + 1."""
        n = 1
        while n <= self.gamma and rng.random() < self.alpha:
            n += 1
        return n

    def adds_prefill_ops(self) -> bool:
        return self.draft_model is not None

    def prefill_extra_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        if self.draft_model is None:
            return []
        pv = list(past_visual) or [0] * len(seqs)
        dseqs = []
        for s, v in zip(seqs, pv, strict=True):
            new = s.new_tokens if self.draft_sees_visual else s.new_tokens - s.visual_new
            if new > 0:
                dseqs.append(SeqWork(new_tokens=new, past_tokens=self._draft_past(s, v), emits_token=False))
        if not dseqs:
            return []
        assert self.draft_cfg is not None
        return renamed(llm_ops(self.draft_model, tuple(dseqs), "prefill", self.draft_cfg), "draft.")

    def extra_weight_bytes(self) -> float:
        if self.draft_model is None:
            return self.head_overhead * weight_bytes(self.model, self.cfg)["llm"]
        assert self.draft_cfg is not None
        return weight_bytes(self.draft_model, self.draft_cfg)["llm"]

    def extra_kv_bytes(self, text_tokens: float, visual_tokens: float) -> float:
        if self.draft_model is None:
            return 0.0
        assert self.draft_cfg is not None
        tokens = text_tokens + (visual_tokens if self.draft_sees_visual else 0)
        return tokens * kv_bytes_per_token(self.draft_model, self.draft_cfg)


def _widen_lm_head(ops: Sequence[Op], model: ModelSpec, cfg: GraphConfig, rows: int) -> list[Op]:
    """Verification needs logits at every drafted position: rebuild the LM-head ops for `rows` rows.

    llm_ops gives the LM head one row per emitting sequence; the builders are the graph's own.
    """
    lm = model.llm
    vocab_t = math.ceil(lm.vocab_size / cfg.tp)
    h = lm.hidden_size
    out = []
    for op in ops:
        if op.name == "llm.final_norm":
            op = elementwise("llm.final_norm", op.stage, "llm", rows * h, cfg, NORM_FLOPS_PER_ELEM)
        elif op.name == "llm.lm_head":
            op = gemm("llm.lm_head", op.stage, "llm", rows, vocab_t, h, cfg)
        elif op.name == "llm.logits_gather":
            op = allreduce("llm.logits_gather", op.stage, "llm", rows * vocab_t * DTYPE_BYTES[cfg.act_dtype], cfg)
        out.append(op)
    return out


@register
class SpeculativeConfig(TechniqueConfig):
    """Speculative decoding (Leviathan et al., ICML 2023; Chen et al. 2023): `gamma` draft tokens per step, each
    accepted with probability `alpha` (workload-dependent: give a measured value). Expected tokens per step
    (1 - alpha^(gamma+1)) / (1 - alpha); per step: gamma draft decode steps + one target pass over gamma+1 positions
    (SeqWork(new_tokens=gamma+1, past_tokens=ctx)); TPOT = (draft + verify) / expected tokens.

    draft: a model id (its language model drafts; text-only by default, as in Gagrani et al. 2404.08856, so it does
    not re-read the visual KV) or 'heads' for self-drafting heads (Medusa 2401.10774, EAGLE 2401.15077), whose cost
    per drafted token is `head_overhead` of one target decode step and whose weights are that fraction of the LLM's.
    """

    kind: Literal["speculative"] = "speculative"
    draft: str = Field("heads", min_length=1, description="'heads' or a draft model id")
    gamma: PositiveInt = Field(4, le=16, description="draft tokens per step")
    alpha: float = Field(ge=0.0, le=1.0, description="per-token acceptance rate (measured; required)")
    head_overhead: float = Field(0.05, ge=0.0, le=1.0, description="draft=heads: cost per drafted token / target step")
    draft_sees_visual: bool = Field(False, description="draft attends to the visual tokens too")
    draft_tp: PositiveInt | None = Field(None, description="draft tensor parallelism (default: the target's)")

    citation: ClassVar[str] = ("Leviathan et al., Fast Inference from Transformers via Speculative Decoding, ICML 2023 "
                               "(arXiv 2211.17192); Gagrani et al., Speculative Decoding for Multimodal LLMs (arXiv "
                               "2404.08856); Cai et al., Medusa (arXiv 2401.10774); Li et al., EAGLE (arXiv "
                               "2401.15077)")
    stage: ClassVar[str] = "decode (+ draft prefill and draft memory)"
    acts_on: ClassVar[str] = "engine behaviour: decode-step policy (SpeculativeDecodePolicy)"
    order: ClassVar[int] = ORDER_DECODE

    @field_validator("draft")
    @classmethod
    def _draft_is_heads_or_a_known_model(cls, draft: str) -> str:
        """An unknown draft id was refused only when a run composed it: each plan candidate's 'not chosen' reason,
        exit 1, where an unknown technique kind is one line before the search."""
        if draft != "heads":
            from lvlmsim.specs.registry import load_model

            load_model(draft)
        return draft

    @model_validator(mode="after")
    def _draft_model_fields_need_a_draft_model(self) -> SpeculativeConfig:
        """draft_tp and draft_sees_visual describe a draft model; self-drafting heads run inside the target's own
        step (head_overhead of it), so either given with draft=heads changed nothing and said nothing; and a draft
        model is priced by its own graph, so a head_overhead other than the default was ignored the same way."""
        if self.draft != "heads" and self.head_overhead != type(self).model_fields["head_overhead"].default:
            raise ValueError(f"head_overhead: only with draft=heads; draft={self.draft} is priced by its own "
                             "model's decode steps")
        if self.draft == "heads":
            set_ = {"draft_tp": self.draft_tp is not None, "draft_sees_visual": self.draft_sees_visual}
            given = [f for f, v in set_.items() if v]
            if given:
                raise ValueError(f"{'/'.join(given)}: only with a draft model (draft=MODEL_ID); draft=heads runs in "
                                 "the target's step at its tp, priced by head_overhead")
        return self

    def draft_model(self) -> ModelSpec | None:
        if self.draft == "heads":
            return None
        from lvlmsim.specs.registry import load_model

        return load_model(self.draft)

    def check(self, model: ModelSpec, hw: HardwareSpec, tp: int) -> None:
        d = self.draft_model()
        if d is not None:
            check_tp(d, self.draft_tp or tp)

    def make_policy(
        self, model: ModelSpec, cfg: GraphConfig, transform: OpsTransform | None
    ) -> SpeculativeDecodePolicy:
        d = self.draft_model()
        dcfg = default_graph_config(d, self.draft_tp or cfg.tp) if d is not None else None
        return SpeculativeDecodePolicy(model, cfg, transform, gamma=self.gamma, alpha=self.alpha, draft_model=d,
                                       draft_cfg=dcfg, head_overhead=self.head_overhead,
                                       draft_sees_visual=self.draft_sees_visual)

    def decode_step_policy(self, model: ModelSpec, cfg: GraphConfig, transform: OpsTransform | None
                           ) -> SpeculativeDecodePolicy:
        return self.make_policy(model, cfg, transform)

    def notes(self, model: ModelSpec) -> list[str]:
        e = expected_tokens(self.alpha, self.gamma)
        who = "self-drafting heads" if self.draft == "heads" else f"draft model '{self.draft}'"
        return [f"speculative: {who}, gamma={self.gamma}, alpha={self.alpha:g} -> {e:.2f} expected tokens per "
                f"verification step (TPOT = (draft + verify) / {e:.2f})"]
