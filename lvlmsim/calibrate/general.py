"""The device-general efficiency model: one set of parameters per op family that prices any GPU from its datasheet.

A per-device profile (lvlmsim.calibrate.model.FittedProfile) holds, per family, the parameters of a *form* (GEMM,
attention, decode, elementwise, all-reduce efficiency shapes). Here the same forms are used, but each parameter, in
the unconstrained coordinates the fitter works in (logit for efficiencies, log for scales), is an intercept plus a
few linked datasheet features of the device:

    z_param(device) = z0_param + sum_f coef[param, f] * feature_f(device)

The links follow the physics and are few (LINKS): bytes needed to saturate memory scale with bandwidth (Little's
law: b0 ~ bandwidth x latency, prior exponent 1), the parallel work needed to fill the machine scales with its SM
count (prior exponent 1), a kernel's fixed floor with its clock, the attainable fraction of peak with the ridge point
and with the attention kernel generation the serving stack runs on that architecture (FA2 / FA3 / Blackwell
TRT-LLM-FlashInfer kernels), memory efficiency with the memory technology (GDDR vs HBM). Features are log-ratios to
the H100 SXM datasheet (0 for H100) or 0/1 flags. The coefficients are fitted jointly on every measured device, with
a ridge penalty toward their priors, so a family measured on three devices cannot invent a steep trend from them.

`GeneralModel.profile_for(hw)` evaluates the model for one device and returns an ordinary FittedProfile whose
sources read `general:<model>:<family>` and whose per-family error is the leave-one-device-out (transfer) error,
so the engine's hot path is unchanged. Fitting is numpy-only Levenberg-Marquardt (lvlmsim.calibrate.fit), with a
seeded subsample per device so that leave-one-out over four devices runs in well under a minute.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.fit import (
    FLOOR_INIT,
    PRIOR_WEIGHT,
    ROBUST_SCALE,
    Z_LIMIT,
    Convergence,
    FamilyData,
    family_data,
    group_key,
    predict,
)
from lvlmsim.calibrate.kernels import window_binds
from lvlmsim.calibrate.measured import Measurement
from lvlmsim.calibrate.model import (
    EXP_RANGE,
    FORM_VARIANTS,
    FORMS,
    FamilyFit,
    FittedProfile,
    Form,
    family_key,
    form_for,
    regime_bands,
)
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import ELEMENTWISE
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.inputs import number

GENERAL_FORMAT = "lvlmsim-general/1"

# The reference datasheet every feature is a ratio to: NVIDIA H100 SXM5 (hardware_specs/h100-sxm.yaml).
REF = {"mem_bw_gbps": 3350.0, "bf16_tflops": 989.4, "sm_count": 132.0, "boost_clock_mhz": 1980.0,
       "l2_cache_mb": 50.0, "tdp_w": 700.0, "link_bw_gbps": 450.0}

# Attention kernel generation the serving stack runs per CUDA compute-capability major version, as the kernel_source
# column of NVIDIA aiconfigurator's tables shows for vLLM (0.14 on A100, 0.24 elsewhere): sm80 vllm_flash_attn (FA2),
# sm90 vllm_flash_attn_fa3, sm100/103 vllm_flashinfer_trtllm{prefill,decode} and vllm_vit_flash_attn_fa4, sm120
# vllm_flash_attn_fa2. A device without a compute capability gets none of the flags (the pooled intercept). That is
# every AMD Instinct GPU, and rightly so: ROCm serving stacks run none of these kernels. SGLang's default MHA backend
# on HIP is `aiter` (sgl-project/sglang python/sglang/srt/server_args.py: `elif is_hip(): self.attention_backend =
# "aiter"`; MLA models with 16 or 128 KV heads too, else `triton`), vLLM's ROCm backends are TRITON_ATTN (its default),
# ROCM_ATTN and ROCM_AITER_FA / ROCM_AITER_UNIFIED_ATTN (vLLM docs, "ROCm attention backends"): AMD's aiter / CK
# kernels and Triton, none of them measured here. GeneralModel.profile_for records such a device as outside every
# fitted category (outside_fitted), and its provenance says so.
ATTENTION_KERNELS = {"8": "fa2", "9": "fa3", "10": "bw", "12": "fa2"}
KERNEL_FLAGS = ("k_fa2", "k_fa3", "k_bw")
FEATURES = (("log_bw", "log_ridge", "log_power", "log_sms", "log_clock", "log_link", "log_onchip", "gddr",
             "log_sm_rate", "arch_sm100", "blackwell", "sync_mma") + KERNEL_FLAGS)
# Compute-capability majors whose tensor cores run only warp-synchronous `mma.sync` (operands staged from shared
# memory into registers by the issuing warps, which wait on the result): sm70/75, sm80/86/89 and sm120/121 (GeForce and
# RTX PRO Blackwell: Ampere's HMMA instruction family plus TMA, no TMEM and no tcgen05; NVIDIA/cutlass#2513, a
# maintainer: the tcgen05 examples are not for "SM80/86/89/120"). sm90 (wgmma) and sm100/103/110 (tcgen05) issue
# asynchronous warpgroup/CTA MMAs that read shared memory directly, so a kernel's loads, MMAs and epilogue overlap in
# warp-specialised pipelines. A device without a compute capability gets 0 (the reference's). A candidate feature: no
# shipped family links it. The GEMM overlap share beta by this flag won seed 0's nested check but not the mean over
# table seeds 0-3 (benchmarks/gemm_overlap_selection.py), so it is not shipped.
SYNC_MMA_MAJORS = ("7", "8", "12")
ATTN = KERNEL_FLAGS

# GEMM: the work a tile must hold in flight to hide an SM's fixed per-tile latency (operand loads, epilogue) grows with
# the SM's tensor rate per clock (Little's law for compute, as bytes in flight for bandwidth); with m set by the tokens,
# that n x k tile volume is split evenly between n and k, so each half-saturation point gets prior exponent 1/2. Nested
# leave-one-out among no link, 1/2 and 1 chose 1/2 in every fold (benchmarks/gemm_link_selection.py gemm).
SM_RATE_PRIOR = 0.5

# All-reduce latency (a0 at 2 devices, a1 per added device): small messages run NCCL's LL protocol, whose cost is
# flag polling, fences and kernel prologue counted in SM cycles, so time ~ 1/clock (prior exponent -1). Datacenter
# Blackwell shows a higher small-message latency than Hopper at equal tuning (NVIDIA/nccl#1940: ~3.0 vs ~2.3 us for an
# 8-byte 8-GPU all-reduce with symmetric memory, NCCL 2.27): prior log(3.0/2.3) on its flag. Argued, not selected:
# leave-one-out over the three NCCL devices prefers it (12.0% against 18.3% without latency links), but nested, with
# two inner devices, the folds disagree (benchmarks/gemm_link_selection.py nccl). NCCL's own cost model (tuning.cc) has
# no clock term; after B300's corrected clock a nested check against the flag alone (rule committed first,
# benchmarks/nccl_link_selection.py) kept these links in the B300 and H100 folds (calibration/README.md, wave 8).
ALLREDUCE_LATENCY_LINKS = {"log_clock": -1.0, "arch_sm100": math.log(3.0 / 2.3)}

# (param, feature) links per form, with the prior of each coefficient (the ridge pulls toward it). Chosen by
# leave-one-device-out over the four measured devices (benchmarks/general_model_report.py prints the table): bytes
# at half-saturated bandwidth follow bandwidth (Little's law, prior exponent 1) and, for collectives, the link's;
# the attained share of peak follows the power headroom (watts per peak FLOP/s); attention's peak share, floor and
# decode's bandwidth follow the kernel generation; what an L2-resident working set gains follows on-chip over DRAM
# bandwidth (SMs x clock / memory bandwidth, prior exponent 1). Richer link sets (SM count, clock, GDDR, ridge
# point) fitted the training devices better and transferred worse: three devices cannot pin more trends.
LINKS: dict[str, dict[str, dict[str, float]]] = {
    "gemm": {"b0": {"log_bw": 1.0}, "ec_max": {"log_power": 0.5}, "cache_boost": {"log_onchip": 1.0},
             "n0": {"log_sm_rate": SM_RATE_PRIOR}, "k0": {"log_sm_rate": SM_RATE_PRIOR}},
    "attention": {"b0": {"log_bw": 1.0}, "ec_max": {**dict.fromkeys(ATTN, 0.0), "log_power": 0.5},
                  "floor_s": dict.fromkeys(ATTN, 0.0), "cache_boost": {"log_onchip": 1.0}},
    "decode": {"b0": {"log_bw": 1.0}, "em_max": dict.fromkeys(ATTN, 0.0), "floor_s": dict.fromkeys(ATTN, 0.0),
               "cache_boost": {"log_onchip": 1.0}},
    "elementwise": {"b0": {"log_bw": 1.0}, "cache_boost": {"log_onchip": 1.0}},
    "allreduce": {"b0": {"log_link": 1.0}, "a0": ALLREDUCE_LATENCY_LINKS, "a1": ALLREDUCE_LATENCY_LINKS},
}
# All-to-all (expert-parallel dispatch / combine; model.AlltoallForm): the all-reduce family's links and ridge, its own
# parameters. Argued, not selected: NCCL runs both over the same NVLink/NVSwitch fabric and protocols (bytes in
# flight to saturate the link follow its bandwidth; the small-message time is protocol work counted in SM cycles, and
# datacenter Blackwell's is higher), and its all-to-all is grouped point-to-point sends.
LINKS["alltoall"] = LINKS["allreduce"]


@dataclass(frozen=True)
class FamilySetup:
    """How one family key is fitted when it departs from its form's default: the form variant, its links, the ridge
    weight (per coefficient, times sqrt(rows per device)), whether it borrows AUXILIARY_ROWS and whether it is fitted on
    rows a sliding window binds (kernels.window_binds). Links or ridge None: the form's (LINKS, RIDGE_WEIGHTS) at fit
    time, so a family that only changes its variant follows them. `prior`: form parameter -> weight (times sqrt(rows
    per device), as the ridge) of a pull of its intercept toward the form's default, for parameters the training
    rows leave undetermined (every other intercept keeps fit.PRIOR_WEIGHT, negligible against the rows). `start`:
    form parameter -> natural value its intercept starts from instead of the form's default (the prior's centre
    stays the default): a fit with two basins lands in one or the other depending on it."""

    variant: str
    links: dict[str, dict[str, float]] | None
    ridge: float | None = 1.0
    auxiliary: bool = True
    window_bound_rows: bool = True
    prior: dict[str, float] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)


# Attention families fitted with forms whose transfer runs through the datasheet (lvlmsim.calibrate.model):
# - attn_decode: the split-KV combine step (SplitDecodeForm), its share and key threshold by kernel generation; the
#   per-kernel floor by architecture generation (in every measured table the Blackwell parts, B300 and RTX PRO 6000,
#   have the smaller floors: 8.6-8.8 us against 10.3-11.0 us on A100 and H100, whatever kernel runs); the per-item
#   setup cost (c0, in bytes at the device's bandwidth) held in time per SM (prior: bytes x bandwidth / SMs); bytes
#   at half-saturated bandwidth by Little's law. No L2 term: fitted on three devices its exponent ran to ~0.05 and
#   turned it into a device-wide multiplier of SMs x clock / bandwidth, which B300 (then without a published clock)
#   did not have.
# - attn_encoder: SoftmaxAttentionForm (the exponentials' share, through the exp2 rate of the datasheet), parallel
#   work at half saturation proportional to peak FLOP/s (Little's law for compute: work in flight = rate x latency),
#   tokens per sequence at half saturation growing with the SM's tensor rate per clock (a short sequence's fixed
#   per-tile cost - loading Q, the softmax epilogue - weighs against fewer MMA cycles on a faster SM; GEMM's argument
#   and prior, SM_RATE_PRIOR), floor by architecture generation; it no longer borrows prefill rows, whose floor
#   includes the KV-cache write. The variant `attention+softmax+ctas` adds a floor share per resident CTA slot
#   (CtaSoftmaxAttentionForm: a CTA's prologue and epilogue; CTAs from the kernel's query tile, FA2 holding two per
#   SM): nested leave-one-out picks it in the B300 and H100 folds, RTX PRO 6000's ties
#   (benchmarks/encoder_cta_selection.py).
# - attn_prefill: the default attention form and links, plus the floor by architecture generation (prefill floors, KV
#   write included: 8.6-8.8 us on B300 and RTX PRO 6000 against 10.8-11.3 us on A100 and H100). Fitted on the rows no
#   sliding window binds: a bound row's query blocks run 1-3 key tiles each at 1.7-3.1 x the causal kernel's cost per
#   tile, an overhead the form cannot carry, and fitted jointly those rows moved the parameters every device shares;
#   bound rows are priced from this fit through their kernel's tile count (lvlmsim.calibrate.kernels). Nested
#   leave-one-out over four subsample seeds picks it in the B300, H100 and RTX PRO 6000 folds, the joint fit in A100's,
#   and over all four devices (benchmarks/window_tile_selection.py). The variant `attention+ctas+l2` grows the floor
#   with the kernel's CTAs per SM (CtaAttentionForm, kernels.prefill_ctas: FA2 64 unpacked rows, FA3 kBlockM packed
#   rows, TRT-LLM-gen 256 unpacked rows; cta_share one fitted constant, no link): a 2-64-token prefill takes 3-7 us
#   per CTA per SM once its CTAs outnumber the SMs. Nested leave-one-out over seeds 0-3, inner score the mean of
#   median and p90 over full and windowed prefill, picks it in all four folds (benchmarks/prefill_form_selection.py),
#   but it is NOT shipped: held out it breaks RTX PRO 6000's windowed median (14.6 -> 19.8%, issue 16's <= 15 target),
#   worsens B300 (12.2 / 35.9 -> 14.3 / 45.2%) and prices every windowed row's per-block floor 15-35% slow
#   (calibration/README.md, "Per-CTA floor for prefill").
# The ridge is 0.1 for all three: at 1.0 (per coefficient, x sqrt(rows)) no kernel or generation coefficient moved from
# its prior (all fitted below 1e-3), i.e. the links were switched off.
FAMILY_SETUPS: dict[str, FamilySetup] = {
    "attn_decode": FamilySetup(
        "decode+split", {"b0": {"log_bw": 1.0}, "c0": {"log_bw": 1.0, "log_sms": -1.0},
                         "em_max": dict.fromkeys(ATTN, 0.0), "floor_s": {"blackwell": 0.0},
                         "split_share": dict.fromkeys(ATTN, 0.0)},
        ridge=0.1),
    "attn_prefill": FamilySetup(
        "attention+l2", {**LINKS["attention"], "floor_s": {**dict.fromkeys(ATTN, 0.0), "blackwell": 0.0}}, ridge=0.1,
        window_bound_rows=False),
    "attn_encoder": FamilySetup(
        "attention+softmax+ctas", {"b0": {"log_bw": 1.0}, "w0": {"log_bw": 1.0, "log_ridge": 1.0},
                              "q0": {"log_sm_rate": SM_RATE_PRIOR}, "floor_s": {"blackwell": 0.0}},
        ridge=0.1, auxiliary=False),
}
# vLLM's / SGLang's custom all-reduce kernel (family allreduce/custom, vLLM's `vllm_graph` rows below its buffer where
# its policy runs the kernel, calibration/collectives.yaml): the all-reduce form, bytes at half-saturated bandwidth
# by the link's bandwidth (Little's law, as NCCL's); latency a0/a1 by the datacenter-Blackwell flag alone (prior as
# NCCL's). Chosen by nested leave-one-out among none, clock, clock + flag (NCCL's) and the flag alone
# (benchmarks/gemm_link_selection.py custom-ar): the flag alone in the A100, H100 and RTX PRO 6000 folds, clock (tied,
# no inner device carries the flag) in B300's; over all four devices the flag alone (14.0% against 21.9% with NCCL's
# links). Consistent with the kernel: its small-message time is flag writes and reads across the fabric (one-shot:
# one round of peer loads), not NCCL's protocol work counted in SM cycles, so the clock link does not carry over.
# The form prices the kernel's two algorithms (StagedAllreduceForm: one stage reads (n-1) x the message, from the
# kernel's dispatch in calibration/collectives.yaml; two stages add a second barrier, a2, linked as a0). Nested
# leave-one-out between it and the plain all-reduce form (gemm_link_selection.py custom-ar-stages) picks it in the A100,
# H100 and RTX PRO 6000 folds and the plain form in B300's (inner 13.1 against 12.6%); over all four devices 12.5
# against 14.0%. Held out: A100 8.2 (p90 22.8 -> 14.8), B300 15.4 -> 12.8, H100 17.9, RTX PRO 6000 16.3 -> 10.0%.
CUSTOM_AR_LATENCY_LINKS: dict[str, float] = {"arch_sm100": ALLREDUCE_LATENCY_LINKS["arch_sm100"]}
FAMILY_SETUPS["allreduce/custom"] = FamilySetup(
    "allreduce+stages", {"b0": {"log_link": 1.0}, "a0": CUSTOM_AR_LATENCY_LINKS, "a1": CUSTOM_AR_LATENCY_LINKS,
                         "a2": CUSTOM_AR_LATENCY_LINKS})
GENERAL_FLOOR_BAND = (0.3, 3.0)  # floors live within this band of multiples of the pooled small-kernel time
ROWS_PER_DEVICE = 800  # seeded subsample of each device's rows per family: leave-one-out over 4 devices stays fast
# Of those, the rows per device the tile hyper-parameters' grid search scores each candidate on: all of them. On 300
# (before issue 11's seed check) the pick was noise: in A100's GEMM fold, subsample seeds 1 and 2 picked tiles whose
# full fit ended at a higher training cost (19.8 / 19.6 against 16.5-17.8) in another basin, held out 16.8 / 17.0%
# against 9.5-10.5% at seeds 0 and 3; on all 800 rows every seed's fit lands at 10.0-10.5%. Over seeds 0-3 the fit
# seed's mean range of a held-out median falls 1.05 -> 0.75 point (GEMM's cells only move; A100 7.7 -> 0.6) for 21%
# more fit CPU; 1600 or 3200 fit rows did not narrow it and moved B300's prefill 12.2 -> 14.7-15.1%
# (benchmarks/loo_seed_spread.py).
GRID_ROWS = ROWS_PER_DEVICE
# The joint solve (_Joint.solve) stops by its own rule: no step lowers the cost, or the relative cost decrease falls
# below SOLVE_TOL. The final solve of every family has FINAL_MAX_ITER only as a safety bound (the model is defined as
# its objective's minimiser; a fit stopped at a cap before its tolerance is a numerical defect): it was 50, which
# H100's windowed-prefill fold at seed 2 stopped at on a slope, cost 39.27 against 27.37 at its minimum, and 88 of
# the 128 final solves of `validate --leave-one-out --seeds 4` (12 of the shipped fit's 13) stopped at. 16000 was
# chosen from iteration counts by the rule committed first (benchmarks/fit_convergence.py: 1000, times 4 while any
# final solve of those runs reaches it; at 1000 six did, at 4000 one; at 16000 none, the most 5071, the shipped fit's
# 2471; calibration/README.md, "Fit convergence"). The tile grid's screening solves (GRID_MAX_ITER on the grid
# subsample) are a heuristic that ranks hyper-parameter candidates, capped on purpose.
SOLVE_TOL = 1e-9
FINAL_MAX_ITER = 16000
GRID_MAX_ITER = 25
RIDGE_WEIGHT = 1.0  # per coefficient, times sqrt(rows per device): a trend must be worth that much fit to be kept
# Per-form ridge weight where it differs. GEMM: 0.03 of the default, chosen by leave-one-out over all devices among
# 1, 0.3, 0.1, 0.03 (benchmarks/gemm_link_selection.py gemm-ridge; nested per outer fold the choice was 0.1, 0.03,
# 0.03, 0.3): GEMM's links are physical exponents (Little's law, power headroom) that three devices' tables with up to
# three dtypes each pin well, where the default ridge held them at their priors.
RIDGE_WEIGHTS = {"gemm": 0.03}

# vLLM's per-tensor fp8 linear (CutlassFP8ScaledMMLinearKernel) does not split K: at m <= 16 and n <= 128 its time
# grows by 0.6-1.3 ns per unit of K on H100, B300 and RTX PRO 6000 (cuBLAS's split-K bf16 kernels: 0.04-0.11 ns), so
# its tiles run in waves over the SMs (WaveGemmForm: tile sizes by the fit's grid search, SM count from the datasheet);
# GEMM's links and ridge weight (None: LINKS["gemm"] and RIDGE_WEIGHTS["gemm"] when fitted). Nested leave-one-out
# between the plain and the wave form picks the wave form in every fold (benchmarks/gemm_link_selection.py
# gemm-waves; RTX PRO 6000's fold by 0.1 point).
FAMILY_SETUPS["gemm.fp8"] = FamilySetup("gemm+waves+l2", None, ridge=None)
# cuBLAS's bf16 GEMMs with few output tiles and a long K split K and run a reduction kernel after the GEMM
# (SplitKGemmForm: one more fitted share of the floor above a fitted K, while the 128 x 128 tiles number fewer than the
# datasheet's SMs; the threshold and the share are shared by every device, no link). Found in the in-sample residual
# map (benchmarks/gemm_residual_map.py: such GEMMs priced 5-40% fast on all four devices, B300 17-23%), then chosen by
# nested leave-one-out against the plain form (benchmarks/gemm_splitk_selection.py: inner score the mean over inner
# folds of loo.fold_table_errors' median): split-K in the A100, H100 and RTX PRO 6000 folds, plain in B300's; over
# all four devices split-K (mean held-out median 8.95 against 9.48%). In-sample bf16 A100 / B300 / H100 / RTX PRO 6000
# 9.1 / 10.7 / 8.2 / 7.5 -> 8.4 / 7.5 / 5.8 / 7.6%; nested held out 10.0 / 10.9 / 8.5 / 8.5 -> 10.5 / 10.9 / 8.4 /
# 8.2%: where cuBLAS starts to split differs by architecture (A100 from K ~ 256, RTX PRO 6000 past 4096), which no
# datasheet feature carries, so the held-out gain is small.
# Its bytes at half-saturated bandwidth (b0) also follow 1 / SM clock (prior -1; GEMM_FIXED_CYCLES_PRIOR): at
# steepness ~1 the memory term is bytes / (em_max x bandwidth) plus a fixed time b0 / (em_max x bandwidth), and a
# kernel's fixed part (prologue, the first loads' round trip, epilogue, tail) is a number of SM cycles, so b0 ~
# bandwidth / clock. Held out, bf16 GEMMs with m <= 1024 that are memory-bound or near the ridge were priced 8.5-9.5%
# fast on A100 (1410 MHz) and 5.6-13.4% slow on H100 (1980 MHz) with b0 by bandwidth alone
# (benchmarks/gemm_residual_map.py --held-out --carriers). Chosen by nested leave-one-out against b0 by bandwidth alone
# and against the floor by 1 / clock (benchmarks/gemm_clock_selection.py; criterion fixed before the outer figures):
# the clock on b0 in the A100, B300 and H100 folds, bandwidth alone in RTX PRO 6000's; nested A100 / B300 / H100 / RTX
# PRO 6000 10.5 -> 8.7, 8.4 -> 9.4, 9.0 -> 7.7, 8.2 -> 8.2% (bf16 rows, seed 0); over all four devices the clock
# link (mean held-out median 8.53 against 9.03%). B300 had no clock then and got the reference's (its 2032 MHz since
# wave 8). fp8's folds pick it twice in three, with outer changes of 0.3 point or less, and over its three devices b0
# by bandwidth alone scores better (10.63 against 10.70%): fp8 keeps GEMM's links, NVFP4 (no nested check, two
# devices) too.
GEMM_FIXED_CYCLES_PRIOR = -1.0
FAMILY_SETUPS["gemm"] = FamilySetup(
    "gemm+splitk+l2", {**LINKS["gemm"], "b0": {**LINKS["gemm"]["b0"], "log_clock": GEMM_FIXED_CYCLES_PRIOR}},
    ridge=None)
# NVFP4 is measured on two devices, so each leave-one-out fold fits it on one: nothing across devices bounds its
# saturation steepness, and the fitted p_k > 1 (1.3 on both together) makes a GEMM slower as k shrinks once another
# device's features move k0 (B300's k = 32-64 NVFP4 GEMMs priced up to 200x their time from RTX PRO 6000's fit). Its
# family caps the steepness in m, n and k at 1 (MonotoneGemmForm: a smaller dimension never takes longer): held-out
# NVFP4 B300 16.1 -> 10.9% (p90 78.0 -> 47.6), RTX PRO 6000 28.9 -> 24.2%. Argued and seen on the held-out table (two
# NVFP4 devices leave no nested check of NVFP4 itself). gemm_link_selection.py gemm-mono scores free steepness, the cap
# on all three families and the cap on NVFP4 only: leave-one-out over all devices picks NVFP4 only (10.2 against 10.4
# and 10.5%); nested, the inner folds pick the cap on all three in the A100, H100 and RTX PRO 6000 folds and free
# (tied with NVFP4 only) in B300's, outer 10.4 / 11.3 / 9.5 / 13.2% (A100 / B300 / H100 / RTX PRO 6000). The
# NVFP4 kernels do not split K either, but the wave form (with the cap) moved B300's held-out NVFP4 to 15.2% and RTX
# PRO 6000's to 20.1%; without the cap, to 56.3 and 17.8%. A parameter-free bound by whole waves of 128 x 128 CTAs
# (model.TileBoundGemmForm, the sm120 CUTLASS kernel's smallest tile) failed its rule in wave 11: held out RTX PRO 6000
# 15.3 -> 12.7% GEMM, B300 10.0 -> 10.8% (benchmarks/gemm_tilebound_selection.py; calibration/README.md).
FAMILY_SETUPS["gemm.fp4"] = FamilySetup("gemm+mono+l2", None, ridge=None)


def _log_ratio(value: float | None, ref: float) -> float:
    return math.log(value / ref) if value else 0.0


def injection_gbps(hw: HardwareSpec) -> float:
    """GB/s per direction one device drives into its intra-node fabric with every link busy: the reference's 450 is
    H100's per-GPU NVLink total (18 links; NVIDIA's '900 GB/s' bidirectional), a switch spec's bw_gbps is that
    per-device figure, but a mesh spec's (AMD xGMI) is ONE peer link (LinkSpec), so a mesh device counts all its
    max_devices_per_node - 1 links: MI300X 7 x 64 = 448 (AMD's '896 GB/s' aggregate), not 64. The feature is per
    device, so a mesh collective over fewer devices (n - 1 links) is priced with the whole node's figure."""
    return hw.intra_node_link.collective_bw_bytes_s(hw.max_devices_per_node) / 1e9


def device_features(hw: HardwareSpec, dtype: str = "bf16") -> dict[str, float]:
    """Datasheet features of `hw` for ops computing in `dtype` (missing optional fields give the reference's 0)."""
    peak = hw.peak_tflops.get(dtype) or hw.peak_tflops.get("bf16") or max(hw.peak_tflops.values())
    ridge = peak / hw.mem_bw_gbps
    ref_ridge = REF["bf16_tflops"] / REF["mem_bw_gbps"]
    cc_major = (hw.compute_capability or "").split(".")[0]
    kernel = ATTENTION_KERNELS.get(cc_major)
    feats = {
        "log_bw": math.log(hw.mem_bw_gbps / REF["mem_bw_gbps"]),
        "log_ridge": math.log(ridge / ref_ridge),
        # watts per peak FLOP/s: tensor cores at full rate are power-limited, and the headroom sets what is attained
        # (a device without a published power, tdp_w null, takes the reference's 0 as the docstring says: it was a
        # TypeError traceback)
        "log_power": math.log((hw.tdp_w / peak) / (REF["tdp_w"] / REF["bf16_tflops"])) if hw.tdp_w else 0.0,
        "log_link": math.log(injection_gbps(hw) / REF["link_bw_gbps"]),
        # on-chip (L2) bandwidth, which scales with SMs x clock, over DRAM bandwidth: what an L2-resident working
        # set gains over streaming from DRAM
        "log_onchip": (_log_ratio(hw.sm_count, REF["sm_count"])
                       + _log_ratio(hw.boost_clock_mhz, REF["boost_clock_mhz"])
                       - math.log(hw.mem_bw_gbps / REF["mem_bw_gbps"])),
        "log_sms": _log_ratio(hw.sm_count, REF["sm_count"]),
        "log_clock": _log_ratio(hw.boost_clock_mhz, REF["boost_clock_mhz"]),
        "gddr": 1.0 if (hw.memory_type or "").startswith("gddr") else 0.0,
        # datacenter Blackwell (sm100/sm103: B200, B300, GB200, GB300)
        "arch_sm100": 1.0 if cc_major == "10" else 0.0,
        # tensor FLOPs per SM per clock at this dtype: the MMA work one SM must hold in flight to hide its fixed
        # per-tile latency grows with it (Little's law for compute)
        "log_sm_rate": (math.log(peak / REF["bf16_tflops"]) - _log_ratio(hw.sm_count, REF["sm_count"])
                        - _log_ratio(hw.boost_clock_mhz, REF["boost_clock_mhz"])),
        # architecture generation: Blackwell (compute capability 10.x and 12.x, datacenter and GDDR parts alike)
        "blackwell": 1.0 if cc_major.isdigit() and int(cc_major) >= 10 else 0.0,
        # tensor cores driven by warp-synchronous mma.sync only (SYNC_MMA_MAJORS)
        "sync_mma": 1.0 if cc_major in SYNC_MMA_MAJORS else 0.0,
    }
    for flag in KERNEL_FLAGS:
        feats[flag] = 1.0 if kernel and flag == f"k_{kernel}" else 0.0
    return feats


def outside_fitted(hw: HardwareSpec, fitted: Sequence[HardwareSpec]) -> list[str]:
    """Why `hw` lies outside every category of the devices the model was `fitted` on (empty: it shares them): another
    vendor than all of them (another compiler, kernel library and collective library), or no attention kernel
    generation the model has a flag for (ATTENTION_KERNELS). Its features then extrapolate: the transfer errors
    measured among the fitted devices say nothing about such a device."""
    reasons = []
    vendors = sorted({f.vendor for f in fitted})
    if fitted and hw.vendor.strip().lower() not in {v.strip().lower() for v in vendors}:
        reasons.append(f"vendor {hw.vendor}, the fitted devices are all {'/'.join(vendors)}")
    cc_major = (hw.compute_capability or "").split(".")[0]
    if cc_major not in ATTENTION_KERNELS:
        known = "/".join(sorted(set(ATTENTION_KERNELS.values())))
        cc = f"compute capability {hw.compute_capability}" if hw.compute_capability else "no CUDA compute capability"
        reasons.append(f"attention kernel generation: none of the fitted {known} ({cc}), so its attention "
                       "families take the pooled intercept")
    return reasons


def missing_features(hw: HardwareSpec) -> list[str]:
    """Optional datasheet fields the model reads that `hw` lacks (it then uses the reference device's value)."""
    return [f for f in ("sm_count", "boost_clock_mhz", "memory_type", "compute_capability") if getattr(hw, f) is None]


# ------------------------------------------------------------------------------------------------------------------
# coordinates


def _to_z(form: Form, natural: Sequence[float], floor_ref: float) -> np.ndarray:
    z = []
    for q, v in zip(form.params, natural, strict=True):
        if q.kind in ("eff", "floor", "exp"):
            lo, hi = {"eff": (0.0, 1.0), "exp": EXP_RANGE,
                      "floor": (GENERAL_FLOOR_BAND[0] * floor_ref, GENERAL_FLOOR_BAND[1] * floor_ref)}[q.kind]
            u = min(max((v - lo) / (hi - lo), 1e-6), 1 - 1e-6)
            z.append(math.log(u / (1 - u)))
        elif q.kind == "pos":
            z.append(math.log(max(v, 1e-300)))
        else:
            z.append(float(v))
    return np.array(z)


def _from_z(form: Form, z: Sequence[float], floor_ref: float) -> list[float]:
    out = []
    for q, v in zip(form.params, z, strict=True):
        if q.kind in ("eff", "floor", "exp"):
            lo, hi = {"eff": (0.0, 1.0), "exp": EXP_RANGE,
                      "floor": (GENERAL_FLOOR_BAND[0] * floor_ref, GENERAL_FLOOR_BAND[1] * floor_ref)}[q.kind]
            out.append(lo + (hi - lo) / (1.0 + math.exp(-min(max(float(v), -40.0), 40.0))))
        elif q.kind == "pos":
            out.append(math.exp(min(max(float(v), -700.0), 700.0)))
        else:
            out.append(float(v))
    return out


class _Coords:
    """Vectorised _from_z for one form and floor reference (the fit calls it tens of thousands of times)."""

    def __init__(self, form: Form, floor_ref: float):
        kinds = [q.kind for q in form.params]
        band = {"eff": (0.0, 1.0), "exp": EXP_RANGE,
                "floor": (GENERAL_FLOOR_BAND[0] * floor_ref, GENERAL_FLOOR_BAND[1] * floor_ref)}
        self.logistic = np.array([k in band for k in kinds])
        self.pos = np.array([k == "pos" for k in kinds])
        self.lo = np.array([band[k][0] if k in band else 0.0 for k in kinds])
        self.span = np.array([band[k][1] - band[k][0] if k in band else 1.0 for k in kinds])

    def natural(self, z: np.ndarray) -> list[float]:
        z = np.asarray(z, dtype=float)
        out = np.where(self.logistic, self.lo + self.span / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))), z)
        out = np.where(self.pos, np.exp(np.clip(z, -700.0, 700.0)), out)
        return out.tolist()


