"""Fitted efficiency profiles: per op family, efficiency as a smooth function of shape, plus a per-kernel floor.

Each family has a *form*: named parameters and a function from an op's shape to (compute efficiency, memory
efficiency, floor seconds). The cost model then prices the op as roofline.CostModel always does:
t = max(flops / (eff_c * peak[dtype]), bytes / (eff_m * bw)) + floor. Efficiencies are fractions of the hardware
spec's *datasheet* peak and bandwidth, so a profile fitted on one device transfers to another by its datasheet numbers:
the efficiency shape is kept and the floor is kept as is.

The same form code runs on numpy arrays (fitting, thousands of rows at once) and on plain floats (the engine's hot
path: a dozen float operations per op, no numpy, no pandas); `xp` is the math namespace it runs on.

Building blocks (x > 0 always):
- saturation  S(x; x0, p) = 1 / (1 + (x0/x)^p): rises from 0 to 1 around x0 with steepness p;
- tile quantisation Q(x; T) = x / (ceil(x/T) * T): the fraction of a padded tile that is useful work (T=1: none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvlmsim.calibrate.kernels import (
    attention_kernel,
    prefill_ctas,
    regroups_gqa,
    splits_kv,
    unsplit_key_blocks,
    vit_ctas,
    vit_resident_ctas,
)
from lvlmsim.cost.collectives import CUSTOM_AR_ROLE, CUSTOM_AR_SUFFIX, custom_ar_one_stage
from lvlmsim.cost.profile import DEFAULT_PROFILE, DefaultProfile, Efficiency
from lvlmsim.cost.roofline import fixed_latency_s
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import (
    ALLREDUCE,
    ALLTOALL,
    ATTN_DECODE,
    ATTN_ENCODER,
    ATTN_PREFILL,
    CONV,
    ELEMENTWISE,
    GEMM,
    KINDS,
    Op,
)
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.inputs import number, read_text

PROFILE_FORMAT = "lvlmsim-profile/1"
EXP_RANGE = (0.05, 30.0)  # exponents of saturations: from nearly flat to nearly a step
EFF_MIN = 1e-4  # efficiencies are clipped into [EFF_MIN, 1] so a wild extrapolation can never divide by zero


class _PyMath:
    """The float namespace of the forms (hot path)."""

    ceil = staticmethod(math.ceil)
    log2 = staticmethod(math.log2)

    @staticmethod
    def pw(a: float, b: float) -> float:
        """a**b that saturates to inf instead of raising (a saturation far past its knee is just 0 or 1)."""
        try:
            return a**b
        except OverflowError:
            return math.inf

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return a if a < b else b

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return a if a > b else b


PYMATH = _PyMath()


class _NpMath:
    """The numpy namespace of the forms (fitting)."""

    def __init__(self):
        import numpy as np

        self.ceil, self.log2, self.minimum, self.maximum, self.pw = np.ceil, np.log2, np.minimum, np.maximum, np.power


def np_math() -> _NpMath:
    global _NPMATH
    if _NPMATH is None:
        _NPMATH = _NpMath()
    return _NPMATH


_NPMATH: _NpMath | None = None


def sat(xp, x, x0: float, p: float):
    """Saturation S(x; x0, p) in [0, 1]: x/x0 -> 0 gives 0, x >> x0 gives 1."""
    return 1.0 / (1.0 + xp.pw(x0 / x, p))


def tile(xp, x, t: float):
    """Useful fraction of the work when `x` is padded up to a multiple of the tile `t`."""
    if t <= 1:
        return 1.0
    return x / (xp.ceil(x / t) * t)


# What each kind of parameter may be when a profile is read back: (low, high, low excluded); every one finite.
# Exponents only need to be positive (a shipped CPU fit has 0.0104, below the fitting start range EXP_RANGE).
PARAM_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "eff": (0.0, 1.0, True), "pos": (0.0, None, True), "exp": (0.0, None, True),
    "floor": (0.0, None, False), "real": (None, None, False),
}


@dataclass(frozen=True)
class Param:
    """A parameter: `eff` lives in (0, 1) (logistic), `pos` in (0, inf) (log), `exp` (an exponent) in
    EXP_RANGE (scaled logistic), `real` unconstrained; `floor` is fitted in a band around the data's smallest times."""

    name: str
    kind: str
    init: float
    doc: str = ""


OVERLAP = Param("overlap", "eff", 0.3, "share of the shorter of compute and memory time not hidden under the longer")


class Form:
    """A family's efficiency function. Subclasses define `core` params, hyper grid, features() and eff().

    Forms with `overlap` get one more parameter, beta: real kernels do not overlap memory traffic and arithmetic
    perfectly, so near the ridge point t = max(tc, tm) + beta * min(tc, tm) rather than the pure max. This is folded
    into the two efficiencies (see `apply_overlap`), so the cost model's max() reproduces it exactly; because tc and tm
    come from the device's datasheet peak and bandwidth, the blend moves with the ridge point when a profile is
    transferred to another device.
    """

    name: str = ""
    core: tuple[Param, ...] = ()
    overlap: bool = True
    hyper_grid: dict[str, tuple[float, ...]] = {}

    @property
    def params(self) -> tuple[Param, ...]:
        return self.core + ((OVERLAP,) if self.overlap else ())

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        raise NotImplementedError

    def eff(self, xp, p, h: dict[str, float], x) -> tuple[Any, Any, Any]:
        """(eff_compute, eff_memory, floor_s) of features `x` (floats or arrays), natural-space `core` params `p`."""
        raise NotImplementedError

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.params)


