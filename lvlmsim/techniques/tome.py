"""ToMe: merge r tokens per ViT layer, so each encoder layer is cheaper and fewer tokens leave the encoder.

The graph's `encode_ops` prices a ViT whose token count is the same in every layer. Without changing it, ToMe is
built by calling `encode_ops` on a one-layer copy of the encoder once per layer: the attention half of layer i from a
build with the tokens entering layer i, the MLP half from a build with the tokens after that layer's merge (ToMe
merges between attention and MLP). Patch embedding comes from the first build, the projector from one on the final
counts; the bipartite matching and the merge are added as elementwise ops.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Literal

from pydantic import Field

from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import elementwise, encode_ops
from lvlmsim.ops.op import GraphConfig, Op
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_VIT, TechniqueConfig, register
from lvlmsim.techniques.tokens import as_transformed

# ops of one ViT layer that belong to its attention half / MLP half; norms, residual adds and TP all-reduces
# appear once in each half (encode_ops counts them 2 per layer)
_ATTN_HALF = ("vision.qkv_proj", "vision.attention", "vision.o_proj")
_MLP_HALF = ("vision.mlp_up", "vision.mlp_act", "vision.mlp_down")
_BOTH_HALVES = ("vision.norm", "vision.residual_add", "vision.allreduce")


def tome_schedule(seq_len: int, r: int, layers: int, protected: int) -> list[tuple[int, int]]:
    """(tokens entering, tokens after merge) per layer for one sequence.

    ToMe's bipartite matching caps the merge at half the unprotected tokens: r_i = min(r, (n - protected) // 2)
    (tome/merge.py, bipartite_soft_matching). CLS is protected.
    """
    out = []
    n = seq_len
    for _ in range(layers):
        merged = max(0, min(r, (n - protected) // 2))
        out.append((n, n - merged))
        n -= merged
    return out


@functools.lru_cache(maxsize=64)
def one_layer_encoder(model: ModelSpec) -> ModelSpec:
    """A copy of `model` whose ViT has one layer (and no window attention): the unit of the per-layer build."""
    data = model.model_dump()
    data["vision"].update(num_layers=1, layers_used=None, window=None)
    return ModelSpec.model_validate(data)


@functools.lru_cache(maxsize=1024)
def tome_encode_ops(
    model: ModelSpec, vit_seq_lens: tuple[int, ...], r: int, cfg: GraphConfig, projector_in_tokens: int,
    llm_tokens: int,
) -> tuple[Op, ...]:
    """Encode ops of a ToMe ViT: per-layer token counts, plus the matching/merge ops and the projector.

    `projector_in_tokens` / `llm_tokens` are the (already reduced) counts the projector sees. With r = 0 the ops
    add up to exactly what `encode_ops` gives (tested).
    """
    if not vit_seq_lens:
        return ()
    v = model.vision
    one = one_layer_encoder(model)
    prot = int(v.cls_token)
    L = v.effective_layers
    scheds = [tome_schedule(n, r, L, prot) for n in vit_seq_lens]
    act = DTYPE_BYTES[cfg.act_dtype]
    heads = max(1, v.num_heads // cfg.tp)
    ops: list[Op] = []
    first = encode_ops(one, vit_seq_lens, sum(vit_seq_lens), sum(vit_seq_lens), cfg)
    ops.extend(op for op in first if op.name == "vision.patch_embed")
    for i in range(L):
        lens_in = tuple(s[i][0] for s in scheds)
        lens_out = tuple(s[i][1] for s in scheds)
        rng = (i, i)
        attn = encode_ops(one, lens_in, sum(lens_in), sum(lens_in), cfg)
        mlp = encode_ops(one, lens_out, sum(lens_out), sum(lens_out), cfg)
        for op in attn:
            if op.name in _ATTN_HALF or op.name in _BOTH_HALVES:
                ops.append(dataclasses.replace(op, count=1, layer_range=rng))
        if lens_in != lens_out:
            # bipartite soft matching on the keys averaged over heads (head_dim features): set A (alternate tokens)
            # against set B, 2*head_dim FLOPs per pair + the argmax; then a size-weighted scatter-reduce of merged
            # tokens over the hidden size
            pairs = float(sum(((n - prot) // 2) * ((n - prot) - (n - prot) // 2) for n in lens_in))
            ops.append(elementwise("vision.tome_match", "encode", "vision", pairs, cfg, 2.0 * v.head_dim + 1.0,
                                   reads=0, writes=1, extra_read_bytes=sum(lens_in) * heads * v.head_dim * act,
                                   layer_range=rng, visual_share=1.0))
            ops.append(elementwise("vision.tome_merge", "encode", "vision", float(sum(lens_in)) * v.hidden_size,
                                   cfg, 2.0, reads=1, writes=sum(lens_out) / sum(lens_in), layer_range=rng,
                                   visual_share=1.0))
        for op in mlp:
            if op.name in _MLP_HALF or op.name in _BOTH_HALVES:
                ops.append(dataclasses.replace(op, count=1, layer_range=rng))
    final = tuple(s[-1][1] for s in scheds) if L else vit_seq_lens
    tail = encode_ops(model, final, projector_in_tokens, llm_tokens, cfg)
    ops.extend(op for op in tail if op.module != "vision")
    return tuple(ops)


@register
class ToMeConfig(TechniqueConfig):
    """ToMe (Bolya et al., ICLR 2023, arXiv 2210.09461): bipartite soft matching merges r tokens in every ViT layer.

    ViT-L r=8: 2x throughput at 0.2-0.3% accuracy drop (paper). Modelled for encoders with a plain token sequence and
    a 1:1 projector (LLaVA-1.5/NeXT, MiniCPM-V); spatial-merge projectors (Qwen2-VL, InternVL), windowed ViTs and
    cross-attention models need a token grid ToMe destroys, and are refused.
    """

    kind: Literal["tome"] = "tome"
    r: int = Field(8, ge=0, le=512, description="tokens merged per ViT layer")

    citation: ClassVar[str] = "Bolya et al., Token Merging: Your ViT but Faster, ICLR 2023 (arXiv 2210.09461)"
    stage: ClassVar[str] = "encode (+ LLM stages through fewer visual tokens)"
    acts_on: ClassVar[str] = "per-layer ViT token counts (layer-split encoder) + tokenization"
    order: ClassVar[int] = ORDER_VIT

    def check(self, model: ModelSpec, hw: HardwareSpec, tp: int) -> None:
        why = None
        if model.projector.merge_factor > 1:
            why = f"its projector merges {model.projector.merge_factor} neighbouring patches (a spatial grid)"
        elif model.vision.window is not None:
            why = "its ViT uses window attention over a patch grid"
        elif model.image_tokens_in_kv_of_cross_attention:
            why = "its image tokens feed cross-attention layers tile by tile"
        elif model.vision.temporal_patch_size > 1:
            why = "its ViT patches span several frames"
        if why:
            raise SpecError(f"technique 'tome': r: token merging is not modelled for '{model.id}': {why}")

    def vit_tokens_merged_per_layer(self) -> int:
        return self.r

    def transform_tokenization(self, tok: ImageTokenization, model: ModelSpec) -> ImageTokenization:
        v = model.vision
        prot = int(v.cls_token)
        out = tuple(tome_schedule(n, self.r, v.effective_layers, prot)[-1][1] if v.effective_layers else n
                    for n in tok.vit_seq_lens)
        removed = sum(tok.vit_seq_lens) - sum(out)
        proj_in = max(0, tok.projector_in_tokens - removed)
        llm = tok.llm_tokens if model.projector.fixed_output_tokens else max(0, tok.llm_tokens - removed)
        return dataclasses.replace(
            as_transformed(tok), vit_out_seq_lens=out, projector_in_tokens=proj_in, llm_tokens=llm,
            detail=f"{tok.detail}; ToMe r={self.r}: {sum(tok.vit_seq_lens)} -> {sum(out)} ViT tokens",
        )

    def notes(self, model: ModelSpec) -> list[str]:
        return [f"tome: {self.r} tokens merged per ViT layer (encoder priced layer by layer)"]
