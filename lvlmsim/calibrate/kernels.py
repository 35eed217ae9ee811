"""Attention-kernel behaviour a datasheet cannot show, keyed by the kernel generation a device runs.

The serving stack picks its attention kernels by compute capability (lvlmsim.calibrate.general.ATTENTION_KERNELS:
FA2 on sm80/sm86/sm89/sm120, FA3 on sm90, TRT-LLM/FlashInfer kernels on sm100). One difference changes what a
windowed decode moves:

* FA2 decode packs a GQA group into one block only without a window. flash_api.cpp (mha_fwd / mha_fwd_kvcache)
  swaps the `ngroups` query heads of a KV head into the query-length dimension when `seqlen_q == 1 && num_heads >
  num_heads_k && window_size_left < 0 && window_size_right < 0 ...`; with a sliding window the swap is off, every
  query head is its own block and reads its KV head's keys and values again: the KV bytes of a windowed decode are
  read heads / kv_heads times. FA3 (pack_gqa) and the TRT-LLM decode kernels keep the group packed with a window.

Nothing here is fitted: the factor is the kernel's, and the device profile's memory efficiency and floor apply to
the larger traffic (small windows stay floor-bound, so the factor shows only once the keys outweigh the floor).
The measured sliding-window decode rows of aiconfigurator (never used in any fit) check it: on RTX PRO 6000 (FA2)
windowed decode takes 0.6-0.75 x `heads / kv_heads` the full-attention time over the same keys once memory-bound,
1.0 on H100 (FA3) and B300 (TRT-LLM).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lvlmsim.cost.profile import Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.ops.op import ATTN_DECODE, Op
from lvlmsim.specs.hardware import HardwareSpec

UNPACKED_WINDOWED_DECODE = ("fa2",)  # kernel generations whose windowed decode re-reads K/V per query head
REGROUPED_GQA_DECODE = ("fa2",)  # kernel generations that regroup a GQA decode's query heads outside the kernel
SLIDING_SUFFIX = ".sliding"  # graph: llm.attention.sliding; validate rows: measured.attention.sliding


def attention_kernel(hw: HardwareSpec) -> str | None:
    """The attention kernel generation `hw` runs ('fa2', 'fa3', 'bw'), None without a known compute capability."""
    from lvlmsim.calibrate.general import ATTENTION_KERNELS

    return ATTENTION_KERNELS.get((hw.compute_capability or "").split(".")[0])


def regroups_gqa(op: Op, kernel: str | None) -> bool:
    """Whether a decode on `kernel` pays FA2's GQA regrouping copies: the query heads of each KV head moved into the
    query-length dimension (flash_api.cpp, seqlenq_ngroups_swapped) and back, which shows as extra kernels once the
    batch and the KV heads both exceed one (A100 12.4 -> 18.3 us, RTX PRO 6000 8.9 -> 13.0 us at 2-4 keys; nothing
    for MHA, one KV head or batch 1). A window turns the regrouping off; FA3 and the TRT-LLM kernels pack the group
    inside the kernel. The time it adds is fitted (SplitDecodeForm.regroup_share); only where it applies is known."""
    if kernel not in REGROUPED_GQA_DECODE or op.kind != ATTN_DECODE or op.name.endswith(SLIDING_SUFFIX):
        return False
    batch, heads, kv_heads = op.shape[0], op.shape[3], op.shape[4]
    return batch > 1 and 1 < kv_heads < heads


def gqa_reread_factor(op: Op, kernel: str | None) -> float:
    """How many times a windowed decode on `kernel` reads each K/V entry (1 where the GQA group stays packed)."""
    if kernel not in UNPACKED_WINDOWED_DECODE or op.kind != ATTN_DECODE or not op.name.endswith(SLIDING_SUFFIX):
        return 1.0
    heads, kv_heads = op.shape[3], op.shape[4]
    return heads / kv_heads if kv_heads and heads > kv_heads else 1.0


@dataclass(frozen=True)
class KernelFeatureProfile(ProfileWrapper):
    """An EfficiencyProfile wrapper: the base profile's efficiencies; a windowed FA2 decode is priced as the op
    with its bytes read `factor` times (the profile's efficiency at that traffic), charged to its own bytes."""

    kernel: str

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        factor = gqa_reread_factor(op, self.kernel)
        if factor == 1.0:
            return self.base.efficiency(op, hw)
        # the profile's efficiency for the traffic the kernel really moves, charged to this op's bytes
        eff = self.base.efficiency(replace(op, bytes_read=op.bytes_read * factor), hw)
        return Efficiency(eff.compute, eff.memory / factor, eff.floor_s, eff.source, eff.measured_error_pct)


def with_kernel_features(profile: EfficiencyProfile, hw: HardwareSpec) -> EfficiencyProfile:
    """`profile` with the kernel behaviour of `hw`'s attention kernel generation (unchanged where none applies)."""
    kernel = attention_kernel(hw)
    return KernelFeatureProfile(profile, kernel) if kernel in UNPACKED_WINDOWED_DECODE else profile


__all__ = ["KernelFeatureProfile", "attention_kernel", "gqa_reread_factor", "regroups_gqa", "with_kernel_features"]
