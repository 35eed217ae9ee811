"""The unit of cost: one operator (one kernel) of one layer, repeated `count` times.

An Op knows shapes, FLOPs and bytes; it knows nothing about hardware. The cost model turns it into seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lvlmsim.specs.model import ModelSpec

# Op kinds, which are also the families the calibration profile fits efficiencies for.
GEMM = "gemm"
CONV = "conv"  # patch embedding: a GEMM in disguise, benchmarked on its own
ATTN_PREFILL = "attn_prefill"  # causal, queries = new tokens, keys = past + new
ATTN_DECODE = "attn_decode"  # one query per sequence against its KV
ATTN_ENCODER = "attn_encoder"  # non-causal (ViT, resampler, cross-attention)
ELEMENTWISE = "elementwise"  # norms, rotary, activations, residual adds, embedding gathers
ALLREDUCE = "allreduce"  # tensor-parallel reduction over the intra-node link
MOE_GEMM = "moe_gemm"  # grouped expert GEMM of a mixture-of-experts layer (weights of the experts touched)
ALLTOALL = "alltoall"  # expert-parallel token exchange: (n-1)/n of the message crosses the link, once
# Multi-head latent attention cores (DeepSeek MLA): other kernels (FlashMLA, FlashInfer MLA) over another layout
# (one shared latent of kv_lora + rope per token), so they are their own families rather than borrowing GQA fits.
ATTN_MLA_PREFILL = "attn_mla_prefill"  # MHA form over up-projected K/V
ATTN_MLA_DECODE = "attn_mla_decode"  # absorbed form over the cached latent
KINDS = (GEMM, CONV, ATTN_PREFILL, ATTN_DECODE, ATTN_ENCODER, ELEMENTWISE, ALLREDUCE, MOE_GEMM, ALLTOALL,
         ATTN_MLA_PREFILL, ATTN_MLA_DECODE)
ATTN_KINDS = (ATTN_PREFILL, ATTN_DECODE, ATTN_ENCODER, ATTN_MLA_PREFILL, ATTN_MLA_DECODE)

STAGES = ("encode", "prefill", "decode")
MODULES = ("vision", "projector", "llm")


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel of one layer. Totals are `flops * count`, `bytes * count`.

    `shape` is what calibration keys on: gemm (m, n, k); attention (batch, q_per_seq, kv_per_seq, heads,
    kv_heads, head_dim); elementwise (elements,); allreduce and alltoall (bytes, devices); moe_gemm
    (routed token-expert pairs on this device, n, k, experts touched on this device, experts held on this device).
    `visual_flops_share` is the fraction of this op's FLOPs caused by visual tokens (for the "why" report).
    """

    name: str
    kind: str
    stage: str
    module: str
    flops: float
    bytes_read: float
    bytes_written: float
    dtype: str
    shape: tuple = ()
    count: int = 1
    layer_range: tuple[int, int] = (0, 0)
    visual_flops_share: float = 0.0
    weight_bytes: float = 0.0  # part of bytes_read that is weights (for memory/roofline notes)
    act_bytes: float = 0.0  # transient activation footprint (inputs + outputs), for the activation peak
    devices: int = 1  # for allreduce / alltoall: participants
    window_tokens: int = 0  # sliding-window self-attention: keys a query sees (0: no sliding window)

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte of device-memory traffic."""
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def total_flops(self) -> float:
        return self.flops * self.count

    @property
    def total_bytes(self) -> float:
        return self.bytes * self.count


@dataclass(frozen=True)
class SeqWork:
    """One sequence's slice of a forward pass: `new_tokens` computed now on top of `past_tokens` already in KV.

    `visual_new` of the new tokens are visual (for the visual/text split and for token pruning).
    `cross_kv_tokens` are image tokens held in cross-attention KV (Llama-3.2-Vision) for this sequence.
    `emits_token`: whether this slice ends with a sampled token (last prefill chunk, or any decode step).
    """

    new_tokens: int
    past_tokens: int = 0
    visual_new: int = 0
    cross_kv_tokens: int = 0
    emits_token: bool = True


@dataclass(frozen=True)
class GraphConfig:
    """Everything besides shapes that changes the op list: precision, kernels, parallelism, token schedule.

    Techniques act by producing a different GraphConfig; the graph itself never knows technique names.
    `visual_keep` is an in-LLM token schedule: ((from_layer, kept_fraction_of_visual_tokens), ...), 0-based,
    applied cumulatively from that layer on (FastV: ((2, 0.5),) keeps half the visual tokens from layer 2).
    `ep` is the expert-parallel degree inside the tp group (it divides tp: experts are split ep ways and each
    expert tp/ep ways). `moe_skew` is the router's power-law exponent (0 = balanced routing; see
    graph.experts_touched); `moe_routing` 'random' (independent top-k picks, the default) or 'spread' (picks dealt
    out evenly, as aiconfigurator's `balanced` MoE tables are generated).
    """

    weight_dtype: dict[str, str] = field(default_factory=lambda: {"vision": "bf16", "projector": "bf16", "llm": "bf16"})
    compute_dtype: dict[str, str] = field(
        default_factory=lambda: {"vision": "bf16", "projector": "bf16", "llm": "bf16"}
    )
    act_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    flash_attention: bool = True
    tp: int = 1
    visual_keep: tuple[tuple[int, float], ...] = ()
    dequant_flops_per_weight: dict[str, float] = field(default_factory=dict)
    ep: int = 1
    moe_skew: float = 0.0
    moe_routing: str = "random"

    def __hash__(self) -> int:  # dict fields are not hashable by default; the graph memoises on configs
        return hash(
            (
                tuple(sorted(self.weight_dtype.items())),
                tuple(sorted(self.compute_dtype.items())),
                self.act_dtype,
                self.kv_dtype,
                self.flash_attention,
                self.tp,
                self.visual_keep,
                tuple(sorted(self.dequant_flops_per_weight.items())),
                self.ep,
                self.moe_skew,
                self.moe_routing,
            )
        )


def default_graph_config(model: ModelSpec, tp: int, ep: int = 1, moe_skew: float = 0.0) -> GraphConfig:
    """The graph of `model` as it ships: every module in the model's dtype, no technique applied, `tp`-way parallel
    (with `ep`-way expert parallelism inside the tp group for a MoE model)."""
    dt = model.dtype
    mods = {"vision": dt, "projector": dt, "llm": dt}
    return GraphConfig(weight_dtype=dict(mods), compute_dtype=dict(mods), act_dtype=dt if dt != "fp32" else "fp32",
                       kv_dtype=dt, tp=tp, ep=ep, moe_skew=moe_skew)