class GemmForm(Form):
    """GEMM and patch-embedding conv, shape (m, n, k).

    Compute: saturating in m, n and k (small dimensions cannot fill the machine or amortise a tile's prologue),
    times tile quantisation of m and n. Memory: saturating in bytes (small transfers never reach streaming bandwidth).
    The m-saturation is what moves the roofline's corner: a 17-1024-row GEMM is neither bandwidth- nor compute-bound.
    """

    name = "gemm"
    core = (
        Param("ec_max", "eff", 0.8, "compute efficiency of a large GEMM"),
        Param("m0", "pos", 128.0, "rows at which compute efficiency is half-saturated"),
        Param("pm", "exp", 1.5, "steepness in m"),
        Param("n0", "pos", 256.0, "columns at half saturation"),
        Param("pn", "exp", 1.0, "steepness in n"),
        Param("k0", "pos", 128.0, "reduction depth at half saturation"),
        Param("pk", "exp", 1.0, "steepness in k"),
        Param("em_max", "eff", 0.85, "memory efficiency of a large transfer"),
        Param("b0", "pos", 4e6, "bytes at half-saturated bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("nb0", "pos", 512.0, "output columns at half-saturated bandwidth (skinny GEMMs stream with few CTAs)"),
        Param("pnb", "exp", 1.0, "steepness of bandwidth in n"),
        Param("floor_s", "floor", 3e-6, "per-kernel floor"),
    )
    hyper_grid = {"tile_m": (1.0, 64.0, 128.0), "tile_n": (1.0, 64.0, 128.0)}
    max_steepness: float | None = None  # cap on pm, pn, pk (MonotoneGemmForm)

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        m, n, k = op.shape[:3]
        return (float(m), float(n), float(k), op.bytes)

    def eff(self, xp, p, h, x):
        ec_max, m0, pm, n0, pn, k0, pk, em_max, b0, pb, nb0, pnb, floor_s = p
        m, n, k, nbytes = x
        if self.max_steepness is not None:
            cap = self.max_steepness
            pm, pn, pk = xp.minimum(pm, cap), xp.minimum(pn, cap), xp.minimum(pk, cap)
        ec = (ec_max * sat(xp, m, m0, pm) * sat(xp, n, n0, pn) * sat(xp, k, k0, pk)
              * tile(xp, m, h["tile_m"]) * tile(xp, n, h["tile_n"]))
        em = em_max * sat(xp, nbytes, b0, pb) * sat(xp, n, nb0, pnb)
        return ec, em, floor_s


class AttentionForm(Form):
    """Prefill (causal) and encoder (non-causal) attention, shape (batch, q, kv, heads, kv_heads, head_dim).

    Compute: saturating in tokens per sequence (short sequences waste the query/key tiles), in total parallel work
    batch*heads*q (too few tiles leave SMs idle), and rising-then-falling in head size (small heads starve the tensor
    cores, very large ones spill registers and switch kernels). Memory: saturating in bytes.
    """

    name = "attention"
    core = (
        Param("ec_max", "eff", 0.6, "compute efficiency of long sequences"),
        Param("q0", "pos", 512.0, "tokens per sequence at half saturation"),
        Param("pq", "exp", 1.0, "steepness in tokens"),
        Param("w0", "pos", 2e4, "batch*heads*tokens at half saturation"),
        Param("pw", "exp", 1.0, "steepness in parallel work"),
        Param("h0", "pos", 48.0, "head size below which efficiency falls"),
        Param("ph", "exp", 1.0, "steepness at small heads"),
        Param("h1", "pos", 1024.0, "head size above which efficiency falls"),
        Param("ph1", "exp", 2.0, "steepness at large heads"),
        Param("em_max", "eff", 0.8, "memory efficiency of large transfers"),
        Param("b0", "pos", 1e6, "bytes at half-saturated bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("floor_s", "floor", 8e-6, "per-kernel floor (incl. the KV-cache write kernel for prefill)"),
    )
    hyper_grid = {"tile_d": (1.0, 32.0)}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        batch, q, _kv, heads, _kvh, d = op.shape[:6]
        return (float(q), float(batch) * heads * max(float(q), 1.0), float(d), op.bytes)

    def eff(self, xp, p, h, x):
        ec_max, q0, pq, w0, pw, h0, ph, h1, ph1, em_max, b0, pb, floor_s = p
        q, work, d, nbytes = x
        head = tile(xp, d, h["tile_d"]) / (1.0 + xp.pw(h0 / d, ph) + xp.pw(d / h1, ph1))
        ec = ec_max * sat(xp, q, q0, pq) * sat(xp, work, w0, pw) * head
        em = em_max * sat(xp, nbytes, b0, pb)
        return ec, em, floor_s


class DecodeForm(Form):
    """Decode attention (one query per sequence against its KV): memory-bound, saturating in KV bytes.

    Bandwidth efficiency rises with the bytes read (issue 5: ~90% only above ~1 GB of KV on H100) and with the bytes
    per (sequence, kv-head) work item: each item costs a fixed setup (a whole KV tile, the softmax epilogue), so 2048
    sequences of 2 tokens take ~27 ns each however few bytes they hold. It falls for few work items (split-KV recovers
    only part of the parallelism) and for very large heads (a different, register-starved kernel).
    """

    name = "decode"
    core = (
        Param("ec_max", "eff", 0.5, "compute efficiency (rarely binding: GQA ratio x head size is far below ridge)"),
        Param("em_max", "eff", 0.9, "bandwidth efficiency of a very large KV"),
        Param("b0", "pos", 3e7, "bytes at half-saturated bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("c0", "pos", 3e4, "bytes per (sequence, kv-head) item at half saturation: the per-item setup cost"),
        Param("pc", "exp", 1.0, "steepness in bytes per item"),
        Param("g0", "pos", 2.0, "batch x kv_heads at half saturation"),
        Param("pg", "exp", 1.0, "steepness in batch x kv_heads"),
        Param("h1", "pos", 1024.0, "head size above which efficiency falls"),
        Param("ph1", "exp", 2.0, "steepness at large heads"),
        Param("floor_s", "floor", 1e-5, "per-kernel floor (attention + KV write)"),
    )
    hyper_grid = {}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        batch, _q, _kv, _heads, kvh, d = op.shape[:6]
        groups = max(float(batch) * kvh, 1.0)
        return (groups, float(d), op.bytes)

    def eff(self, xp, p, h, x):
        ec_max, em_max, b0, pb, c0, pc, g0, pg, h1, ph1, floor_s = p
        groups, d, nbytes = x
        em = (em_max * sat(xp, nbytes, b0, pb) * sat(xp, nbytes / groups, c0, pc) * sat(xp, groups, g0, pg)
              / (1.0 + xp.pw(d / h1, ph1)))
        return ec_max, em, floor_s


class ElementwiseForm(Form):
    """Norms, activations, residual adds, copies: bandwidth saturating in bytes; compute efficiency flat.

    A cache term lets tensors that fit on chip stream faster than DRAM/HBM: em is multiplied by
    1 + boost / (1 + (bytes/bc)^pc), which fades to 1 above the cache size bc (a CPU add of 64K floats runs at ~45
    GB/s from L2, at ~12 GB/s from DRAM).
    """

    name = "elementwise"
    core = (
        Param("ec_max", "eff", 0.3, "compute efficiency (binding only for transcendental-heavy ops)"),
        Param("em_max", "eff", 0.8, "bandwidth efficiency of large tensors"),
        Param("b0", "pos", 1e6, "bytes at half-saturated bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("boost", "pos", 0.05, "extra bandwidth share of cache-resident tensors"),
        Param("bc", "pos", 3e7, "bytes at which the cache boost is half gone"),
        Param("pc", "exp", 2.0, "steepness of the cache boost"),
        Param("floor_s", "floor", 3e-6, "per-kernel floor"),
    )
    hyper_grid = {}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (op.bytes,)

    def eff(self, xp, p, h, x):
        ec_max, em_max, b0, pb, boost, bc, pc, floor_s = p
        (nbytes,) = x
        return ec_max, em_max * sat(xp, nbytes, b0, pb) * (1.0 + boost / (1.0 + xp.pw(nbytes / bc, pc))), floor_s


class AllreduceForm(Form):
    """All-reduce over the intra-node link: link efficiency by device count, saturating in message bytes.

    The cost model adds log2(n) x the spec's link latency (roofline.allreduce_latency_s); the floor here *replaces*
    that term by the measured alpha(n) = a0 + a1*(n-1): floor = alpha(n) - log2(n)*latency, which may be negative;
    the total is alpha(n) + the bandwidth term, never below alpha(n).
    """

    name = "allreduce"
    overlap = False
    core = (
        Param("e2", "eff", 0.7, "link efficiency of large messages, 2 devices"),
        Param("e4", "eff", 0.8, "... 4 devices"),
        Param("e8", "eff", 0.9, "... 8 devices"),
        Param("b0", "pos", 2e6, "bytes at half-saturated link bandwidth"),
        Param("pb", "exp", 1.0, "steepness in bytes"),
        Param("a0", "pos", 4e-6, "small-message latency, 2 devices"),
        Param("a1", "pos", 1.5e-6, "added small-message latency per extra device"),
    )
    hyper_grid = {}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (op.bytes_read, float(max(op.devices, 1)), hw.intra_node_link.latency_us * 1e-6)

    def eff(self, xp, p, h, x):
        e2, e4, e8, b0, pb, a0, a1 = p
        nbytes, n, lat = x
        # piecewise-linear in log2(devices) through (1, e2), (2, e4), (3, e8), flat outside
        g = xp.minimum(xp.maximum(xp.log2(xp.maximum(n, 2.0)), 1.0), 3.0)
        lo = xp.minimum(g, 2.0)
        e_n = e2 + (e4 - e2) * (lo - 1.0) + (e8 - e4) * (g - lo)
        em = e_n * sat(xp, nbytes, b0, pb)
        floor_s = a0 + a1 * (n - 1.0) - self.latency_term(xp, n, lat)
        return 1.0, em, floor_s

    def latency_term(self, xp, n, lat):
        """The latency the cost model adds to this collective, which the fitted floor replaces:
        roofline.allreduce_latency_s, log2(n) x the link latency."""
        return xp.log2(xp.maximum(n, 1.0)) * lat


class AlltoallForm(AllreduceForm):
    """All-to-all (expert-parallel dispatch / combine) over the link: the all-reduce form, parameters of its own.

    NCCL runs both collectives over the same NVLink/NVSwitch fabric and protocols; its all-to-all is grouped
    point-to-point sends, (n-1)/n of the bytes per device crossing the link once plus one latency, which is what the
    cost model prices (roofline.alltoall_s). Here the link efficiency e(n) saturating in bytes scales that bandwidth
    term, and the measured small-message time a0 + a1 (n-1) replaces the one latency the cost model adds (the link's,
    or the network's across nodes: roofline.fixed_latency_s, the third feature).
    """

    name = "alltoall"

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (op.bytes_read, float(max(op.devices, 1)), fixed_latency_s(op, hw))

    def latency_term(self, xp, n, lat):
        return lat


class StagedAllreduceForm(AllreduceForm):
    """AllreduceForm for vLLM's / SGLang's custom all-reduce kernel, which runs one of two algorithms by group size and
    message (lvlmsim.cost.collectives.custom_ar_one_stage, from the kernel's source). One stage: every GPU reads the
    whole message from each of its n-1 peers, (n-1) x the bytes where the cost model's ring term counts 2(n-1)/n x,
    so the link efficiency is scaled by 2/n (no parameter). Two stages (reduce-scatter, then all-gather): the ring's
    traffic plus a second barrier, `a2` (in aiconfigurator's 8-GPU tables the switch at 256 KiB adds 2.9 us on H100,
    5.7 on A100 and 16.6 on B300 although the bytes moved fall).
    """

    name = "allreduce+stages"
    core = AllreduceForm.core + (Param("a2", "pos", 3e-6, "added latency of the two-stage kernel (second barrier)"),)

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        one = custom_ar_one_stage(max(op.devices, 1), op.bytes_read)
        return (*super().features(op, hw), 1.0 if one else 0.0)

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p[:-1], h, x[:-1])
        n, one = x[1], x[-1]
        em = em * (one * 2.0 / xp.maximum(n, 2.0) + (1.0 - one))
        return ec, em, floor_s + (1.0 - one) * p[-1]


FORMS: dict[str, Form] = {
    GEMM: GemmForm(),
    CONV: GemmForm(),
    ATTN_PREFILL: AttentionForm(),
    ATTN_ENCODER: AttentionForm(),
    ATTN_DECODE: DecodeForm(),
    ELEMENTWISE: ElementwiseForm(),
    ALLREDUCE: AllreduceForm(),
    ALLTOALL: AlltoallForm(),
}


class CachedForm(Form):
    """A form plus on-chip cache residency: memory efficiency x (1 + boost / (1 + (bytes / (x_c * L2))^p_c)).

    A working set that fits in the last-level cache streams at cache, not DRAM, speed when a kernel runs back to back
    (as in every measured table: aiconfigurator rotates only 6 weight copies, and a 128 MB L2 holds them all for a
    21 MB weight); `x_c` is the share of L2 at which half the boost is gone, `boost` the extra bandwidth share. The
    device's L2 size comes from its datasheet (`l2_cache_mb`), so the term moves with the device.
    """

    def __init__(self, base: Form):
        self.base = base
        self.name = f"{base.name}+l2"
        self.core = base.core[:-1] + CACHE_PARAMS + base.core[-1:]  # the floor stays last
        self.overlap = base.overlap
        self.hyper_grid = base.hyper_grid

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*self.base.features(op, hw), op.bytes, hw.l2_cache_mb * 1e6)

    def eff(self, xp, p, h, x):
        nb = len(self.base.core)
        base_p = tuple(p[: nb - 1]) + (p[-1],)
        boost, x_c, p_c = p[nb - 1: nb + 2]
        ec, em, floor_s = self.base.eff(xp, base_p, h, x[:-2])
        nbytes, l2 = x[-2], x[-1]
        return ec, em * (1.0 + boost / (1.0 + xp.pw(nbytes / (x_c * l2), p_c))), floor_s


CACHE_PARAMS = (
    Param("cache_boost", "pos", 0.3, "extra bandwidth share of an L2-resident working set"),
    Param("cache_x", "pos", 0.2, "working set, as a share of L2, at which half the boost is gone"),
    Param("cache_p", "exp", 2.0, "steepness of the cache boost"),
)

class WaveGemmForm(GemmForm):
    """GemmForm for kernels that do not split K (vLLM's CUTLASS per-tensor fp8 and NVFP4 linears): the output tiles
    run in whole waves over the SMs, so a GEMM with fewer tiles than SMs leaves the rest idle and one SM walks the
    whole K. Compute efficiency is times tiles / (waves x SMs), tiles = ceil(m / T_m) ceil(n / T_n) at the tile
    sizes of the grid; the SM count comes from the datasheet. In aiconfigurator's vLLM tables a 16 x 128 GEMM takes
    3.4 ns per unit of K on RTX PRO 6000 (NVFP4), what one 128 x 128 tile at its share of the peak takes (188 SMs, 1871
    TFLOPS: 3.3 ns), where cuBLAS's split-K bf16 kernel takes 0.07 ns.
    """

    name = "gemm+waves"
    hyper_grid = {"tile_m": (1.0, 64.0, 128.0), "tile_n": (1.0, 64.0, 128.0, 256.0)}

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*super().features(op, hw), float(hw.sm_count or REF_SM_COUNT))

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p, h, x[:-1])
        m, n, sms = x[0], x[1], x[-1]
        tm, tn = max(h["tile_m"], 1.0), max(h["tile_n"], 1.0)
        tiles = xp.ceil(m / tm) * xp.ceil(n / tn)
        return ec * tiles / (xp.ceil(tiles / sms) * sms), em, floor_s


