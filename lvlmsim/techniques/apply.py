"""The analytic estimate with techniques: estimate_request itself, its three stages and memory built through the
composition (a Pipeline, see lvlmsim.estimate.price_stages) instead of the identity PlainPipeline.

There is one implementation of the stages, so with no technique acting on a stage that stage's ops are exactly
estimate_request's (tested), and a technique's effect is the difference it makes and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lvlmsim.cost.profile import EfficiencyProfile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import SpecError
from lvlmsim.estimate import (
    Estimate,
    estimate_request,
    video_kwargs,
)
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
            "visual_keep": [list(p) for p in self.graph_config.visual_keep], "ep": self.graph_config.ep,
            "moe_skew": self.graph_config.moe_skew,
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


def apply_to_estimate(
    model: ModelSpec, hw: HardwareSpec, techniques: Iterable[TechniqueConfig | str | dict[str, Any]], *,
    images: int = 1, image_size: tuple[int, int] | Sequence = (336, 336), prompt_tokens: int = 64,
    output_tokens: int = 128, batch: int = 1, tp: int = 1, video_s: float = 0.0,
    profile: EfficiencyProfile | None = None, cost_model: CostModel | None = None,
    video_size: tuple[int, int] | None = None, video_fps: float | None = None, ep: int = 1, moe_skew: float = 0.0,
    step_overhead_s: float = 0.0, piecewise=None,
) -> TechniqueEstimate:
    """Cost of `batch` identical requests with these techniques applied, plus their notes and accuracy figures.

    Every argument estimate_request takes means the same here: `ep`/`moe_skew` (expert parallelism and routing
    skew of a MoE model; the techniques act on that graph), `step_overhead_s` (the runtime's per-step host time)
    and `piecewise` (a piecewise CUDA-graph runtime's dispatch, lvlmsim.api._piecewise), so that a technique's
    effect is the difference it makes and nothing else."""
    comp = compose(model, hw, techniques, tp=tp, ep=ep, moe_skew=moe_skew)
    m, cfg = comp.model, comp.cfg
    cm = cost_model or CostModel(hw, profile)
    toks = request_tokenizations(comp, images, image_size, video_s, video_kwargs(video_size, video_fps))
    # the same three stages as without techniques, built through the composition (its ops, weights and memory)
    base = estimate_request(m, hw, images=images, image_size=image_size, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, batch=batch, tp=tp, profile=profile, video_s=video_s,
                            cfg=cfg, cost_model=cm, tokenizations=toks, pipeline=comp, ep=ep, moe_skew=moe_skew,
                            step_overhead_s=step_overhead_s, piecewise=piecewise)
    mem = base.memory
    notes = [n for n in base.notes if n != mem.verdict] + comp.notes
    if not mem.fits:
        notes.append(mem.verdict)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Estimate)}
    fields["notes"] = notes
    reuse = comp.reuse
    return TechniqueEstimate(
        **fields, techniques=comp.describe(), accuracy=comp.accuracy(), tokens_per_decode_step=comp.tokens_per_step,
        reuse_hit_rate=reuse.hit_rate if reuse is not None else None,
    )
