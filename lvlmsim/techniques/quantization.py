"""Weight/activation quantization per module and KV-cache quantization: fewer bytes, a different compute peak.

Both act on dtypes through GraphConfig (weight_dtype / compute_dtype / dequant_flops_per_weight per module, kv_dtype),
so weight memory, GEMM weight reads, KV memory and KV reads follow from the graph's own formulas; the cost model
prices each GEMM at the device's peak for its compute dtype and fails (InfeasibleError) where the device lacks it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lvlmsim.errors import InfeasibleError
from lvlmsim.ops.op import ATTN_KINDS, MODULES, GraphConfig, Op
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.base import ORDER_KV, ORDER_WEIGHTS, TechniqueConfig, register

_ATTN_KINDS = ATTN_KINDS

# scheme -> (weight dtype, compute dtype or None = the model's activation dtype)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "w8a8": ("int8", "int8"), "fp8": ("fp8", "fp8"), "w4a16": ("int4", None), "fp4": ("fp4", "fp4"),
}


@register
class WeightQuantConfig(TechniqueConfig):
    """Weight (and activation) quantization of one module or all of them.

    - w8a8 (SmoothQuant, Xiao et al., ICML 2023): int8 weights, int8 GEMMs at the device's int8 peak.
    - fp8 (E4M3 W8A8, as TensorRT-LLM / vLLM serve it): fp8 weights, fp8 GEMMs at the fp8 peak.
    - w4a16 (AWQ, Lin et al., MLSys 2024; GPTQ): int4 weights read, GEMMs in the activation dtype after an
      in-kernel dequantization costed at `dequant_flops_per_weight` FLOPs per weight per GEMM call (default 2:
      one scale multiply and one zero-point add).
    - fp4 (NVFP4 W4A4, as TensorRT-LLM serves it on Blackwell): fp4 weights, fp4 GEMMs at the fp4 peak (Blackwell
      devices); the GEMM reads the weights' and the quantised activation's fp8 block scales (one per 16 values).
    W8A8 and W4A4 GEMMs read x in their compute dtype; the pass that quantises it is not an op of its own (the
    calibrated GEMM efficiencies, fitted on vLLM's fp8 and NVFP4 linears, include it).
    Attention stays in the activation dtype (its operands are activations and KV, not weights).
    """

    kind: Literal["weight_quant"] = "weight_quant"
    module: Literal["vision", "projector", "llm", "all"] = Field("llm", description="which module's weights")
    scheme: Literal["w8a8", "fp8", "w4a16", "fp4"] = Field(description="quantization scheme")
    dequant_flops_per_weight: float = Field(2.0, ge=0.0, description="w4a16 only: FLOPs per weight per GEMM call")

    citation: ClassVar[str] = ("Xiao et al., SmoothQuant, ICML 2023 (arXiv 2211.10438); Lin et al., AWQ, MLSys 2024 "
                               "(arXiv 2306.00978); Frantar et al., GPTQ, ICLR 2023 (arXiv 2210.17323); NVIDIA "
                               "TensorRT-LLM FP8 and NVFP4 (Blackwell)")
    stage: ClassVar[str] = "encode/prefill/decode of the chosen module + weight memory"
    acts_on: ClassVar[str] = "dtypes/bytes of GEMMs (weight_dtype, compute_dtype, dequant FLOPs)"
    order: ClassVar[int] = ORDER_WEIGHTS

    def modules(self) -> tuple[str, ...]:
        return MODULES if self.module == "all" else (self.module,)

    def claims(self) -> tuple[str, ...]:
        return tuple(f"weight_quant:{m}" for m in self.modules())

    def compute_dtype(self, model: ModelSpec) -> str:
        return SCHEMES[self.scheme][1] or model.dtype

    def check(self, model: ModelSpec, hw: HardwareSpec, tp: int) -> None:
        dtype = self.compute_dtype(model)
        try:
            hw.peak_flops(dtype)
        except InfeasibleError as exc:
            raise InfeasibleError(f"technique '{self.label()}': scheme: {self.scheme} computes in {dtype}, but "
                                  f"{exc}") from None

    def transform_config(self, cfg: GraphConfig, model: ModelSpec) -> GraphConfig:
        w_dtype = SCHEMES[self.scheme][0]
        c_dtype = self.compute_dtype(model)
        weight, compute, deq = dict(cfg.weight_dtype), dict(cfg.compute_dtype), dict(cfg.dequant_flops_per_weight)
        for m in self.modules():
            weight[m], compute[m] = w_dtype, c_dtype
            if self.scheme == "w4a16" and self.dequant_flops_per_weight:
                deq[m] = self.dequant_flops_per_weight
            else:
                deq.pop(m, None)
        return dataclasses.replace(cfg, weight_dtype=weight, compute_dtype=compute, dequant_flops_per_weight=deq)

    def transform_ops(self, ops: Sequence[Op], model: ModelSpec, cfg: GraphConfig) -> list[Op]:
        mods = set(self.modules())
        return [dataclasses.replace(op, dtype=cfg.act_dtype)
                if op.kind in _ATTN_KINDS and op.module in mods and op.dtype != cfg.act_dtype else op for op in ops]

    def notes(self, model: ModelSpec) -> list[str]:
        w, _ = SCHEMES[self.scheme]
        return [f"weight_quant: {'/'.join(self.modules())} weights in {w}, GEMMs in {self.compute_dtype(model)}"
                + (f" + {self.dequant_flops_per_weight:g} dequant FLOPs/weight" if self.scheme == "w4a16" else "")
                + "; per-group scales/zero-points (except NVFP4's block scales) and unquantized embeddings are not "
                  "counted"]


@register
class KVQuantConfig(TechniqueConfig):
    """KV-cache quantization: K and V stored in `bits` (8: fp8 or int8; 4 and 2: integer, KIVI-style).

    Fewer bytes per cached token (memory and every decode step's KV reads); dequantization costs
    `dequant_flops_per_element` FLOPs per cached K/V element read (default: 1 for an fp8 cast, 2 for an integer
    scale + zero-point), folded into the attention op that reads it. Not modelled: per-group scale/zero-point bytes
    (KIVI g=32 fp16 scale+zero add 0.125 B/element) and KIVI's full-precision window of recent tokens.
    """

    kind: Literal["kv_quant"] = "kv_quant"
    bits: int = Field(8, description="bits per K/V element: 8, 4 or 2")
    format: Literal["fp8", "int8", "int"] | None = Field(None, description="8 bits: fp8 (default) or int8")
    dequant_flops_per_element: float | None = Field(None, ge=0.0, description="FLOPs per K/V element read")

    citation: ClassVar[str] = ("Liu et al., KIVI, ICML 2024 (arXiv 2402.02750); Hooper et al., KVQuant (arXiv "
                               "2401.18079); vLLM/TensorRT-LLM FP8 KV cache")
    stage: ClassVar[str] = "decode (+ KV memory)"
    acts_on: ClassVar[str] = "KV bytes (GraphConfig.kv_dtype) + dequant FLOPs in attention"
    order: ClassVar[int] = ORDER_KV

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: int) -> int:
        if v not in (8, 4, 2):
            raise ValueError("must be one of 8, 4, 2")
        return v

    @model_validator(mode="after")
    def _format_fits_bits(self) -> KVQuantConfig:
        if self.bits != 8 and self.format not in (None, "int"):
            raise ValueError(f"format: '{self.format}' does not exist for bits={self.bits}; allowed: int "
                             "(fp8/int8 are 8-bit formats)")
        return self

    def kv_dtype(self) -> str:
        """The GraphConfig.kv_dtype name (a key of DTYPE_BYTES)."""
        if self.bits == 8:
            return "fp8" if self.format in (None, "fp8") else "int8"
        return f"int{self.bits}"

    def flops_per_element(self) -> float:
        if self.dequant_flops_per_element is not None:
            return self.dequant_flops_per_element
        return 1.0 if self.kv_dtype() == "fp8" else 2.0

    def transform_config(self, cfg: GraphConfig, model: ModelSpec) -> GraphConfig:
        return dataclasses.replace(cfg, kv_dtype=self.kv_dtype())

    def transform_ops(self, ops: Sequence[Op], model: ModelSpec, cfg: GraphConfig) -> list[Op]:
        per = self.flops_per_element()
        if not per:
            return list(ops)
        out = []
        for op in ops:
            if op.module == "llm" and op.kind in _ATTN_KINDS and len(op.shape) == 6:
                batch, q_per_seq, kv_per_seq, _, kv_heads, head_dim = op.shape
                cached = kv_per_seq if op.name == "llm.cross_attention" else max(0.0, kv_per_seq - q_per_seq)
                if cached > 0:
                    op = dataclasses.replace(op, flops=op.flops + per * batch * cached * 2 * kv_heads * head_dim)
            out.append(op)
        return out

    def notes(self, model: ModelSpec) -> list[str]:
        return [f"kv_quant: KV cache in {self.kv_dtype()} ({self.flops_per_element():g} dequant FLOPs per cached "
                "K/V element read); scales/zero-points not counted"]
