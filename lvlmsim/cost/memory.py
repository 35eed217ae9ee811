"""GPU memory: weights per module, KV bytes per token, activation peak, how many sequences fit, and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lvlmsim.errors import InfeasibleError
from lvlmsim.ops.graph import layer_segments, local_kv_held, param_counts
from lvlmsim.ops.op import GraphConfig, Op
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec

GIB = 2**30
# CUDA context, allocator fragmentation, NCCL buffers and the serving runtime's own tensors: held back from KV.
RUNTIME_RESERVED_BYTES = 1.0 * GIB


def check_tp(model: ModelSpec, tp: int) -> None:
    """Tensor parallelism must split attention heads evenly (KV heads may be replicated when fewer than tp)."""
    lm = model.llm
    if tp < 1:
        raise InfeasibleError(f"tp: must be >= 1, got {tp}")
    if lm.num_heads % tp:
        raise InfeasibleError(
            f"tp: {tp} does not divide the {lm.num_heads} attention heads of {model.id}; "
            f"allowed: {', '.join(str(d) for d in range(1, lm.num_heads + 1) if lm.num_heads % d == 0)}"
        )
    if lm.num_kv_heads % tp and tp % lm.num_kv_heads:
        raise InfeasibleError(f"tp: {tp} neither divides nor is a multiple of the {lm.num_kv_heads} KV heads")


def check_ep(model: ModelSpec, tp: int, ep: int) -> None:
    """Expert parallelism splits a MoE model's experts ep ways inside its tp group: ep divides tp and the experts."""
    if ep == 1:
        return
    moe = model.llm.moe
    if moe is None:
        raise InfeasibleError(f"ep: {model.id} has no mixture-of-experts layers; allowed: 1")
    ok = [d for d in range(1, tp + 1) if tp % d == 0 and moe.num_experts % d == 0]
    if ep < 1 or ep not in ok:
        raise InfeasibleError(
            f"ep: {ep} must divide tp ({tp}) and the {moe.num_experts} experts of {model.id}; "
            f"allowed: {', '.join(str(d) for d in ok)}"
        )


