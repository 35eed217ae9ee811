"""Composition: many techniques -> one transformed (model, GraphConfig, tokenization, op builders, engine hooks).

Techniques are applied in a canonical order (model -> ViT -> pre-LLM -> in-LLM -> weights -> KV -> kernel ->
KV budget -> decode policy -> reuse), so the order a user lists them in never matters. Two techniques claiming the
same thing (two weight_quant on one module, two in-LLM schedules, ...) are a SpecError, never silently merged.

What the serving engine uses (lvlmsim.engine: api, cluster.build_pool, stepcost; the same objects the analytic
estimate uses, so both price a technique alike):
    comp.model, comp.cfg                          model copy and GraphConfig StepCost builds its ops with
    comp.transform_tokenization                   the workload stream's tokenizations (engine.workload.stream)
    comp.encode_ops(tokenizations, batch)         encoder ops incl. ToMe layers and selection ops
    comp.prefill_extra_ops(seqs, past_visual)     selection ops and the draft model's prefill
    comp.transform_ops(ops)                       ops after every technique's transform (dtypes, dequantisation)
    comp.decode_step_time_s(cm, seqs, past_visual)   one decode round with extra ops (H2O scores, drafting)
    comp.tokens_per_step, comp.lookahead_tokens   StepCost's speculative factor, KV slots per round
    comp.adds_prefill_ops(), comp.adds_decode_ops()   per-step extra cost: whether StepCost must ask for extra ops
  and the engine hooks, filled from each technique's declared kv_after_prefill / admission_cache /
  decode_step_policy (TechniqueConfig, base.py), the identity (Composition.identity) answering "nothing":
    comp.kv_policy()                              KV after prefill: KVBudgetPolicy.kept(...) when a sequence starts
                                                  decoding (LlmInstance.kv_after_prefill), the rolling cap (DecodeSet)
    comp.admission_cache()                        ReuseConfig: engine.reuse.ReuseTracker builds its caches
    comp.reserved_weight_bytes()                  bytes next to the LLM's weights (draft model, drafting heads)
    comp.extra_kv_bytes_per_token()               a draft model's KV per text token, sized into each KV block
What only the analytic estimate calls (lvlmsim.estimate.price_stages / request_memory, the Composition being its
Pipeline): tokenize_image / tokenize_video, prefill_ops, decode_view, decode_step_ops, encode_miss_rate,
visual_kv_hit_rate, held_kv_tokens and extra_memory_bytes. The engine never samples accepted drafts: speculative
decoding is a fluid model there (see lvlmsim.engine.api.simulate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lvlmsim.cost.memory import check_ep, check_tp, sequence_kv_bytes
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import encode_ops, llm_ops
from lvlmsim.ops.op import GraphConfig, Op, SeqWork, default_graph_config
from lvlmsim.ops.tokenization import ImageTokenization, tokenize_image, tokenize_video
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.inputs import number
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import CLAIMS, TechniqueConfig, load_techniques
from lvlmsim.techniques.kv_budget import KVBudgetPolicy
from lvlmsim.techniques.reuse import ReuseConfig
from lvlmsim.techniques.speculative import DecodeStepPolicy
from lvlmsim.techniques.tome import tome_encode_ops


def check_conflicts(techs: Sequence[TechniqueConfig]) -> None:
    """SpecError when two techniques claim the same part of the pipeline."""
    owner: dict[str, TechniqueConfig] = {}
    for t in techs:
        for key in t.claims():
            if key in owner:
                other = owner[key]
                what = CLAIMS.get(key) or (f"the weights of the {key.split(':', 1)[1]} module"
                                           if key.startswith("weight_quant:") else key)
                raise SpecError(f"techniques: '{other.label()}' and '{t.label()}' both set {what}; they cannot be "
                                "composed, keep one")
            owner[key] = t


def canonical(techs: Iterable[TechniqueConfig]) -> tuple[TechniqueConfig, ...]:
    return tuple(sorted(techs, key=lambda t: (t.order, t.kind, t.model_dump_json())))


@dataclass
class Composition:
    """The pipeline as the techniques leave it. See the module docstring for what the engine calls."""

    base_model: ModelSpec
    model: ModelSpec
    cfg: GraphConfig
    techniques: tuple[TechniqueConfig, ...]
    decode_policy: DecodeStepPolicy
    kv_budget: KVBudgetPolicy | None = None
    reuse: ReuseConfig | None = None
    vit_merge_r: int = 0
    notes: list[str] = field(default_factory=list)

    # --------------------------------------------------------------------------------------------------------
    # tokens

    def transform_tokenization(self, tok: ImageTokenization) -> ImageTokenization:
        for t in self.techniques:
            tok = t.transform_tokenization(tok, self.model)
        return tok

    def tokenize_image(self, width: int, height: int) -> ImageTokenization:
        return self.transform_tokenization(tokenize_image(self.model, width, height))

    def tokenize_video(self, duration_s: float, **kwargs: Any) -> ImageTokenization:
        return self.transform_tokenization(tokenize_video(self.model, duration_s, **kwargs))

    # --------------------------------------------------------------------------------------------------------
    # ops

    def transform_ops(self, ops: Sequence[Op]) -> list[Op]:
        out = list(ops)
        for t in self.techniques:
            out = t.transform_ops(out, self.model, self.cfg)
        return out

    def encode_ops(self, toks: Sequence[ImageTokenization], batch: int = 1) -> list[Op]:
        """Encoder + projector ops for `batch` copies of these tokenizations, with ToMe and selection ops."""
        vit = tuple(L for t in toks for L in t.vit_seq_lens) * batch
        if not vit:
            return []
        proj_in = sum(t.projector_in_tokens for t in toks) * batch
        llm = sum(t.llm_tokens for t in toks) * batch
        if self.vit_merge_r:
            ops = list(tome_encode_ops(self.model, vit, self.vit_merge_r, self.cfg, proj_in, llm))
        else:
            ops = list(encode_ops(self.model, vit, proj_in, llm, self.cfg))
        for t in self.techniques:
            ops.extend(t.encode_extra_ops(self.model, self.cfg, toks, batch))
        return self.transform_ops(ops)

    def prefill_extra_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        extra: list[Op] = []
        for t in self.techniques:
            extra.extend(t.prefill_extra_ops(self.model, self.cfg, seqs, past_visual))
        return self.transform_ops(extra) + self.decode_policy.prefill_extra_ops(seqs, past_visual)

    def prefill_parts(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> tuple[list[Op], list[Op]]:
        """(the target's prefill pass, after every technique's transform; what the techniques add to it)."""
        base = self.transform_ops(llm_ops(self.model, tuple(seqs), "prefill", self.cfg, tuple(past_visual)))
        return base, self.prefill_extra_ops(seqs, past_visual)

    def prefill_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        """One prefill pass (or chunk) of the target, plus whatever the techniques add to it."""
        base, extra = self.prefill_parts(seqs, past_visual)
        return base + extra

    def decode_view(self, seq: SeqWork, prompt_tokens: int, visual_tokens: int) -> tuple[SeqWork, int]:
        """(SeqWork, past visual tokens) a decode step of this sequence really computes, after any KV budget."""
        if self.kv_budget is None:
            return seq, visual_tokens
        return self.kv_budget.decode_view(seq, prompt_tokens, visual_tokens)

    def decode_step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        """(op, weight) pairs of one decode step of this batch (one speculative round when speculating)."""
        pairs = self.decode_policy.step_ops(seqs, past_visual)
        extra: list[Op] = []
        for t in self.techniques:
            extra.extend(t.decode_extra_ops(self.model, self.cfg, seqs))
        return pairs + [(op, 1.0) for op in self.transform_ops(extra)]

    def decode_graph_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        """The target's plain decode step (ops transformed): the step a runtime issues as its CUDA graph / launch
        queue, as the engine's StepCost prices it (drafting and technique extras come on top at their GPU time)."""
        return self.decode_policy.target_step_ops(seqs, past_visual)

    def decode_step_time_s(self, cm: CostModel, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> float:
        return sum(cm.cost(op).total_time_s * w for op, w in self.decode_step_ops(seqs, past_visual))

    @classmethod
    def identity(cls, model: ModelSpec, cfg: GraphConfig) -> Composition:
        """No technique: the pipeline as the model and `cfg` define it (the engine's default composition)."""
        return cls(base_model=model, model=model, cfg=cfg, techniques=(), decode_policy=DecodeStepPolicy(model, cfg))

    # --------------------------------------------------------------------------------------------------------
    # engine hooks: everything lvlmsim.engine asks of the techniques (filled by compose() from each technique's
    # kv_after_prefill / admission_cache / decode_step_policy; the identity answers "nothing")

    def kv_policy(self) -> KVBudgetPolicy | None:
        """KV after prefill: what a sequence keeps when it starts decoding (None: all of it)."""
        return self.kv_budget

    def admission_cache(self) -> ReuseConfig | None:
        """The encoder/image-KV cache consulted at admission (None: no reuse)."""
        return self.reuse

    def reserved_weight_bytes(self) -> float:
        """Device bytes held next to the LLM's weights on every device (a draft model, drafting heads)."""
        return self.decode_policy.extra_weight_bytes()

    def extra_kv_bytes_per_token(self) -> float:
        """KV bytes per (text) token held besides the target's (a draft model's cache)."""
        return self.decode_policy.extra_kv_bytes(1.0, 0.0)

    @property
    def lookahead_tokens(self) -> int:
        """KV slots a decoding sequence reserves per step (gamma + 1 under speculative decoding, else 1)."""
        return self.decode_policy.lookahead_tokens

    def adds_prefill_ops(self) -> bool:
        """Per-step extra cost in prefill: a technique's own ops (a selection pass) or the draft model's prefill."""
        base = TechniqueConfig.prefill_extra_ops
        return (any(type(t).prefill_extra_ops is not base for t in self.techniques)
                or self.decode_policy.adds_prefill_ops())

    def adds_decode_ops(self) -> bool:
        """Per-step extra cost in decode: a technique's own ops every step (e.g. H2O's scoring pass)."""
        base = TechniqueConfig.decode_extra_ops
        return any(type(t).decode_extra_ops is not base for t in self.techniques)

    @property
    def tokens_per_step(self) -> float:
        return self.decode_policy.tokens_per_step

    def encode_miss_rate(self) -> float:
        """Fraction of requests whose images are encoded (the rest hit an encoder cache's expected hit rate)."""
        return 1.0 - self.reuse.hit_rate if self.reuse is not None and self.reuse.caches_encoder() else 1.0

    def visual_kv_hit_rate(self) -> float:
        """Fraction of requests whose image KV is cached, so prefill computes only their text."""
        return self.reuse.hit_rate if self.reuse is not None and self.reuse.caches_kv() else 0.0

    # --------------------------------------------------------------------------------------------------------
    # memory and reports

    def held_kv_tokens(self, prompt_tokens: int, output_tokens: int, in_seq_visual: int, visual: int,
                       cross: bool) -> tuple[int, int]:
        """(text, visual) tokens whose KV a sequence holds at its peak: under a KV budget the larger of what is kept
        at the end and the whole prompt prefill briefly holds."""
        if self.kv_budget is None or cross:
            return prompt_tokens + output_tokens, visual
        kept, kept_vis = self.kv_budget.kept(prompt_tokens + in_seq_visual, in_seq_visual, output_tokens)
        return max((kept - kept_vis, kept_vis), (prompt_tokens, in_seq_visual),
                   key=lambda tv: sequence_kv_bytes(self.model, self.cfg, tv[0], tv[1]))

    def extra_memory_bytes(self, toks: list[ImageTokenization], text_tokens: float, visual_tokens: float,
                           batch: int) -> float:
        """Device bytes besides the target's weights and KV: draft weights + draft KV per sequence + reuse caches."""
        extra = self.decode_policy.extra_weight_bytes()
        extra += batch * self.decode_policy.extra_kv_bytes(text_tokens, visual_tokens)
        if self.reuse is not None:
            extra += self.reuse.held_bytes(self.model, self.cfg, toks)
        return extra

    def accuracy(self) -> list[dict[str, Any]]:
        """Cited accuracy figures, as given (lvlmsim never invents them)."""
        return [{"technique": t.label(), "accuracy_delta": t.accuracy_delta, "accuracy_source": t.accuracy_source}
                for t in self.techniques]

    def describe(self) -> list[dict[str, Any]]:
        return [{"kind": t.kind, "label": t.label(), "params": t.params(), "stage": t.stage, "acts_on": t.acts_on,
                 "citation": t.citation, "accuracy_delta": t.accuracy_delta, "accuracy_source": t.accuracy_source}
                for t in self.techniques]


def _collect_engine_hooks(comp: Composition, t: TechniqueConfig, transform) -> None:
    """Take what technique `t` declares for the engine (claims() already keeps two techniques off one hook)."""
    policy = t.decode_step_policy(comp.model, comp.cfg, transform)
    if policy is not None:
        comp.decode_policy = policy
    kv = t.kv_after_prefill()
    if kv is not None:
        comp.kv_budget = kv
    cache = t.admission_cache()
    if cache is not None:
        comp.reuse = cache


def compose(
    model: ModelSpec, hw: HardwareSpec, techniques: Iterable[TechniqueConfig | str | dict[str, Any]] = (), *,
    tp: int = 1, ep: int = 1, moe_skew: float = 0.0,
) -> Composition:
    """Validate, check for conflicts, and apply techniques in canonical order.

    The graph config starts from the model as it ships under `tp`, `ep` (expert parallelism inside the tp group of
    a MoE model) and `moe_skew` (the router's power-law exponent), exactly as without techniques, so every
    technique acts on the expert-parallel MoE graph: its all-to-all rows, the experts its tokens touch, the
    experts' weights in its dtype."""
    techs = load_techniques(techniques)
    check_conflicts(techs)
    techs_c = canonical(techs)
    ep = number(ep, "ep", lo=1, integer=True)
    moe_skew = number(moe_skew, "moe_skew (router power-law exponent)", lo=0, hi=4)
    check_tp(model, tp)
    check_ep(model, tp, ep)
    for t in techs_c:
        t.check(model, hw, tp)
    m = model
    for t in techs_c:
        m = t.transform_model(m)
    cfg = default_graph_config(m, tp, ep, moe_skew)
    for t in techs_c:
        cfg = t.transform_config(cfg, m)
    comp = Composition(base_model=model, model=m, cfg=cfg, techniques=techs_c,
                       decode_policy=DecodeStepPolicy(m, cfg))
    transform = comp.transform_ops
    comp.decode_policy = DecodeStepPolicy(m, cfg, transform)
    notes: list[str] = []
    for t in techs_c:
        notes.extend(t.notes(model))
        comp.vit_merge_r = comp.vit_merge_r or t.vit_tokens_merged_per_layer()
        _collect_engine_hooks(comp, t, transform)
        if t.accuracy_delta is not None:
            notes.append(f"{t.kind}: accuracy {t.accuracy_delta:+g} points (source: {t.accuracy_source})")
        else:
            notes.append(f"{t.kind}: no accuracy figure given (lvlmsim does not estimate accuracy)")
    comp.notes = notes
    return comp