@dataclass
class GeneralFamily:
    """One family of the general model: intercepts z0 (per form parameter), linked coefficients, hyper-parameters."""

    key: str
    kind: str
    z0: dict[str, float]
    coefs: dict[str, dict[str, float]]  # param -> feature -> coefficient
    hyper: dict[str, float]
    floor_ref: float
    devices: list[str] = field(default_factory=list)  # hardware ids it was fitted on
    expected_error_pct: float | None = None  # leave-one-device-out median |error| (transfer)
    expected_p90_pct: float | None = None
    measured_error_pct: float | None = None  # in-sample median |error| on the fitted devices
    # uncertainty (lvlmsim.calibrate.bands): p10_ratio/p90_ratio (transfer band), regimes {label: [p10, p90]},
    # measured {hardware id: {p10_ratio, p90_ratio, regimes}} (in-sample bands of the devices it was fitted on)
    band: dict = field(default_factory=dict)
    variant: str | None = None  # form variant (lvlmsim.calibrate.model.FORM_VARIANTS), e.g. 'gemm+l2'
    regime_errors: dict[str, float] = field(default_factory=dict)  # leave-one-out median |error| per size regime
    # how the final joint solve ended: {"iterations": n, "max_iter": cap, "at_cap": bool, "cost": its objective}
    # (empty: not recorded)
    solver: dict = field(default_factory=dict)

    @property
    def form(self) -> Form:
        return form_for(self.kind, self.variant)

    def band_on(self, hw_id: str) -> tuple[tuple[float, float] | None, dict[str, tuple[float, float]]]:
        """(family band, {regime: band}) of predictions on `hw_id`: its own in-sample band when the model was fitted
        on it, else the transfer band (wider: it carries the unknown device offset)."""
        src = self.band.get("measured", {}).get(hw_id) if hw_id in self.devices else None
        src = src or self.band
        fam = (src["p10_ratio"], src["p90_ratio"]) if "p10_ratio" in src and "p90_ratio" in src else None
        return fam, {k: tuple(v) for k, v in (src.get("regimes") or {}).items()}

    def z_for(self, feats: dict[str, float]) -> np.ndarray:
        return np.array([self.z0[p] + sum(c * feats.get(f, 0.0) for f, c in self.coefs.get(p, {}).items())
                         for p in self.form.param_names])

    def params_for(self, hw: HardwareSpec, dtype: str) -> dict[str, float]:
        nat = _from_z(self.form, self.z_for(device_features(hw, dtype)), self.floor_ref)
        return {n: float(f"{v:.6g}") for n, v in zip(self.form.param_names, nat, strict=True)}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "form": self.form.name, "variant": self.variant, "z0": self.z0,
                "coefs": self.coefs, "hyper": self.hyper,
                "floor_ref_s": self.floor_ref, "devices": self.devices,
                "expected_error_pct": self.expected_error_pct, "expected_p90_pct": self.expected_p90_pct,
                "measured_error_pct": self.measured_error_pct, "band": self.band,
                "regime_errors": self.regime_errors, **({"solver": self.solver} if self.solver else {})}

    @classmethod
    def from_dict(cls, key: str, d: dict, where: str) -> GeneralFamily:
        kind = d.get("kind")
        if kind not in FORMS:
            raise SpecError(f"{where}.kind: unknown op kind {kind!r}; known: {', '.join(FORMS)}")
        variant = d.get("variant")
        if variant is not None and variant not in FORM_VARIANTS:
            raise SpecError(f"{where}.variant: unknown form variant {variant!r}; known: {', '.join(FORM_VARIANTS)}")
        names = set(form_for(kind, variant).param_names)
        z0 = d.get("z0")
        if not isinstance(z0, dict) or set(z0) != names:
            raise SpecError(f"{where}.z0: expected {', '.join(sorted(names))}")
        coefs = d.get("coefs") or {}
        bad = [f"{p}.{f}" for p, fs in coefs.items() for f in fs if p not in names or f not in FEATURES]
        if bad:
            raise SpecError(f"{where}.coefs: unknown parameter/feature {', '.join(bad)}; "
                            f"features: {', '.join(FEATURES)}")
        try:
            return cls(key=key, kind=kind, z0={k: float(v) for k, v in z0.items()},
                       coefs={p: {f: float(c) for f, c in fs.items()} for p, fs in coefs.items()},
                       hyper={k: float(v) for k, v in (d.get("hyper") or {}).items()},
                       floor_ref=float(d["floor_ref_s"]), devices=list(d.get("devices") or []),
                       expected_error_pct=_opt(d.get("expected_error_pct")),
                       expected_p90_pct=_opt(d.get("expected_p90_pct")),
                       measured_error_pct=_opt(d.get("measured_error_pct")),
                       band=_band(d.get("band"), f"{where}.band"), variant=variant,
                       regime_errors={str(k): float(v) for k, v in (d.get("regime_errors") or {}).items()},
                       solver=dict(d.get("solver") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{where}: {exc}") from None


def _opt(v) -> float | None:
    return None if v is None else float(v)


def _band(d, where: str) -> dict:
    """A family's band from JSON: p10_ratio/p90_ratio/n_held_out, regimes, measured {hw id: the same}."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object")
    out: dict = {k: float(number(d[k], f"{where}.{k}", lo=0.0, lo_open=True))
                 for k in ("p10_ratio", "p90_ratio") if d.get(k) is not None}
    if d.get("n_held_out") is not None:
        out["n_held_out"] = int(d["n_held_out"])
    if "regimes" in d:
        out["regimes"] = {k: list(v) for k, v in regime_bands(d["regimes"], f"{where}.regimes").items()}
    if "measured" in d:
        if not isinstance(d["measured"], dict):
            raise SpecError(f"{where}.measured: expected {{hardware id: band}}")
        out["measured"] = {str(k): _band(v, f"{where}.measured.{k}") for k, v in d["measured"].items()}
    if "method" in d:
        out["method"] = str(d["method"])
    return out


class GeneralModel:
    """Families of the device-general model; `profile_for(hw)` prices one device with them."""

    def __init__(self, name: str, families: dict[str, GeneralFamily], *, aliases: dict[str, str] | None = None,
                 meta: dict | None = None):
        self.name = name
        self.families = dict(families)
        self.aliases = dict(aliases or {})
        self.meta = dict(meta or {})

    def profile_for(self, hw: HardwareSpec) -> FittedProfile:
        """A FittedProfile of `hw`: this model's parameters at its datasheet features, errors = transfer errors."""
        fams = {}
        for key, gf in self.families.items():
            dtype = key.split(".", 1)[1] if "." in key else "bf16"
            trained_on = hw.id in gf.devices
            err = gf.expected_error_pct
            band, regime_bands_on = gf.band_on(hw.id)
            fams[key] = FamilyFit(kind=gf.kind, params=gf.params_for(hw, dtype), hyper=dict(gf.hyper),
                                  variant=gf.variant,
                                  holdout_median_abs_pct_err=err, holdout_p90_abs_pct_err=gf.expected_p90_pct,
                                  band_p10_ratio=band[0] if band else None, band_p90_ratio=band[1] if band else None,
                                  regime_errors=dict(gf.regime_errors), regime_bands=regime_bands_on,
                                  notes=f"general model at {hw.id}'s datasheet features"
                                        + (" (device among its training data)" if trained_on else ""))
        missing = missing_features(hw)
        fitted = self.fitted_devices()
        meta = {"general_model": self.name, "timing_regime": self.meta.get("timing_regime", "cuda_graph"),
                "description": f"device-general efficiency model '{self.name}' evaluated at the '{hw.id}' datasheet",
                "missing_features": missing, "fitted_on": sorted(f.id for f in fitted),
                "outside_fitted": [] if hw.id in {f.id for f in fitted} else outside_fitted(hw, fitted)}
        prof = FittedProfile(self.name, hw.id, fams, aliases=self.aliases, meta=meta)
        prof.source_prefix = "general"
        return prof

    def fitted_devices(self) -> list[HardwareSpec]:
        """The datasheets of the devices any family was fitted on (ids lvlmsim does not know are left out)."""
        from lvlmsim.errors import LvlmsimError
        from lvlmsim.specs.registry import load_hardware

        out = []
        for hw_id in sorted({d for f in self.families.values() for d in f.devices}):
            try:
                out.append(load_hardware(hw_id))
            except LvlmsimError:
                continue
        return out

    def to_dict(self) -> dict:
        return {"format": GENERAL_FORMAT, "name": self.name, **self.meta, "reference": REF,
                "attention_kernels": ATTENTION_KERNELS, "aliases": self.aliases,
                "families": {k: f.to_dict() for k, f in self.families.items()}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d, where: str = "general model") -> GeneralModel:
        if not isinstance(d, dict) or d.get("format") != GENERAL_FORMAT:
            raise SpecError(f"{where}: format must be {GENERAL_FORMAT!r}")
        fams = d.get("families")
        if not isinstance(fams, dict):
            raise SpecError(f"{where}.families: missing or not an object")
        families = {k: GeneralFamily.from_dict(k, v if isinstance(v, dict) else {}, f"{where}.families.{k}")
                    for k, v in fams.items()}
        meta = {k: v for k, v in d.items()
                if k not in ("format", "name", "families", "aliases", "reference", "attention_kernels")}
        return cls(str(d.get("name") or "general"), families, aliases=d.get("aliases") or {}, meta=meta)

    @classmethod
    def load(cls, path: str | Path) -> GeneralModel:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"general model: file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise SpecError(f"general model: cannot read {path}: {exc}") from None
        return cls.from_dict(data, f"general model {path}")


# ------------------------------------------------------------------------------------------------------------------
# joint fit


@dataclass
class _DeviceData:
    hw_id: str
    data: FamilyData
    feats: dict[str, float]
    log_meas: np.ndarray


class _Joint:
    """Parameter vector theta = (z0 per form parameter, linked coefficients) and the residuals over devices."""

    def __init__(self, form: Form, links: dict[str, dict[str, float]], devices: list[_DeviceData], hyper: dict,
                 floor_ref: float, z_base: np.ndarray, ridge_weight: float = RIDGE_WEIGHT,
                 prior: dict[str, float] | None = None):
        self.form, self.devices, self.hyper, self.floor_ref, self.z_base = form, devices, hyper, floor_ref, z_base
        self.coords = _Coords(form, floor_ref)
        names = form.param_names
        self.links = [(names.index(p), p, f, prior) for p, fs in links.items() if p in names
                      for f, prior in fs.items()]
        # a feature constant over the training devices is confounded with the intercept: the ridge keeps its
        # coefficient at the prior, and the intercept absorbs the rest
        self.P, self.L = len(names), len(self.links)
        self.b_prior = np.array([lk[3] for lk in self.links])
        self.M = [self._m(d.feats) for d in devices]
        rows = max(len(d.data) for d in devices)
        self.ridge = ridge_weight * math.sqrt(rows)
        self.prior_w = np.array([max(PRIOR_WEIGHT, (prior or {}).get(n, 0.0) * math.sqrt(rows)) for n in names])

    def _m(self, feats: dict[str, float]) -> np.ndarray:
        m = np.zeros((self.P, self.L))
        for col, (j, _p, f, _prior) in enumerate(self.links):
            m[j, col] = feats[f]
        return m

    def z_dev(self, theta: np.ndarray, i: int) -> np.ndarray:
        return theta[: self.P] + self.M[i] @ theta[self.P:]

    def dev_residuals(self, z: np.ndarray, dev: _DeviceData) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            t = predict(self.form, self.coords.natural(z), self.hyper, dev.data)
            r = np.log(np.maximum(t, 1e-15)) - dev.log_meas
        r = np.where(np.isfinite(r), r, 50.0)
        d = ROBUST_SCALE
        return np.sign(r) * d * np.sqrt(2.0 * (np.sqrt(1.0 + (r / d) ** 2) - 1.0))

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        parts = [self.dev_residuals(self.z_dev(theta, i), d) for i, d in enumerate(self.devices)]
        parts.append(self.prior_w * (theta[: self.P] - self.z_base))
        parts.append(self.ridge * (theta[self.P:] - self.b_prior))
        return np.concatenate(parts)

    def jacobian(self, theta: np.ndarray, r: np.ndarray) -> np.ndarray:
        """d residuals / d theta: per device a finite-difference Jacobian in z, chained through z = z0 + M b."""
        n_total = len(r)
        jac = np.zeros((n_total, self.P + self.L))
        row = 0
        for i, dev in enumerate(self.devices):
            z = self.z_dev(theta, i)
            r0 = r[row: row + len(dev.data)]
            jz = np.empty((len(dev.data), self.P))
            for j in range(self.P):
                step = 1e-6 * max(1.0, abs(z[j]))
                zj = z.copy()
                zj[j] += step
                jz[:, j] = (self.dev_residuals(zj, dev) - r0) / step
            jac[row: row + len(dev.data), : self.P] = jz
            jac[row: row + len(dev.data), self.P:] = jz @ self.M[i]
            row += len(dev.data)
        jac[row: row + self.P, : self.P] = np.diag(self.prior_w)
        row += self.P
        jac[row:, self.P:] = self.ridge * np.eye(self.L)
        return jac

    def solve(self, theta0: np.ndarray, max_iter: int) -> tuple[np.ndarray, float, Convergence]:
        """Levenberg-Marquardt on the joint residuals: (theta, cost, how the solve ended). It stops when no step
        lowers the cost or the relative decrease falls below SOLVE_TOL, or at `max_iter` iterations (at_cap)."""
        theta = np.clip(np.array(theta0, dtype=float), -Z_LIMIT, Z_LIMIT)
        r = self.residuals(theta)
        cost = float(r @ r)
        lam = 1e-3
        iterations, at_cap = 0, True  # at_cap until the stopping rule ends the loop
        while iterations < max_iter:
            iterations += 1
            jac = self.jacobian(theta, r)
            g, a = jac.T @ r, jac.T @ jac
            diag = np.diag(a).copy() + 1e-12
            improved, rel = False, 0.0
            while lam < 1e12:
                try:
                    step = np.linalg.solve(a + lam * np.diag(diag), -g)
                except np.linalg.LinAlgError:
                    lam *= 10
                    continue
                cand = np.clip(theta + step, -Z_LIMIT, Z_LIMIT)
                r_new = self.residuals(cand)
                c_new = float(r_new @ r_new)
                if c_new < cost:
                    rel = (cost - c_new) / max(cost, 1e-300)
                    theta, r, cost = cand, r_new, c_new
                    lam = max(lam / 3.0, 1e-9)
                    improved = True
                    break
                lam *= 4.0
            if not improved or rel < SOLVE_TOL:
                at_cap = False
                break
        return theta, cost, Convergence(iterations, at_cap)


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, k, replace=False))