class MonotoneGemmForm(GemmForm):
    """GemmForm whose saturations in m, n and k are at most linear (steepness capped at 1): below a half-saturation
    point the compute time then goes as x^(1 - p), never up as the dimension shrinks, as a GEMM's work does not. A
    steeper fitted saturation makes a smaller GEMM slower without bound once another device's features move the
    half-saturation point: fitted on RTX PRO 6000's NVFP4 rows alone (p_k 1.3 and more), B300's k = 32-64 NVFP4 GEMMs
    were priced up to 200x their measured time."""

    name = "gemm+mono"
    max_steepness = 1.0


class MonotoneWaveGemmForm(WaveGemmForm):
    """WaveGemmForm with MonotoneGemmForm's cap."""

    name = "gemm+waves+mono"
    max_steepness = 1.0


# The smallest CTA tile (m x n) of FlashInfer's CUTLASS NVFP4 GEMM on sm120 (RTX PRO 6000), one SM per CTA (cluster
# 1x1x1) and no A/B swap: its tile list is 128x128x128, 128x128x256 and 256x128x128 (flashinfer-ai/flashinfer
# include/flashinfer/gemm/fp4_gemm_cutlass_template_sm120.h @ c2b39fa, CutlassFp4GemmRunner::getConfigs; later
# versions add 128x8-128x64 tiles with swap_ab, which the measured tables' kernel does not show).
NVFP4_MIN_TILE = 128.0


