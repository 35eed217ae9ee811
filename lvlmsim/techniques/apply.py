"""The analytic estimate with techniques: estimate_request's pipeline, each stage rebuilt through the composition.

With no technique acting on a stage, that stage's ops are exactly estimate_request's (tested), so a technique's
effect is the difference it makes and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lvlmsim.cost.memory import memory_report, sequence_kv_bytes
from lvlmsim.cost.profile import EfficiencyProfile
from lvlmsim.cost.roofline import CostModel, OpCost
from lvlmsim.errors import SpecError
from lvlmsim.estimate import (
    Estimate,
    decode_contexts,
    estimate_request,
    merge_repeated_ops,
    stage_result,
    video_kwargs,
)
from lvlmsim.ops.op import Op, SeqWork
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import TechniqueConfig
from lvlmsim.techniques.compose import Composition, compose


@dataclass
class TechniqueEstimate(Estimate):
    """An Estimate plus what the techniques were, what they changed, and their cited accuracy figures."""

    techniques: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    tokens_per_decode_step: float = 1.0
    reuse_hit_rate: float | None = None

    def to_dict(self) -> dict:
        doc = super().to_dict()
        doc["techniques"] = self.techniques
        doc["accuracy"] = self.accuracy
        doc["tokens_per_decode_step"] = self.tokens_per_decode_step
        if self.reuse_hit_rate is not None:
            doc["reuse_hit_rate"] = self.reuse_hit_rate
        doc["graph_config"] = {
            "weight_dtype": self.graph_config.weight_dtype, "compute_dtype": self.graph_config.compute_dtype,
            "act_dtype": self.graph_config.act_dtype, "kv_dtype": self.graph_config.kv_dtype,
            "flash_attention": self.graph_config.flash_attention, "tp": self.graph_config.tp,
            "visual_keep": [list(p) for p in self.graph_config.visual_keep],
            "dequant_flops_per_weight": self.graph_config.dequant_flops_per_weight,
        }
        return doc


def request_tokenizations(
    comp: Composition, images: int, image_size: tuple[int, int] | Sequence, video_s: float, video: dict | None = None
) -> list[ImageTokenization]:
    """The request's images (and video) tokenized through the composition, sizes read as estimate_request does."""
    if not isinstance(images, int) or isinstance(images, bool) or images < 0:
        raise SpecError(f"images: must be an integer >= 0, got {images!r}")
    if video_s < 0:
        raise SpecError(f"video_s: must be >= 0 seconds, got {video_s}")
    sizes = [tuple(image_size)] * images if image_size and isinstance(image_size[0], int) else list(image_size)
    if len(sizes) != images:
        raise SpecError(f"image_size: got {len(sizes)} sizes for {images} images")
    toks = [comp.tokenize_image(int(w), int(h)) for w, h in sizes]
    if video_s > 0:
        toks.append(comp.tokenize_video(video_s, **(video or {})))
    return toks


def _weighted(cm: CostModel, items: Iterable[tuple[Op, float]]) -> list[tuple[OpCost, float]]:
    return [(cm.cost(op), w) for op, w in items if w]