def fit_general_family(key: str, per_device: dict[str, tuple[HardwareSpec, Sequence[Measurement]]], *,
                       seed: int = 0, rows_per_device: int = ROWS_PER_DEVICE, grid_rows: int = GRID_ROWS,
                       max_iter: int | None = None) -> GeneralFamily:
    """Fit one family jointly over devices: {hardware id: (spec, rows)} -> GeneralFamily. `max_iter`: the final
    solve's safety bound (None: FINAL_MAX_ITER); how that solve ended is the family's `solver` record."""
    max_iter = FINAL_MAX_ITER if max_iter is None else max_iter
    kind = next(iter(per_device.values()))[1][0].op.kind
    setup = FAMILY_SETUPS.get(key)
    variant = f"{FORMS[kind].name}+l2" if f"{FORMS[kind].name}+l2" in FORM_VARIANTS else None
    links, ridge = LINKS.get(FORMS[kind].name, {}), RIDGE_WEIGHTS.get(FORMS[kind].name, RIDGE_WEIGHT)
    prior = setup.prior if setup is not None else {}
    start = setup.start if setup is not None else {}
    if setup is not None:
        variant = setup.variant or None
        links = setup.links if setup.links is not None else links
        ridge = setup.ridge if setup.ridge is not None else ridge
    form = form_for(kind, variant)
    dtype = key.split(".", 1)[1] if "." in key and not key.startswith(ELEMENTWISE) else "bf16"
    rng = np.random.default_rng(seed)
    devices = []
    for hw_id, (hw, rows) in sorted(per_device.items()):
        idx = _subsample(len(rows), rows_per_device, rng)
        fd = family_data(kind, [rows[i] for i in idx], hw, form)
        devices.append(_DeviceData(hw_id, fd, device_features(hw, dtype), np.log(fd.measured_s)))
    # the floor band is centred on the geometric mean over devices of each one's smallest kernels (1st percentile)
    floor_ref = float(np.exp(np.mean([np.log(np.quantile(d.data.measured_s, 0.01)) for d in devices])))
    base = [floor_ref * FLOOR_INIT if q.kind == "floor" else q.init for q in form.params]
    z_base = _to_z(form, base, floor_ref)
    z_start = _to_z(form, [start.get(q.name, b) for q, b in zip(form.params, base, strict=True)], floor_ref)
    grid = [dict(zip(form.hyper_grid, v, strict=True)) for v in itertools.product(*form.hyper_grid.values())] or [{}]
    best = (math.inf, grid[0])
    if len(grid) > 1:
        small = []
        for d in devices:
            sub = d.data.take(_subsample(len(d.data), grid_rows, rng))
            small.append(_DeviceData(d.hw_id, sub, d.feats, np.log(sub.measured_s)))
        for hyper in grid:
            j = _Joint(form, links, small, hyper, floor_ref, z_base, ridge, prior)
            _theta, cost, _conv = j.solve(np.concatenate([z_start, j.b_prior]), max_iter=GRID_MAX_ITER)
            if cost < best[0]:
                best = (cost, hyper)
    hyper = best[1]
    joint = _Joint(form, links, devices, hyper, floor_ref, z_base, ridge, prior)
    theta, cost, conv = joint.solve(np.concatenate([z_start, joint.b_prior]), max_iter=max_iter)
    z0 = {n: float(f"{v:.8g}") for n, v in zip(form.param_names, theta[: joint.P], strict=True)}
    coefs: dict[str, dict[str, float]] = {}
    for col, (_j, p, f, _prior) in enumerate(joint.links):
        coefs.setdefault(p, {})[f] = float(f"{theta[joint.P + col]:.6g}")
    return GeneralFamily(key=key, kind=kind, z0=z0, coefs=coefs, hyper=dict(hyper), floor_ref=floor_ref,
                         devices=sorted(per_device), variant=variant,
                         solver={"iterations": conv.iterations, "max_iter": max_iter, "at_cap": conv.at_cap,
                                 "cost": float(f"{cost:.8g}")})