class TileBoundGemmForm(MonotoneGemmForm):
    """MonotoneGemmForm whose compute efficiency never exceeds what the kernel's output tiles can use of the SMs: a
    kernel that does not split K runs ceil(m / T) x ceil(n / T) CTAs of at least T x T outputs (T = NVFP4_MIN_TILE),
    each walking the whole K on one SM, in whole waves over the datasheet's SMs, so its time is at least
    waves x 2 T^2 k / (peak / SMs); as an efficiency, m n / (T^2 x waves x SMs). A parameter-free bound (min, not a
    product: where the tiles fill the machine the fitted form decides alone). In aiconfigurator's vLLM tables no
    NVFP4 row is faster than it (measured / bound: RTX PRO 6000 at least 1.065, 11% of its rows below 1.3, e.g. m <= 16,
    n <= 4096 at 3.5 ns per unit of K against 3.3 bound; B300's CuTe-DSL kernel at least 1.82)."""

    name = "gemm+mono+tiles"

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*super().features(op, hw), float(hw.sm_count or REF_SM_COUNT))

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p, h, x[:-1])
        m, n, sms = x[0], x[1], x[-1]
        tiles = xp.ceil(m / NVFP4_MIN_TILE) * xp.ceil(n / NVFP4_MIN_TILE)
        bound = m * n / (NVFP4_MIN_TILE * NVFP4_MIN_TILE * xp.ceil(tiles / sms) * sms)
        return xp.minimum(ec, bound), em, floor_s


SPLITK_TILE = 128.0  # output tile edge the split-K step counts tiles with (cuBLAS's large-m tiles are 128-256 wide)
SPLITK_STEEPNESS = 8.0  # a smooth step in k and in tiles per SM: a hard one has no gradient for the fit


class SplitKGemmForm(GemmForm):
    """GemmForm plus the second kernel of cuBLAS's split-K: when a GEMM's output tiles cannot fill the SMs and its K
    is long, cuBLAS splits K over CTAs that write partial sums to a workspace, and a reduction kernel
    (`cublasLt::splitKreduce_kernel`) sums them, one more kernel in the graph. In aiconfigurator's bf16 tables a
    GEMM with m <= 16 and n <= 1024 steps from ~1 floor to ~2.2 floors as K passes ~1-2k on all four devices (A100
    2.5-3.0 -> 5.3-6.0 us, H100 2.6 -> 5.5-5.9, B300 1.9 -> 4.2-4.9, RTX PRO 6000 2.1 -> 4.6) and stays there while
    K grows: the extra ~2.5-3 us is that kernel, not bandwidth. The extra floor share is `split_share` x a smooth
    step at K = `split_k0` x a smooth step down as tiles (SPLITK_TILE square) reach the SM count (datasheet)."""

    name = "gemm+splitk"
    core = GemmForm.core[:-1] + (
        Param("split_share", "real", 1.0, "extra floor share of the split-K reduction kernel"),
        Param("split_k0", "pos", 1024.0, "reduction depth at which cuBLAS starts to split K (half step)"),
    ) + GemmForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        m, n = float(op.shape[0]), float(op.shape[1])
        tiles = math.ceil(m / SPLITK_TILE) * math.ceil(n / SPLITK_TILE)
        return (*super().features(op, hw), tiles / float(hw.sm_count or REF_SM_COUNT))

    def eff(self, xp, p, h, x):
        *base, split_share, split_k0, floor_s = p
        ec, em, floor_s = super().eff(xp, (*base, floor_s), h, x[:-1])
        k, tiles_per_sm = x[2], x[-1]
        split = sat(xp, k, split_k0, SPLITK_STEEPNESS) * (1.0 - sat(xp, tiles_per_sm, 1.0, SPLITK_STEEPNESS))
        return ec, em, floor_s * (1.0 + xp.maximum(split_share, 0.0) * split)


class StreamGemmForm(SplitKGemmForm):
    """SplitKGemmForm whose memory time is a fixed time per call plus streaming: t_mem = t0_s + bytes / (share x BW)
    (share = em_max times the n-saturation, BW the datasheet bandwidth), in place of the byte saturation (b0, pb).
    aiconfigurator's bf16 GEMMs with m in {1, 8, 16} and >= 40 MB of traffic lie on such a line on all four devices
    (benchmarks/gemm_bandwidth_share.py: share 0.81-0.89, t0 2.7-13.3 us, rms 3.6-8.8%). t0_s is one shared time,
    not a byte count that moves with bandwidth: the measured t0 follows no datasheet feature."""

    name = "gemm+splitk+stream"
    core = tuple(q for q in SplitKGemmForm.core if q.name not in ("b0", "pb"))[:-1] + (
        Param("t0_s", "pos", 4e-6, "fixed time per call of a memory-bound GEMM, on top of streaming"),
    ) + SplitKGemmForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*super().features(op, hw), hw.mem_bw_bytes_per_s)

    def eff(self, xp, p, h, x):
        (ec_max, m0, pm, n0, pn, k0, pk, em_max, nb0, pnb, split_share, split_k0, t0_s, floor_s) = p
        base = (ec_max, m0, pm, n0, pn, k0, pk, em_max, 1.0, 1.0, nb0, pnb, split_share, split_k0, floor_s)
        ec, em_sat, floor_out = super().eff(xp, base, h, x[:-1])
        nbytes, bw = x[3], x[-1]
        share = em_max * sat(xp, x[1], nb0, pnb)
        return ec, 1.0 / (1.0 / share + t0_s * bw / nbytes), floor_out



# The CUDA-core FP32 rate as a share of the bf16 tensor peak on the reference datasheet (H100 SXM, hardware_specs/
# h100-sxm.yaml: 66.9 / 989.4 TFLOP/s): a device whose FP32 rate is unknown is priced with this share.
REF_FP32_SHARE = 66.9 / 989.4


class GemvGemmForm(SplitKGemmForm):
    """SplitKGemmForm whose m = 1 compute time scales with the CUDA-core FP32 rate, not the tensor peak: cuBLAS runs a
    one-row GEMM as a matrix-vector kernel (gemv2T_kernel_val, FP32 accumulators on CUDA cores) or as a tile kernel
    whose tensor-core M is mostly padding, so its arithmetic time is issue and conversion work the tensor rate does
    not measure. The m = 1 compute efficiency (a share of the dtype's tensor peak) is times the device's FP32 share of
    that peak over the reference's (REF_FP32_SHARE): the reference device prices exactly as SplitKGemmForm, a device
    whose CUDA cores are a larger share of its tensor rate (GeForce and workstation parts: RTX PRO 6000 0.25, RTX
    4090 0.50 against H100's 0.068) gets a shorter compute term. No fitted parameter; rows with m > 1 are unchanged.
    A candidate, not shipped: nested leave-one-device-out split 2-2 against SplitKGemmForm
    (benchmarks/gemm_gemv_selection.py, which cites the kernel reports)."""

    name = "gemm+splitk+gemv"

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        return (*super().features(op, hw), gemv_rate_scale(op, hw))

    def eff(self, xp, p, h, x):
        ec, em, floor_s = super().eff(xp, p, h, x[:-1])
        return ec * x[-1], em, floor_s


