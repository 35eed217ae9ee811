"""Attention-kernel behaviour a datasheet cannot show, keyed by the kernel generation a device runs.

The serving stack picks its attention kernels by compute capability (lvlmsim.calibrate.general.ATTENTION_KERNELS:
FA2 on sm80/sm86/sm89/sm120, FA3 on sm90, TRT-LLM/FlashInfer kernels on sm100). A sliding window changes how FA2
runs a decode; vLLM's FA2 entry point is mha_varlen_fwd (vllm-project/flash-attention, csrc/flash_attn/
flash_api.cpp), paged KV:

* No GQA packing. It swaps the `ngroups` query heads of a KV head into the query-length dimension only when
  `max_seqlen_q == 1 && num_heads > num_heads_k && window_size_left < 0 && window_size_right < 0 ...`
  (seqlenq_ngroups_swapped); with a window every query head is its own thread block (grid = (m blocks, batch,
  heads) in run_flash_splitkv_fwd, flash_fwd_launch_template.h) and reads its KV head's keys and values again.
* No split-KV. The same function calls set_params_splitkv ("Only apply split-k for decoding") only inside
  `if (seqlenq_ngroups_swapped)`: a windowed decode keeps num_splits = 0 and runs the split kernel (forced by the
  paged KV) as one block per (sequence, query head) with no combine kernel. The guess that the split count follows
  the full cache length (set_params_splitkv's num_n_blocks comes from max_seqlen_k) does not arise: that code
  never runs with a window.
* The re-reads mostly hit L2. The blocks of the query heads sharing a KV head are `batch` blocks apart in launch
  order (blockIdx.y = sequence, blockIdx.z = head), so a re-read finds its keys in L2 while one KV head's keys of
  every sequence (the reuse working set) fit the datasheet L2; the share that does not fit comes from DRAM again.

* Windowed prefill works in whole tiles. The paged KV makes mha_varlen_fwd run the split kernel for prefill too
  (run_mha_fwd's force_split_kernel): query blocks of kBlockM = 64 rows against key blocks of kBlockN = 256 (head
  size <= 80), 128 (<= 128) or 64 columns (run_mha_fwd_splitkv_dispatch), the key loop bounded by
  n_block_min = (m_block x 64 + seqlen_k - seqlen_q - window_left) / kBlockN (flash_fwd_kernel.h). A 64-row block
  under a window of w keys thus computes every key block its rows touch: (w + 63 + alignment) keys per row where w
  are useful, 3.0 x the window's pairs at w = 128 with 256-column blocks, ~1.0 at w = 8192
  (`window_tile_factor`, relative to the causal kernel's own diagonal blocks, which the fit already sees).

* Blackwell's windowed prefill works in whole tiles too, larger ones. vLLM 0.24's FlashInfer backend on sm100
  runs TRT-LLM-gen context kernels (kernel_source vllm_flashinfer_trtllmprefill; kernel names
  fmhaSm100fKernel_...PagedKvSlidingOrChunkedCausalP64VarSeqQ128Kv128PersistentContext for head sizes 64, 128
  and 256: 128-row query tiles, 128-key tiles), two query tiles per CTA (two softmax instances): the generated
  kernel source (LoadTask / LoadPageOffsetsTask, FmhaTask.h) loops a CTA of 256 query rows over the key tiles from
  numSkippedTilesKv = max(0, ctaIdxQ x 256 + (seqLenKv - seqLenQ) + 1 - window) / 128 to the end of its causal
  range, min(ctaIdxQ x 256 + (seqLenKv - seqLenQ) + 256, seqLenKv) - FA2's rule with 256 x 128 blocks: 3 key
  tiles per row at w = 128 where one is useful (host side, FlashInfer fmhaKernels.cuh: "the first tileKv might
  contain tokensKv that is out of the attention window").

* FA3's windowed prefill (sm90; vllm-project/flash-attention hopper/) works in whole tiles as well. Tiles by head
  size from
  hopper/tile_size.h tile_size_fwd_sm90 for bf16 with paged KV read without TMA (`fa3_prefill_tiles`). A window
  always runs that path: get_pagedkv_tma (hopper/flash_api.cpp) returns false for is_local ("we move k_ptr to the
  start of sliding window by m_block"), and a causal prefill with vLLM's pages runs it too, since the page size
  (16 in vLLM, 64 in aiconfigurator's collector) is no multiple of kBlockN (80-192). That path always packs the GQA
  group: get_pack_gqa returns true for `page_table && !pagedkv_tma` before should_pack_gqa's heuristic is reached,
  and run_mha_fwd compiles PackGQA = PackGQA_ || PagedKVNonTMA. A block of kBlockM packed rows holds kBlockM /
  group tokens of one KV head; its key loop starts at its first token's window start, not at that key's block
  (hopper/block.h get_n_block_min_max: n_offset), and ends at the block of its last token's causal limit.

* The prefill fit sees no row a window binds (`window_binds`; general.FAMILY_SETUPS["attn_prefill"]): such a row
  runs each query block over 1-3 key tiles and costs per tile 1.7-3.1 x the causal kernel's (RTX PRO 6000 FA2,
  B300 TRT-LLM-gen, H100 FA3 at 128 keys), an overhead the attention form has no term for; fitted jointly, those rows
  moved the parameters every device shares (FA3's tiles took B300's held-out windowed prefill to 20.6%). A bound
  row is priced from the causal rows' fit through its tile count alone. Chosen with FA3's tiles priced by nested
  leave-one-device-out over four subsample seeds (benchmarks/window_tile_selection.py, calibration/README.md).

FA3 (pack_gqa) and the TRT-LLM decode kernels keep the group packed with a window. Nothing here is fitted: the
decode profile prices the op as the kernel runs it (batch x heads work items of one head's keys each) at the DRAM
traffic those facts leave, and the general fit prices its training rows the same way (`as_run` in
lvlmsim.calibrate.fit.family_data); the held-out device's windowed rows are the leave-one-out check
(docs/attention-families.md, calibration/README.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from lvlmsim.cost.profile import Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.ops.op import ATTN_DECODE, ATTN_PREFILL, Op
from lvlmsim.specs.hardware import HardwareSpec

UNPACKED_WINDOWED_DECODE = ("fa2",)  # kernel generations whose windowed decode re-reads K/V per query head, unsplit
# Which decodes each kernel generation splits over several CTAs per sequence (split-KV), from the source of the kernels
# vLLM runs (the kernel_source column of aiconfigurator's tables says which ran each row):
# - fa2 ("swapped-gqa"): vLLM's FA2 entry point mha_varlen_fwd (vllm-project/flash-attention @04325b67,
#   csrc/flash_attn/flash_api.cpp) calls set_params_splitkv ("Only apply split-k for decoding") only inside
#   `if (seqlenq_ngroups_swapped)`, i.e. for `max_seqlen_q == 1 && num_heads > num_heads_k && window_size_left < 0 &&
#   window_size_right < 0` (vLLM passes window (w - 1, 0) for a sliding layer, so even a window longer than the keys
#   keeps it off: the window is reset to -1 only after that test). A windowed decode and an MHA decode keep
#   num_splits = 0: one CTA per (sequence, query head) walks all its keys.
# - fa3 ("always"): hopper/flash_api.cpp (@626a8718) get_num_splits sets a split count for every decode, MHA and
#   windowed alike (the split path always packs the GQA group, get_pack_gqa).
# - bw ("always"): the TRT-LLM-gen generation kernels of FlashInfer's sm100 backend spread a sequence's keys over
#   several CTAs (multiCtasKv) and reduce them inside the kernel (`splits_kv`).
# The measured tables agree: an 8-head MHA decode of 131,071 keys at batch 1 takes 3016 us on A100 and 2572 us on RTX
# PRO 6000 (FA2: 1024 key blocks walked by 8 CTAs, 2.9 and 2.5 us each), 220 us on H100 (FA3) and 88 us on B300.
DECODE_SPLIT_KV: dict[str, str] = {"fa2": "swapped-gqa", "fa3": "always", "bw": "always"}
REGROUPED_GQA_DECODE = ("fa2",)  # kernel generations that regroup a GQA decode's query heads outside the kernel
TILED_WINDOWED_PREFILL = ("fa2", "fa3", "bw")  # kernel generations whose windowed prefill is priced in whole tiles
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


def splits_kv(op: Op, kernel: str | None) -> bool:
    """Whether a decode on `kernel` may split its keys and pay a combine kernel after it (the floor share of
    SplitDecodeForm): FA2 (flash_api.cpp set_params_splitkv), but not its windowed or MHA decodes, whose split count is
    set only when the GQA group is swapped into the query dimension (mha_varlen_fwd; DECODE_SPLIT_KV). Not FA3: it
    launches its combine with programmatic dependent launch (hopper/flash_api.cpp, run_mha_fwd_combine(params,
    stream, true /*enable_pdl*/)), so the combine's launch and prologue overlap the attention kernel's tail. Not the
    TRT-LLM-gen generation kernels of Blackwell, which reduce their KV splits inside the kernel (CgaSmemReduction
    across the cluster, or GmemReduction by the last CTA); the separate reduction kernel (runFmhaReduction,
    GmemReductionWithSeparateKernel) runs only for the KeepsMmaAb kernels of head sizes above 256, which a GQA group
    above 16 selects (FlashInfer fmhaKernels.cuh selectGqGenerationKernel / syncGqaGenerationTraitsForKernelHash)."""
    if kernel == "fa3":
        return False
    if kernel == "bw":
        heads, kv_heads, d = op.shape[3], op.shape[4], op.shape[5]
        return d > 256 and heads > 16 * max(kv_heads, 1)
    if DECODE_SPLIT_KV.get(kernel or "") == "swapped-gqa":
        return op.kind != ATTN_DECODE or _swaps_gqa(op)
    return True


def _swaps_gqa(op: Op) -> bool:
    """FA2's seqlenq_ngroups_swapped for a decode: GQA (more query heads than KV heads) and no window."""
    return op.shape[3] > op.shape[4] and not op.name.endswith(SLIDING_SUFFIX)


