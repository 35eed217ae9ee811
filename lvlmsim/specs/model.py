"""ModelSpec: an LVLM as vision encoder + projector + language model + tokenization policy.

Shapes only; FLOP and byte formulas live in :mod:`lvlmsim.ops.graph`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from lvlmsim.errors import SpecError
from lvlmsim.specs.base import Dtype, StrictModel
from lvlmsim.specs.tokenization_policy import TokenizationPolicy, VideoPolicy

MlpKind = Literal["plain", "gated"]
# Which attention layers RMS-normalise q and k over head_dim per head before attention (see LanguageModelSpec.qk_norm)
QkNormLayers = Literal["none", "self", "local", "cross"]


# Structural sizes are bounded before any per-layer, per-head or per-expert list is built (a num_layers of 2**40
# allocated per layer). The largest published models sit ~10x below each cap (Llama-3.1-405B: 126 layers, 16384
# hidden, 128 heads, 53248 MLP; DeepSeek-V3: 256 experts; Gemma 3: 262k vocab; Llama 4 Scout: 10M context).
SIZE_CAPS: dict[str, int] = {
    "num_layers": 2048, "layers_used": 2048, "hidden_size": 1 << 18, "intermediate_size": 1 << 20,
    "num_heads": 1 << 14, "num_kv_heads": 1 << 14, "head_dim": 1 << 14, "vocab_size": 1 << 24,
    "max_position_embeddings": 1 << 27, "patch_size": 1 << 12, "temporal_patch_size": 64, "in_channels": 64,
    "image_size": 1 << 16, "num_experts": 1 << 14, "experts_per_token": 1 << 14, "expert_intermediate_size": 1 << 20,
    "shared_experts": 1 << 10, "shared_expert_intermediate_size": 1 << 20,
}


def _within_caps(spec: StrictModel) -> StrictModel:
    for name, cap in SIZE_CAPS.items():
        v = getattr(spec, name, None)
        if isinstance(v, int) and v > cap:
            raise ValueError(f"{name} {v} is beyond any real model (at most {cap})")
    return spec


class WindowAttentionSpec(StrictModel):
    """Qwen2.5-VL windowed ViT attention: most layers attend within windows; a few layers attend globally."""

    window_size_px: PositiveInt = Field(description="side of a square attention window in px (Qwen2.5-VL: 112)")
    full_attention_layers: list[NonNegativeInt] = Field(description="0-based ViT layers with global attention")


class VisionEncoderSpec(StrictModel):
    name: str
    num_layers: PositiveInt
    hidden_size: PositiveInt
    num_heads: PositiveInt
    intermediate_size: PositiveInt
    mlp_kind: MlpKind = "plain"
    patch_size: PositiveInt
    temporal_patch_size: PositiveInt = 1
    in_channels: PositiveInt = 3
    image_size: PositiveInt = Field(description="side in px of one crop/tile the encoder sees natively")
    cls_token: bool = False
    layers_used: PositiveInt | None = Field(
        None, description="layers actually run (LLaVA selects layer -2, so 23 of 24); default all"
    )
    window: WindowAttentionSpec | None = None

    @model_validator(mode="after")
    def _sizes_within_caps(self):
        return _within_caps(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def effective_layers(self) -> int:
        return self.layers_used or self.num_layers

    @model_validator(mode="after")
    def _check(self) -> VisionEncoderSpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.layers_used is not None and self.layers_used > self.num_layers:
            raise ValueError(f"layers_used {self.layers_used} exceeds num_layers {self.num_layers}")
        if self.window is not None:  # an index past the encoder was dropped from the count without a word
            _check_layer_list("window.full_attention_layers", self.window.full_attention_layers, self.num_layers)
        return self


def _check_layer_list(name: str, layers: list[int], num_layers: int) -> None:
    """0-based layer indices: each below num_layers and named once (a repeat was counted twice by the graph)."""
    bad = [i for i in layers if i >= num_layers]
    if bad:
        raise ValueError(f"{name} {bad} are >= num_layers {num_layers}; allowed: 0..{num_layers - 1}")
    repeated = sorted({i for i in layers if layers.count(i) > 1})
    if repeated:
        raise ValueError(f"{name}: layers {repeated} are listed more than once; allowed: each layer once")


class ProjectorSpec(StrictModel):
    """What turns ViT outputs into LLM tokens.

    kind: mlp (LLaVA), patch_merger (Qwen2-VL: merge `merge_factor` patches then MLP), pixel_shuffle_mlp (InternVL),
    resampler (MiniCPM-V: `num_queries` learned queries cross-attend to patches), linear (Llama-3.2-Vision),
    pool_linear (Gemma 3: average-pool `merge_factor` patches, RMSNorm, one linear layer; layer_dims [vit width, out]).
    `layer_dims` lists the widths through the MLP: [in, hidden..., out].
    """

    kind: Literal["mlp", "patch_merger", "pixel_shuffle_mlp", "resampler", "linear", "pool_linear"]
    layer_dims: list[PositiveInt] = Field(min_length=2)
    merge_factor: PositiveInt = Field(1, description="ViT tokens folded into one LLM token (2x2 merge: 4)")
    num_queries: PositiveInt | None = Field(None, description="resampler queries per image/slice")
    num_heads: PositiveInt | None = Field(None, description="resampler cross-attention heads")
    deepstack_mergers: NonNegativeInt = Field(
        0, description="Qwen3-VL DeepStack: extra mergers (same dims) run on intermediate ViT layers' features and "
        "added to the first LLM layers' hidden states at the visual positions",
    )

    @property
    def fixed_output_tokens(self) -> bool:
        """True when the LLM tokens per image do not follow the projector's input (a resampler's learned queries):
        dropping or merging ViT outputs then shrinks only the projector input, never the LLM tokens."""
        return self.kind == "resampler"

    @model_validator(mode="after")
    def _check(self) -> ProjectorSpec:
        if self.kind == "resampler" and self.num_queries is None:
            raise ValueError("a resampler projector needs num_queries")
        return self


class MoESpec(StrictModel):
    """A mixture-of-experts MLP: a router picks `experts_per_token` of `num_experts` gated experts per token.

    `shared_experts` always run (DeepSeek/Qwen2-MoE style), each `shared_expert_intermediate_size` wide.
    `dense_layers` are 0-based decoder layers that keep a dense MLP of the LM's `intermediate_size` (Qwen3-MoE's
    `mlp_only_layers`, DeepSeek's first `first_k_dense_replace` layers); every other layer is an MoE layer.
    """

    num_experts: PositiveInt = Field(description="routed experts per MoE layer (config.json num_experts)")
    experts_per_token: PositiveInt = Field(description="top-k routed experts per token (num_experts_per_tok)")
    expert_intermediate_size: PositiveInt = Field(description="width of one routed expert (moe_intermediate_size)")
    shared_experts: NonNegativeInt = 0
    shared_expert_intermediate_size: PositiveInt | None = None
    dense_layers: list[NonNegativeInt] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sizes_within_caps(self):
        return _within_caps(self)

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} exceeds num_experts {self.num_experts}")
        if self.shared_experts and self.shared_expert_intermediate_size is None:
            raise ValueError("shared_experts > 0 needs shared_expert_intermediate_size")
        return self


class LocalAttentionSpec(StrictModel):
    """Decoder layers that attend locally (issue 16): every layer not in `global_layers` sees only nearby keys.

    kind 'sliding' (Gemma 2/3, Mistral): a query at position i attends to keys i-window+1 .. i, so such a layer keeps
    at most `window_tokens` KV entries per sequence. kind 'chunked' (Llama 4 iRoPE): a query attends only to keys of
    its own chunk of `window_tokens` positions, [floor(i/c)*c, i]; such a layer needs at most one chunk of KV.
    """

    kind: Literal["sliding", "chunked"]
    window_tokens: PositiveInt = Field(description="sliding window (Gemma 3: 1024) or chunk size (Llama 4: 8192)")
    global_layers: list[NonNegativeInt] = Field(
        description="0-based decoder layers with full causal attention (Gemma 3: every 6th; Llama 4: every 4th)"
    )


class MlaSpec(StrictModel):
    """Multi-head latent attention (DeepSeek-V2/V3, DeepSeek-VL2, Kimi-VL): K and V of every head are up-projected
    from one shared latent of `kv_lora_rank` per token, cached with a `qk_rope_head_dim` RoPE key, so the KV cache
    holds kv_lora_rank + qk_rope_head_dim values per token and layer, whatever the head count or TP degree.

    Queries go through a `q_lora_rank` bottleneck (None: one direct q_proj, as in DeepSeek-V2-Lite and small VL2s).
    """

    kv_lora_rank: PositiveInt = Field(description="latent width cached per token (DeepSeek-V3: 512)")
    q_lora_rank: PositiveInt | None = Field(None, description="query bottleneck (DeepSeek-V3: 1536; None: direct)")
    qk_nope_head_dim: PositiveInt = Field(description="per-head query/key width without RoPE (128)")
    qk_rope_head_dim: PositiveInt = Field(description="decoupled RoPE key width shared by all heads (64)")
    v_head_dim: PositiveInt = Field(description="per-head value width (128)")

    @property
    def latent_dim(self) -> int:
        """Values cached per token and layer: the latent plus the shared RoPE key."""
        return self.kv_lora_rank + self.qk_rope_head_dim


class LanguageModelSpec(StrictModel):
    name: str
    num_layers: PositiveInt
    hidden_size: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt
    mlp_kind: MlpKind = "gated"
    vocab_size: PositiveInt
    tie_word_embeddings: bool = False
    max_position_embeddings: PositiveInt = 32768
    cross_attention_layers: list[NonNegativeInt] = Field(
        default_factory=list,
        description="0-based layers that cross-attend to image tokens (Llama-3.2-Vision); counted in num_layers",
    )
    moe: MoESpec | None = Field(None, description="mixture-of-experts MLP; None for a dense model")
    local_attention: LocalAttentionSpec | None = Field(
        None, description="sliding-window or chunked local attention in every layer but the global ones"
    )
    mla: MlaSpec | None = Field(None, description="multi-head latent attention instead of GQA (then num_kv_heads = "
                                                  "num_heads and head_dim = v_head_dim, as in the configs)")
    norms_per_layer: Literal[2, 4] = Field(
        2, description="RMSNorms over the hidden state per decoder layer: 2 (input + post-attention, the Llama "
                       "layout) or 4 (Gemma 2/3 'sandwich': input, post_attention, pre_feedforward, "
                       "post_feedforward)",
    )
    qk_norm: QkNormLayers = Field(
        "none", description="attention layers that normalise q and k per head over head_dim before attention: "
                            "'self' every self-attention layer (Qwen3, Gemma 3), 'local' only the local-attention "
                            "layers (Llama 4: its RoPE layers, weightless L2 norm), 'cross' only the cross-attention "
                            "layers (Llama-3.2-Vision), 'none'",
    )

    @model_validator(mode="after")
    def _sizes_within_caps(self):
        return _within_caps(self)

    @model_validator(mode="after")
    def _check(self) -> LanguageModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        _check_layer_list("cross_attention_layers", self.cross_attention_layers, self.num_layers)
        if self.moe is not None:
            _check_layer_list("moe.dense_layers", self.moe.dense_layers, self.num_layers)
        if self.local_attention is not None:
            _check_layer_list("local_attention.global_layers", self.local_attention.global_layers, self.num_layers)
        if self.qk_norm != "none" and self.mla is not None:
            raise ValueError("qk_norm must be 'none' with mla (MLA's latent norms are part of the MLA block)")
        if self.qk_norm == "local" and self.local_attention is None:
            raise ValueError("qk_norm 'local' needs local_attention (allowed without it: 'none', 'self', 'cross')")
        if self.qk_norm == "cross" and not self.cross_attention_layers:
            raise ValueError("qk_norm 'cross' needs cross_attention_layers (allowed without them: 'none', 'self', "
                             "'local')")
        return self

    def has_qk_norm(self, layer: int) -> bool:
        """True when decoder layer `layer` RMS-normalises its per-head q and k (see qk_norm)."""
        if self.qk_norm == "none":
            return False
        is_cross = layer in self.cross_attention_layers
        if self.qk_norm == "cross":
            return is_cross
        return not is_cross and (self.qk_norm == "self" or self.is_local_layer(layer))

    def is_local_layer(self, layer: int) -> bool:
        """True when self-attention layer `layer` attends within a window/chunk instead of the whole past."""
        la = self.local_attention
        return la is not None and layer not in la.global_layers and layer not in self.cross_attention_layers

    @property
    def local_attention_layers(self) -> int:
        """How many self-attention layers attend locally (0 without local_attention)."""
        return sum(1 for i in range(self.num_layers) if self.is_local_layer(i))

    @property
    def moe_layers(self) -> int:
        """Decoder layers whose MLP is a mixture of experts (0 for a dense model)."""
        return 0 if self.moe is None else self.num_layers - len(set(self.moe.dense_layers))

    def is_moe_layer(self, layer: int) -> bool:
        return self.moe is not None and layer not in self.moe.dense_layers

    @property
    def self_attention_layers(self) -> int:
        return self.num_layers - len(self.cross_attention_layers)


class ModelSpec(StrictModel):
    id: str
    name: str
    family: str
    source: str = Field(min_length=1, description="config.json / paper the numbers come from")
    vision: VisionEncoderSpec | None = Field(
        None, description="the vision encoder; None for a text-only LLM (import-hf of llama, qwen2, qwen3, ...)"
    )
    projector: ProjectorSpec | None = None
    llm: LanguageModelSpec
    tokenization: TokenizationPolicy | None = None
    video: VideoPolicy | None = None
    dtype: Dtype = Field("bf16", description="weights and compute dtype as released")
    notes: str = ""
    hf_repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$",
                                description="Hugging Face repo a server loads (`vllm serve <hf_repo>`), if public")

    @model_validator(mode="after")
    def _vision_parts_together(self) -> ModelSpec:
        parts = {"vision": self.vision, "projector": self.projector, "tokenization": self.tokenization}
        missing = [k for k, v in parts.items() if v is None]
        if missing and len(missing) < len(parts):
            raise ValueError(f"{', '.join(missing)}: missing; a vision-language model needs vision, projector and "
                             "tokenization, a text-only model none of them")
        if missing and self.video is not None:
            raise ValueError("video: a text-only model (no vision encoder) takes no video")
        return self

    @property
    def text_only(self) -> bool:
        """A plain LLM: no vision encoder, so requests carry no images or video."""
        return self.vision is None

    def with_mha_attention(self) -> ModelSpec:
        """The same model with multi-head latent attention replaced by plain multi-head attention of the same heads
        (K and V of v_head_dim per head, one KV head per query head): what the latent saves, drawn side by side in
        the explorer's roofline. Its id gains '-mha'; a model without MLA is returned unchanged."""
        return self.with_gqa_attention(self.llm.num_heads)

    def with_gqa_attention(self, kv_heads: int) -> ModelSpec:
        """As with_mha_attention, but grouped-query attention with `kv_heads` KV heads (a divisor of the query heads;
        K and V of v_head_dim per KV head): MLA decode next to the GQA a model of the same size would run (issue 16).
        Its id gains '-gqa<kv_heads>' ('-mha' when kv_heads equals the heads); a model without MLA is unchanged."""
        mla = self.llm.mla
        if mla is None:
            return self
        heads = self.llm.num_heads
        if isinstance(kv_heads, bool) or not isinstance(kv_heads, int) or kv_heads < 1 or heads % kv_heads:
            raise SpecError(f"kv_heads: expected a divisor of the {heads} attention heads of {self.id}, "
                            f"got {kv_heads!r}")
        llm = self.llm.model_copy(update={"mla": None, "num_kv_heads": kv_heads, "head_dim": mla.v_head_dim})
        tag, what = ("mha", "MHA") if kv_heads == heads else (f"gqa{kv_heads}", f"GQA with {kv_heads} KV heads")
        return self.model_copy(update={"id": f"{self.id}-{tag}", "name": f"{self.name} ({what} instead of MLA)",
                                       "llm": llm})

    @property
    def image_tokens_in_kv_of_cross_attention(self) -> bool:
        """True when image tokens do not enter the decoder sequence (Llama-3.2-Vision)."""
        return bool(self.llm.cross_attention_layers)