def gemv_rate_scale(op: Op, hw: HardwareSpec) -> float:
    """(FP32 rate / `op`'s dtype peak) over REF_FP32_SHARE for a one-row GEMM, 1 otherwise or when either is unknown."""
    fp32, peak = hw.peak_tflops.get("fp32"), hw.peak_tflops.get(op.dtype)
    if float(op.shape[0]) != 1.0 or not fp32 or not peak:
        return 1.0
    return fp32 / peak / REF_FP32_SHARE


# Form variants a family may name in its JSON (`form`), beyond its kind's default form.
FORM_VARIANTS: dict[str, Form] = {}
for _f in (GemmForm(), AttentionForm(), DecodeForm(), ElementwiseForm()):
    FORM_VARIANTS[f"{_f.name}+l2"] = CachedForm(_f)
FORM_VARIANTS["gemm+waves+l2"] = CachedForm(WaveGemmForm())
FORM_VARIANTS["gemm+mono+l2"] = CachedForm(MonotoneGemmForm())
FORM_VARIANTS["gemm+waves+mono+l2"] = CachedForm(MonotoneWaveGemmForm())
FORM_VARIANTS["gemm+mono+tiles+l2"] = CachedForm(TileBoundGemmForm())
FORM_VARIANTS["gemm+splitk+l2"] = CachedForm(SplitKGemmForm())
FORM_VARIANTS["gemm+splitk+stream+l2"] = CachedForm(StreamGemmForm())
FORM_VARIANTS["gemm+splitk+gemv+l2"] = CachedForm(GemvGemmForm())
FORM_VARIANTS["allreduce+stages"] = StagedAllreduceForm()


# The FLOPs per softmax exponential of the H100 SXM datasheet (989.4 TFLOP/s over 132 SMs x 1980 MHz x 16 exp2 per
# clock): what a device whose exp2 throughput is unknown is priced with (lvlmsim.specs.hardware.exp2_per_s).
REF_FLOP_PER_EXP = 989.4e12 / (132 * 1980e6 * 16)


class SoftmaxAttentionForm(Form):
    """Prefill/encoder attention whose small-head cost is the softmax's exponentials, priced through the device.

    FlashAttention evaluates one exponential per score on the special function units (MUFU.EX2) while the tensor
    cores do 4 x head_dim FLOPs per score; the share `exp_share` of the exponential time not hidden under the matmuls
    adds to the compute time: 1/ec = 1/ec_base + exp_share x t_exp / t_matmul, with t_exp / t_matmul = (exps / FLOPs)
    x (peak / exp2 rate). The ratio moves with the datasheet (H100 does ~237 tensor FLOPs per exponential, RTX PRO
    6000 ~64, B300 with its doubled SFU ~234), which is why small heads run at half of peak on Hopper and Blackwell
    datacenter parts but not on the GDDR Blackwell part (the FA3 and FA4 papers' argument). It replaces
    AttentionForm's fitted small-head fall-off (h0, ph), which cannot know that. The rest is AttentionForm's.
    """

    name = "attention+softmax"
    core = (
        *AttentionForm.core[:5],
        Param("exp_share", "eff", 0.5, "share of the softmax exponential time not hidden under the matmuls"),
        *AttentionForm.core[7:],
    )
    hyper_grid = AttentionForm.hyper_grid

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        from lvlmsim.ops.graph import softmax_exps

        batch, q, _kv, heads, _kvh, d = op.shape[:6]
        rate = hw.exp2_per_s()
        flop_per_exp = hw.peak_flops(op.dtype) / rate if rate else REF_FLOP_PER_EXP
        exp_over_matmul = softmax_exps(op) / op.flops * flop_per_exp if op.flops > 0 else 0.0
        return (float(q), float(batch) * heads * max(float(q), 1.0), float(d), op.bytes, exp_over_matmul)

    def eff(self, xp, p, h, x):
        ec_max, q0, pq, w0, pw, exp_share, h1, ph1, em_max, b0, pb, floor_s = p
        q, work, d, nbytes, exp_over_matmul = x
        head = tile(xp, d, h["tile_d"]) / (1.0 + xp.pw(d / h1, ph1))
        ec = ec_max * sat(xp, q, q0, pq) * sat(xp, work, w0, pw) * head
        ec = 1.0 / (1.0 / ec + exp_share * exp_over_matmul)
        return ec, em_max * sat(xp, nbytes, b0, pb), floor_s


class CtaSoftmaxAttentionForm(SoftmaxAttentionForm):
    """SoftmaxAttentionForm whose floor grows with the CTAs each SM runs in turn: every CTA of a FlashAttention kernel
    (one per query tile, head and sequence; lvlmsim.calibrate.kernels.vit_ctas) pays a fixed prologue and epilogue
    (barrier and descriptor setup, loading its Q tile, writing O and the LSE) that no arithmetic hides when the
    sequences are a few tokens long. At 1-64 tokens a ViT attention of batch 32 x 16 heads takes 21 / 16 / 12.7 us on
    B300 / H100 / RTX PRO 6000 against 7.0 / 8.3 / 6.8 us at batch 1 (aiconfigurator's encoder tables), which a
    constant floor prices 80% fast. The floor becomes floor_s x (1 + cta_share x CTAs / (SMs x resident CTAs per SM));
    cta_share is one fitted constant, the CTA count and residency come from the kernel (FA2 holds two CTAs per SM,
    FA3 and FA4 one: lvlmsim.calibrate.kernels.vit_resident_ctas) and the SM count from the datasheet."""

    name = "attention+softmax+ctas"
    core = SoftmaxAttentionForm.core[:-1] + (
        Param("cta_share", "real", 0.1, "extra floor share per CTA per SM (a CTA's prologue and epilogue)"),
    ) + SoftmaxAttentionForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        kernel = attention_kernel(hw)
        ctas_per_sm = vit_ctas(op, kernel) / (float(hw.sm_count or REF_SM_COUNT) * vit_resident_ctas(kernel))
        return (*super().features(op, hw), ctas_per_sm)

    def eff(self, xp, p, h, x):
        *base, cta_share, floor_s = p
        ec, em, floor_s = super().eff(xp, (*base, floor_s), h, x[:-1])
        return ec, em, floor_s * (1.0 + xp.maximum(cta_share, 0.0) * x[-1])


class CtaAttentionForm(AttentionForm):
    """AttentionForm whose floor grows with the CTAs each SM runs in turn, as CtaSoftmaxAttentionForm's for the
    encoder: every query block of a prefill kernel pays a fixed prologue and epilogue that no arithmetic hides when
    the sequences are short. CTAs from the kernel's query blocks (lvlmsim.calibrate.kernels.prefill_ctas: FA2 64
    unpacked rows, FA3 kBlockM packed rows of a KV head, TRT-LLM-gen 256 unpacked rows), SM count from the datasheet;
    floor_s x (1 + cta_share x CTAs / SMs), cta_share one fitted constant. In every measured table a prefill of 2-64
    tokens per sequence takes about 3-7 us per CTA per SM once the CTAs outnumber the SMs (A100 ~5, H100 ~7 with its
    larger packed blocks, B300 ~3-4, RTX PRO 6000 ~4.5), which the constant floor and the tokens' saturation price
    20-75% fast on FA2 and TRT-LLM-gen devices and 15-70% slow on FA3's packed H100."""

    name = "attention+ctas"
    core = AttentionForm.core[:-1] + (
        Param("cta_share", "real", 0.1, "extra floor share per CTA per SM (a query block's prologue and epilogue)"),
    ) + AttentionForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        ctas_per_sm = prefill_ctas(op, attention_kernel(hw)) / float(hw.sm_count or REF_SM_COUNT)
        return (*super().features(op, hw), ctas_per_sm)

    def eff(self, xp, p, h, x):
        *base, cta_share, floor_s = p
        ec, em, floor_s = super().eff(xp, (*base, floor_s), h, x[:-1])
        return ec, em, floor_s * (1.0 + xp.maximum(cta_share, 0.0) * x[-1])