# Families fitted on their own rows plus another family's: ViT encoder attention runs the same FlashAttention kernels
# as full-attention prefill (another head size, no causal mask), so a kernel generation measured only in prefill
# (FA2: A100 has no encoder table) informs the encoder. Leave-one-out: B300 encoder 19.0 -> 14.6%, H100 15.1 ->
# 11.8%, RTX PRO 6000 unchanged (43.9 -> 43.6%). Errors and bands are still computed on the family's own rows.
# A FamilySetup with auxiliary=False fits on its own rows only (attn_encoder with SoftmaxAttentionForm: the prefill
# rows' floor includes the KV-cache write, and A100's FA2 prefill taught RTX PRO 6000's ViT kernel A100's efficiency).
AUXILIARY_ROWS = {"attn_encoder": "attn_prefill"}


# Table families left out of the fit: the rows of vLLM's all-reduce table where its policy ran NCCL (more than two
# PCIe GPUs) are NCCL over PCIe, a fabric the NCCL family (nccl-tests on NVSwitch) was not fitted on; validate and
# leave-one-out still price them, as NCCL all-reduces.
NOT_FITTED_TABLES = ("custom_allreduce_nccl",)


def group_rows(rows_by_device: dict[str, tuple[HardwareSpec, Sequence[Measurement]]],
               ) -> dict[str, dict[str, tuple[HardwareSpec, list[Measurement]]]]:
    """family key -> hardware id -> (spec, rows), with the same family keys per-device profiles use (plus the
    AUXILIARY_ROWS a family borrows; sliding-window rows are not borrowed)."""
    out: dict[str, dict[str, tuple[HardwareSpec, list[Measurement]]]] = {}
    for hw_id, (hw, rows) in rows_by_device.items():
        for m in rows:
            if m.family in NOT_FITTED_TABLES:
                continue
            key = group_key(m)
            out.setdefault(key, {}).setdefault(hw_id, (hw, []))[1].append(m)
    for fam, donor in AUXILIARY_ROWS.items():
        if fam not in out or not FAMILY_SETUPS.get(fam, FamilySetup("", {})).auxiliary:
            continue
        for hw_id, (hw, rows) in out.get(donor, {}).items():
            extra = [m for m in rows if "sliding" not in m.op.name]
            out[fam].setdefault(hw_id, (hw, []))[1].extend(extra)
    return out


