"""The `moe` family: one fused mixture-of-experts layer, measured (aiconfigurator `moe_perf` tables) vs predicted.

Each table row times one GPU's share of a MoE layer (top-k dispatch, grouped gate/up GEMM, activation, grouped down
GEMM, weighted combine; no router GEMM, no all-to-all) for `num_tokens` tokens, `num_experts` experts of width
`inter_size` split `moe_tp_size` x `moe_ep_size` ways. What that GPU computes is what the table's routing generator
sent it (`table_routing`, the expected load of aiconfigurator's own generators): `balanced` deals token i's k picks
out as experts (i + j*ceil(E/k)) mod E; `power_law_<a>` draws each expert's token count from a power law, scales the
counts to T*k and, under expert parallelism, times the most loaded GPU. The grouped GEMMs are built by the operator
graph (`lvlmsim.ops.graph.expert_gemm`) from that load, so measured and simulated layers are the same objects.

The model is device-general: efficiencies are fractions of each device's datasheet peak for the row's dtype and of
its memory bandwidth, shared by all devices and fitted on some devices to be reported on another:

    t = floor_s * launches + elementwise bytes / (em * bw)
        + sum over the two grouped GEMMs of max(F / (ec * peak[dtype]), B / (em * bw)),
    ec = ec[dtype class] * rows / padded rows * tile share,

with padded rows the token-expert rows rounded up to whole M tiles of TILE_M rows per touched expert (a grouped
GEMM's work is set by its tiles, not its tokens: one token on an expert costs a whole tile). The tile share is 1
except for rows of a library that, untuned, runs a first tactic with a narrower output tile (UNTUNED_TILES: H100's
per-tensor fp8 FlashInfer CUTLASS MoE, 128 x 16): its operand intensity over the 128 x 128 reference tile's.
The dtype classes are bf16, per-tensor fp8, block-scaled fp8 and nvfp4, each against the datasheet peak of its
dtype. The fixed cost is one fitted cost per kernel launch times the kernels the row's library launches per layer
call (`kernel_launches`, counted from the libraries' source; FLOOR), not one cost per layer call. (A saturation in the
rows per expert, ec * x / (x + x0), was fitted too: every fold drove x0 to zero once the tiles were counted.)

Where several kernels were timed for one configuration (Triton, FlashInfer CUTLASS, TRT-LLM, ...), the fastest is
kept: it is the kernel a tuned deployment runs, and its family (`kernel_family`) is recorded per row. What a kernel
family does differently is priced from its source, not fitted: vLLM's Triton fused MoE under expert parallelism
keeps every one of the T*k token-expert rows in its workspace and writes zeros for the rows of other GPUs' experts
(`write_zeros_to_output` in vLLM's fused_moe.py), so its activation, zero-fill and sum traffic grows with T*k;
FlashInfer's CUTLASS and TRT-LLM kernels permute only the local rows. A quantized kernel that runs slower than the
same device's bf16 kernel on the same shapes (H100's per-tensor fp8 FlashInfer CUTLASS MoE: 2.2x) is not using its
dtype's peak: its rows are not fitted (`slower_than_bf16`). That one is priced on its untuned first tactic's tile
(`TACTIC`, chosen by benchmarks/moe_tactic_selection.py), and reported.

Each Triton row also records whether vLLM ships a tuned tile config for it (`triton_config`, from
calibration/vllm_fused_moe_configs.yaml) or runs its default one; that is reported as a regime, not priced (a
nested leave-one-device-out kept the plain model, docs/moe.md round 4; nor is the default tile's shared-memory
operand traffic, `default_smem_ratio` / SMEM_MODES, round 8).

`fit_moe` minimises the mean over devices of each device's mean |log(pred/measured)| by Nelder-Mead on a seeded
sample of FIT_ROWS rows per device; `leave_one_device_out` fits each device out in turn. `benchmarks/moe_fit.py`
writes those folds and the all-devices fit to `calibration/profiles/general/moe.json`, which `moe_report` (and
`lvlmsim validate`) reads; `lvlmsim validate --leave-one-out` recomputes the same folds with the same function.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.fit import Convergence, error_stats
from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import elementwise, expert_gemm
from lvlmsim.ops.op import GraphConfig
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec

# table dtype -> (compute dtype, weight bytes per parameter incl. block scales, dtype class of the compute ceiling)
MOE_DTYPES: dict[str, tuple[str, float, str]] = {
    "bfloat16": ("bf16", 2.0, "bf16"),
    "fp8": ("fp8", 1.0, "fp8"),
    "fp8_block": ("fp8", 1.0 + 4.0 / (128 * 128), "fp8_block"),  # one fp32 scale per 128x128 block
    "nvfp4": ("fp4", 0.5 + 1.0 / 16, "fp4"),  # 4-bit values + one fp8 scale per 16
}
TABLE_DTYPES = tuple(MOE_DTYPES)
DTYPE_CLASSES = ("bf16", "fp8", "fp8_block", "fp4")
KERNEL_FAMILIES = ("triton", "cutlass", "trtllm")
# The M tile of the grouped GEMMs: each touched expert costs whole tiles of TILE_M rows. 128 is the M tile of
# CUTLASS/TRT-LLM's Hopper and Blackwell grouped GEMMs and of Triton's large-batch fused-MoE configs. A
# leave-one-device-out nested in each outer fold over TILE_CANDIDATES (benchmarks/moe_tile_selection.py) picks 128 in
# the H100 and RTX PRO 6000 folds, 1 in A100's and 64 in B300's (docs/moe.md reports both tables).
TILE_M = 128
TILE_CANDIDATES = (1, 16, 64, 128)  # 1: no tile padding
PARAM_NAMES = (*(f"ec_{c}" for c in DTYPE_CLASSES), "em", "floor_s")
# Expert MLPs that are not gated: (hidden, inter, topk, experts) of the NemotronH MoE cases in aiconfigurator's case
# list (collector/cases/models/NemotronHForCausalLM_cases.yaml) -> the model. NemotronH experts are relu^2
# (config.json `mlp_hidden_act: relu2`): the up GEMM is hidden x inter, not hidden x 2*inter, and the activation reads
# one input. Super and Ultra route in a latent space (`moe_latent_size`), so their tables' hidden is the latent width.
NON_GATED_SHAPES: dict[tuple[int, int, int, int], str] = {
    (2688, 1856, 6, 128): "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B",
    (1024, 2688, 22, 512): "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B (latent 1024)",
    (2048, 5120, 22, 512): "nvidia/nemotron-ultra (latent 2048)",
}
# aiconfigurator's first vLLM collector (kernel_source `vllm_fused_moe`, A100's vLLM 0.14 table) calls fused_experts
# with w1 built as [E, 2*inter, hidden] and the default SiLU for every case: its rows are gated whatever the model.
# Its power-law rows also leave the rounding remainder on experts in index order among equal counts (at one token
# under EP 2-32 its rows take 489-500 us, the time of all 8 picks on the timed GPU; 436 us at EP 1), where the later
# collector's spread them (H100's one-token EP 8-16 rows run in one expert's time).
LEGACY_SOURCES = ("vllm_fused_moe",)
# Triton's JIT specialises an integer kernel argument divisible by 16 (`tt.divisibility = 16`), which is what lets its
# loads be 16-byte vectors; vLLM's fused_moe_kernel is passed the strides of the down GEMM's weights and of the
# intermediate cache, both the expert width per GPU. Where that width is not a multiple of 16 (1856, 704 or 768 split
# 8-32 ways: 232, 116, 88, 58, 44, 24, 22) the Triton rows run about 1.6x (A100) and 2-2.5x (H100) slower than the
# model prices them, at every token count (benchmarks/moe_residuals.py alignment). Reported as a regime, not priced:
# a fitted penalty shared by the two Triton devices did not transfer between them (docs/moe.md).
TRITON_ALIGN = 16
# vLLM's Triton fused MoE runs a tuned tile config where vLLM ships one for (local experts E, expert width per GPU N,
# GPU name, dtype) and get_default_config otherwise (calibration/vllm_fused_moe_configs.yaml: the listing and the
# default's BLOCK_SIZE_M); each row records which (`MoEData.triton_default`, validate's `vllm config` regime). Pricing
# it (default-config rows padded to the default's M tile, `default_tiles`, and/or their GEMMs at a fitted fraction
# TRITON_DEFAULT_PARAM of the efficiencies, `fit_moe(..., triton_default=True)`) was tried in issue 12 round 4 and
# not shipped: a leave-one-device-out nested in each outer fold keeps the plain model in the H100, B300 and RTX PRO
# 6000 folds, and the A100 fold's pick makes A100 24.9% held out (benchmarks/moe_config_selection.py, docs/moe.md).
TRITON_CONFIG_DTYPES = {"bfloat16": "bfloat16", "fp8_block": "fp8_block"}  # table dtype -> listing key
TRITON_DEFAULT_PARAM = "triton_default"
# FlashInfer's CUTLASS fused MoE runs, unless autotuned, the FIRST tactic of its runner's list (`profile_id == -1 ?
# mAllProfiles.front()` in csrc/fused_moe/cutlass_backend/flashinfer_cutlass_fused_moe_binding.cu; flashinfer ships
# pre-tuned MoE tactic tables for B200/GB200 only, and no aiconfigurator collector found calls autotune()). That list
# is `MoeGemmRunner::getTmaWarpSpecializedConfigs` (moe_gemm_template_dispatch.h): the arch's candidate tiles first,
# then their finalize-fused and swap-AB copies. On sm_90 a grouped GEMM that is not weight-only gets
# `get_candidate_tiles_sm90` (cutlass_heuristic.cpp), whose first tile is CtaShape128x16x128B with a 1x1x1 cluster,
# not swapped: 128 token rows (M, as TILE_M) by 16 weight columns (N). Per-tensor fp8 (modelopt) is such a GEMM
# (block-scaled fp8 runs its own DeepSeek-style kernel, below; sm_120 fp8 the SM89 kernels, not listed).
# Keyed by (kernel family, compute capability major, table dtype) -> (M tile, N tile) of that first tactic.
FIRST_TACTIC_TILES: dict[tuple[str, str, str], tuple[int, int]] = {("cutlass", "9", "fp8"): (128, 16)}
# The same rule on sm_120 (RTX PRO 6000), tried and not shipped (benchmarks/moe_tactic_selection.py --sm120: the
# A100, H100 and B300 folds reject it by 4-21 points of inner score, the fp8 ceiling fitting to 0.84-0.89; docs/moe.md
# round 7): there a bf16 grouped GEMM has no TMA warp-specialised tactics (`get_candidate_configs_sm120` serves NVFP4
# only) and pure fp8 is redirected to the SM89 kernels (`dispatchToArch`), so both take the Ampere-style list of
# `get_candidate_tiles`, whose first tile is CtaShape32x128x64 (32 token rows x 128 weight columns; 2 stages);
# NVFP4's first sm_120 tactic is 128 x 128 and sm_100/103 start at 128 x 128, the reference tile.
SM120_AMPERE_TILES: dict[tuple[str, str, str], tuple[int, int]] = {
    **FIRST_TACTIC_TILES, ("cutlass", "12", "bfloat16"): (32, 128), ("cutlass", "12", "fp8"): (32, 128)}
# H100's block-scaled fp8 FlashInfer CUTLASS rows do not take the CUTLASS tactic: the DeepSeek block-scale path runs
# TensorRT-LLM's fp8_blockscale_gemm (`grouped_gemm_dispatch` in fp8_blockscale_gemm_kernel.cuh), which with
# DeepGEMM's JIT runs, below 32 expected rows per expert on a 132-SM part, a swap-AB kernel whose token tile
# DeepGEMM's `get_best_gemm_config` sizes to the rows, else block_m 64 (up to 64 rows) or 128 (without the JIT its
# older kernel keeps 128-row tiles; that the JIT path ran is read from the rows: priced on 128-row tiles, the low-fill
# ones were 1.27x faster than priced). An M tile of 0 stands for that per-call choice, approximated by
# `adaptive_tile` (the mean rows per touched expert as a power of two in [16, 128]); its share of the ceiling stays 1.
# Shipped: benchmarks/moe_tactic_selection.py --block-fp8 (docs/moe.md round 7).
UNTUNED_TILES: dict[tuple[str, str, str], tuple[int, int]] = {
    **FIRST_TACTIC_TILES, ("cutlass", "9", "fp8_block"): (0, 128)}
# What the fitted compute ceilings stand for: a square TILE_M x TILE_M output tile (CUTLASS's first sm_100 tactic,
# 128x128; Triton's large-batch configs are 64-128 x 128-256).
REFERENCE_TILE = (TILE_M, TILE_M)
# How rows with an UNTUNED_TILES fact are priced (benchmarks/moe_tactic_selection.py chooses by a nested
# leave-one-device-out): "off" (at the reference tile, reported and not fitted: the model before issue 12 round 7),
# "priced" (at their tile's share of the ceiling, still not fitted) or "fitted" (priced so, and fitted like any row).
TACTIC_MODES = ("off", "priced", "fitted")
TACTIC = "priced"


def untuned_tile(family: str, hw: HardwareSpec, table_dtype: str,
                 tiles: dict[tuple[str, str, str], tuple[int, int]] | None = None) -> tuple[int, int] | None:
    """(M, N) tile of the first tactic the row's untuned library runs on `hw` where `tiles` (UNTUNED_TILES) knows
    it."""
    major = (hw.compute_capability or "").split(".")[0]
    return (UNTUNED_TILES if tiles is None else tiles).get((family, major, table_dtype))


def tile_share(tile: tuple[int, int], reference: tuple[int, int] = REFERENCE_TILE) -> float:
    """The share of the fitted compute ceiling an M x N output tile sustains: its operand intensity 2MN / (M + N)
    (FLOPs per byte of the A and B tiles each K step moves into the SM) over the reference tile's. A 128 x 16 tile
    re-reads its 128 token rows for every 16 weight columns: 28.4 FLOP/B against 128 for 128 x 128, i.e. 0.22."""
    def intensity(t: tuple[int, int]) -> float:
        return 2.0 * t[0] * t[1] / (t[0] + t[1])

    return min(1.0, intensity(tile) / intensity(reference))

# Shared-memory operand traffic of vLLM's default Triton tiles (issue 12 round 8, tried, not shipped): each default
# config's tile (calibration/vllm_fused_moe_configs.yaml default_config.tiles) moves its operands through shared memory
# once in (cp.async) and out again to the tensor cores, per the compute capability's MMA path (mma_operand_path:
# ldmatrix + mma.sync per warp below sm_90, wgmma per warp group on sm_90); `default_smem_ratio` is that traffic's time
# at the SM's shared-memory bandwidth over the tile's tensor time at peak. SMEM_MODES: "off" (the shipped model),
# "mult" (a default-config row's GEMM compute time times max(1, ratio)) and "max" (a second ceiling, the traffic at
# the full shared-memory bandwidth). Both candidates pad default-config rows to the default's M tile
# (`load_moe_table(..., default_tiles=True)`); benchmarks/moe_smem_selection.py scores them nested.
SMEM_MODES = ("off", "mult", "max")
SMEM = "off"

# L2 residency of the measured replays (issue 11/12 wave 11; tried, not shipped: benchmarks/moe_cache_selection.py).
# aiconfigurator's MoE collectors allocate ONE copy of the expert weights and time the layer call by CUDA-graph replays
# back to back with no L2 flush between them (`collector/vllm/collect_moe.py`, `collector/helper.py`
# `benchmark_with_power`; the GEMM collector rotates 6 weight copies, the MoE one does not), so a layer call whose
# working set fits in L2 streams it at on-chip, not DRAM, speed. CACHE_MODES: "off" (the model before) and "l2": the
# memory efficiency is times 1 + boost / (1 + (bytes / (cache_x * L2))^CACHE_P), the device-general GPU model's
# residency form (`model.CachedForm`) with its link: the boost follows on-chip over DRAM bandwidth (SMs x clock / memory
# bandwidth, `general.device_features`' log_onchip, exponent 1), boost = cache_boost x exp(log_onchip); cache_boost and
# cache_x are fitted (CACHE_P is the form's prior, not fitted), bytes are everything the layer call moves, L2 the
# datasheet's. The term prices the tables only: a served MoE layer's weights are evicted by the other layers' between
# calls, so `moe_family` (estimate, engine, planner) would price layers without it. The nested rule (committed before
# any held-out figure) kept "off": inner mean 16.04 off / 16.49 l2 over seeds 0-3 (docs/moe.md round 12).
CACHE_MODES = ("off", "l2")
CACHE = "off"
CACHE_PARAM_NAMES = ("cache_boost", "cache_x")
CACHE_START = (0.3, 0.2)  # model.CACHE_PARAMS' starts
CACHE_P = 2.0


def onchip_boost_scale(hw: HardwareSpec) -> float:
    """exp(log_onchip): the device's on-chip over DRAM bandwidth relative to the reference (H100 SXM) device's."""
    from lvlmsim.calibrate.general import device_features

    return math.exp(device_features(hw)["log_onchip"])


def cache_factor(nbytes: np.ndarray, hw: HardwareSpec, cache_boost: float, cache_x: float) -> np.ndarray:
    """Bandwidth multiplier of a replayed working set of `nbytes` on `hw` (CACHE_MODES "l2")."""
    l2 = float(hw.l2_cache_mb or 0.0) * 1e6
    if l2 <= 0.0:
        return np.ones_like(np.asarray(nbytes, dtype=float))
    boost = cache_boost * onchip_boost_scale(hw)
    return 1.0 + boost / (1.0 + (np.asarray(nbytes, dtype=float) / (cache_x * l2)) ** CACHE_P)


@functools.lru_cache(maxsize=1)
def _triton_listing() -> dict:
    """calibration/vllm_fused_moe_configs.yaml: vLLM's tuned Triton configs per device and the default config."""
    import yaml

    from lvlmsim.specs.registry import moe_configs_path

    path = moe_configs_path()
    try:
        doc = yaml.safe_load(path.read_text())
        tuned = {hw: {dt: {tuple(int(v) for v in en.split(",")) for en in pairs}
                      for dt, pairs in (dev.get("tuned") or {}).items()}
                 for hw, dev in doc["devices"].items()}
        default = {k: int(doc["default_config"][k]) for k in ("block_m_small", "block_m_large", "block_m_fp8_block")}
        tiles = {k: tuple(int(v) for v in t) for k, t in doc["default_config"]["tiles"].items()}
        num_warps = int(doc["default_config"]["num_warps"])
        paths = {str(major): {"instruction": str(a["instruction"]),
                              "smem_bytes_per_clk": float(a["smem_bytes_per_clk_sm"]),
                              "flop_per_clk": {d: float(v) for d, v in a["tensor_flop_per_clk_sm"].items()}}
                 for major, a in doc["mma_operand_path"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"moe: cannot read {path}: {exc}") from exc
    return {"tuned": tuned, "default": default, "tiles": tiles, "num_warps": num_warps, "paths": paths}


def triton_config(hardware_id: str, experts_local: int, inter_local: int, table_dtype: str) -> str:
    """'tuned' where vLLM ships a Triton fused-MoE config for this (E, N, GPU, dtype), else 'default' (also for a
    GPU the listing does not name: vLLM then has no file for it)."""
    listing = _triton_listing()["tuned"].get(hardware_id, {})
    pairs = listing.get(TRITON_CONFIG_DTYPES.get(table_dtype, ""), set())
    return "tuned" if (experts_local, inter_local) in pairs else "default"


def default_block_m(tokens: int, experts_local: int, table_dtype: str) -> int:
    """BLOCK_SIZE_M of vLLM's get_default_config: 64 for block-scaled fp8; 16 while the call's tokens M <= E, else
    64 (calibration/vllm_fused_moe_configs.yaml default_config)."""
    d = _triton_listing()["default"]
    if table_dtype == "fp8_block":
        return d["block_m_fp8_block"]
    return d["block_m_small"] if tokens <= experts_local else d["block_m_large"]


def warps_per_tile_v2(block_m: int, block_n: int, num_warps: int) -> tuple[int, int]:
    """Triton's warpsPerTileV2 (AccelerateMatmul.cpp, MMA v2): warps doubled along M while M's 16-row steps per warp
    are at least N's 16-column steps per warp (and M has rows left), else along N. 64 x 64 on 4 warps: 2 x 2."""
    wm, wn = 1, 1
    while wm * wn < num_warps:
        if block_m // 16 // wm >= block_n // 16 // wn and wm < block_m // 16:
            wm *= 2
        else:
            wn *= 2
    return wm, wn


def tile_smem_bytes(tile: tuple[int, int, int], num_warps: int, elem_bytes: float, instruction: str) -> float:
    """Shared-memory bytes of one K step of a (BLOCK_M, BLOCK_N, BLOCK_K) tile: both operands copied in once, and
    read out to the tensor cores: by every warp its own A rows and B columns (mma.sync via ldmatrix), or by each
    64-row wgmma its A rows and all of B (wgmma, where the tile has 64 rows per warp group; else Triton uses MMA v2)."""
    bm, bn, bk = tile
    writes = (bm + bn) * bk * elem_bytes
    if instruction == "wgmma" and num_warps % 4 == 0 and bm % (64 * (num_warps // 4)) == 0:
        reads = (bm + bn * (bm // 64)) * bk * elem_bytes
    else:
        wm, wn = warps_per_tile_v2(bm, bn, num_warps)
        reads = num_warps * (bm / wm + bn / wn) * bk * elem_bytes
    return writes + reads


def default_smem_ratio(compute_capability: str | None, tokens: int, experts_local: int, table_dtype: str) -> float:
    """Shared-memory time over tensor time, both at their per-SM peaks, of the vLLM default Triton tile a row runs
    (default_config: 16 x 32 x 64 while tokens <= local experts, else 64 x 64 x 32; 64 x 128 x 128 for block fp8),
    on its compute capability's MMA path (`tile_smem_bytes`); 1.0 where the listing has no path for it."""
    listing = _triton_listing()
    path = listing["paths"].get((compute_capability or "").split(".")[0])
    if path is None:
        return 1.0
    key = "fp8_block" if table_dtype == "fp8_block" else ("small" if tokens <= experts_local else "large")
    dtype, elem_bytes = ("fp8", 1.0) if table_dtype == "fp8_block" else ("bf16", 2.0)
    if dtype not in path["flop_per_clk"]:
        raise SpecError(f"moe: mma_operand_path has no tensor_flop_per_clk_sm for {dtype} on sm_{compute_capability}")
    tile = listing["tiles"][key]
    smem = tile_smem_bytes(tile, listing["num_warps"], elem_bytes, path["instruction"])
    return path["flop_per_clk"][dtype] * smem / (2.0 * tile[0] * tile[1] * tile[2]) / path["smem_bytes_per_clk"]


def expert_gated(hidden: int, inter: int, topk: int, experts: int, kernel_source: str) -> bool:
    """Whether the table row timed a gated (SwiGLU) expert MLP: not for a non-gated model's shape, unless the row
    came from a collector that builds every expert gated."""
    if kernel_source in LEGACY_SOURCES:
        return True
    return (hidden, inter, topk, experts) not in NON_GATED_SHAPES
# Kernels one MoE layer call launches, read from each library's source (docs/moe.md "kernel launches" names the files
# and commits). Each is (kernels, condition); `kernel_launches` adds them up per row. A fixed cost per launch times
# this count (`fit_moe(..., floor=...)`) was tried against the one fixed cost per layer call and not shipped.
FLOOR_MODES = ("layer", "launch", "runtime")  # per layer call (fitted) / per launch (fitted) / per launch (2.7 us)
# The shipped fixed cost: one fitted cost per kernel launch times the row's launches, chosen in all four folds of a
# leave-one-device-out nested in each outer fold (benchmarks/moe_launch_selection.py, docs/moe.md).
FLOOR = "launch"
# The MoE library vLLM runs on a GPU whose table is not measured, by compute capability (the measured tables'
# fastest kernels: TRT-LLM-gen on sm_100/103, FlashInfer CUTLASS on sm_120, Triton on sm_80/90), named by a
# kernel_source of that library for `kernel_launches`.
LIBRARY_SOURCES = {"10": "vllm_unquantizedfusedmoe_flashinfer_trtllm_trtllmbf16experts",
                   "12": "vllm_unquantizedfusedmoe_flashinfer_cutlass_flashinferexperts"}
TRITON_SOURCE = "vllm_unquantizedfusedmoe_triton_tritonexperts"
OP_TABLE_DTYPES = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp4": "nvfp4"}  # graph -> table dtype
ROUTER_SMALL_TOKENS = 256  # trtllm-gen routing from scores in one cluster kernel up to 8 blocks x 32 warps tokens
CUTLASS_FUSED_SORT_TOKENS = 256  # FlashInfer CUTLASS MoE: one fused expert-map sort kernel up to 256 tokens
CUTLASS_FUSED_SORT_TOPK = (1, 2, 4, 6, 8)  # ... and only for these top-k; else the three-step sort


def kernel_launches(source: str, table_dtype: str, tokens: int, topk: int, experts: int) -> int:
    """Kernels launched by one MoE layer call of the table's `kernel_source`, from the libraries' source:

    - vLLM Triton fused MoE (`fused_experts`): moe_align_block_size (one kernel while T*k < 1024 and E <= 64, else
      align + count_and_sort), the two fused_moe GEMMs, silu_and_mul, moe_sum; fp8 adds an activation quant before
      each GEMM. The vLLM 0.24 collector times the model's FusedMoE layer, whose router top-k is one more kernel
      (assumed inside the timing: that collector's source was not found); the vLLM 0.14 collector (LEGACY_SOURCES)
      passes precomputed top-k ids.
    - FlashInfer CUTLASS fused MoE (CutlassMoeFCRunner::runMoe): expert-map sort (one fused kernel up to
      CUTLASS_FUSED_SORT_TOKENS tokens and top-k in CUTLASS_FUSED_SORT_TOPK, else three), expandInputRows, GEMM1,
      activation, GEMM2, finalize (or the output memset of a fused finalize); plus vLLM's router top-k and, for a
      quantized dtype, its input quant.
    - FlashInfer TRT-LLM-gen MoE (trtllm_fused_moe_runner.cu): routing (one block / cluster kernel up to
      ROUTER_SMALL_TOKENS tokens, else top-k + init + histogram/offsets, three), PermuteGemm1 with the activation
      fused (a separate activation kernel for DeepSeek block fp8), GEMM2, finalize; `monolithic` routes inside from
      router scores, `modular` takes vLLM's router top-k ids (one more kernel, and its post-top-k routing stays one
      cluster kernel to 8192 tokens); a quantized dtype adds vLLM's input quant.
    """
    family, quant = kernel_family(source), table_dtype != "bfloat16"
    router = 0 if source in LEGACY_SOURCES else 1
    if family == "triton":
        align = 1 if tokens * topk < 1024 and experts <= 64 else 2
        return router + align + 4 + (2 if quant else 0)
    if family == "cutlass":
        fused_sort = tokens <= CUTLASS_FUSED_SORT_TOKENS and topk in CUTLASS_FUSED_SORT_TOPK
        return router + int(quant) + (1 if fused_sort else 3) + 5
    if family == "trtllm":
        modular = "modular" in source.lower()
        routing = 1 if tokens <= (8192 if modular else ROUTER_SMALL_TOKENS) else 3
        act = 1 if table_dtype == "fp8_block" else 0
        return int(modular) + int(quant) + routing + 3 + act
    return 6


def layer_launches(hw: HardwareSpec, op_dtype: str, experts_local: int) -> int:
    """Kernels one MoE layer call launches on `hw` (its compute capability's library, LIBRARY_SOURCES) at a decode
    batch: the branch where the fixed cost matters; past 256 tokens a library adds at most two launches (about 9 us
    at the fitted cost) to a layer that then takes hundreds of microseconds. Top-k 8, the experts held per GPU."""
    major = (hw.compute_capability or "").split(".")[0]
    table_dtype = OP_TABLE_DTYPES.get(op_dtype, "bfloat16")
    return kernel_launches(LIBRARY_SOURCES.get(major, TRITON_SOURCE), table_dtype, 1, 8, experts_local)


FIT_FILE = "general/moe.json"  # beside the device-general GPU model (general/gpu.json) in calibration/profiles
FIT_FORMAT = "lvlmsim-moe-fit/3"
FIT_ROWS = 3000  # seeded sample of each fitting device's rows (the same in benchmarks/moe_fit.py and validate)
ROUTING_DRAWS = 16  # power-law draws averaged per configuration (aiconfigurator averages 5 per measurement)


@dataclass
class MoEData:
    """One row per measured configuration: the graph's flops/bytes for it, and its measured seconds."""

    dtype: np.ndarray  # compute dtype per row
    table_dtype: np.ndarray  # the table's moe_dtype per row (bfloat16, fp8, fp8_block, nvfp4)
    flops_up: np.ndarray
    bytes_up: np.ndarray
    flops_down: np.ndarray
    bytes_down: np.ndarray
    ew_bytes: np.ndarray  # dispatch, activation, zero-fill and combine bytes of the row's kernel
    pairs: np.ndarray  # token-expert rows this GPU computes
    touched: np.ndarray  # distinct local experts with at least one row
    padded_rows: np.ndarray  # rows rounded up to whole TILE_M tiles per touched expert
    measured_s: np.ndarray
    tokens: np.ndarray
    experts: np.ndarray
    ep: np.ndarray
    inter_local: np.ndarray  # expert width per GPU (inter / moe_tp)
    kernel: np.ndarray  # kernel family of the fastest kernel per row (see `kernel_family`)
    source: np.ndarray  # the table's kernel_source of that kernel
    fit_excluded: np.ndarray  # rows of a quantized kernel slower than the device's bf16 one (not fitted)
    triton_default: np.ndarray  # Triton rows that run vLLM's default tile config (no tuned file for them)
    smem_ratio: np.ndarray  # default-config Triton rows: `default_smem_ratio`; 1.0 for every other row
    distribution: np.ndarray  # the table's routing distribution (balanced, power_law_<a>)
    topk: np.ndarray
    hidden: np.ndarray
    launches: np.ndarray  # kernels one layer call launches (`kernel_launches`)
    tile_share: np.ndarray  # share of the fitted compute ceiling the row's tile sustains (`tile_share`; 1 mostly)
    files: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    COLUMNS = ("dtype", "table_dtype", "flops_up", "bytes_up", "flops_down", "bytes_down", "ew_bytes", "pairs",
               "touched", "padded_rows", "measured_s", "tokens", "experts", "ep", "inter_local", "kernel", "source",
               "fit_excluded", "triton_default", "smem_ratio", "distribution", "topk", "hidden", "launches",
               "tile_share")

    def __len__(self) -> int:
        return len(self.measured_s)

    @property
    def rows_per_expert(self) -> np.ndarray:
        return self.pairs / np.maximum(self.touched, 1e-9)

    def take(self, idx: np.ndarray) -> MoEData:
        """The rows at `idx` (a fitting sample)."""
        return MoEData(**{k: getattr(self, k)[idx] for k in self.COLUMNS})


def kernel_family(kernel_source: str) -> str:
    """The kernel library behind a table's `kernel_source`: vLLM's Triton fused MoE, FlashInfer's CUTLASS grouped
    GEMM, or FlashInfer's TRT-LLM-gen kernels (A100's `vllm_fused_moe` is the Triton kernel of vLLM 0.14)."""
    src = kernel_source.lower()
    if "trtllm" in src:
        return "trtllm"
    if "cutlass" in src:
        return "cutlass"
    if "triton" in src or src == "vllm_fused_moe":
        return "triton"
    return "other"


def _alpha(distribution: str) -> float | None:
    """0 for `balanced`, the exponent of `power_law_<a>`, None for anything else."""
    if distribution == "balanced":
        return 0.0
    if distribution.startswith("power_law_"):
        try:
            a = float(distribution.removeprefix("power_law_"))
        except ValueError:
            return None
        return a if a > 0 and a != 1.0 else None
    return None


def _balanced_counts(tokens: int, experts: int, topk: int) -> np.ndarray:
    """Rows per expert of aiconfigurator's `balanced` generator: token i picks (i + j*s) mod E, s = ceil(E/k), or
    (i*s/T + j*s) mod E while T < s."""
    stride = math.ceil(experts / topk)
    i = np.arange(tokens)[:, None]
    j = np.arange(topk)[None, :]
    picks = (i + j * stride) % experts if tokens >= stride else np.floor((i * stride / tokens + j * stride) % experts)
    return np.bincount(picks.astype(int).ravel(), minlength=experts)[None, :].astype(float)


def _power_law_counts(tokens: int, experts: int, topk: int, alpha: float, rng: np.random.Generator,
                      stable_ties: bool = False) -> np.ndarray:
    """ROUTING_DRAWS draws of rows per expert from aiconfigurator's `power_law` generator: each expert's weight is a
    power-law sample on [1, 0.8 T] (on [0.01, 2] while T*k <= E), scaled to T*k rows and rounded; the rounding
    remainder goes to the busiest experts (or comes off the least busy). Among equal counts the vLLM 0.24
    collector's sort leaves them in no particular order (ties broken at random here: at one token every count rounds
    to zero and the k rows land on k arbitrary experts; its one-token EP rows run as fast as an even spread), the
    first collector's in index order (`stable_ties`: the k rows on experts 0..k-1, all on the timed GPU under EP;
    see LEGACY_SOURCES)."""
    lo, hi = (1.0, 0.8 * tokens) if tokens * topk > experts else (0.01, 2.0)
    u = rng.random((ROUTING_DRAWS, experts))
    w = ((hi ** (1 - alpha) - lo ** (1 - alpha)) * u + lo ** (1 - alpha)) ** (1 / (1 - alpha))
    target = tokens * topk
    counts = np.round(w / w.sum(axis=1, keepdims=True) * target)
    for c in counts:
        delta = int(target - c.sum())
        ties = np.arange(experts) if stable_ties else rng.random(experts)  # among equal counts: index or any order
        order = np.lexsort((ties, -c))  # busiest first
        if delta > 0:
            np.add.at(c, order[np.arange(delta) % experts], 1)
        for q in range(-delta):
            idx = order[-(q % experts) - 1]
            c[idx if c[idx] > 0 else int(np.argmax(c))] -= 1
    return counts


def _busiest_group_first(counts: np.ndarray, ep: int) -> np.ndarray:
    """One draw's rows per expert with the most loaded GPU's experts swapped into the first E/ep slots, as the
    generator does (it times rank 0; torch.argmax, the first of equal groups)."""
    groups = counts.reshape(ep, -1).copy()
    busiest = int(groups.sum(axis=1).argmax())
    groups[[0, busiest]] = groups[[busiest, 0]]
    return groups.ravel()


def _topk_round_trip(counts: np.ndarray, tokens: int, topk: int, ties: np.ndarray) -> np.ndarray:
    """Rows per expert the kernel runs after the collectors' round trip through router logits. The generator deals
    its counts out as a [k, T] grid (`expert_assignments.reshape(topk, T).T`, experts busiest first), so an expert
    with more than T rows appears twice in some token's row; the one-hot sum of that row is the token's logits and
    `torch.topk` picks k again: the doubled expert once, and for each lost pick an expert whose logit is zero, the
    lowest index first (CUDA topk writes the values equal to the k-th in index order, `gatherTopK` in PyTorch's
    aten/src/ATen/native/cuda/TensorTopK.cu). Counts no expert pushes past T come back unchanged."""
    if tokens <= 0 or counts.max() <= tokens:
        return counts
    order = np.lexsort((ties, -counts))
    sel = np.sort(np.repeat(order, counts[order].astype(int)).reshape(topk, tokens).T, axis=1)
    dup = np.zeros(sel.shape, dtype=bool)
    dup[:, 1:] = sel[:, 1:] == sel[:, :-1]
    out = np.bincount(sel[~dup], minlength=len(counts)).astype(float)
    short = np.flatnonzero(dup.any(axis=1))
    lost = dup[short].sum(axis=1)
    cand = np.arange(min(2 * topk, len(counts)))  # the lost picks' lowest-index zero-logit experts lie in [0, 2k)
    free = ~(sel[short][:, :, None] == cand[None, None, :]).any(axis=1)
    take = free & (np.cumsum(free, axis=1) <= lost[:, None])
    return out + np.bincount(np.broadcast_to(cand, take.shape)[take], minlength=len(counts))


def routing_counts(tokens: int, experts: int, topk: int, ep: int, distribution: str, stable_ties: bool = False,
                   round_trip: bool = True) -> np.ndarray:
    """Rows per local expert on the timed GPU, one row per draw (ROUTING_DRAWS seeded draws for a power law, one for
    `balanced`): the first E/ep experts, for a power law after the generator swaps the most loaded GPU's experts to
    rank 0, and (`round_trip`) after the collector's round trip through router logits and top-k
    (`_topk_round_trip`; without it, the generator's counts as drawn)."""
    alpha = _alpha(distribution)
    if alpha is None:
        raise SpecError(f"moe table: distribution '{distribution}' is not 'balanced' or 'power_law_<a>'")
    local = experts // ep
    if alpha == 0.0:  # its k picks of a token are distinct: nothing for top-k to change
        return _balanced_counts(tokens, experts, topk)[:, :local]
    seed = (tokens * 1_000_003 + experts * 7919 + topk * 104_729 + round(alpha * 1000)) % 2**32
    rng = np.random.default_rng(seed)
    counts = [_busiest_group_first(c, ep) for c in _power_law_counts(tokens, experts, topk, alpha, rng, stable_ties)]
    if round_trip:
        counts = [_topk_round_trip(c, tokens, topk, np.arange(experts) if stable_ties else rng.random(experts))
                  for c in counts]
    return np.array(counts)[:, :local]


@functools.lru_cache(maxsize=65536)
def table_routing(tokens: int, experts: int, topk: int, ep: int, distribution: str,
                  tile_m: int = TILE_M, stable_ties: bool = False) -> tuple[float, float, float]:
    """(token-expert rows, distinct experts touched, rows padded to `tile_m` per touched expert) on the timed GPU, the
    mean over `routing_counts`' draws (exact for `balanced`)."""
    mine = routing_counts(tokens, experts, topk, ep, distribution, stable_ties)
    tile = np.full(len(mine), float(tile_m)) if tile_m else adaptive_tile(mine.sum(axis=1), (mine > 0).sum(axis=1))
    padded = np.ceil(mine / tile[:, None]) * tile[:, None]
    return float(mine.sum(axis=1).mean()), float((mine > 0).sum(axis=1).mean()), float(padded.sum(axis=1).mean())


def adaptive_tile(rows, touched):
    """The M tile a grouped-GEMM library picks for `rows` token-expert rows over `touched` experts: the mean rows per
    expert rounded up to a power of two, within [16, 128] (TRT-LLM's `tile_tokens_dim` rule, which clamps to
    [8, 64]; vLLM's tuned Triton configs use BLOCK_SIZE_M 16 for small batches and 64-128 for large ones)."""
    mean = np.maximum(np.asarray(rows, dtype=float) / np.maximum(touched, 1), 1.0)
    return np.clip(2.0 ** np.ceil(np.log2(mean)), 16.0, 128.0)


def _row_ops(h: int, inter: int, k: int, experts: int, tp: int, ep: int, tokens: int, distribution: str,
             dtype: str, kernel: str, tile_m: int, gated: bool = True, stable_ties: bool = False):
    """The graph's grouped GEMMs for the load the table's generator put on this GPU, and the layer's elementwise
    traffic for the row's kernel (see the module docstring); also (rows, touched, padded rows). A non-gated expert's
    up GEMM is h x inter and its activation reads one input."""
    pairs, touched, padded = table_routing(tokens, experts, k, ep, distribution, tile_m, stable_ties)
    mods = {"vision": dtype, "projector": dtype, "llm": dtype}
    cfg = GraphConfig(weight_dtype=mods, compute_dtype=dict(mods), act_dtype="bf16", kv_dtype="bf16", tp=tp * ep,
                      ep=ep)
    inter_l = math.ceil(inter / tp)
    up_n = 2 * inter_l if gated else inter_l
    up = expert_gemm("llm.moe_experts_up", "decode", pairs, up_n, h, touched, experts // ep, cfg, 1, (0, 0), 0.0)
    down = expert_gemm("llm.moe_experts_down", "decode", pairs, h, inter_l, touched, experts // ep, cfg, 1, (0, 0),
                       0.0)
    rows = float(tokens * k) if kernel == "triton" else pairs  # Triton's workspace holds all T*k rows
    ew = [elementwise("llm.moe_dispatch", "decode", "llm", tokens * h, cfg, reads=1, writes=pairs / tokens),
          elementwise("llm.moe_act", "decode", "llm", rows * inter_l, cfg, reads=2 if gated else 1, writes=1),
          elementwise("llm.moe_combine", "decode", "llm", tokens * h, cfg, reads=rows / tokens, writes=1)]
    if rows > pairs:  # zeros written for the other GPUs' rows by both GEMMs
        ew.append(elementwise("llm.moe_zero_fill", "decode", "llm", (rows - pairs) * (up_n + h), cfg,
                              reads=0, writes=1))
    return up, down, sum(op.bytes for op in ew), (pairs, touched, padded)


def slower_than_bf16(df) -> set[tuple[str, str]]:
    """(moe_dtype, kernel family) groups of one device's fastest rows whose median time over the configurations the
    bf16 rows also ran is above bf16's: a quantized kernel slower than bf16 is not using its dtype's peak."""
    keys = ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size",
            "distribution"]
    bf16 = df[df.moe_dtype == "bfloat16"][[*keys, "latency"]].rename(columns={"latency": "bf16_latency"})
    other = df[df.moe_dtype != "bfloat16"].merge(bf16, on=keys)
    if other.empty:
        return set()
    ratio = (other.latency / other.bf16_latency).groupby([other.moe_dtype, other.family]).median()
    return {key for key, r in ratio.items() if r > 1.0}


TABLE_KEYS = ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
              "moe_ep_size", "distribution"]


def _read_tables(root: Path):
    import pandas as pd

    paths = sorted(root.rglob("moe_perf.csv")) if root.is_dir() else []
    if not paths:
        raise SpecError(f"--data: no moe_perf.csv under '{root}' (expected <gpu>/moe/<framework>/<version>/)")
    frames = []
    for p in paths:
        df = pd.read_csv(p)
        missing = [c for c in [*TABLE_KEYS, "latency"] if c not in df.columns]
        if missing:
            raise SpecError(f"--data: {p} lacks column(s) {', '.join(missing)}")
        if "kernel_source" not in df.columns:
            df["kernel_source"] = "unknown"
        frames.append(df[[*TABLE_KEYS, "kernel_source", "latency"]])
    df = pd.concat(frames, ignore_index=True)
    df["family"] = [kernel_family(str(s)) for s in df.kernel_source]
    return df, [str(p.relative_to(root)) for p in paths]


def _row_tactic(family: str, hw: HardwareSpec, table_dtype: str, tactic: str,
                tiles: dict | None = None) -> tuple[int | None, float, bool]:
    """(M tile or None, share of the ceiling, fitted despite `slower_than_bf16`) for a row under `tactic`
    (TACTIC_MODES): the untuned first tactic's tile where UNTUNED_TILES knows it and `tactic` is not "off"."""
    if tactic not in TACTIC_MODES:
        raise SpecError(f"moe table: tactic '{tactic}' is not one of {', '.join(TACTIC_MODES)}")
    tile = untuned_tile(family, hw, table_dtype, tiles) if tactic != "off" else None
    if tile is None:
        return None, 1.0, False
    return tile[0], tile_share(tile) if tile[0] else 1.0, tactic == "fitted"


def load_moe_table(data_dir: str | Path, hw: HardwareSpec, tile_m: int = TILE_M,
                   every_kernel: bool = False, default_tiles: bool = False, tactic: str = TACTIC,
                   untuned_tiles: dict | None = None) -> MoEData:
    """Every moe_perf.csv under `data_dir`, rows this device can run, fastest kernel per configuration (or, with
    `every_kernel`, every kernel's row: a report per kernel_source); grouped GEMM rows padded to `tile_m`-row tiles
    per touched expert. Which quantized kernels are not fitted is decided on the fastest rows either way. Triton rows
    without a tuned vLLM config (`triton_config`) are flagged `triton_default`; with `default_tiles` they are padded to
    the default config's M tile instead (a tried alternative, not the shipped model). Rows of an untuned library
    whose first tactic's tile `untuned_tiles` (UNTUNED_TILES) names are priced on that tile as `tactic`
    (TACTIC_MODES) says."""
    root = Path(data_dir)
    every, files = _read_tables(root)
    fastest = every.loc[every.groupby(TABLE_KEYS)["latency"].idxmin()]  # the kernel a tuned deployment runs
    excluded = slower_than_bf16(fastest)
    df = every if every_kernel else fastest
    cols: dict[str, list] = {k: [] for k in MoEData.COLUMNS}
    skipped: Counter = Counter()
    for r in df.itertuples(index=False):
        if r.moe_dtype not in MOE_DTYPES:
            skipped[f"moe dtype {r.moe_dtype} (weight-only / mxfp4 kernels are not modelled)"] += 1
            continue
        dtype, wbytes, _ = MOE_DTYPES[r.moe_dtype]
        e, ep, k = int(r.num_experts), int(r.moe_ep_size), int(r.topk)
        if (_alpha(r.distribution) is None or not hw.supports(dtype) or e % ep or k > e
                or int(r.inter_size) % int(r.moe_tp_size)):
            skipped[f"moe {r.moe_dtype} rows not runnable here (dtype, distribution or split)"] += 1
            continue
        h, inter, src = int(r.hidden_size), int(r.inter_size), str(r.kernel_source)
        inter_local = inter // int(r.moe_tp_size)
        default_cfg = r.family == "triton" and triton_config(hw.id, e // ep, inter_local, r.moe_dtype) == "default"
        row_tile = default_block_m(int(r.num_tokens), e // ep, r.moe_dtype) if default_cfg and default_tiles else tile_m
        tactic_m, share, fit_anyway = _row_tactic(r.family, hw, r.moe_dtype, tactic, untuned_tiles)
        row_tile = row_tile if tactic_m is None else tactic_m  # 0: the library's per-call (adaptive) tile
        up, down, ew, (pairs, touched, padded) = _row_ops(h, inter, k, e, int(r.moe_tp_size), ep, int(r.num_tokens),
                                                          r.distribution, dtype, r.family, row_tile,
                                                          expert_gated(h, inter, k, e, src), src in LEGACY_SOURCES)
        scale = wbytes / DTYPE_BYTES[dtype] - 1.0  # weights in the table's format (block scales, nvfp4 scales)
        row = {"dtype": dtype, "table_dtype": r.moe_dtype, "flops_up": up.flops,
               "bytes_up": up.bytes + up.weight_bytes * scale, "flops_down": down.flops,
               "bytes_down": down.bytes + down.weight_bytes * scale, "ew_bytes": ew, "pairs": pairs,
               "touched": touched, "padded_rows": padded, "measured_s": float(r.latency) * 1e-3,
               "tokens": int(r.num_tokens), "experts": e, "ep": ep, "inter_local": inter_local,
               "kernel": r.family, "source": src,
               "fit_excluded": (r.moe_dtype, r.family) in excluded and not fit_anyway,
               "triton_default": bool(default_cfg),
               "smem_ratio": (default_smem_ratio(hw.compute_capability, int(r.num_tokens), e // ep, r.moe_dtype)
                              if default_cfg else 1.0),
               "distribution": str(r.distribution), "topk": k, "hidden": h,
               "launches": kernel_launches(src, r.moe_dtype, int(r.num_tokens), k, e), "tile_share": share}
        for key, v in row.items():
            cols[key].append(v)
    data = MoEData(**{k: np.array(v) for k, v in cols.items()}, files=files, skipped=skipped)
    if not len(data):
        data.fit_excluded = data.fit_excluded.astype(bool)
        data.triton_default = data.triton_default.astype(bool)
    return data


def dtype_class(table_dtype: np.ndarray) -> np.ndarray:
    return np.array([MOE_DTYPES[t][2] for t in table_dtype]) if len(table_dtype) else np.zeros(0, dtype=str)


def compute_efficiency(ec_max: np.ndarray | float, pairs, padded):
    """ec = ec_max * rows / padded rows: the share of the tiles' work that is real rows (shared with moe_family)."""
    return ec_max * pairs / np.maximum(padded, 1e-9)


def predict(params: Sequence[float], data: MoEData, hw: HardwareSpec, floor: str = FLOOR,
            smem: str = SMEM, cache: str = CACHE) -> np.ndarray:
    """Seconds per row under the device-general efficiency model (see the module docstring). A seventh parameter,
    where given, is TRITON_DEFAULT_PARAM: the GEMMs of rows on vLLM's default Triton config run at that fraction of
    the fitted efficiencies (the tried alternative of `fit_moe(..., triton_default=True)`). `floor` (FLOOR_MODES):
    floor_s is the fixed cost of a layer call ("layer") or of each of its kernel launches ("launch", the shipped
    FLOOR, and "runtime"; times `MoEData.launches`). `smem` (SMEM_MODES): how a default-config Triton row's
    `smem_ratio` bounds its GEMMs' compute time ("off": not at all, the shipped SMEM). `cache` (CACHE_MODES): with
    "l2" the two parameters after PARAM_NAMES are CACHE_PARAM_NAMES and the bandwidth is times `cache_factor`."""
    if cache not in CACHE_MODES:
        raise SpecError(f"moe: cache mode '{cache}' is not one of {', '.join(CACHE_MODES)}")
    extra = CACHE_PARAM_NAMES if cache == "l2" else (TRITON_DEFAULT_PARAM,)
    names = PARAM_NAMES if len(params) == len(PARAM_NAMES) else (*PARAM_NAMES, *extra)
    p = dict(zip(names, params, strict=True))
    bw = p["em"] * hw.mem_bw_bytes_per_s
    if cache == "l2":
        bw = bw * cache_factor(data.bytes_up + data.bytes_down + data.ew_bytes, hw, p["cache_boost"], p["cache_x"])
    cls = dtype_class(data.table_dtype)
    ec_max = np.select([cls == c for c in DTYPE_CLASSES], [p[f"ec_{c}"] for c in DTYPE_CLASSES], 1.0)
    peak = np.array([hw.peak_flops(d) for d in data.dtype]) if len(data) else np.zeros(0)
    ec = compute_efficiency(ec_max, data.pairs, data.padded_rows) * data.tile_share
    slow = np.where(data.triton_default, p.get(TRITON_DEFAULT_PARAM, 1.0), 1.0)  # vLLM's default Triton config
    total = p["floor_s"] * (1.0 if floor == "layer" else data.launches) + data.ew_bytes / bw
    for f, b in ((data.flops_up, data.bytes_up), (data.flops_down, data.bytes_down)):
        total = total + np.maximum(_compute_s(f, ec, peak, data.smem_ratio, smem), b / bw) / slow
    return total


def _compute_s(flops: np.ndarray, ec: np.ndarray, peak: np.ndarray, smem_ratio: np.ndarray, smem: str) -> np.ndarray:
    """A grouped GEMM's compute time at the fitted efficiency, bounded by its tile's shared-memory traffic per `smem`:
    times max(1, ratio) ("mult") or against the traffic at the full shared-memory bandwidth ("max")."""
    t = flops / (ec * peak)
    if smem == "mult":
        return t * np.maximum(smem_ratio, 1.0)
    if smem == "max":
        return np.maximum(t, flops * smem_ratio / peak)
    if smem != "off":
        raise SpecError(f"moe: smem mode '{smem}' is not one of {', '.join(SMEM_MODES)}")
    return t


def roofline_default(data: MoEData, hw: HardwareSpec) -> np.ndarray:
    """The flat roofline default (0.75 of peak, 0.8 of bandwidth, 3 us per kernel) on the same ops."""
    peak = np.array([hw.peak_flops(d) for d in data.dtype]) if len(data) else np.zeros(0)
    bw = 0.8 * hw.mem_bw_bytes_per_s
    t = (np.maximum(data.flops_up / (0.75 * peak), data.bytes_up / bw)
         + np.maximum(data.flops_down / (0.75 * peak), data.bytes_down / bw) + data.ew_bytes / bw)
    return t + 5 * 3e-6  # dispatch, up, act, down, combine


# --------------------------------------------------------------------------------------------------------------
# fit

N_EFF = len(DTYPE_CLASSES) + 1  # efficiencies (logistic) come first in PARAM_NAMES, then floor_s (exp)


def _natural(z: np.ndarray) -> list[float]:
    """Unconstrained -> natural: efficiencies through a logistic (0, 1), the rest through exp (> 0)."""
    eff = 1.0 / (1.0 + np.exp(-z[:N_EFF]))
    return [float(v) for v in eff] + [float(math.exp(v)) for v in z[N_EFF:]]


def _z(natural: Sequence[float]) -> np.ndarray:
    eff = np.array(natural[:N_EFF])
    return np.concatenate([np.log(eff / (1.0 - eff)), np.log(np.array(natural[N_EFF:]))])


def nelder_mead(f, x0: np.ndarray, step: float = 0.5, iters: int = 1500,
                tol: float = 1e-7) -> tuple[np.ndarray, Convergence]:
    """Plain Nelder-Mead (reflection 1, expansion 2, contraction 0.5, shrink 0.5) for a handful of parameters:
    (the best vertex, how the search ended: it stops when the simplex's values span less than `tol`, or at `iters`
    iterations, at_cap)."""
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    vals = [f(x) for x in simplex]
    iterations, at_cap = 0, True  # at_cap until the stopping rule ends the loop
    while iterations < iters:
        iterations += 1
        order = np.argsort(vals)
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) < tol:
            at_cap = False
            break
        centroid = np.mean(simplex[:-1], axis=0)
        refl = centroid + (centroid - simplex[-1])
        fr = f(refl)
        if fr < vals[0]:
            exp = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(exp)
            simplex[-1], vals[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = refl, fr
        else:
            con = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(con)
            if fc < vals[-1]:
                simplex[-1], vals[-1] = con, fc
            else:
                simplex = [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex]
                vals = [f(s) for s in simplex]
    return simplex[int(np.argmin(vals))], Convergence(iterations, at_cap)


START = (*([0.4] * len(DTYPE_CLASSES)), 0.8, 2e-5)


def runtime_launch_floor_s() -> float:
    """The CUDA-graph runtimes' per-kernel floor (lvlmsim.cost.runtime: 2.7 us, vLLM, SGLang and TRT-LLM alike)."""
    from lvlmsim.cost.runtime import RUNTIMES

    return RUNTIMES["vllm"].kernel_floor_s


def fit_moe(datasets: Sequence[tuple[MoEData, HardwareSpec]], triton_default: bool = False,
            tie_block_fp8: bool = False, floor: str = FLOOR, smem: str = SMEM, cache: str = CACHE) -> list[float]:
    """Device-general parameters minimising the mean over devices of each device's mean |log error|.

    Each device weighs the same whatever its row count; rows of a kernel slower than its device's bf16 kernel
    (`fit_excluded`) are not fitted. A dtype class no fitting row ran keeps its START ceiling. `triton_default` adds
    TRITON_DEFAULT_PARAM (see `predict`; it stays 1, unsearched, when no fitting row runs vLLM's default config).
    `tie_block_fp8` fits block-scaled fp8 at the per-tensor fp8 ceiling (one parameter for both; the block scales
    keep their bytes): see BLOCK_FP8_TIED. `floor` (FLOOR_MODES, see `predict`): "runtime" holds floor_s at the
    runtime's per-kernel floor, unfitted. `smem` (SMEM_MODES, see `predict`): a tried alternative, "off" ships.
    `cache` (CACHE_MODES, see `predict`): "l2" appends CACHE_PARAM_NAMES (not with `triton_default`).
    """
    if triton_default and cache != "off":
        raise SpecError("moe fit: triton_default and an L2 cache term cannot be fitted together")
    if floor not in FLOOR_MODES:
        raise SpecError(f"moe fit: floor '{floor}' is not one of {', '.join(FLOOR_MODES)}")
    fitted = [(d.take(np.flatnonzero(~d.fit_excluded)), hw) for d, hw in datasets]
    fitted = [(d, hw) for d, hw in fitted if len(d)]
    start = (*START[:-1], runtime_launch_floor_s() if floor != "layer" else START[-1])
    z_start = _z((*start, 1.0) if triton_default else (*start, *CACHE_START) if cache == "l2" else start)
    n_free = len(z_start) - (1 if triton_default and not any(d.triton_default.any() for d, _ in fitted) else 0)
    block, per_tensor = DTYPE_CLASSES.index("fp8_block"), DTYPE_CLASSES.index("fp8")
    free = [i for i in range(n_free) if not (tie_block_fp8 and i == block)
            and not (floor == "runtime" and i == PARAM_NAMES.index("floor_s"))]

    def full(z_free: np.ndarray) -> list[float]:
        z = z_start.copy()
        z[free] = z_free
        if tie_block_fp8:
            z[block] = z[per_tensor]
        return _natural(z)

    def loss(z_free: np.ndarray) -> float:
        p = full(z_free)
        return float(np.mean([np.mean(np.abs(np.log(predict(p, d, hw, floor, smem, cache) / d.measured_s)))
                              for d, hw in fitted]))

    z, _conv = nelder_mead(loss, z_start[free], iters=3000)
    for step in (0.3, 0.1):  # restarts: Nelder-Mead stalls on a collapsed simplex
        z, _conv = nelder_mead(loss, z, step=step, iters=3000)
    return full(z)


def sample(data: MoEData, n: int = FIT_ROWS, seed: int = 0) -> MoEData:
    """A seeded sample of at most `n` rows (the rows a fold fits on)."""
    if len(data) <= n:
        return data
    return data.take(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))


def leave_one_device_out(loaded: dict[str, tuple[MoEData, HardwareSpec]], *, fit_rows: int = FIT_ROWS,
                         seed: int = 0, cache: str = CACHE) -> list[dict]:
    """Per device: the fit on a `fit_rows` sample of every other device and its report on all of this device's
    rows. The one MoE leave-one-device-out, for benchmarks/moe_fit.py and `lvlmsim validate --leave-one-out`."""
    folds = []
    for name, (data, hw) in loaded.items():
        others = [(sample(d, fit_rows, seed), h) for n, (d, h) in loaded.items() if n != name]
        params = fit_moe(others, cache=cache)
        folds.append({"folder": name, "held_out": hw.id, "fit_on": [h.id for n, (_, h) in loaded.items() if n != name],
                      "params": params, "report": compare_moe(data, hw, params, "fold", cache=cache),
                      "ratios": data.measured_s / predict(params, data, hw, cache=cache)})
    return folds


# --------------------------------------------------------------------------------------------------------------
# report


def _bin(v: float, edges: Sequence[float], labels: Sequence[str]) -> str:
    for e, lab in zip(edges, labels, strict=False):
        if v <= e:
            return lab
    return labels[-1]


def regimes(data: MoEData) -> dict[str, np.ndarray]:
    """Row labels per regime axis: tokens, experts, EP degree, dtype, kernel family, the table's kernel_source,
    whether a Triton row's expert width per GPU is 16-aligned, whether it runs a tuned vLLM config, and whether it
    is priced on an untuned first tactic's tile."""
    return {
        "tokens": np.array([_bin(t, (16, 256, 4096), ("tokens 1-16", "tokens 17-256", "tokens 257-4096",
                                                        "tokens >4096")) for t in data.tokens]),
        "experts": np.array([_bin(e, (32, 256), ("experts <=32", "experts 33-256", "experts >256"))
                             for e in data.experts]),
        "ep": np.array([_bin(e, (1, 8), ("ep 1", "ep 2-8", "ep >8")) for e in data.ep]),
        "dtype": np.array([f"dtype {d}" for d in data.table_dtype]),
        "kernel": np.array([f"kernel {k}" + (" (slower than bf16, not fitted)" if x else "")
                            for k, x in zip(data.kernel, data.fit_excluded, strict=True)]),
        "source": np.array([f"kernel_source {s}" for s in data.source]),
        "alignment": np.array([_alignment(k, w) for k, w in zip(data.kernel, data.inter_local, strict=True)]),
        "tactic": np.array([_tactic_label(x) for x in data.tile_share]),
        "vllm_config": np.array([("triton, vLLM default config" if d else "triton, vLLM tuned config")
                                 if k == "triton" else "not triton"
                                 for k, d in zip(data.kernel, data.triton_default, strict=True)]),
    }


def _tactic_label(share: float) -> str:
    """Rows priced on a narrower tile than the reference (an untuned first tactic, UNTUNED_TILES), or not."""
    return f"untuned first tactic (tile share {share:.2f})" if share < 1.0 else "tile share 1"


def _alignment(kernel: str, inter_local: int) -> str:
    """Triton rows whose expert width per GPU is not a multiple of TRITON_ALIGN (unvectorised loads), or not."""
    if kernel == "triton" and inter_local % TRITON_ALIGN:
        return f"triton, inter/GPU % {TRITON_ALIGN} != 0"
    return "aligned or not triton"


def compare_moe(data: MoEData, hw: HardwareSpec, params: Sequence[float], source: str, floor: str = FLOOR,
                cache: str = CACHE) -> dict:
    """The `moe` family entry of a validate report: overall and per-regime errors next to the flat roofline."""
    pred = predict(params, data, hw, floor, cache=cache)
    err = np.abs(pred / data.measured_s - 1.0) * 100.0
    base = np.abs(roofline_default(data, hw) / data.measured_s - 1.0) * 100.0
    entry = error_stats(err, base)
    entry["profile_sources"] = [source]
    entry["regimes"] = {}
    for labels in regimes(data).values():
        for lab in dict.fromkeys(labels):
            entry["regimes"][lab] = error_stats(err[labels == lab], base[labels == lab])
    return entry


def fit_file(directory: Path) -> Path:
    return directory / FIT_FILE


def load_fit(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"moe fit: cannot read {path}: {exc}") from exc
    if doc.get("format") != FIT_FORMAT:
        raise SpecError(f"moe fit: {path} is not a {FIT_FORMAT} file")
    return doc


def fit_floor(doc: dict) -> str:
    """What a fit file's floor_s is per (FLOOR_MODES): "layer" for files written before the per-launch cost."""
    floor = doc.get("floor", "layer")
    if floor not in FLOOR_MODES:
        raise SpecError(f"moe fit: floor '{floor}' is not one of {', '.join(FLOOR_MODES)}")
    return floor


def fit_tactic(doc: dict) -> str:
    """How a fit file priced untuned first-tactic rows (TACTIC_MODES): "off" for files written before UNTUNED_TILES."""
    tactic = doc.get("tactic", "off")
    if tactic not in TACTIC_MODES:
        raise SpecError(f"moe fit: tactic '{tactic}' is not one of {', '.join(TACTIC_MODES)}")
    return tactic


def params_for(doc: dict, hardware_id: str) -> tuple[list[float], str]:
    """The fold that held `hardware_id` out (so its report is out-of-sample), else the all-devices fit."""
    for fold in doc.get("folds", []):
        if fold["held_out"] == hardware_id:
            p = fold["params"]
            return [p[k] for k in PARAM_NAMES], f"general: moe fit on {', '.join(fold['fit_on'])}"
    p = doc["all"]["params"]
    return [p[k] for k in PARAM_NAMES], f"general: moe fit on {', '.join(doc['all']['fit_on'])}"


def moe_report(hw: HardwareSpec, data_dir: str | Path, fit_dir: Path) -> dict | None:
    """The `moe` family for `lvlmsim validate`, or None when `data_dir` holds no moe_perf table."""
    root = Path(data_dir)
    if not root.is_dir() or not any(root.rglob("moe_perf.csv")):
        return None
    path = fit_file(fit_dir)
    if not path.exists():
        return None
    doc = load_fit(path)
    params, source = params_for(doc, hw.id)
    data = load_moe_table(root, hw, tactic=fit_tactic(doc))
    entry = compare_moe(data, hw, params, source, fit_floor(doc))
    entry["skipped"] = dict(data.skipped)
    return entry