# FlashAttention-2's split-KV decision (flash_api.cpp, set_params_splitkv / num_splits_heuristic): keys come in blocks
# of 256 (head size <= 64), 128 (<= 128) or 64 columns; with more than one block, the keys are split unless
# batch x kv_heads x query blocks >= 0.8 x (2 x SMs), and a combine kernel then runs after the attention kernel.
SPLIT_ITEMS_PER_SM = 1.6
SPLIT_STEEPNESS = 8.0  # a smooth step: a hard one has no gradient for the fit
# Key blocks of an unsplit decode's walk that the floor already holds: the floor is fitted on the smallest kernels,
# which walk one block. Nested leave-one-out against 0 (every block on top of the floor) in
# benchmarks/decode_walk_selection.py.
WALK_BLOCKS_IN_FLOOR = 1.0


def split_key_block(head_dim: float) -> float:
    """Keys per block of FlashAttention-2's split-KV kernel for this head size (kBlockN)."""
    return 256.0 if head_dim <= 64 else (128.0 if head_dim <= 128 else 64.0)


class SplitDecodeForm(DecodeForm):
    """DecodeForm plus two extra kernels a decode may run besides the attention kernel, each adding a fitted share of
    the floor:

    - the split-KV combine: when the (sequence, kv-head) items cannot fill the SMs and a sequence's keys span more than
      one key block, FlashAttention-2 splits the keys and a combine kernel follows. A batch-1 decode of head size 128
      steps from ~12.5 to ~17.3 us on A100 (8.8 to 13.0 us on RTX PRO 6000) as the keys pass 128, unless the batch
      alone fills the SMs; the SM count comes from the datasheet, so the threshold moves with the device. Where
      the kernel never splits (lvlmsim.calibrate.kernels.splits_kv: FA2's windowed decode) no combine runs.
    - the GQA regrouping copies of FA2 (lvlmsim.calibrate.kernels.regroups_gqa says where they apply: FA2 devices, GQA
      at batch >= 2 and kv_heads >= 2, no window); the share is one fitted constant, learned from whichever FA2 device
      is among the training devices and zero elsewhere.

    The general model links the split share to the kernel flags (prior 0). FA3 and the TRT-LLM-gen kernels split too
    but pay no combine kernel of their own (FA3 launches it under programmatic dependent launch, TRT-LLM-gen reduces
    inside the kernel; lvlmsim.calibrate.kernels.splits_kv).

    Where the kernel does not split at all (lvlmsim.calibrate.kernels.unsplit_key_blocks: FA2's windowed and MHA
    decodes), each (sequence, query head) CTA walks its keys alone, one kBlockN-key block after another, and the
    kernel cannot end before that walk has: the memory time is at least blocks x key_block_s. Few CTAs (8 for a batch-1
    Gemma 3 4B windowed layer) leave the SMs idle and the bandwidth term alone prices them at a small fraction of
    that. key_block_s is one fitted time, not linked to a datasheet feature: a block is the same work at every head
    size (kBlockN x d = 16K elements, 32 KB of K and of V, and 64 padded query rows of MMA), two dependent tile loads
    at DRAM latency plus ~4 MFLOP at one SM's tensor rate, which the two FA2 devices have within 8% (A100 2.9, RTX PRO
    6000 2.7 TFLOPS per SM); measured 2.9-3.1 us per block on A100 and 2.4-2.8 us on RTX PRO 6000.
    """

    name = "decode+split"
    core = DecodeForm.core[:-1] + (
        Param("split_share", "real", 0.2, "extra floor share when the keys are split (the combine kernel)"),
        Param("regroup_share", "real", 0.0, "extra floor share of the GQA regrouping copies"),
        Param("key_block_s", "pos", 3e-6, "seconds one CTA takes per key block when the kernel does not split keys"),
    ) + DecodeForm.core[-1:]

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        batch, _q, kv, _heads, kvh, d = op.shape[:6]
        items = max(float(batch) * kvh, 1.0)
        blocks = float(kv) / split_key_block(float(d))
        kernel = attention_kernel(hw)
        regroup = regroups_gqa(op, kernel)
        return (*super().features(op, hw), blocks, items / float(hw.sm_count or REF_SM_COUNT),
                float(splits_kv(op, kernel)), float(regroup), unsplit_key_blocks(op, kernel),
                op.bytes / hw.mem_bw_bytes_per_s)

    def eff(self, xp, p, h, x):
        *base, split_share, regroup_share, key_block_s, floor_s = p
        ec, em, floor_s = super().eff(xp, (*base, floor_s), h, x[:-6])
        blocks, items_per_sm, can_split, regroup, serial_blocks, memory_s = x[-6:]
        # more than one key block (a smooth step at 1.5 blocks) and too few items to fill the SMs
        split = can_split * sat(xp, blocks, 1.5, SPLIT_STEEPNESS) * (
            1.0 - sat(xp, items_per_sm, SPLIT_ITEMS_PER_SM, SPLIT_STEEPNESS))
        extra = xp.maximum(split_share, 0.0) * split + xp.maximum(regroup_share, 0.0) * regroup
        # an unsplit kernel's memory time is at least one CTA's walk over its key blocks beyond the first, which the
        # floor (fitted on the smallest kernels, each walking one block) already holds; none where the kernel splits
        walk_s = xp.maximum(serial_blocks - WALK_BLOCKS_IN_FLOOR, 0.0) * key_block_s
        em = xp.minimum(em, memory_s / xp.maximum(walk_s, 1e-30))
        return ec, em, floor_s * (1.0 + extra)


REF_SM_COUNT = 132  # H100 SXM: the reference a device without a published SM count is priced with
for _f in (SoftmaxAttentionForm(), CtaSoftmaxAttentionForm(), SplitDecodeForm()):
    FORM_VARIANTS[_f.name] = _f
FORM_VARIANTS["attention+softmax+l2"] = CachedForm(SoftmaxAttentionForm())  # prefill's L2 term on the softmax form
FORM_VARIANTS["attention+ctas+l2"] = CachedForm(CtaAttentionForm())  # prefill's L2 term on the per-CTA floor


def form_for(kind: str, variant: str | None = None) -> Form:
    """The form of a family: a named variant (e.g. 'gemm+l2') if given, else its kind's default form."""
    return FORM_VARIANTS[variant] if variant and variant in FORM_VARIANTS else FORMS[kind]


def apply_overlap(ec, em, beta, compute_s, memory_s):
    """Efficiencies that make max(c/ec', m/em') = max(tc, tm) + beta*min(tc, tm), with tc = c/ec, tm = m/em.

    If tc >= tm: c/ec' = tc + beta*tm and m/em' = tm + beta*tc <= c/ec' (beta <= 1); symmetric otherwise.
    `compute_s`/`memory_s` are the times at 100% efficiency; a zero one leaves the other efficiency unchanged.
    """
    tc = compute_s / ec
    tm = memory_s / em
    return ec * tc / (tc + beta * tm), em * tm / (tm + beta * tc)


# ------------------------------------------------------------------------------------------------------------------
# the profile