def kv_heads_per_device(model: ModelSpec, tp: int) -> int:
    return max(1, model.llm.num_kv_heads // tp)


def weight_bytes(model: ModelSpec, cfg: GraphConfig) -> dict[str, float]:
    """Weight bytes per device per module: parameters x storage dtype, sharded by tp."""
    counts = param_counts(model)
    return {m: counts[m] * DTYPE_BYTES[cfg.weight_dtype.get(m, model.dtype)] / cfg.tp for m in counts}


def kv_bytes_per_layer(model: ModelSpec, cfg: GraphConfig) -> float:
    """KV bytes one token holds in one attention layer on one device: K and V of this device's KV heads, or, for
    multi-head latent attention, the latent + RoPE key (kv_lora + rope values), which every TP rank keeps whole
    (vLLM replicates the MLA cache across TP). DeepSeek-V3 bf16: (512 + 64) x 2 = 1152 B vs GQA-equivalent 128 heads
    x (192 + 128) x 2 B = 81,920 B."""
    lm = model.llm
    if lm.mla is not None:
        return lm.mla.latent_dim * DTYPE_BYTES[cfg.kv_dtype]
    return 2.0 * kv_heads_per_device(model, cfg.tp) * lm.head_dim * DTYPE_BYTES[cfg.kv_dtype]


def kv_bytes_per_token(model: ModelSpec, cfg: GraphConfig) -> float:
    """KV bytes one text token holds on one device: K and V (or the MLA latent) for every self-attention layer."""
    return model.llm.self_attention_layers * kv_bytes_per_layer(model, cfg)


def kv_bytes_per_visual_token(model: ModelSpec, cfg: GraphConfig) -> float:
    """KV bytes one visual token holds, after any in-LLM pruning schedule dropped it from later layers."""
    lm = model.llm
    per_layer = kv_bytes_per_layer(model, cfg)
    if model.image_tokens_in_kv_of_cross_attention:
        return per_layer * len(lm.cross_attention_layers)
    cross = set(lm.cross_attention_layers)
    kept = 0.0
    for first, last, frac in layer_segments(lm.num_layers, cfg.visual_keep):
        kept += frac * sum(1 for i in range(first, last + 1) if i not in cross)
    return per_layer * kept


def kv_bytes_per_token_beyond_window(model: ModelSpec, cfg: GraphConfig) -> float:
    """KV bytes each token past the local window adds: only the global layers keep it (= kv_bytes_per_token for a
    model without local attention). Gemma 3: 10 of 62 layers; Llama 4: 12 of 48."""
    return kv_bytes_per_token(model, cfg) - kv_bytes_per_layer(model, cfg) * model.llm.local_attention_layers


def kv_slot_bytes(model: ModelSpec, cfg: GraphConfig) -> float:
    """Bytes of one engine KV slot: a token in every self-attention layer, or, with local attention, only in the
    global layers (the local layers' window is reserved per sequence up front: `local_window_slots`)."""
    if model.llm.local_attention is None or model.image_tokens_in_kv_of_cross_attention:
        return kv_bytes_per_token(model, cfg)
    return kv_bytes_per_token_beyond_window(model, cfg)


def local_window_slots(model: ModelSpec, cfg: GraphConfig, tokens: int) -> int:
    """Engine slots (of kv_slot_bytes) that the local layers' window of a `tokens`-long sequence takes: reserved
    whole at admission, an upper bound of vLLM's sliding-window blocks while the sequence is shorter than that."""
    la = model.llm.local_attention
    if la is None or model.image_tokens_in_kv_of_cross_attention:
        return 0
    slot = kv_slot_bytes(model, cfg)
    local_per_token = kv_bytes_per_token(model, cfg) - slot
    return math.ceil(local_kv_held(tokens, la.window_tokens, la.kind) * local_per_token / slot - 1e-9)


def sequence_kv_bytes(model: ModelSpec, cfg: GraphConfig, text_tokens: int, visual_tokens: int) -> float:
    """KV bytes of one sequence: every token in every self-attention layer, except that local (sliding/chunked)
    layers hold at most one window of it (see ops.graph.local_kv_held)."""
    full = text_tokens * kv_bytes_per_token(model, cfg) + visual_tokens * kv_bytes_per_visual_token(model, cfg)
    la = model.llm.local_attention
    if la is None or model.image_tokens_in_kv_of_cross_attention:
        return full
    n = text_tokens + visual_tokens
    dropped = n - local_kv_held(n, la.window_tokens, la.kind)
    return full - dropped * (kv_bytes_per_token(model, cfg) - kv_bytes_per_token_beyond_window(model, cfg))


def activation_peak_bytes(ops: list[Op] | tuple[Op, ...]) -> float:
    """Largest transient footprint of any single op (inputs + outputs live at once) plus the residual stream."""
    return max((op.act_bytes for op in ops), default=0.0)


@dataclass
class MemoryReport:
    capacity_bytes: float
    usable_bytes: float
    weights_bytes: float
    weights_by_module: dict[str, float]
    kv_bytes_per_token: float
    kv_bytes_per_visual_token: float
    kv_bytes_per_token_beyond_window: float
    activation_peak_bytes: float
    reserved_bytes: float
    request_kv_bytes: float
    batch: int
    kv_budget_bytes: float
    max_sequences: int
    fits: bool
    verdict: str
    notes: list[str] = field(default_factory=list)

    @property
    def needed_bytes(self) -> float:
        fixed = self.weights_bytes + self.activation_peak_bytes + self.reserved_bytes
        return fixed + self.request_kv_bytes * self.batch

    def to_dict(self) -> dict:
        return {
            "capacity_bytes": self.capacity_bytes,
            "usable_bytes": self.usable_bytes,
            "weights_bytes": self.weights_bytes,
            "weights_by_module": self.weights_by_module,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_bytes_per_visual_token": self.kv_bytes_per_visual_token,
            "kv_bytes_per_token_beyond_window": self.kv_bytes_per_token_beyond_window,
            "activation_peak_bytes": self.activation_peak_bytes,
            "reserved_bytes": self.reserved_bytes,
            "request_kv_bytes": self.request_kv_bytes,
            "needed_bytes": self.needed_bytes,
            "kv_budget_bytes": self.kv_budget_bytes,
            "max_sequences": self.max_sequences,
            "fits": self.fits,
            "verdict": self.verdict,
        }


def memory_report(
    model: ModelSpec, hw: HardwareSpec, cfg: GraphConfig, *, text_tokens: int, visual_tokens: int, batch: int,
    activation_ops: list[Op] | tuple[Op, ...] = (), gpu_memory_utilization: float = 0.9,
    extra_bytes: float = 0.0,
) -> MemoryReport:
    """Does a batch of `batch` sequences of this length fit on one device of a tp group? Says why not."""
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise InfeasibleError(f"gpu_memory_utilization: must be in (0, 1], got {gpu_memory_utilization}")
    by_module = weight_bytes(model, cfg)
    weights = sum(by_module.values()) + extra_bytes
    act = activation_peak_bytes(activation_ops)
    cap = hw.mem_capacity_bytes
    usable = cap * gpu_memory_utilization
    req_kv = sequence_kv_bytes(model, cfg, text_tokens, visual_tokens)
    budget = usable - weights - act - RUNTIME_RESERVED_BYTES
    max_seqs = int(budget // req_kv) if req_kv > 0 and budget > 0 else 0
    needed = weights + act + RUNTIME_RESERVED_BYTES + req_kv * batch
    fits = needed <= usable
    if fits:
        verdict = (
            f"fits: needs {needed / GIB:.1f} GiB of {usable / GIB:.1f} GiB usable "
            f"({gpu_memory_utilization:.0%} of {cap / GIB:.0f} GiB); room for {max_seqs} such sequences"
        )
    else:
        verdict = (
            f"does not fit: needs {needed / GIB:.1f} GiB (weights {weights / GIB:.1f}, KV {req_kv * batch / GIB:.1f}, "
            f"activations {act / GIB:.1f}, runtime {RUNTIME_RESERVED_BYTES / GIB:.1f}), device has {usable / GIB:.1f} "
            f"GiB usable ({gpu_memory_utilization:.0%} of {cap / GIB:.0f} GiB on {hw.id}, tp={cfg.tp})"
        )
    return MemoryReport(
        capacity_bytes=cap, usable_bytes=usable, weights_bytes=weights, weights_by_module=by_module,
        kv_bytes_per_token=kv_bytes_per_token(model, cfg),
        kv_bytes_per_visual_token=kv_bytes_per_visual_token(model, cfg),
        kv_bytes_per_token_beyond_window=kv_bytes_per_token_beyond_window(model, cfg),
        activation_peak_bytes=act, reserved_bytes=RUNTIME_RESERVED_BYTES, request_kv_bytes=req_kv, batch=batch,
        kv_budget_bytes=max(budget, 0.0), max_sequences=max_seqs, fits=fits, verdict=verdict,
    )