def unsplit_key_blocks(op: Op, kernel: str | None) -> float:
    """Key blocks one CTA walks alone in a decode `kernel` does not split (DECODE_SPLIT_KV; 0 where it splits): FA2's
    windowed and MHA decodes, whose (sequence, query head) items each loop over all their keys in kBlockN-key blocks
    (`fa2_key_block`). However few the CTAs, the kernel cannot end before that loop has."""
    if op.kind != ATTN_DECODE or DECODE_SPLIT_KV.get(kernel or "") != "swapped-gqa" or _swaps_gqa(op):
        return 0.0
    return float(-(-int(round(op.shape[2])) // fa2_key_block(op.shape[5])))


def l2_reuse_share(op: Op, hw: HardwareSpec) -> float:
    """Share of an unpacked windowed decode's re-reads that hit L2: the datasheet L2 over the reuse working set (one
    KV head's keys and values of every sequence in the batch, op.bytes_read / kv_heads), at most 1; 0 without a
    published L2."""
    if not hw.l2_cache_mb:
        return 0.0
    working_set = op.bytes_read / max(op.shape[4], 1)
    return min(1.0, hw.l2_cache_mb * 1e6 / working_set) if working_set > 0 else 1.0


def dram_reread_factor(op: Op, hw: HardwareSpec, kernel: str | None) -> float:
    """DRAM bytes of a windowed decode on `kernel` over the op's own: 1 + (group - 1) x the re-reads L2 misses."""
    group = gqa_reread_factor(op, kernel)
    return 1.0 + (group - 1.0) * (1.0 - l2_reuse_share(op, hw)) if group > 1.0 else 1.0


def as_run_unpacked(op: Op, hw: HardwareSpec, kernel: str | None) -> Op:
    """The windowed decode as FA2 runs it: every query head a work item of its own (kv_heads = heads in the shape)
    and the DRAM traffic `dram_reread_factor` leaves."""
    shape = (*op.shape[:4], op.shape[3], *op.shape[5:])
    return replace(op, bytes_read=op.bytes_read * dram_reread_factor(op, hw, kernel), shape=shape)


FA2_BLOCK_M = 64  # query rows per block of FA2's split kernel (run_mha_fwd_splitkv_dispatch: "Fixed for all head dims")


def fa2_key_block(head_dim: float) -> int:
    """Keys per block of vLLM's FA2 split kernel (kBlockN: 256 up to head size 80, 128 up to 128, else 64)."""
    return 256 if head_dim <= 80 else (128 if head_dim <= 128 else 64)


BW_CTA_ROWS = 256  # query rows per CTA of TRT-LLM-gen's sm100 context kernels (two 128-row tiles, FmhaTask.h)
BW_KEY_TILE = 128  # keys per tile of those kernels (VarSeqQ128Kv128 in every context kernel name)


def prefill_tiles(kernel: str | None, head_dim: float) -> tuple[int, int] | None:
    """(query rows, keys) of the blocks a windowed prefill on `kernel` computes whole, for kernels whose blocks hold
    unpacked query rows (FA2, Blackwell's TRT-LLM-gen); None for others (FA3: `fa3_prefill_tiles`)."""
    if kernel in UNPACKED_WINDOWED_DECODE:
        return FA2_BLOCK_M, fa2_key_block(head_dim)
    if kernel == "bw":
        return BW_CTA_ROWS, BW_KEY_TILE
    return None


def vit_query_rows(kernel: str | None, head_dim: float, q: float) -> int:
    """Query rows one CTA of the ViT (encoder) attention kernel on `kernel` computes, for sequences of `q` tokens: FA2
    (sm80 / sm120, non-split kernel, flash_fwd_launch_template.h run_mha_fwd_hdim64 / hdim96: kBlockM 128), FA3 (sm90,
    hopper/tile_size.h tile_size_fwd_sm90, 16-bit, KV not paged: kBlockM 192 up to head size 96), FA4 on sm100
    (flash_attn/cute/interface.py: tile_m 128, two Q stages per CTA once the sequence exceeds one tile, q_stage = 2 if
    seqlen_q > tile_m). The ViT head sizes are 64-80; a device of unknown kernel gets FA2's 128."""
    if kernel == "fa3" and head_dim <= 96:
        return 192
    if kernel == "bw":
        return 256 if q > 128 else 128
    return 128


def vit_ctas(op: Op, kernel: str | None) -> float:
    """CTAs the ViT attention kernel on `kernel` launches for `op`: one per (query tile, head, sequence)."""
    batch, q, heads, d = op.shape[0], max(float(op.shape[1]), 1.0), op.shape[3], float(op.shape[5])
    return float(batch) * heads * math.ceil(q / vit_query_rows(kernel, d, q))


# CTAs of the ViT attention kernel resident on one SM at once. FA2's forward CTA is 4 warps with 48 KB of shared
# memory at the ViT head sizes (Q 128 x d plus K and V 128 x 64 or 64 x 96 tiles, 16-bit: Flash_fwd_kernel_traits
# <64, 128, 128, 4> / <96, 128, 64, 4>), so two fit the 100 KB of an sm86 / sm89 / sm120 SM (A100's 164 KB would
# allow three by shared memory; two is what every FA2 part holds). FA3 (sm90) and FA4 (sm100) are warp-specialised
# kernels of one CTA per SM (FA3: 3 warpgroups whose setmaxnreg reallocation assumes the whole register file; FA4: its
# accumulators hold the SM's tensor memory).
VIT_RESIDENT_CTAS = {"fa2": 2}


def vit_resident_ctas(kernel: str | None) -> int:
    """CTAs of the ViT attention kernel on `kernel` that one SM runs at once (a device of unknown kernel: FA2's)."""
    return VIT_RESIDENT_CTAS.get(kernel or "fa2", 1)


# Query tokens per sequence up to which vLLM's FlashInfer backend (Blackwell's TRT-LLM-gen kernels) runs a request as
# a decode: FlashInferImpl.forward (vllm-project/vllm vllm/v1/attention/backends/flashinfer.py @00a817ad) puts the
# requests split_decodes_and_prefills counts as decodes (query length up to the reorder threshold, 1 without
# speculative decoding) through trtllm_batch_decode_with_kv_cache and only the rest through the context kernel; the
# B300 table's kernel_source reads vllm_flashinfer_trtllmdecode on every 1-token row and ...trtllmprefill on the others.
# Counting those rows as the generation kernel's (sequence, KV head) items lost the nested check to counting them as
# context rows (benchmarks/prefill_form_selection.py run 3: 0 of 4 folds; the B300 fold tied), so the shipped prefill
# form counts them as context rows (`decode_kernel_rows` False).
BW_DECODE_QUERY_TOKENS = 1


def prefill_ctas(op: Op, kernel: str | None, *, decode_kernel_rows: bool = False) -> float:
    """CTAs (query blocks) the prefill attention kernel on `kernel` runs for `op`, each paying a fixed prologue and
    epilogue (loading its Q block and page table, the softmax epilogue, writing O): FA2's split kernel (forced by the
    paged KV) one per (64-row query block, head, sequence), the group unpacked (`FA2_BLOCK_M`); FA3 one per block of
    kBlockM packed (token, query head) rows of a KV head (`fa3_prefill_tiles`; the paged KV without TMA always packs
    the GQA group, get_pack_gqa); Blackwell's TRT-LLM-gen context kernels one per 256 unpacked query rows
    (`BW_CTA_ROWS`: two 128-row tiles per CTA) of a head. With `decode_kernel_rows`, Blackwell's 1-token rows, which
    run the generation kernel (`BW_DECODE_QUERY_TOKENS`), count one per (sequence, KV head), the group packed (not
    shipped). A device of unknown kernel gets FA2's."""
    batch, q, heads, kv_heads, d = op.shape[0], max(float(op.shape[1]), 1.0), op.shape[3], op.shape[4], op.shape[5]
    if kernel == "fa3":
        group = heads / kv_heads if kv_heads else 1.0
        block_m = fa3_prefill_tiles(d, op.name.endswith(SLIDING_SUFFIX))[0]
        return float(batch) * (kv_heads or heads) * math.ceil(q * group / block_m)
    if kernel == "bw" and decode_kernel_rows and q <= BW_DECODE_QUERY_TOKENS:
        return float(batch) * (kv_heads or heads)
    rows = BW_CTA_ROWS if kernel == "bw" else FA2_BLOCK_M
    return float(batch) * heads * math.ceil(q / rows)


def fa3_prefill_tiles(head_dim: float, local: bool) -> tuple[int, int]:
    """(kBlockM, kBlockN) of vLLM's FA3 prefill, 16-bit, paged KV without TMA (hopper/tile_size.h
    tile_size_fwd_sm90: 192 x 128 causal / 192 x 160 local up to head size 64, 192 x 128 up to 96, 128 x 128 up to
    128, 128 x 96 up to 192, 128 x 80 causal / 128 x 64 local above; `local`: a sliding window)."""
    if head_dim <= 64:
        return 192, (160 if local else 128)
    if head_dim <= 96:
        return 192, 128
    if head_dim <= 128:
        return 128, 128
    if head_dim <= 192:
        return 128, 96
    return 128, (64 if local else 80)


@functools.lru_cache(maxsize=4096)
def _packed_keys_per_pair(q: int, past: int, window: int, block_m: int, block_n: int, group: int) -> float:
    """Pairs FA3's packed blocks compute per useful pair for `q` queries after `past` cached keys (window 0:
    causal): a block of `block_m` rows of (token, query head) holds block_m / group tokens; its keys run from its
    first token's window start (n_offset, exact) to its last token's causal limit, in whole `block_n`-key blocks."""
    starts = np.arange(0, q * group, block_m)
    rows = np.minimum(block_m, q * group - starts)
    tok_lo, tok_hi = starts // group, np.minimum((starts + rows - 1) // group + 1, q)
    key_lo = np.maximum(0, tok_lo + past - (window - 1)) if window else np.zeros_like(tok_lo)
    keys = -(-(tok_hi + past - key_lo) // block_n) * block_n
    pos = np.arange(past, past + q) + 1.0
    useful = (np.minimum(pos, window).sum() if window else pos.sum()) * group
    return float((rows * keys).sum() / useful)


@functools.lru_cache(maxsize=4096)
def _tile_keys_per_pair(q: int, past: int, window: int, block_n: int, block_m: int) -> float:
    """Query-key pairs the tiles compute per useful pair for `q` queries after `past` cached keys (window 0: causal):
    each `block_m`-row query block computes every `block_n`-key block from the one holding its window's first key
    to the one holding its causal limit, for all its rows (FA2's n_block_min / n_block_max; TRT-LLM-gen's
    numSkippedTilesKv / validSeqLenKv)."""
    m = np.arange(-(-q // block_m))
    rows = np.minimum(block_m, q - m * block_m)
    n_keys = -(-(past + q) // block_n)
    hi = np.minimum(n_keys, -(-((m + 1) * block_m + past) // block_n))
    lo = np.maximum(0, (m * block_m + past - (window - 1)) // block_n) if window else 0
    pos = np.arange(past, past + q) + 1.0
    useful = np.minimum(pos, window).sum() if window else pos.sum()
    return float((rows * (hi - lo) * block_n).sum() / useful)


def tile_work_factor(op: Op, kernel: str | None) -> float:
    """Tile work of a windowed prefill on `kernel` (FA2 and Blackwell's TRT-LLM-gen: `prefill_tiles`; FA3:
    `fa3_prefill_tiles`, packed) per useful pair over the causal kernel's at the same length (1 where the window
    never binds, for other kernels and other ops), whether or not the kernel's tiles are priced
    (`window_tile_factor`). The cached keys before the chunk are op.kv_per_seq - q (exact below one window; beyond
    it every row sees a whole window, as at past = w - 1)."""
    if op.kind != ATTN_PREFILL or not op.window_tokens or not op.name.endswith(SLIDING_SUFFIX):
        return 1.0
    d = op.shape[5]
    tiles = prefill_tiles(kernel, d)
    q, kv = max(int(round(op.shape[1])), 1), op.shape[2]
    past = int(round(max(kv - q, 0.0)))
    if (tiles is None and kernel != "fa3") or past + q <= op.window_tokens:
        return 1.0
    if tiles is None:  # FA3: the group packed into the rows, local and causal tiles of their own
        group = max(int(round(op.shape[3] / op.shape[4])), 1) if op.shape[4] else 1
        (lm, ln), (cm, cn) = fa3_prefill_tiles(d, True), fa3_prefill_tiles(d, False)
        return (_packed_keys_per_pair(q, past, op.window_tokens, lm, ln, group)
                / _packed_keys_per_pair(q, 0, 0, cm, cn, group))
    block_m, block_n = tiles
    return (_tile_keys_per_pair(q, past, op.window_tokens, block_n, block_m)
            / _tile_keys_per_pair(q, 0, 0, block_n, block_m))


def window_binds(op: Op) -> bool:
    """Whether a sliding window cuts keys off some query of this prefill (cache plus chunk longer than the window):
    only then do its blocks' key loops differ from the causal kernel's at the same grid."""
    return (op.kind == ATTN_PREFILL and bool(op.window_tokens) and op.name.endswith(SLIDING_SUFFIX)
            and op.shape[2] > op.window_tokens)


def window_tile_factor(op: Op, kernel: str | None) -> float:
    """`tile_work_factor` where the kernel's windowed tiles are priced (TILED_WINDOWED_PREFILL: FA2, FA3, Blackwell's
    TRT-LLM-gen), else 1."""
    return tile_work_factor(op, kernel) if kernel in TILED_WINDOWED_PREFILL else 1.0


def as_run(op: Op, hw: HardwareSpec) -> Op:
    """`op` as `hw`'s attention kernel runs it: `as_run_unpacked` for a GQA windowed decode on FA2, the tiles' FLOPs
    (`window_tile_factor`) for a windowed FA2, FA3 or Blackwell TRT-LLM-gen prefill, else `op`. The general fit prices
    its rows with it, as KernelFeatureProfile prices ops, so training and pricing agree."""
    kernel = attention_kernel(hw)
    if gqa_reread_factor(op, kernel) > 1.0:
        return as_run_unpacked(op, hw, kernel)
    tiles = window_tile_factor(op, kernel)
    return replace(op, flops=op.flops * tiles) if tiles != 1.0 else op


def gqa_reread_factor(op: Op, kernel: str | None) -> float:
    """How many times a windowed decode on `kernel` reads each K/V entry (1 where the GQA group stays packed)."""
    if kernel not in UNPACKED_WINDOWED_DECODE or op.kind != ATTN_DECODE or not op.name.endswith(SLIDING_SUFFIX):
        return 1.0
    heads, kv_heads = op.shape[3], op.shape[4]
    return heads / kv_heads if kv_heads and heads > kv_heads else 1.0


@dataclass(frozen=True)
class KernelFeatureProfile(ProfileWrapper):
    """An EfficiencyProfile wrapper: the base profile's efficiencies; a windowed FA2 decode is priced as the kernel
    runs it (`as_run_unpacked`: the profile's efficiency for batch x heads items at the DRAM traffic it moves),
    charged to the op's own bytes; a windowed prefill's compute efficiency is divided by its tile factor."""

    kernel: str

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        if gqa_reread_factor(op, self.kernel) > 1.0:
            run = as_run_unpacked(op, hw, self.kernel)
            eff = self.base.efficiency(run, hw)
            factor = run.bytes / op.bytes  # the written bytes are the op's own
            return Efficiency(eff.compute, eff.memory / factor, eff.floor_s, eff.source, eff.measured_error_pct)
        tiles = window_tile_factor(op, self.kernel)
        if tiles == 1.0:
            return self.base.efficiency(op, hw)
        eff = self.base.efficiency(replace(op, flops=op.flops * tiles), hw)
        return Efficiency(eff.compute / tiles, eff.memory, eff.floor_s, eff.source, eff.measured_error_pct)


def with_kernel_features(profile: EfficiencyProfile, hw: HardwareSpec) -> EfficiencyProfile:
    """`profile` with the kernel behaviour of `hw`'s attention kernel generation (unchanged where none applies)."""
    kernel = attention_kernel(hw)
    return KernelFeatureProfile(profile, kernel) if kernel in TILED_WINDOWED_PREFILL else profile


__all__ = ["KernelFeatureProfile", "as_run", "as_run_unpacked", "attention_kernel", "dram_reread_factor",
           "fa2_key_block", "fa3_prefill_tiles", "gqa_reread_factor", "l2_reuse_share", "prefill_ctas", "prefill_tiles",
           "regroups_gqa", "splits_kv", "tile_work_factor", "unsplit_key_blocks", "vit_ctas", "vit_query_rows",
           "vit_resident_ctas", "window_binds", "window_tile_factor", "with_kernel_features"]