@dataclass
class FamilyFit:
    """The fitted parameters of one family (an op kind, optionally restricted to one dtype) and its measured error."""

    kind: str
    params: dict[str, float]
    hyper: dict[str, float] = field(default_factory=dict)
    dtypes: list[str] = field(default_factory=list)  # dtypes of the rows it was fitted on
    holdout_median_abs_pct_err: float | None = None
    holdout_p90_abs_pct_err: float | None = None
    n_fit: int = 0
    n_holdout: int = 0
    roofline_default_holdout_median_abs_pct_err: float | None = None
    notes: str = ""
    variant: str | None = None  # a FORM_VARIANTS name (e.g. 'gemm+l2'), None for the kind's default form
    # measured / predicted time at the 10th and 90th percentile of held-out rows (None: derived from the median error)
    band_p10_ratio: float | None = None
    band_p90_ratio: float | None = None
    regime_errors: dict[str, float] = field(default_factory=dict)  # held-out median |error| per size regime
    regime_bands: dict[str, tuple[float, float]] = field(default_factory=dict)  # (p10, p90) per size regime

    def band(self) -> tuple[float, float] | None:
        """(p10, p90) multipliers of a predicted time that bracket 80% of measurements, or None if unknown.

        Without stored quantiles, a symmetric log-normal band is derived from the held-out median |error| m:
        |log r| has median 0.674 sigma, so the 10/90% quantiles are exp(-+1.9 log(1 + m))."""
        if self.band_p10_ratio is not None and self.band_p90_ratio is not None:
            return self.band_p10_ratio, self.band_p90_ratio
        if self.holdout_median_abs_pct_err is None:
            return None
        half = 1.9 * math.log1p(self.holdout_median_abs_pct_err / 100.0)
        return math.exp(-half), math.exp(half)

    @property
    def form(self) -> Form:
        return form_for(self.kind, self.variant)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "form": self.form.name, "params": self.params, "hyper": self.hyper,
            "dtypes": self.dtypes, "n_fit": self.n_fit, "n_holdout": self.n_holdout,
            "holdout_median_abs_pct_err": self.holdout_median_abs_pct_err,
            "holdout_p90_abs_pct_err": self.holdout_p90_abs_pct_err,
            "roofline_default_holdout_median_abs_pct_err": self.roofline_default_holdout_median_abs_pct_err,
            "notes": self.notes,
            **({"band_p10_ratio": self.band_p10_ratio, "band_p90_ratio": self.band_p90_ratio}
               if self.band_p10_ratio is not None else {}),
            **({"regime_errors": self.regime_errors} if self.regime_errors else {}),
            **({"regime_bands": {k: list(v) for k, v in self.regime_bands.items()}} if self.regime_bands else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str) -> FamilyFit:
        kind = d.get("kind")
        if kind not in FORMS:
            raise SpecError(f"{where}.kind: unknown op kind {kind!r}; known: {', '.join(FORMS)}")
        variant = d.get("form") if d.get("form") in FORM_VARIANTS else None
        form = form_for(kind, variant)
        params = d.get("params")
        if not isinstance(params, dict) or set(params) != set(form.param_names):
            got = sorted(params) if isinstance(params, dict) else params
            raise SpecError(f"{where}.params: expected {', '.join(form.param_names)}; got {got}")
        hyper = d.get("hyper") or {}
        missing = set(form.hyper_grid) - set(hyper)
        if missing:
            raise SpecError(f"{where}.hyper: missing {', '.join(sorted(missing))}")
        for p in form.params:  # a negative floor priced negative TPOTs, NaN printed 'TPOT nan us' (issue 15)
            lo, hi, lo_open = PARAM_RANGES[p.kind]
            number(params[p.name], f"{where}.params.{p.name}", lo=lo, hi=hi, lo_open=lo_open)
        for k, v in hyper.items():
            number(v, f"{where}.hyper.{k}")
        try:
            return cls(
                kind=kind, params={k: float(v) for k, v in params.items()},
                hyper={k: float(v) for k, v in hyper.items()}, dtypes=list(d.get("dtypes") or []),
                holdout_median_abs_pct_err=_opt_float(d.get("holdout_median_abs_pct_err")),
                holdout_p90_abs_pct_err=_opt_float(d.get("holdout_p90_abs_pct_err")),
                n_fit=int(d.get("n_fit") or 0), n_holdout=int(d.get("n_holdout") or 0),
                roofline_default_holdout_median_abs_pct_err=_opt_float(
                    d.get("roofline_default_holdout_median_abs_pct_err")),
                notes=str(d.get("notes") or ""), variant=variant,
                band_p10_ratio=_opt_float(d.get("band_p10_ratio")), band_p90_ratio=_opt_float(d.get("band_p90_ratio")),
                regime_errors={str(k): float(v) for k, v in (d.get("regime_errors") or {}).items()},
                regime_bands=regime_bands(d.get("regime_bands"), f"{where}.regime_bands"),
            )
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: {exc}") from None


def _opt_float(v) -> float | None:
    return None if v is None else float(v)


def regime_bands(d, where: str) -> dict[str, tuple[float, float]]:
    """{regime: (p10, p90)} from JSON: two positive multipliers of a predicted time, p10 <= p90."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object {{regime: [p10, p90]}}")
    out = {}
    for k, v in d.items():
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise SpecError(f"{where}.{k}: expected [p10, p90], got {v!r}")
        lo = number(v[0], f"{where}.{k}[0]", lo=0.0, lo_open=True)
        hi = number(v[1], f"{where}.{k}[1]", lo=lo)
        out[str(k)] = (float(lo), float(hi))
    return out


def family_key(kind: str, dtype: str | None = None, role: str | None = None) -> str:
    """Profile key of a family: the op kind, `kind.dtype` for a dtype-specific fit (e.g. gemm.fp8), or `kind/role`
    for an elementwise role (e.g. elementwise/norm)."""
    if role:
        return f"{kind}/{role}"
    return f"{kind}.{dtype}" if dtype else kind


# Elementwise ops differ far more by what they do than by size (Vidur's H100 RMSNorm streams at ~1.2 TB/s, its
# residual add at ~3.3 TB/s, its embedding gather at ~0.6 TB/s), so they are fitted per role, found from the op
# name's last part (llm.norm, vision.residual_add, projector.act1, ...) or a benchmark tag.
ELEMENTWISE_ROLES: tuple[tuple[str, str], ...] = (
    ("norm", "norm"), ("layernorm", "norm"), ("rotary", "rotary"), ("rope", "rotary"), ("act", "act"),
    ("gelu", "act"), ("silu", "act"), ("add", "add"), ("embed", "embed"), ("emb", "embed"), ("copy", "copy"),
)


def op_role(kind: str, name: str) -> str | None:
    """The family role an op's name selects: an elementwise role (norm, add, ...), or `custom` for an all-reduce the
    serving runtime runs on its custom kernel (lvlmsim.cost.collectives marks those); None for every other op."""
    if kind == ELEMENTWISE and name:
        return elementwise_role(name)
    if kind == ALLREDUCE and name.endswith(CUSTOM_AR_SUFFIX):
        return CUSTOM_AR_ROLE
    return None


def elementwise_role(name: str) -> str | None:
    """The role of an elementwise op from its name or tag: norm, rotary, act, add, embed, copy, or None."""
    last = name.rsplit(".", 1)[-1].lower()
    for pattern, role in ELEMENTWISE_ROLES:
        if pattern in last:
            return role
    return None


def op_regime(op: Op) -> str:
    """The size-regime label `validate` uses for this op's family (m bins, tokens, KV bytes, message size), or ''."""
    from lvlmsim.calibrate.measured import FAMILIES

    fam = next((f for f in FAMILIES.values() if f.kind == op.kind and f.regime is not None), None)
    if fam is None:
        return ""
    try:
        return fam.regime(_OpRow(op))
    except (IndexError, TypeError, ValueError):
        return ""