MIN_DEVICE_ROWS = 8


def fit_general(rows_by_device: dict[str, tuple[HardwareSpec, Sequence[Measurement]]], *, name: str = "general",
                seed: int = 0, rows_per_device: int = ROWS_PER_DEVICE, families: Sequence[str] | None = None,
                log=None, grid_rows: int = GRID_ROWS) -> GeneralModel:
    """Fit every family present (optionally only `families`) jointly over the devices."""
    fams: dict[str, GeneralFamily] = {}
    for key, per_dev in sorted(group_rows(rows_by_device).items()):
        if families is not None and key not in families:
            continue
        if not FAMILY_SETUPS.get(key, FamilySetup("", {})).window_bound_rows:
            per_dev = {k: (hw, [m for m in rows if not window_binds(m.op)]) for k, (hw, rows) in per_dev.items()}
        per_dev = {k: v for k, v in per_dev.items() if len(v[1]) >= MIN_DEVICE_ROWS}
        if not per_dev:
            continue
        fams[key] = fit_general_family(key, per_dev, seed=seed, rows_per_device=rows_per_device, grid_rows=grid_rows)
        if log:
            log(f"{key}: fitted on {', '.join(sorted(per_dev))}")
    aliases = {}
    if "gemm" in fams:
        aliases["conv"] = "gemm"
    if ELEMENTWISE not in fams:
        for role in ("copy", "add", "act", "norm"):
            if family_key(ELEMENTWISE, role=role) in fams:
                aliases[ELEMENTWISE] = family_key(ELEMENTWISE, role=role)
                break
    return GeneralModel(name, fams, aliases=aliases)
