"""Resolution caps: fewer pixels, tiles or frames per input, by rewriting a copy of the model's tokenization policy."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_MODEL, TechniqueConfig, register


@register
class ResolutionCapConfig(TechniqueConfig):
    """Cap the input resolution a model's preprocessor uses (the knob every serving stack exposes: Qwen
    `max_pixels`, InternVL `max_num`, LLaVA-NeXT grid pinpoints, vLLM `mm_processor_kwargs`, video `max_frames`).

    max_pixels: dynamic-resolution models resize to at most this many pixels; tiled models get at most
    max_pixels / tile_area tiles. max_tiles: at most this many tiles/crops/slices (InternVL's thumbnail and
    LLaVA-NeXT's base view come on top, as in the reference code). max_frames: at most this many video frames.
    A fixed-resolution model (LLaVA-1.5) has nothing to cap: the estimate says so in a note.
    """

    kind: Literal["resolution_cap"] = "resolution_cap"
    max_pixels: PositiveInt | None = Field(None, description="pixels per image (or per video frame)")
    max_tiles: PositiveInt | None = Field(None, description="tiles/crops/slices per image")
    max_frames: PositiveInt | None = Field(None, description="frames per video")

    citation: ClassVar[str] = ("survey: Efficient Inference for LVLMs: Bottlenecks, Techniques, and Prospects (2026), "
                               "resolution/token budget; Qwen2-VL min/max_pixels (arXiv 2409.12191); InternVL 1.5 "
                               "dynamic tiles (arXiv 2404.16821)")
    stage: ClassVar[str] = "encode + every LLM stage (fewer tokens)"
    acts_on: ClassVar[str] = "tokenization policy (a copy of the model spec)"
    order: ClassVar[int] = ORDER_MODEL

    @model_validator(mode="after")
    def _something(self) -> ResolutionCapConfig:
        if self.max_pixels is None and self.max_tiles is None and self.max_frames is None:
            raise ValueError("max_pixels/max_tiles/max_frames: give at least one cap")
        return self

    def _tile_cap(self, tile_px: int) -> int | None:
        caps = [c for c in (self.max_tiles, self.max_pixels // (tile_px * tile_px) if self.max_pixels else None)
                if c is not None]
        return max(1, min(caps)) if caps else None

    def _capped_policy(self, model: ModelSpec) -> dict[str, Any]:
        pol = model.tokenization
        tok = pol.model_dump()
        kind = pol.kind
        if kind == "dynamic" and self.max_pixels:
            tok["max_pixels"] = min(tok["max_pixels"], self.max_pixels)
            tok["min_pixels"] = min(tok["min_pixels"], tok["max_pixels"])
        elif kind == "tiles":
            cap = self._tile_cap(tok["tile_size"])
            if cap:
                tok["max_num"] = min(tok["max_num"], cap)
                tok["min_num"] = min(tok["min_num"], tok["max_num"])
        elif kind == "anyres":
            crop = tok["crop_size"]
            cap = self._tile_cap(crop)
            if cap:
                keep = [p for p in tok["grid_pinpoints"] if (p[0] // crop) * (p[1] // crop) <= cap]
                tok["grid_pinpoints"] = keep or [min(tok["grid_pinpoints"], key=lambda p: p[0] * p[1])]
        elif kind == "mllama_tiles":
            cap = self._tile_cap(tok["tile_size"])
            if cap:
                tok["max_num_tiles"] = min(tok["max_num_tiles"], cap)
        elif kind == "hd_crops":
            cap = self._tile_cap(tok["crop_size"])
            if cap:
                tok["num_crops"] = min(tok["num_crops"], cap)
        elif kind == "slices":
            cap = self._tile_cap(tok["slice_size"])
            if cap:
                tok["max_slice_nums"] = min(tok["max_slice_nums"], cap)
        return tok

    def transform_model(self, model: ModelSpec) -> ModelSpec:
        data = model.model_dump()
        data["tokenization"] = self._capped_policy(model)
        vid = data.get("video")
        if vid is not None:
            if self.max_frames:
                vid["max_frames"] = min(vid["max_frames"], self.max_frames)
                vid["min_frames"] = min(vid["min_frames"], vid["max_frames"])
            if self.max_pixels and model.tokenization.kind == "dynamic":
                vid["max_pixels"] = min(vid.get("max_pixels") or self.max_pixels, self.max_pixels)
                if vid.get("min_pixels"):
                    vid["min_pixels"] = min(vid["min_pixels"], vid["max_pixels"])
            if self.max_tiles and vid.get("max_tiles_per_frame"):
                vid["max_tiles_per_frame"] = min(vid["max_tiles_per_frame"], self.max_tiles)
        if data == model.model_dump():
            return model
        return ModelSpec.model_validate(data)

    def notes(self, model: ModelSpec) -> list[str]:
        capped = self.transform_model(model)
        if capped is model:
            return [f"resolution_cap: no effect on '{model.id}' ({model.tokenization.kind} tokenization"
                    + (", no video policy" if self.max_frames and model.video is None else "") + ")"]
        return [f"resolution_cap: tokenization of '{model.id}' capped ({self.label()})"]