@dataclass(frozen=True)
class _OpRow:
    """An op where a regime function expects a Measurement (they read only .op)."""

    op: Op


def _as_memory_bound(op: Op, hw: HardwareSpec, ec: float, em: float) -> tuple[float, float]:
    """The same fitted time, charged to memory: (1, bytes / (bw * body)).

    An elementwise op streams bytes at a few FLOP per byte, far left of any ridge point; a fit may still put part of
    its per-element cost on the compute side (a CPU RMSNorm fitted 0.33% of peak compute), which would label it
    compute-bound. Within one role FLOPs are proportional to bytes, so the whole body is the op's attained bandwidth:
    the time is unchanged and the label follows the physics (memory, or overhead when the floor dominates)."""
    bw = hw.mem_bw_bytes_per_s
    body = op.bytes / (em * bw)
    if op.flops > 0:
        body = max(body, op.flops / (ec * hw.peak_flops(op.dtype)))
    return 1.0, op.bytes / (bw * body)


class FittedProfile:
    """An EfficiencyProfile from fitted families; op kinds without a fit fall back to DefaultProfile values.

    Lookup for an op: `elementwise/role` for elementwise ops with a fitted role, `kind.dtype` if fitted, else `kind`,
    else an alias (e.g. conv -> gemm, stated in the JSON), else the roofline default (source "roofline-default").
    Resolution is cached per (kind, dtype, op name): the hot path is a dict lookup and a few float operations.
    """

    def __init__(self, name: str, hardware_id: str, families: dict[str, FamilyFit], *,
                 aliases: dict[str, str] | None = None, meta: dict | None = None,
                 fallback: DefaultProfile = DEFAULT_PROFILE):
        self.name = name
        self.hardware_id = hardware_id
        self.families = dict(families)
        self.aliases = dict(aliases or {})
        self.meta = dict(meta or {})
        self.fallback = fallback
        self.source_prefix = "calibrated"  # "general" when lvlmsim.calibrate.general evaluated it for a device
        self._resolved: dict[tuple[str, str, str], tuple | None] = {}

    def _resolve(self, kind: str, dtype: str, name: str = ""):
        key = (kind, dtype, name)
        if key in self._resolved:
            return self._resolved[key]
        hit = None
        role = op_role(kind, name)
        cands = (family_key(kind, role=role) if role else None, family_key(kind, dtype), kind, self.aliases.get(kind))
        for cand in cands:
            fam = self.families.get(cand) if cand else None
            if fam is not None:
                form = fam.form if fam.variant or kind not in FORMS else FORMS[kind]
                params = tuple(fam.params[q.name] for q in form.core)
                beta = fam.params["overlap"] if form.overlap else 0.0
                source = f"{self.source_prefix}:{self.name}:{cand}"
                hit = (form, params, beta, fam.hyper, source, fam.holdout_median_abs_pct_err, fam.regime_errors)
                break
        self._resolved[key] = hit
        return hit

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        hit = self._resolve(op.kind, op.dtype, op.name)
        if hit is None:
            return self.fallback.efficiency(op, hw)
        form, params, beta, hyper, source, err, regimes = hit
        if regimes:
            err = regimes.get(op_regime(op), err)
        ec, em, floor_s = form.eff(PYMATH, params, hyper, form.features(op, hw))
        ec = EFF_MIN if ec < EFF_MIN else (1.0 if ec > 1.0 else ec)
        em = EFF_MIN if em < EFF_MIN else (1.0 if em > 1.0 else em)
        if beta and op.flops > 0 and op.bytes > 0:
            ec, em = apply_overlap(ec, em, beta, op.flops / hw.peak_flops(op.dtype), op.bytes / hw.mem_bw_bytes_per_s)
        if op.kind == ELEMENTWISE and op.bytes > 0:
            ec, em = _as_memory_bound(op, hw, ec, em)
        return Efficiency(ec, em, floor_s, source, err)

    def _family_of(self, source: str) -> FamilyFit | None:
        prefix = f"{self.source_prefix}:{self.name}:"
        return self.families.get(source[len(prefix):]) if source.startswith(prefix) else None

    def band_for(self, source: str) -> tuple[float, float] | None:
        """(p10, p90) multipliers of the family that priced an op with this `source` (None: no band known)."""
        fam = self._family_of(source)
        return fam.band() if fam is not None else None

    def band_for_op(self, source: str, op: Op) -> tuple[float, float] | None:
        """The band of `op` priced with `source`: its size regime's (GEMM m, tokens, KV bytes, message size) when the
        family has one, else the family's."""
        fam = self._family_of(source)
        if fam is None:
            return None
        if fam.regime_bands:
            band = fam.regime_bands.get(op_regime(op))
            if band is not None:
                return band
        return fam.band()

    @property
    def timing_regime(self) -> str | None:
        """'cuda_graph' or 'eager': how the kernels it was fitted on were launched (runtime wrappers use it)."""
        return self.meta.get("timing_regime")

    def source_for(self, kind: str, dtype: str = "bf16", name: str = "") -> str:
        hit = self._resolve(kind, dtype, name)
        return hit[4] if hit else self.fallback.name

    # -------------------------------------------------------------------------------------------------------------
    # JSON

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT, "name": self.name, "hardware_id": self.hardware_id, **self.meta,
            "aliases": self.aliases, "families": {k: f.to_dict() for k, f in self.families.items()},
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_json_default) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: Any, where: str = "profile") -> FittedProfile:
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != PROFILE_FORMAT:
            raise SpecError(f"{where}: format must be {PROFILE_FORMAT!r}, got {d.get('format')!r}")
        for key in ("name", "hardware_id"):
            if not isinstance(d.get(key), str) or not d.get(key):
                raise SpecError(f"{where}.{key}: missing or not a string")
        fams = d.get("families")
        if not isinstance(fams, dict):
            raise SpecError(f"{where}.families: missing or not an object")
        families = {k: FamilyFit.from_dict(v if isinstance(v, dict) else {}, f"{where}.families.{k}")
                    for k, v in fams.items()}
        for k, fam in families.items():
            base = k.split(".")[0].split("/")[0]
            if base not in KINDS:
                raise SpecError(f"{where}.families: unknown family '{k}'; keys are op kinds ({', '.join(KINDS)}), "
                                f"optionally '.dtype' or '/role'")
            if base != fam.kind:
                raise SpecError(f"{where}.families.{k}.kind: '{fam.kind}' does not match its key")
        aliases = d.get("aliases") or {}
        if not isinstance(aliases, dict) or any(v not in families for v in aliases.values()):
            raise SpecError(f"{where}.aliases: every alias must name a fitted family ({', '.join(families)})")
        meta = {k: v for k, v in d.items() if k not in ("format", "name", "hardware_id", "families", "aliases")}
        return cls(d["name"], d["hardware_id"], families, aliases=aliases, meta=meta)

    @classmethod
    def load(cls, path: str | Path) -> FittedProfile:
        path = Path(path)
        text = read_text(path, "profile")  # missing, a folder, too large, not UTF-8: one line each
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"profile: {path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
        return cls.from_dict(data, f"profile {path}")

    def __repr__(self) -> str:
        return f"FittedProfile(name={self.name!r}, families={sorted(self.families)})"


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
