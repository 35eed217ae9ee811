"""Operator graph: pure functions from shapes to lists of :class:`Op`. Every FLOP and byte formula lives here.

Conventions (per op instance, i.e. per layer):
- GEMM y[m,n] = x[m,k] @ W[k,n]: flops 2mnk; reads x (m*k*act) + W (k*n*weight); writes y (m*n*act).
- Attention with FlashAttention: flops 4*heads*head_dim*(query-key pairs) (QK^T and PV); reads Q, K, V, writes O;
  no score matrix traffic. Naive attention additionally writes and reads the score matrix S and probabilities P
  (4 passes over heads*pairs elements) and adds ~5 flops per score for the softmax.
- Causal prefill of q new tokens after p cached ones: pairs = q*p + q*(q+1)/2.
- Local attention layers (sliding window w / chunks of c, see LocalAttentionSpec): a query at position i sees
  min(i+1, w) keys (sliding) or (i mod c)+1 keys (chunked); pairs are the difference of those prefix sums, and the
  kernel reads only the keys some query of the slice can see.
- Norms, rotary, activations, residual adds, embedding gathers: memory-bound elementwise ops. A decoder layer's two
  residual adds run inside its RMSNorms as vLLM fuses them (`llm.add_norm`, see _layer_norm_ops); Gemma's sandwich
  norms and per-head q/k norms (Qwen3, Gemma 3, Llama 4, Mllama cross-attention) are kernels of their own.
- The LM head runs only on the sequences that emit a token (last token of a prefill, every decode step).
- Tensor parallelism of degree t splits heads and MLP columns by t and adds two all-reduces per layer.
- Multi-head latent attention (MLA, DeepSeek): the cache holds one latent of kv_lora + rope values per token and layer.
  Prefill runs the MHA form (up-project K/V of every key, attention with qk = nope + rope and v dims); decode runs the
  absorbed form (fold W_UK into the query, attend over the latent like MQA with head dim kv_lora + rope, fold W_UV
  into the output): 2*heads*pairs*(kv_lora + rope) + 2*heads*pairs*kv_lora flops, the latent read once per key.
- Mixture of experts (see `moe_ops`): router GEMM, dispatch, grouped expert GEMMs that read only the weights of the
  experts the step's tokens touch (`experts_touched`), shared experts, combine; expert parallelism of degree ep
  (dividing t) splits the experts ep ways and prices the token exchange as all-to-all dispatch + combine.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from lvlmsim.ops.op import (
    ALLREDUCE,
    ALLTOALL,
    ATTN_DECODE,
    ATTN_ENCODER,
    ATTN_MLA_DECODE,
    ATTN_MLA_PREFILL,
    ATTN_PREFILL,
    CONV,
    ELEMENTWISE,
    GEMM,
    MOE_GEMM,
    GraphConfig,
    Op,
    SeqWork,
)
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.model import LanguageModelSpec, LocalAttentionSpec, MlaSpec, ModelSpec, VisionEncoderSpec

NORM_FLOPS_PER_ELEM = 5.0  # mean, variance, scale: a few flops per element; memory-bound regardless
ROTARY_FLOPS_PER_ELEM = 3.0
ACT_FLOPS_PER_ELEM = 8.0  # SiLU/GELU plus the gating multiply
SOFTMAX_FLOPS_PER_SCORE = 5.0
SCORE_FLOPS_PER_DIM = 4.0  # per query-key pair and head: 2 x head_dim for Q.K^T, 2 x head_dim for P.V

MLA_UPPROJ_OP = "llm.mla.kv_b_proj"  # MLA's key/value up-projection: attention work, its m is every key read


def softmax_exps(op: Op) -> float:
    """Softmax exponentials of an attention op: one per score (head x query-key pair), which `attention` prices at
    SCORE_FLOPS_PER_DIM x head_dim FLOPs (a non-flash op's extra softmax FLOPs, ~1%, are counted in too)."""
    head_dim = op.shape[5] if len(op.shape) > 5 else 0
    return op.flops / (SCORE_FLOPS_PER_DIM * head_dim) if head_dim else 0.0


def _b(dtype: str) -> float:
    return DTYPE_BYTES[dtype]


# --------------------------------------------------------------------------------------------------------------
# primitive op builders


# Block-scale bytes per value of a quantised tensor: NVFP4 (the `fp4` dtype) stores one FP8 E4M3 scale per 16 values
# (NVIDIA, 'Introducing NVFP4 for efficient and accurate low-precision inference', developer.nvidia.com blog, 2025);
# per-tensor fp8 and per-token int8 scales are a scalar or one float per row (negligible). An MXFP4 kernel (AMD)
# stores one E8M0 scale per 32 values: 1/32 byte, which the `fp4` dtype does not tell apart.
SCALE_BYTES_PER_VALUE = {"fp4": 1.0 / 16.0}


def _qb(dtype: str) -> float:
    """Bytes per value of a (possibly block-scaled) quantised tensor: the values plus their scales."""
    return DTYPE_BYTES[dtype] + SCALE_BYTES_PER_VALUE.get(dtype, 0.0)


def gemm(
    name: str, stage: str, module: str, m: int, n: int, k: int, cfg: GraphConfig, count: int = 1,
    layer_range: tuple[int, int] = (0, 0), visual_share: float = 0.0,
) -> Op:
    """y[m,n] = x[m,k] W[k,n]; weight bytes use the module's weight dtype (quantized weights read fewer bytes, plus
    their block scales). A GEMM computing below the activation's precision (W8A8, W4A4) reads x in its compute dtype,
    as the kernel does after the linear's quantisation pass (that pass itself is left to the GEMM's fitted
    efficiencies: its cost per value differs across devices in ways a bandwidth term does not follow)."""
    act = _b(cfg.act_dtype)
    w_dtype = cfg.weight_dtype.get(module, "bf16")
    c_dtype = cfg.compute_dtype.get(module, "bf16")
    weight = k * n * _qb(w_dtype)
    flops = 2.0 * m * n * k
    dequant = cfg.dequant_flops_per_weight.get(module, 0.0) * k * n  # W4A16: unpack + scale every weight
    quantised = DTYPE_BYTES[c_dtype] < DTYPE_BYTES[cfg.act_dtype]
    x_bytes = m * k * (_qb(c_dtype) if quantised else act)
    return Op(
        name=name, kind=GEMM, stage=stage, module=module, flops=flops + dequant,
        bytes_read=x_bytes + weight, bytes_written=m * n * act, dtype=c_dtype,
        shape=(m, n, k), count=count, layer_range=layer_range, visual_flops_share=visual_share,
        weight_bytes=weight, act_bytes=(m * k + m * n) * act,
    )


def elementwise(
    name: str, stage: str, module: str, elems: float, cfg: GraphConfig, flops_per_elem: float = 1.0,
    reads: float = 1.0, writes: float = 1.0, extra_read_bytes: float = 0.0, count: int = 1,
    layer_range: tuple[int, int] = (0, 0), visual_share: float = 0.0,
) -> Op:
    """A memory-bound op touching `elems` activations `reads` times in and `writes` times out."""
    act = _b(cfg.act_dtype)
    return Op(
        name=name, kind=ELEMENTWISE, stage=stage, module=module, flops=flops_per_elem * elems,
        bytes_read=reads * elems * act + extra_read_bytes, bytes_written=writes * elems * act,
        dtype=cfg.act_dtype, shape=(int(elems),), count=count, layer_range=layer_range,
        visual_flops_share=visual_share, act_bytes=(reads + writes) * elems * act,
    )


def allreduce(
    name: str, stage: str, module: str, message_bytes: float, cfg: GraphConfig, count: int = 1,
    layer_range: tuple[int, int] = (0, 0), visual_share: float = 0.0,
) -> Op:
    """An all-reduce of `message_bytes` over cfg.tp devices; its time comes from the link model, not HBM."""
    return Op(
        name=name, kind=ALLREDUCE, stage=stage, module=module, flops=message_bytes / _b(cfg.act_dtype),
        bytes_read=message_bytes, bytes_written=0.0, dtype=cfg.act_dtype, shape=(int(message_bytes), cfg.tp),
        count=count, layer_range=layer_range, visual_flops_share=visual_share, devices=cfg.tp,
    )


def attention(
    name: str, kind: str, stage: str, module: str, *, batch: int, pairs: float, q_tokens: float,
    kv_tokens_read: float, heads: int, kv_heads: int, head_dim: int, cfg: GraphConfig,
    kv_dtype: str | None = None, kv_written_tokens: float = 0.0, q_per_seq: float = 0.0, kv_per_seq: float = 0.0,
    count: int = 1, layer_range: tuple[int, int] = (0, 0), visual_share: float = 0.0, window_tokens: int = 0,
) -> Op:
    """Scaled-dot-product attention over `pairs` query-key pairs summed over the batch (`window_tokens`: the
    sliding window a query sees, carried for the kernels' block-granular work, 0 for none).

    Reads Q (q_tokens) and K,V (kv_tokens_read, in kv_dtype), writes O and, for self-attention with a cache, the new
    tokens' K,V (kv_written_tokens). Naive attention adds the score/probability matrix round trips.
    """
    act = _b(cfg.act_dtype)
    kvb = _b(kv_dtype or cfg.kv_dtype)
    flops = SCORE_FLOPS_PER_DIM * heads * head_dim * pairs
    q_bytes = q_tokens * heads * head_dim * act
    kv_bytes = 2.0 * kv_tokens_read * kv_heads * head_dim * kvb
    read = q_bytes + kv_bytes
    written = q_bytes + 2.0 * kv_written_tokens * kv_heads * head_dim * kvb
    act_foot = 2 * q_bytes
    if not cfg.flash_attention:
        scores = heads * pairs
        flops += SOFTMAX_FLOPS_PER_SCORE * scores
        read += 2.0 * scores * act  # read S for softmax, read P for PV
        written += 2.0 * scores * act  # write S, write P
        act_foot += 2.0 * scores * act
    return Op(
        name=name, kind=kind, stage=stage, module=module, flops=flops, bytes_read=read, bytes_written=written,
        dtype=cfg.compute_dtype.get(module, "bf16"),
        shape=(batch, round(q_per_seq, 3), round(kv_per_seq, 3), heads, kv_heads, head_dim),
        count=count, layer_range=layer_range, visual_flops_share=visual_share, act_bytes=act_foot,
        window_tokens=window_tokens,
    )


def mla_attention(
    name: str, kind: str, stage: str, module: str, *, batch: int, pairs: float, q_tokens: float,
    kv_tokens_read: float, heads: int, mla: MlaSpec, cfg: GraphConfig, kv_written_tokens: float = 0.0,
    q_per_seq: float = 0.0, kv_per_seq: float = 0.0, count: int = 1, layer_range: tuple[int, int] = (0, 0),
    visual_share: float = 0.0,
) -> Op:
    """MLA attention core. Decode (ATTN_DECODE): the absorbed form over the cached latent (one 'KV head' of
    kv_lora + rope values; scores use all of it, PV the kv_lora part). Prefill: the MHA form over up-projected K/V
    (qk = nope + rope, v = v_head_dim per head; the up-projection is llm.mla.kv_b_proj). Both write the new tokens'
    latent to the cache."""
    act = _b(cfg.act_dtype)
    kvb = _b(cfg.kv_dtype)
    lat = mla.latent_dim
    latent_write = kv_written_tokens * lat * kvb
    decode = kind in (ATTN_DECODE, ATTN_MLA_DECODE)
    kind = ATTN_MLA_DECODE if decode else ATTN_MLA_PREFILL
    if decode:
        flops = 2.0 * heads * pairs * lat + 2.0 * heads * pairs * mla.kv_lora_rank
        read = q_tokens * heads * lat * act + kv_tokens_read * lat * kvb
        written = q_tokens * heads * mla.kv_lora_rank * act + latent_write
        shape = (batch, round(q_per_seq, 3), round(kv_per_seq, 3), heads, 1, lat)
    else:
        qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        flops = 2.0 * heads * pairs * (qk + mla.v_head_dim)
        read = q_tokens * heads * qk * act + kv_tokens_read * heads * (qk + mla.v_head_dim) * act
        written = q_tokens * heads * mla.v_head_dim * act + latent_write
        shape = (batch, round(q_per_seq, 3), round(kv_per_seq, 3), heads, heads, (qk + mla.v_head_dim) // 2)
    if not cfg.flash_attention:
        scores = heads * pairs
        flops += SOFTMAX_FLOPS_PER_SCORE * scores
        read += 2.0 * scores * act
        written += 2.0 * scores * act
    return Op(
        name=name, kind=kind, stage=stage, module=module, flops=flops, bytes_read=read, bytes_written=written,
        dtype=cfg.compute_dtype.get(module, "bf16"), shape=shape, count=count, layer_range=layer_range,
        visual_flops_share=visual_share, act_bytes=read - kv_tokens_read * lat * kvb + written - latent_write,
    )


def mla_projection_ops(
    lm: LanguageModelSpec, stage: str, new_tokens: float, key_tokens: float, cfg: GraphConfig, count: int,
    rng: tuple[int, int], vis_share: float,
) -> list[Op]:
    """The projections of `count` MLA layers around the attention core, for `new_tokens` queries whose attention
    sees `key_tokens` keys in all (prefill up-projects their latents; decode absorbs W_UK / W_UV per token).

    vLLM keeps the down-projections (fused q_a + kv_a) replicated and splits heads by TP, as here."""
    mla = lm.mla
    assert mla is not None
    h = lm.hidden_size
    heads_t = max(1, lm.num_heads // cfg.tp)
    m = int(new_tokens)
    qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    ops: list[Op] = []
    if mla.q_lora_rank:
        ops.append(gemm("llm.mla.qkv_a_proj", stage, "llm", m, mla.q_lora_rank + mla.latent_dim, h, cfg, count,
                        rng, vis_share))
        ops.append(gemm("llm.mla.q_b_proj", stage, "llm", m, heads_t * qk, mla.q_lora_rank, cfg, count, rng,
                        vis_share))
    else:
        ops.append(gemm("llm.mla.q_proj", stage, "llm", m, heads_t * qk, h, cfg, count, rng, vis_share))
        ops.append(gemm("llm.mla.kv_a_proj", stage, "llm", m, mla.latent_dim, h, cfg, count, rng, vis_share))
    ops.append(elementwise("llm.mla.latent_norm", stage, "llm", m * (mla.kv_lora_rank + (mla.q_lora_rank or 0)),
                           cfg, NORM_FLOPS_PER_ELEM, count=count, layer_range=rng, visual_share=vis_share))
    ops.append(elementwise("llm.rotary", stage, "llm", m * (heads_t + 1) * mla.qk_rope_head_dim, cfg,
                           ROTARY_FLOPS_PER_ELEM, count=count, layer_range=rng, visual_share=vis_share))
    if stage == "decode":
        ops.append(gemm("llm.mla.absorb_uk", stage, "llm", m, heads_t * mla.kv_lora_rank, mla.qk_nope_head_dim,
                        cfg, count, rng, vis_share))
        ops.append(gemm("llm.mla.absorb_uv", stage, "llm", m, heads_t * mla.v_head_dim, mla.kv_lora_rank, cfg,
                        count, rng, vis_share))
    else:
        ops.append(gemm(MLA_UPPROJ_OP, stage, "llm", int(key_tokens),
                        heads_t * (mla.qk_nope_head_dim + mla.v_head_dim), mla.kv_lora_rank, cfg, count, rng,
                        vis_share))
    ops.append(gemm("llm.o_proj", stage, "llm", m, h, heads_t * mla.v_head_dim, cfg, count, rng, vis_share))
    return ops


def mla_layer_params(lm: LanguageModelSpec) -> int:
    """Attention weights of one MLA layer (incl. its two latent norms). DeepSeek-V3: 7168*(1536 + 576) + 1536*128*192
    + 512*128*256 + 128*128*7168 + 1536 + 512 = 187,107,328."""
    mla = lm.mla
    assert mla is not None
    h, heads = lm.hidden_size, lm.num_heads
    qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    q = h * mla.q_lora_rank + mla.q_lora_rank * heads * qk + mla.q_lora_rank if mla.q_lora_rank else h * heads * qk
    kv = h * mla.latent_dim + mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim) + mla.kv_lora_rank
    return q + kv + heads * mla.v_head_dim * h


# --------------------------------------------------------------------------------------------------------------
# local (sliding-window / chunked) attention: closed forms of keys seen, pairs and KV held


def _local_prefix_pairs(n: float, window: int, kind: str) -> float:
    """Query-key pairs of positions 0..n-1 under local attention: sum over i of the keys position i sees."""
    if n <= 0:
        return 0.0
    w = float(window)
    if kind == "sliding":
        return n * (n + 1) / 2.0 if n <= w else w * (w + 1) / 2.0 + (n - w) * w
    full, rest = divmod(n, w)
    return full * w * (w + 1) / 2.0 + rest * (rest + 1) / 2.0


def local_pairs(past: float, new: float, window: int, kind: str) -> float:
    """Pairs of `new` queries at positions past..past+new-1 (causal), each seeing only its window/chunk."""
    return _local_prefix_pairs(past + new, window, kind) - _local_prefix_pairs(past, window, kind)


def local_keys_read(past: float, new: float, window: int, kind: str) -> float:
    """Distinct keys the queries at past..past+new-1 can see: the kernel reads these, not the whole past."""
    if new <= 0:
        return 0.0
    if kind == "sliding":
        return min(past + new, new + window - 1.0)
    return min(past + new, past % window + new)


def local_kv_held(tokens: float, window: int, kind: str) -> float:
    """KV entries one local layer must hold for a sequence of `tokens`: at most one window (sliding) or one chunk.

    For chunked attention the current chunk holds (tokens-1) mod c + 1 entries; memory and the engine reserve the
    bound min(tokens, c) so a sequence's reservation never shrinks as it grows (vLLM frees old chunks' blocks)."""
    return min(float(tokens), float(window))


# --------------------------------------------------------------------------------------------------------------
# parameter counts (weights), the basis of weight memory


def vision_params(v: VisionEncoderSpec) -> int:
    """ViT weights incl. biases, norms, patch embedding and position embedding (CLIP-style, learned)."""
    h, inter = v.hidden_size, v.intermediate_size
    patch = v.in_channels * v.patch_size**2 * v.temporal_patch_size * h + h
    n_pos = (v.image_size // v.patch_size) ** 2 + (1 if v.cls_token else 0)
    pos = n_pos * h + (h if v.cls_token else 0)
    attn = 4 * h * h + 4 * h
    mlp = (3 if v.mlp_kind == "gated" else 2) * h * inter + inter + h
    norms = 4 * h
    return patch + pos + v.num_layers * (attn + mlp + norms) + 2 * h


def projector_params(model: ModelSpec) -> int:
    p = model.projector
    dims = p.layer_dims
    n = sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1))
    if p.kind == "resampler":
        d = dims[-1]
        n += (p.num_queries or 0) * d + 4 * d * d  # learned queries + q/k/v/o of the cross-attention
    return n * (1 + p.deepstack_mergers)


def llm_params(lm: LanguageModelSpec, active_only: bool = False) -> int:
    """Decoder weights: embeddings, attention, MLP (dense or mixture of experts), norms, LM head.

    The LM head is untied unless tie_word_embeddings. `active_only` counts the weights one token uses: of a MoE layer,
    the router, the shared experts and `experts_per_token` routed experts.
    Llama-2-7B check: 32000*4096*2 + 32*(4*4096^2 + 3*4096*11008 + 2*4096) + 4096 = 6,738,415,616.
    """
    h, d = lm.hidden_size, lm.head_dim
    attn = h * (lm.num_heads + 2 * lm.num_kv_heads) * d + lm.num_heads * d * h
    if lm.mla is not None:
        attn = mla_layer_params(lm)
    per_mlp = 3 if lm.mlp_kind == "gated" else 2
    dense_mlp = per_mlp * h * lm.intermediate_size
    n_moe = lm.moe_layers
    mlp_total = (lm.num_layers - n_moe) * dense_mlp
    if lm.moe is not None:
        mlp_total += n_moe * moe_layer_params(lm, active_only)
    embed = lm.vocab_size * h * (1 if lm.tie_word_embeddings else 2)
    # per-head q/k norm weights (head_dim each); Llama 4's 'local' qk norm is a weightless L2 norm
    qk_weighted = lm.qk_norm in ("self", "cross")
    qk_norm = 2 * d * sum(1 for i in range(lm.num_layers) if lm.has_qk_norm(i)) if qk_weighted else 0
    return embed + lm.num_layers * (attn + lm.norms_per_layer * h) + qk_norm + mlp_total + h


def moe_layer_params(lm: LanguageModelSpec, active_only: bool = False) -> int:
    """One MoE layer's MLP weights: router (h x E) + routed experts + shared experts, each a gated MLP."""
    moe = lm.moe
    assert moe is not None
    h = lm.hidden_size
    expert = 3 * h * moe.expert_intermediate_size
    routed = moe.experts_per_token if active_only else moe.num_experts
    shared = moe.shared_experts * 3 * h * (moe.shared_expert_intermediate_size or 0)
    return h * moe.num_experts + routed * expert + shared


def active_params(model: ModelSpec) -> int:
    """Parameters one token of the decoder uses, plus the vision side (every visual token runs all of it)."""
    c = param_counts(model)
    return c["vision"] + c["projector"] + llm_params(model.llm, active_only=True)


def param_counts(model: ModelSpec) -> dict[str, int]:
    if model.vision is None:  # a text-only LLM
        return {"vision": 0, "projector": 0, "llm": llm_params(model.llm)}
    return {"vision": vision_params(model.vision), "projector": projector_params(model), "llm": llm_params(model.llm)}


# --------------------------------------------------------------------------------------------------------------
# encode: vision encoder + projector


def _vit_attention_pairs(v: VisionEncoderSpec, seq_lens: Sequence[int], windowed: bool) -> float:
    """Query-key pairs of one ViT layer: full attention is L^2 per sequence; a window layer is w^2 per window."""
    if not windowed or v.window is None:
        return float(sum(L * L for L in seq_lens))
    w = (v.window.window_size_px // v.patch_size) ** 2  # patches per window
    return float(sum((L // w) * w * w + (L % w) ** 2 for L in seq_lens))


@functools.lru_cache(maxsize=4096)
def encode_ops(
    model: ModelSpec, vit_seq_lens: tuple[int, ...], projector_in_tokens: int, llm_tokens: int, cfg: GraphConfig
) -> tuple[Op, ...]:
    """Ops to encode a set of images/frames: the ViT over every sequence in `vit_seq_lens`, then the projector."""
    v, lm = model.vision, model.llm
    t = cfg.tp
    stage, P = "encode", int(sum(vit_seq_lens))
    if P == 0:
        return ()
    h, heads, d = v.hidden_size, v.num_heads, v.head_dim
    heads_t = max(1, heads // t)
    inter_t = v.intermediate_size // t if v.intermediate_size % t == 0 else math.ceil(v.intermediate_size / t)
    L = v.effective_layers
    batch = len(vit_seq_lens)
    ops: list[Op] = [
        Op(
            name="vision.patch_embed", kind=CONV, stage=stage, module="vision",
            flops=2.0 * P * h * v.in_channels * v.patch_size**2 * v.temporal_patch_size,
            bytes_read=P * v.in_channels * v.patch_size**2 * v.temporal_patch_size * _b(cfg.act_dtype)
            + v.in_channels * v.patch_size**2 * v.temporal_patch_size * h * _b(cfg.weight_dtype.get("vision", "bf16")),
            bytes_written=P * h * _b(cfg.act_dtype), dtype=cfg.compute_dtype.get("vision", "bf16"),
            shape=(P, h, v.in_channels * v.patch_size**2 * v.temporal_patch_size), visual_flops_share=1.0,
            act_bytes=2 * P * h * _b(cfg.act_dtype),
        )
    ]
    full_layers = set(v.window.full_attention_layers) if v.window else set(range(L))
    n_full = sum(1 for i in range(L) if i in full_layers)
    segments = [(n_full, False)] if v.window is None else [(n_full, False), (L - n_full, True)]
    rng = (0, L - 1)
    ops.append(elementwise("vision.norm", stage, "vision", P * h, cfg, NORM_FLOPS_PER_ELEM, count=2 * L,
                           layer_range=rng, visual_share=1.0))
    ops.append(gemm("vision.qkv_proj", stage, "vision", P, 3 * heads_t * d, h, cfg, L, rng, 1.0))
    for n_layers, windowed in segments:
        if n_layers <= 0:
            continue
        pairs = _vit_attention_pairs(v, vit_seq_lens, windowed)
        ops.append(attention(
            "vision.attention" + (".window" if windowed else ""), ATTN_ENCODER, stage, "vision", batch=batch,
            pairs=pairs, q_tokens=P, kv_tokens_read=P, heads=heads_t, kv_heads=heads_t, head_dim=d, cfg=cfg,
            kv_dtype=cfg.act_dtype, q_per_seq=P / batch, kv_per_seq=P / batch, count=n_layers, layer_range=rng,
            visual_share=1.0,
        ))
    ops.append(gemm("vision.o_proj", stage, "vision", P, h, heads_t * d, cfg, L, rng, 1.0))
    up = 2 * inter_t if v.mlp_kind == "gated" else inter_t
    ops.append(gemm("vision.mlp_up", stage, "vision", P, up, h, cfg, L, rng, 1.0))
    ops.append(elementwise("vision.mlp_act", stage, "vision", P * inter_t, cfg, ACT_FLOPS_PER_ELEM,
                           reads=2 if v.mlp_kind == "gated" else 1, count=L, layer_range=rng, visual_share=1.0))
    ops.append(gemm("vision.mlp_down", stage, "vision", P, h, inter_t, cfg, L, rng, 1.0))
    ops.append(elementwise("vision.residual_add", stage, "vision", P * h, cfg, 1.0, reads=2, count=2 * L,
                           layer_range=rng, visual_share=1.0))
    if t > 1:
        ops.append(allreduce("vision.allreduce", stage, "vision", P * h * _b(cfg.act_dtype), cfg, 2 * L, rng, 1.0))
    proj = _projector_ops(model, P, projector_in_tokens, llm_tokens, batch, cfg)
    if model.projector.deepstack_mergers:  # DeepStack: the same merger MLP again on each tapped ViT layer
        proj = [dataclasses.replace(op, count=op.count * (1 + model.projector.deepstack_mergers)) for op in proj]
    ops.extend(proj)
    if lm.cross_attention_layers:
        # Llama-3.2-Vision: image tokens are projected to K/V of every cross-attention layer once per image.
        n_x = len(lm.cross_attention_layers)
        kv_t = max(1, lm.num_kv_heads // t)
        ops.append(gemm("llm.cross_kv_proj", stage, "llm", llm_tokens, 2 * kv_t * lm.head_dim, lm.hidden_size,
                        cfg, n_x, (min(lm.cross_attention_layers), max(lm.cross_attention_layers)), 1.0))
        if lm.qk_norm == "cross":  # MllamaTextCrossAttention's k_norm, on the image keys as they are projected
            ops.append(elementwise("llm.k_norm", stage, "llm", llm_tokens * kv_t * lm.head_dim, cfg,
                                   NORM_FLOPS_PER_ELEM, count=n_x, layer_range=(min(lm.cross_attention_layers),
                                                                                max(lm.cross_attention_layers)),
                                   visual_share=1.0))
    return tuple(ops)


def _projector_ops(
    model: ModelSpec, vit_tokens: int, projector_in_tokens: int, llm_tokens: int, batch: int, cfg: GraphConfig
) -> list[Op]:
    p = model.projector
    stage = "encode"
    dims = p.layer_dims
    ops: list[Op] = []
    if p.kind == "resampler":
        # MiniCPM-V: `num_queries` learned queries per slice cross-attend to that slice's patches.
        q_total = llm_tokens
        d = dims[-1]
        heads = p.num_heads or max(1, d // 128)
        ops.append(gemm("projector.kv_proj", stage, "projector", projector_in_tokens, d, dims[0], cfg,
                        visual_share=1.0))
        ops.append(gemm("projector.kv_proj2", stage, "projector", projector_in_tokens, 2 * d, d, cfg,
                        visual_share=1.0))
        ops.append(gemm("projector.q_proj", stage, "projector", q_total, d, d, cfg, visual_share=1.0))
        pairs = float(q_total) * projector_in_tokens / max(batch, 1)
        ops.append(attention("projector.cross_attention", ATTN_ENCODER, stage, "projector", batch=batch,
                             pairs=pairs, q_tokens=q_total, kv_tokens_read=projector_in_tokens, heads=heads,
                             kv_heads=heads, head_dim=d // heads, cfg=cfg, kv_dtype=cfg.act_dtype,
                             q_per_seq=q_total / batch, kv_per_seq=projector_in_tokens / batch, visual_share=1.0))
        ops.append(gemm("projector.o_proj", stage, "projector", q_total, d, d, cfg, visual_share=1.0))
        return ops
    m = max(1, projector_in_tokens // p.merge_factor)
    if p.kind == "pool_linear":  # Gemma 3: average each k x k block of patches (reads all, writes 1/k^2)
        ops.append(elementwise("projector.avg_pool", stage, "projector", projector_in_tokens * dims[0]
                               / p.merge_factor, cfg, float(p.merge_factor), reads=p.merge_factor, visual_share=1.0))
    if p.kind in ("patch_merger", "pixel_shuffle_mlp", "pool_linear"):
        ops.append(elementwise("projector.merge_norm", stage, "projector", projector_in_tokens * dims[0]
                               / p.merge_factor, cfg, NORM_FLOPS_PER_ELEM, visual_share=1.0))
    for i in range(len(dims) - 1):
        ops.append(gemm(f"projector.fc{i + 1}", stage, "projector", m, dims[i + 1], dims[i], cfg, visual_share=1.0))
        if i < len(dims) - 2:
            ops.append(elementwise(f"projector.act{i + 1}", stage, "projector", m * dims[i + 1], cfg,
                                   ACT_FLOPS_PER_ELEM, visual_share=1.0))
    return ops


# --------------------------------------------------------------------------------------------------------------
# the language model: prefill chunks and decode steps share one builder


def layer_segments(num_layers: int, visual_keep: tuple[tuple[int, float], ...]) -> list[tuple[int, int, float]]:
    """Split layers into runs with a constant kept fraction of visual tokens: [(first, last, fraction), ...].

    `visual_keep` entries are (from_layer, fraction of the ORIGINAL visual tokens kept from that layer on).
    """
    starts: dict[int, float] = {0: 1.0}
    for layer, frac in sorted(visual_keep):
        starts[max(0, min(num_layers, layer))] = frac
    points = sorted(starts.items())
    segs = []
    for i, (start, frac) in enumerate(points):
        end = points[i + 1][0] - 1 if i + 1 < len(points) else num_layers - 1
        if end >= start:
            segs.append((start, end, frac))
    return segs


def visual_tokens_kept(n_visual: float, frac: float) -> float:
    """Visual tokens a token schedule keeps of `n_visual` at kept fraction `frac` (floored, as the pruners do)."""
    return math.floor(n_visual * frac + 1e-9) if frac < 1.0 else n_visual


@functools.lru_cache(maxsize=64)
def lm_head_op_names(model: ModelSpec, stage: str, cfg: GraphConfig) -> frozenset[str]:
    """Names of the ops a step runs only for sequences that emit a token (final norm, LM head, logits gather): the
    ops of one emitting token that one silent token does not have."""
    emits = llm_ops(model, (SeqWork(new_tokens=1, past_tokens=0, emits_token=True),), stage, cfg)
    silent = llm_ops(model, (SeqWork(new_tokens=1, past_tokens=0, emits_token=False),), stage, cfg)
    return frozenset({op.name for op in emits} - {op.name for op in silent})


@functools.lru_cache(maxsize=65536)
def llm_ops(
    model: ModelSpec, seqs: tuple[SeqWork, ...], stage: str, cfg: GraphConfig, past_visual: tuple[int, ...] = ()
) -> tuple[Op, ...]:
    """Ops of one forward pass of the language model over a batch of sequence slices.

    `past_visual[i]` is how many of sequence i's past tokens are visual (so a token schedule can shrink them).
    Decode is the same pass with new_tokens = 1 per sequence; the attention op kind follows `stage`.
    """
    lm = model.llm
    t = cfg.tp
    act = _b(cfg.act_dtype)
    h, d = lm.hidden_size, lm.head_dim
    heads_t = max(1, lm.num_heads // t)
    kv_t = max(1, lm.num_kv_heads // t)
    inter_t = math.ceil(lm.intermediate_size / t)
    vocab_t = math.ceil(lm.vocab_size / t)
    pv = past_visual or tuple(0 for _ in seqs)
    n_emit = sum(1 for s in seqs if s.emits_token)
    cross = set(lm.cross_attention_layers)
    ops: list[Op] = []

    total_new = sum(s.new_tokens for s in seqs)
    ops.append(elementwise("llm.embed", stage, "llm", total_new * h, cfg, 0.0, reads=1, writes=1,
                           visual_share=_share(sum(s.visual_new for s in seqs), total_new)))
    n_deep = min(model.projector.deepstack_mergers, lm.num_layers) if model.projector is not None else 0
    vis_new = sum(s.visual_new for s in seqs)
    if n_deep and vis_new:  # DeepStack: add each tapped ViT level's features into LLM layers 0..n-1
        ops.append(elementwise("llm.deepstack_add", stage, "llm", vis_new * h, cfg, 1.0, reads=2, count=n_deep,
                               layer_range=(0, n_deep - 1), visual_share=1.0))
    # a batch with no cross-attention KV (no image) skips the cross-attention layers whole, as vLLM's Mllama and
    # transformers do (no attention, no MLP, no norms for those layers)
    skip_cross = bool(cross) and not any(s.cross_kv_tokens for s in seqs)
    for first, last, frac in layer_segments(lm.num_layers, cfg.visual_keep):
        layers = [i for i in range(first, last + 1) if not (skip_cross and i in cross)]
        if not layers:
            continue
        n_self = sum(1 for i in layers if i not in cross)
        n_cross = len(layers) - n_self
        rng = (first, last)
        # tokens live in this segment: visual ones shrink by the schedule's kept fraction
        new_vis = [visual_tokens_kept(s.visual_new, frac) for s in seqs]
        new_tok = [s.new_tokens - s.visual_new + nv for s, nv in zip(seqs, new_vis, strict=True)]
        past_tok = [s.past_tokens - pvis + visual_tokens_kept(pvis, frac) for s, pvis in zip(seqs, pv, strict=True)]
        m = int(sum(new_tok))
        if m == 0:
            continue
        vis_share = _share(sum(new_vis), m)
        n = len(layers)
        ops.extend(_layer_norm_ops(lm, stage, m, cfg, layers, rng, vis_share))
        if n_self and lm.mla is not None:
            keys = sum(p + q for p, q in zip(past_tok, new_tok, strict=True))
            ops.extend(mla_projection_ops(lm, stage, m, keys, cfg, n_self, rng, vis_share))
            ops.append(_self_attention(stage, new_tok, past_tok, new_vis, pv, frac, heads_t, kv_t, d, cfg,
                                       n_self, rng, mla=lm.mla))
        elif n_self:
            ops.append(gemm("llm.qkv_proj", stage, "llm", m, (heads_t + 2 * kv_t) * d, h, cfg, n_self, rng,
                            vis_share))
            ops.extend(_qk_norm_ops(lm, stage, m, heads_t, kv_t, cfg, layers, False, rng, vis_share))
            ops.append(elementwise("llm.rotary", stage, "llm", m * (heads_t + kv_t) * d, cfg,
                                   ROTARY_FLOPS_PER_ELEM, count=n_self, layer_range=rng, visual_share=vis_share))
            n_local = sum(1 for i in layers if lm.is_local_layer(i))
            for n_att, window in ((n_self - n_local, None), (n_local, lm.local_attention)):
                if n_att:
                    ops.append(_self_attention(stage, new_tok, past_tok, new_vis, pv, frac, heads_t, kv_t, d, cfg,
                                               n_att, rng, window))
            ops.append(gemm("llm.o_proj", stage, "llm", m, h, heads_t * d, cfg, n_self, rng, vis_share))
        if n_cross:
            x_seqs = [(nt, s.cross_kv_tokens) for s, nt in zip(seqs, new_tok, strict=True) if s.cross_kv_tokens]
            ops.append(gemm("llm.cross_q_proj", stage, "llm", m, heads_t * d, h, cfg, n_cross, rng, 0.0))
            ops.extend(_qk_norm_ops(lm, stage, m, heads_t, kv_t, cfg, layers, True, rng, 0.0))
            if x_seqs:
                pairs = float(sum(q * kv for q, kv in x_seqs))
                kv_read = float(sum(kv for _, kv in x_seqs))
                ops.append(attention(
                    "llm.cross_attention", ATTN_DECODE if stage == "decode" else ATTN_ENCODER, stage, "llm",
                    batch=len(x_seqs), pairs=pairs, q_tokens=sum(q for q, _ in x_seqs), kv_tokens_read=kv_read,
                    heads=heads_t, kv_heads=kv_t, head_dim=d, cfg=cfg,
                    q_per_seq=sum(q for q, _ in x_seqs) / len(x_seqs), kv_per_seq=kv_read / len(x_seqs),
                    count=n_cross, layer_range=rng, visual_share=1.0,
                ))
            ops.append(gemm("llm.cross_o_proj", stage, "llm", m, h, heads_t * d, cfg, n_cross, rng, 0.0))
        n_moe = sum(1 for i in layers if lm.is_moe_layer(i))
        if n > n_moe:
            up = 2 * inter_t if lm.mlp_kind == "gated" else inter_t
            ops.append(gemm("llm.mlp_up", stage, "llm", m, up, h, cfg, n - n_moe, rng, vis_share))
            ops.append(elementwise("llm.mlp_act", stage, "llm", m * inter_t, cfg, ACT_FLOPS_PER_ELEM,
                                   reads=2 if lm.mlp_kind == "gated" else 1, count=n - n_moe, layer_range=rng,
                                   visual_share=vis_share))
            ops.append(gemm("llm.mlp_down", stage, "llm", m, h, inter_t, cfg, n - n_moe, rng, vis_share))
        if n_moe:
            ops.extend(moe_ops(lm, m, stage, cfg, n_moe, rng, vis_share))
        if t > 1:
            # attention output + MLP output; an expert-parallel MoE layer exchanges tokens by all-to-all instead
            n_ar = 2 * n - (n_moe if cfg.ep > 1 else 0)
            ops.append(allreduce("llm.allreduce", stage, "llm", m * h * act, cfg, n_ar, rng, vis_share))
    if n_emit:
        ops.append(elementwise("llm.final_norm", stage, "llm", n_emit * h, cfg, NORM_FLOPS_PER_ELEM))
        ops.append(gemm("llm.lm_head", stage, "llm", n_emit, vocab_t, h, cfg))
        if t > 1:
            ops.append(allreduce("llm.logits_gather", stage, "llm", n_emit * vocab_t * act, cfg))
    return tuple(ops)


def _layer_norm_ops(
    lm: LanguageModelSpec, stage: str, m: int, cfg: GraphConfig, layers: list[int], rng: tuple[int, int],
    vis_share: float,
) -> list[Op]:
    """The hidden-state norms and residual adds of decoder `layers` over m tokens, as vLLM runs them.

    vLLM folds each residual add into the RMSNorm after it: `norm(x, residual)` runs fused_add_rms_norm (one kernel
    that reads x and the residual and writes both back; vllm/model_executor/layers/layernorm.py ->
    csrc/layernorm_kernels.cu), and the Llama-style layer calls it for input_layernorm and post_attention_layernorm
    (vllm/model_executor/models/llama.py at 0035bdf2; qwen3.py at 002456df). So a layer runs 2 add-norm kernels (4 m
    x h passes each) and no separate add. Layer 0's input norm has no residual yet (a plain norm) and the final norm
    fuses the last add instead: the same kernel count, the bytes within 1/(4 x layers). Gemma 2/3 sandwich layers
    normalise the attention and MLP outputs too (post_attention_layernorm, post_feedforward_layernorm: plain norms,
    no residual; the residual rides on input_layernorm and pre_feedforward_layernorm,
    vllm/model_executor/models/gemma3.py at 004dc924). vLLM's Mllama text model carries no residual across layers
    (mllama.py at 005ad950, MllamaTextModel): a self-attention layer runs a plain input norm, a fused post-attention
    add-norm and a separate add; a cross-attention layer 2 plain norms and 2 separate (gated) adds.
    """
    h, n = lm.hidden_size, len(layers)
    n_fused, n_plain, n_add = 2 * n, 0, 0
    if lm.cross_attention_layers:
        n_cross = sum(1 for i in layers if i in lm.cross_attention_layers)
        n_fused, n_plain, n_add = n - n_cross, n - n_cross + 2 * n_cross, n - n_cross + 2 * n_cross
    n_sandwich = (lm.norms_per_layer - 2) * n
    ops = []
    if n_fused:
        ops.append(elementwise("llm.add_norm", stage, "llm", m * h, cfg, NORM_FLOPS_PER_ELEM + 1.0, reads=2,
                               writes=2, count=n_fused, layer_range=rng, visual_share=vis_share))
    for name, count in (("llm.norm", n_plain), ("llm.sandwich_norm", n_sandwich)):
        if count:
            ops.append(elementwise(name, stage, "llm", m * h, cfg, NORM_FLOPS_PER_ELEM, count=count,
                                   layer_range=rng, visual_share=vis_share))
    if n_add:
        ops.append(elementwise("llm.residual_add", stage, "llm", m * h, cfg, 1.0, reads=2, count=n_add,
                               layer_range=rng, visual_share=vis_share))
    return ops


def _qk_norm_ops(
    lm: LanguageModelSpec, stage: str, m: int, heads_t: int, kv_t: int, cfg: GraphConfig, layers: list[int],
    cross_layers: bool, rng: tuple[int, int], vis_share: float,
) -> list[Op]:
    """Per-head RMSNorm of q and k over head_dim (LanguageModelSpec.qk_norm) in the self- or cross-attention layers
    of `layers`: vLLM runs q_norm and k_norm as two kernels on the TP-local heads (m x heads/t x head_dim and
    m x kv_heads/t x head_dim; Qwen3Attention, Gemma3Attention, Llama4Attention's qk_norm). A cross-attention layer
    normalises its image keys once per image with the K/V projection (encode_ops), so only q here."""
    cross = set(lm.cross_attention_layers)
    count = sum(1 for i in layers if (i in cross) == cross_layers and lm.has_qk_norm(i))
    if not count:
        return []
    d = lm.head_dim
    ops = [elementwise("llm.q_norm", stage, "llm", m * heads_t * d, cfg, NORM_FLOPS_PER_ELEM, count=count,
                       layer_range=rng, visual_share=vis_share)]
    if not cross_layers:
        ops.append(elementwise("llm.k_norm", stage, "llm", m * kv_t * d, cfg, NORM_FLOPS_PER_ELEM, count=count,
                               layer_range=rng, visual_share=vis_share))
    return ops


def _share(part: float, whole: float) -> float:
    return float(part) / whole if whole else 0.0


def _self_attention(
    stage: str, new_tok: list[float], past_tok: list[float], new_vis: list[float],
    past_vis: tuple[int, ...], frac: float, heads: int, kv_heads: int, d: int, cfg: GraphConfig, count: int,
    rng: tuple[int, int], window: LocalAttentionSpec | None = None, mla: MlaSpec | None = None,
) -> Op:
    """Causal self-attention of the batch; with `window`, the local (sliding/chunked) form of the same layers;
    with `mla`, the latent-attention core (see mla_attention)."""
    pairs = 0.0
    text_pairs = 0.0  # query-key pairs where neither side is visual (approximated as independent fractions)
    kv_read = 0.0
    for q, p, nv, pvis in zip(new_tok, past_tok, new_vis, past_vis, strict=True):
        if window is None:
            seq_pairs = q * p + q * (q + 1) / 2.0
            kv_read += p + q
        else:
            seq_pairs = local_pairs(p, q, window.window_tokens, window.kind)
            kv_read += local_keys_read(p, q, window.window_tokens, window.kind)
        pairs += seq_pairs
        keys = p + q
        vis_keys = visual_tokens_kept(pvis, frac) + nv
        text_pairs += seq_pairs * ((q - nv) / q if q else 0.0) * ((keys - vis_keys) / keys if keys else 0.0)
    batch = len(new_tok)
    kind = ATTN_DECODE if stage == "decode" else ATTN_PREFILL
    name = "llm.attention" if window is None else f"llm.attention.{window.kind}"
    return self_attention_op(
        name, kind, stage, batch=batch, pairs=pairs, q_tokens=sum(new_tok), kv_tokens_read=kv_read, heads=heads,
        kv_heads=kv_heads, head_dim=d, cfg=cfg, count=count, layer_range=rng, mla=mla,
        visual_share=min(1.0, max(0.0, 1.0 - text_pairs / pairs)) if pairs else 0.0,
        window_tokens=window.window_tokens if window is not None and window.kind == "sliding" else 0,
    )


def self_attention_op(
    name: str, kind: str, stage: str, *, batch: int, pairs: float, q_tokens: float, kv_tokens_read: float,
    heads: int, kv_heads: int, head_dim: int, cfg: GraphConfig, count: int, layer_range: tuple[int, int],
    mla: MlaSpec | None = None, visual_share: float = 0.0, window_tokens: int = 0,
) -> Op:
    """The decoder's causal self-attention core over a batch (GQA, or MLA when `mla`), writing the new tokens' KV
    (`window_tokens`: a sliding window's keys per query). The engine's step cost builds the same op from its
    aggregates."""
    if mla is not None:
        return mla_attention(
            name, kind, stage, "llm", batch=batch, pairs=pairs, q_tokens=q_tokens, kv_tokens_read=kv_tokens_read,
            heads=heads, mla=mla, cfg=cfg, kv_written_tokens=q_tokens, q_per_seq=q_tokens / batch,
            kv_per_seq=kv_tokens_read / batch, count=count, layer_range=layer_range, visual_share=visual_share,
        )
    return attention(
        name, kind, stage, "llm", batch=batch, pairs=pairs, q_tokens=q_tokens, kv_tokens_read=kv_tokens_read,
        heads=heads, kv_heads=kv_heads, head_dim=head_dim, cfg=cfg, kv_written_tokens=q_tokens,
        q_per_seq=q_tokens / batch, kv_per_seq=kv_tokens_read / batch, count=count, layer_range=layer_range,
        visual_share=visual_share, window_tokens=window_tokens,
    )


# --------------------------------------------------------------------------------------------------------------
# mixture of experts


@functools.lru_cache(maxsize=16384)
def experts_touched(num_experts: int, experts_per_token: int, tokens: float, skew: float = 0.0,
                    spread: bool = False) -> float:
    """Expected number of distinct experts that `tokens` tokens route to, each picking `experts_per_token`.

    Balanced routing (skew 0): every expert is picked by a token with probability k/E, so
    E * (1 - (1 - k/E)^T) experts are touched: k for one token, rising to E as T grows (the MoE decode lesson:
    weight reads, hence TPOT, grow with batch until every expert is touched). Real routers are uneven: with
    skew a > 0 expert i (1-based, by popularity) is picked with a probability proportional to i^-a, capped at
    1 and summing to k (`skewed_pick_probabilities`), and fewer experts are touched (a rank law named after the
    tables' `power_law_<a>`, not their generator, which draws each expert's load from a power law:
    benchmarks/moe_routing_check.py compares the two).
    `spread` (skew 0 only): the T*k picks are dealt out evenly, as aiconfigurator's `balanced` tables generate them,
    so min(E, T*k) experts are touched.
    """
    E, k, T = num_experts, experts_per_token, max(float(tokens), 0.0)
    if T == 0.0:
        return 0.0
    if skew <= 0.0 and spread:
        return min(float(E), k * T)
    if skew <= 0.0:
        return E * (1.0 - (1.0 - k / E) ** T)
    return sum(1.0 - (1.0 - p) ** T for p in skewed_pick_probabilities(E, k, skew))


def skewed_pick_probabilities(num_experts: int, experts_per_token: int, skew: float) -> tuple[float, ...]:
    """Probability that one token picks expert i (1-based by popularity) under a rank law i^-skew, summing to k.

    A token picks k *distinct* experts, so no probability exceeds 1 and together they sum to k. Scaling the rank
    law to sum k and clipping at 1 would lose the clipped mass (one token of top-8 over 128 at skew 1.2 would touch
    6.84 experts); instead the capped experts are picked for sure and the rest share what remains in proportion to
    their weights (the inclusion probabilities of sampling k of E without replacement in proportion to size)."""
    weights = [(i + 1) ** -skew for i in range(num_experts)]
    certain = 0  # the most popular experts, picked by every token, come first in rank order
    scale = 0.0
    while certain < experts_per_token:
        scale = (experts_per_token - certain) / sum(weights[certain:])
        if weights[certain] * scale <= 1.0:
            break
        certain += 1
    return tuple(1.0 if i < certain else min(1.0, w * scale) for i, w in enumerate(weights))


def collective(name: str, kind: str, stage: str, message_bytes: float, devices: int, cfg: GraphConfig, count: int,
               layer_range: tuple[int, int], visual_share: float) -> Op:
    """A collective of `message_bytes` per device over `devices` devices; the cost model prices it on the link."""
    return Op(name=name, kind=kind, stage=stage, module="llm", flops=message_bytes / _b(cfg.act_dtype),
              bytes_read=message_bytes, bytes_written=0.0, dtype=cfg.act_dtype, shape=(int(message_bytes), devices),
              count=count, layer_range=layer_range, visual_flops_share=visual_share, devices=devices)


def expert_gemm(name: str, stage: str, pairs: float, n: int, k: int, touched: float, held: int, cfg: GraphConfig,
                 count: int, rng: tuple[int, int], vis_share: float) -> Op:
    """Grouped GEMM over the experts on one device: `pairs` token-expert rows, weights of `touched` experts read."""
    act = _b(cfg.act_dtype)
    weight = touched * k * n * _b(cfg.weight_dtype.get("llm", "bf16"))
    dequant = cfg.dequant_flops_per_weight.get("llm", 0.0) * touched * k * n
    return Op(name=name, kind=MOE_GEMM, stage=stage, module="llm", flops=2.0 * pairs * n * k + dequant,
              bytes_read=pairs * k * act + weight, bytes_written=pairs * n * act,
              dtype=cfg.compute_dtype.get("llm", "bf16"), shape=(round(pairs, 3), n, k, round(touched, 3), held),
              count=count, layer_range=rng, visual_flops_share=vis_share, weight_bytes=weight,
              act_bytes=pairs * (k + n) * act)


def moe_ops(lm: LanguageModelSpec, m: int, stage: str, cfg: GraphConfig, count: int, rng: tuple[int, int],
            vis_share: float) -> list[Op]:
    """One MoE MLP over `m` tokens on one device of a tp group with expert parallelism cfg.ep.

    Experts are split ep ways (E/ep per device) and each expert tp/ep ways. Each device routes the m/ep tokens it
    owns: top-k dispatch, all-to-all to the experts' devices, grouped gate/up and down GEMMs over the m*k/ep
    token-expert pairs it receives (balanced across devices) reading the weights of the experts touched, all-to-all
    back, weighted combine, and an all-gather so every attention rank holds all m tokens again. With ep = 1 the
    dispatch is local and the MLP's all-reduce (in llm_ops) sums the tp shards as for a dense MLP.
    """
    moe = lm.moe
    assert moe is not None
    h, E, k = lm.hidden_size, moe.num_experts, moe.experts_per_token
    ep = cfg.ep
    moe_tp = max(1, cfg.tp // ep)
    inter = math.ceil(moe.expert_intermediate_size / moe_tp)
    act = _b(cfg.act_dtype)
    owned = m / ep  # tokens this device routes
    pairs = m * k / ep  # token-expert pairs computed here (balanced routing spreads them evenly)
    touched = experts_touched(E, k, m, cfg.moe_skew, cfg.moe_routing == "spread") / ep
    ops = [
        gemm("llm.moe_router", stage, "llm", m, E, h, cfg, count, rng, vis_share),
        elementwise("llm.moe_dispatch", stage, "llm", owned * h, cfg, 1.0, reads=1, writes=k, count=count,
                    layer_range=rng, visual_share=vis_share),
    ]
    if ep > 1:
        ops.append(collective("llm.moe_alltoall_dispatch", ALLTOALL, stage, owned * k * h * act, ep, cfg, count,
                              rng, vis_share))
    ops.append(expert_gemm("llm.moe_experts_up", stage, pairs, 2 * inter, h, touched, E // ep, cfg, count, rng,
                            vis_share))
    ops.append(elementwise("llm.moe_act", stage, "llm", pairs * inter, cfg, ACT_FLOPS_PER_ELEM, reads=2,
                           count=count, layer_range=rng, visual_share=vis_share))
    ops.append(expert_gemm("llm.moe_experts_down", stage, pairs, h, inter, touched, E // ep, cfg, count, rng,
                            vis_share))
    if ep > 1:
        ops.append(collective("llm.moe_alltoall_combine", ALLTOALL, stage, owned * k * h * act, ep, cfg, count,
                              rng, vis_share))
    ops.append(elementwise("llm.moe_combine", stage, "llm", owned * h, cfg, 2.0 * k, reads=k, writes=1,
                           count=count, layer_range=rng, visual_share=vis_share))
    if moe.shared_experts:
        # shared experts run on the tokens this device owns, split like a routed expert (tp/ep ways)
        inter_s = math.ceil(moe.shared_experts * (moe.shared_expert_intermediate_size or 0) / moe_tp)
        m_s = math.ceil(owned)
        ops.append(gemm("llm.moe_shared_up", stage, "llm", m_s, 2 * inter_s, h, cfg, count, rng, vis_share))
        ops.append(elementwise("llm.moe_shared_act", stage, "llm", m_s * inter_s, cfg, ACT_FLOPS_PER_ELEM, reads=2,
                               count=count, layer_range=rng, visual_share=vis_share))
        ops.append(gemm("llm.moe_shared_down", stage, "llm", m_s, h, inter_s, cfg, count, rng, vis_share))
    if ep > 1:
        if moe_tp > 1:  # each expert is split tp/ep ways: sum the shards within that group
            ops.append(collective("llm.moe_allreduce", ALLREDUCE, stage, owned * h * act, moe_tp, cfg, count, rng,
                                  vis_share))
        ops.append(collective("llm.moe_allgather", ALLTOALL, stage, m * h * act, ep, cfg, count, rng, vis_share))
    return ops
