"""A tokenization after techniques changed it, remembering what it was changed from (the selection ops need it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.model import ModelSpec


@dataclass(frozen=True)
class TransformedTokenization(ImageTokenization):
    """An ImageTokenization whose projector input / LLM tokens a technique reduced.

    `vit_seq_lens` still counts the tokens ENTERING the ViT (what the encoder's first layer costs).
    `vit_out_seq_lens`: tokens LEAVING the ViT per sequence (incl. CLS) after in-encoder merging (ToMe); empty = same.
    `reduced_from_projector_in`: ViT output tokens a pre-LLM reduction selected from (0 = no reduction).
    """

    vit_out_seq_lens: tuple[int, ...] = ()
    reduced_from_projector_in: int = 0

    @property
    def vit_out_lens(self) -> tuple[int, ...]:
        return self.vit_out_seq_lens or self.vit_seq_lens


def as_transformed(tok: ImageTokenization) -> TransformedTokenization:
    if isinstance(tok, TransformedTokenization):
        return tok
    return TransformedTokenization(**{f.name: getattr(tok, f.name) for f in dataclasses.fields(ImageTokenization)})


def vit_out_lens(tok: ImageTokenization) -> tuple[int, ...]:
    return tok.vit_out_lens if isinstance(tok, TransformedTokenization) else tok.vit_seq_lens


def candidates_per_seq(tok: ImageTokenization, model: ModelSpec) -> tuple[int, ...]:
    """ViT output tokens per sequence a selection step chooses from (CLS excluded: it is never passed on)."""
    cls = int(model.vision.cls_token)
    return tuple(max(0, n - cls) for n in vit_out_lens(tok))


def rescale(tok: ImageTokenization, model: ModelSpec, kept_llm: int, detail: str) -> TransformedTokenization:
    """Keep `kept_llm` of the LLM tokens of `tok` by selecting among the ViT outputs (before the projector).

    The projector input shrinks by the same ratio (rounded to whole merge groups). A resampler's query count is fixed,
    so for resampler projectors only the projector input shrinks and the LLM tokens stay.
    """
    t = as_transformed(tok)
    merge = model.projector.merge_factor
    ratio = kept_llm / tok.llm_tokens if tok.llm_tokens else 1.0
    proj_in = max(merge, round(tok.projector_in_tokens * ratio / merge) * merge) if tok.projector_in_tokens else 0
    llm = tok.llm_tokens if model.projector.fixed_output_tokens else kept_llm
    return dataclasses.replace(
        t, llm_tokens=llm, projector_in_tokens=min(proj_in, tok.projector_in_tokens),
        reduced_from_projector_in=tok.projector_in_tokens, detail=f"{tok.detail}; {detail}",
    )
