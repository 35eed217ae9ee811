"""KV-cache token budgets (H2O, SnapKV; visual-only variants such as LOOK-M): keep at most B tokens' KV.

After prefill a sequence keeps at most `tokens` of its cached tokens, so every decode step reads less KV and each
sequence holds less memory. The prefill itself is unchanged (it still computes and briefly holds the full prompt's
KV), plus the selection cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from lvlmsim.ops.graph import SOFTMAX_FLOPS_PER_SCORE, elementwise
from lvlmsim.ops.op import GraphConfig, Op, SeqWork
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_KV_BUDGET, TechniqueConfig, register, schedule_of


@dataclass(frozen=True)
class KVBudgetPolicy:
    """How many cached tokens a sequence keeps. The serving engine calls `kept` once, when a sequence's prefill is
    done (LlmInstance.kv_after_prefill: its evicted blocks go back, a P->D pull moves only what is kept), and a
    rolling budget caps the sequence's KV in the decode set; the analytic estimate reads `decode_view`.

    mode 'prompt' (SnapKV): the prompt's KV is compressed once to `budget_tokens`; generated tokens are appended.
    mode 'rolling' (H2O): the whole cache stays within `budget_tokens` (heavy hitters + recent tokens).
    visual_only: only the visual tokens are capped at `budget_tokens`; text and generated tokens are all kept.
    When visual and text tokens are evicted together, visual tokens are assumed to go in proportion to their share.
    """

    budget_tokens: int
    mode: str = "prompt"
    visual_only: bool = False

    def kept(self, prompt_tokens: int, visual_tokens: int, generated: int) -> tuple[int, int]:
        """(KV tokens kept, of which visual) for a sequence whose prefill cached `prompt_tokens` tokens
        (`visual_tokens` of them visual) and which has cached `generated` tokens since."""
        b = self.budget_tokens
        if self.visual_only:
            kv = min(visual_tokens, b)
            return prompt_tokens - visual_tokens + kv + generated, kv
        if self.mode == "prompt":
            kp = min(prompt_tokens, b)
            kv = visual_tokens * kp // prompt_tokens if prompt_tokens else 0
            return kp + generated, kv
        total = prompt_tokens + generated
        kt = min(total, b)
        return kt, (visual_tokens * kt // total if total else 0)

    def decode_view(self, seq: SeqWork, prompt_tokens: int, visual_tokens: int) -> tuple[SeqWork, int]:
        """A decode SeqWork as the budget leaves it: (SeqWork with the kept past, past visual tokens kept).

        `seq.past_tokens` is the full context (prompt + generated so far); `prompt_tokens`/`visual_tokens` describe
        what its prefill cached. Pass the returned past-visual count to llm_ops' `past_visual`.
        """
        generated = max(0, seq.past_tokens - prompt_tokens)
        past, pv = self.kept(prompt_tokens, visual_tokens, generated)
        return dataclasses.replace(seq, past_tokens=min(past, seq.past_tokens)), pv


@register
class KVBudgetConfig(TechniqueConfig):
    """KV budget of `tokens` cached tokens per sequence after prefill.

    mode=prompt: SnapKV (Li et al., NeurIPS 2024, arXiv 2404.14469): an observation window of the last `window`
    prompt tokens scores every key once after prefill (costed: window x keys scores per head in every layer).
    mode=rolling: H2O (Zhang et al., NeurIPS 2023, arXiv 2306.14048): accumulated attention scores pick heavy hitters
    at every decode step (costed: one pass over each step's scores in every layer).
    visual_only=true compresses only the visual tokens (LOOK-M, Wan et al., arXiv 2406.18139, and the survey's
    visual-KV methods); text tokens are kept whole.
    """

    kind: Literal["kv_budget"] = "kv_budget"
    tokens: PositiveInt = Field(description="KV tokens kept per sequence (visual tokens kept, if visual_only)")
    mode: Literal["prompt", "rolling"] = Field("prompt", description="prompt: SnapKV; rolling: H2O")
    visual_only: bool = Field(False, description="compress only the visual tokens")
    window: PositiveInt = Field(32, description="SnapKV observation window (last prompt tokens)")

    citation: ClassVar[str] = ("Zhang et al., H2O, NeurIPS 2023 (arXiv 2306.14048); Li et al., SnapKV, NeurIPS 2024 "
                               "(arXiv 2404.14469); Wan et al., LOOK-M (arXiv 2406.18139)")
    stage: ClassVar[str] = "decode (+ KV memory; a selection op in prefill or decode)"
    acts_on: ClassVar[str] = "decode context (KV tokens read) and KV memory; engine hook KVBudgetPolicy"
    order: ClassVar[int] = ORDER_KV_BUDGET

    def policy(self) -> KVBudgetPolicy:
        return KVBudgetPolicy(self.tokens, self.mode, self.visual_only)

    def kv_after_prefill(self) -> KVBudgetPolicy:
        return self.policy()

    def engine_refusal(self, others, model: ModelSpec) -> str | None:
        schedule = schedule_of(others)
        if schedule is None:
            return None
        return (f"'kv_budget' and '{schedule.kind}': the simulator does not combine a per-sequence KV budget with an "
                "in-LLM visual-token schedule (their KV accounting interacts per layer)")

    def prefill_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork], past_visual: Sequence[int]
    ) -> list[Op]:
        if self.mode != "prompt" and not self.visual_only:
            return []
        lm = model.llm
        heads = max(1, lm.num_heads // cfg.tp)
        kv_heads = max(1, lm.num_kv_heads // cfg.tp)
        pv = list(past_visual) or [0] * len(seqs)
        scores = 0.0
        keys = 0.0
        for s, v in zip(seqs, pv, strict=True):
            if not s.emits_token:  # the scoring runs once the prompt is complete (its last chunk)
                continue
            k = (s.visual_new + v) if self.visual_only else (s.past_tokens + s.new_tokens)
            scores += heads * min(self.window, s.new_tokens) * k
            keys += k
        if not scores:
            return []
        n = lm.self_attention_layers
        key_bytes = keys * kv_heads * lm.head_dim * DTYPE_BYTES[cfg.kv_dtype]
        return [elementwise("technique.kv_budget.snapkv_scores", "prefill", "llm", scores, cfg,
                            2.0 * lm.head_dim + SOFTMAX_FLOPS_PER_SCORE, reads=0, writes=1,
                            extra_read_bytes=key_bytes, count=n, layer_range=(0, lm.num_layers - 1))]

    def decode_extra_ops(self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork]) -> list[Op]:
        if self.mode != "rolling" or self.visual_only:
            return []
        lm = model.llm
        heads = max(1, lm.num_heads // cfg.tp)
        scores = float(sum(heads * (s.past_tokens + s.new_tokens) for s in seqs))
        return [elementwise("technique.kv_budget.h2o_scores", "decode", "llm", scores, cfg, 1.0, reads=2, writes=1,
                            count=lm.self_attention_layers, layer_range=(0, lm.num_layers - 1))]

    def notes(self, model: ModelSpec) -> list[str]:
        what = "visual tokens" if self.visual_only else "tokens"
        how = "SnapKV-style, prompt compressed once" if self.mode == "prompt" else "H2O-style, rolling"
        return [f"kv_budget: each sequence keeps at most {self.tokens} {what} of KV after prefill ({how}); prefill "
                "still computes the full prompt"]