def apply_to_estimate(
    model: ModelSpec, hw: HardwareSpec, techniques: Iterable[TechniqueConfig | str | dict[str, Any]], *,
    images: int = 1, image_size: tuple[int, int] | Sequence = (336, 336), prompt_tokens: int = 64,
    output_tokens: int = 128, batch: int = 1, tp: int = 1, video_s: float = 0.0,
    profile: EfficiencyProfile | None = None, cost_model: CostModel | None = None,
    video_size: tuple[int, int] | None = None, video_fps: float | None = None,
) -> TechniqueEstimate:
    """Cost of `batch` identical requests with these techniques applied, plus their notes and accuracy figures."""
    comp = compose(model, hw, techniques, tp=tp)
    m, cfg = comp.model, comp.cfg
    cm = cost_model or CostModel(hw, profile)
    toks = request_tokenizations(comp, images, image_size, video_s, video_kwargs(video_size, video_fps))
    # validation of every other argument, tokenization-independent totals and the no-technique stage ops
    base = estimate_request(m, hw, images=images, image_size=image_size, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, batch=batch, tp=tp, profile=profile, video_s=video_s,
                            cfg=cfg, cost_model=cm, tokenizations=toks)
    reuse = comp.reuse
    h = reuse.hit_rate if reuse is not None else 0.0

    # encode: skipped on an encoder-cache hit
    enc_ops = comp.encode_ops(toks, batch)
    enc_w = 1.0 - h if reuse is not None and reuse.caches_encoder() else 1.0
    encode = stage_result("encode", merge_repeated_ops(_weighted(cm, ((op, enc_w) for op in enc_ops))))

    # prefill: on an image-KV hit only the text is computed, on top of the cached image KV
    cross = base.image_tokens_in_cross_attention
    visual = base.visual_tokens
    in_seq_visual = 0 if cross else visual
    cross_kv = visual if cross else 0
    S = prompt_tokens + in_seq_visual
    pre = SeqWork(new_tokens=S, past_tokens=0, visual_new=in_seq_visual, cross_kv_tokens=cross_kv, emits_token=True)
    pre_ops = comp.prefill_ops((pre,) * batch)
    kv_hit = reuse is not None and reuse.caches_kv() and h > 0 and in_seq_visual > 0
    full_w = 1.0 - h if kv_hit else 1.0
    pre_items = [(op, full_w) for op in pre_ops]
    if kv_hit and prompt_tokens > 0:
        hit = SeqWork(new_tokens=prompt_tokens, past_tokens=in_seq_visual, visual_new=0, cross_kv_tokens=cross_kv,
                      emits_token=True)
        pre_items += [(op, h) for op in comp.prefill_ops((hit,) * batch, (in_seq_visual,) * batch)]
    prefill = stage_result("prefill", merge_repeated_ops(_weighted(cm, pre_items)))

    # decode: context after any KV budget, ops of the decode policy, `steps` tokens in steps / tokens_per_step rounds
    steps = output_tokens - 1
    per_round = comp.decode_policy.tokens_per_step
    dec_items: list[tuple[Op, float]] = []
    for ctx, weight in decode_contexts(S, steps):
        seq = SeqWork(new_tokens=1, past_tokens=ctx, visual_new=0, cross_kv_tokens=cross_kv, emits_token=True)
        seq, pv = comp.decode_view(seq, S, in_seq_visual)
        for op, w in comp.decode_step_ops((seq,) * batch, (pv,) * batch):
            dec_items.append((op, weight * w / per_round))
    decode = stage_result("decode", merge_repeated_ops(_weighted(cm, dec_items)))

    # memory: a KV budget keeps fewer tokens per sequence (but prefill briefly holds the whole prompt); drafts and
    # reuse caches hold extra bytes
    text_t, vis_t = prompt_tokens + output_tokens, visual
    if comp.kv_budget is not None and not cross:
        kept, kept_vis = comp.kv_budget.kept(S, in_seq_visual, output_tokens)
        at_end = (kept - kept_vis, kept_vis)
        at_prefill = (prompt_tokens, in_seq_visual)
        text_t, vis_t = max(at_end, at_prefill, key=lambda tv: sequence_kv_bytes(m, cfg, tv[0], tv[1]))
    extra = comp.extra_memory_bytes(toks, prompt_tokens + output_tokens, in_seq_visual, batch)
    act_ops = tuple(c.op for c in encode.ops) + tuple(c.op for c in prefill.ops)
    mem = memory_report(m, hw, cfg, text_tokens=text_t, visual_tokens=vis_t, batch=batch, activation_ops=act_ops,
                        extra_bytes=extra)

    notes = [n for n in base.notes if n != base.memory.verdict] + comp.notes
    if not mem.fits:
        notes.append(mem.verdict)
    ttft = encode.time_s + prefill.time_s
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Estimate)}
    fields.update(
        stages={"encode": encode, "prefill": prefill, "decode": decode}, ttft_s=ttft,
        tpot_s=decode.time_s / steps if steps else 0.0, e2e_s=ttft + decode.time_s, memory=mem, notes=notes,
    )
    return TechniqueEstimate(
        **fields, techniques=comp.describe(), accuracy=comp.accuracy(), tokens_per_decode_step=per_round,
        reuse_hit_rate=h if reuse is not None else None,
    )
