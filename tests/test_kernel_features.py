"""FA2's windowed decode runs unpacked and unsplit (flash_api.cpp, mha_varlen_fwd: a window turns the GQA swap and
with it split-KV off); its re-reads hit L2 while one KV head of the batch fits. Windowed prefills on FA2 and on
Blackwell's TRT-LLM-gen kernels compute whole tiles. Priced without fitting anything."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lvlmsim.calibrate.kernels import (
    KernelFeatureProfile,
    as_run_unpacked,
    attention_kernel,
    dram_reread_factor,
    fa2_key_block,
    fa3_prefill_tiles,
    gqa_reread_factor,
    l2_reuse_share,
    splits_kv,
    tile_work_factor,
    unsplit_key_blocks,
    window_tile_factor,
)
from lvlmsim.calibrate.measured import sliding_decode_attention_op, sliding_prefill_attention_op
from lvlmsim.calibrate.profiles import load_profile_for
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.cost.roofline import CostModel
from lvlmsim.specs.registry import load_hardware
from tests.shared_data import MEASURED, needs_shared


def test_kernel_generation_follows_compute_capability():
    assert attention_kernel(load_hardware("rtx-pro-6000-server")) == "fa2"  # sm120
    assert attention_kernel(load_hardware("l40s")) == "fa2"  # sm89
    assert attention_kernel(load_hardware("h100-sxm")) == "fa3"
    assert attention_kernel(load_hardware("tpu-v6e")) is None


def test_reread_factor_is_the_gqa_group_for_windowed_decode_on_fa2_only():
    dec = sliding_decode_attention_op(batch=8, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    assert gqa_reread_factor(dec, "fa2") == 4.0
    assert gqa_reread_factor(dec, "fa3") == 1.0 and gqa_reread_factor(dec, "bw") == 1.0
    pre = sliding_prefill_attention_op(batch=1, isl=2048, heads=32, kv_heads=8, head_dim=128, window=1024)
    assert gqa_reread_factor(pre, "fa2") == 1.0  # the swap only concerns seqlen_q == 1
    mha = sliding_decode_attention_op(batch=8, step=4000, heads=8, kv_heads=8, head_dim=128, window=1024)
    assert gqa_reread_factor(mha, "fa2") == 1.0


def test_windowed_decode_rereads_hit_l2_while_one_kv_head_of_the_batch_fits():
    """64 sequences x 1024 keys x 128 x 2 (K, V) x 2 B = 33.6 MB per KV head (+ the queries): inside the 128 MB L2 of
    RTX PRO 6000, so the four query heads of a KV head cost DRAM the bytes of one; flat derate 0.8 of 1597 GB/s."""
    hw = load_hardware("rtx-pro-6000-server")
    op = sliding_decode_attention_op(batch=64, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    assert op.bytes_read == 64 * 32 * 128 * 2 + 2 * 64 * 1024 * 8 * 128 * 2  # 268,959,744 B
    assert op.bytes_written == 64 * 32 * 128 * 2 + 2 * 64 * 8 * 128 * 2  # the output and the new token's K, V
    assert l2_reuse_share(op, hw) == 1.0 and dram_reread_factor(op, hw, "fa2") == 1.0
    unpacked = CostModel(hw, KernelFeatureProfile(DEFAULT_PROFILE, "fa2")).cost(op)
    assert unpacked.memory_s == pytest.approx((268_959_744 + 786_432) / (0.8 * 1597e9))


def test_windowed_decode_rereads_miss_the_share_of_the_working_set_beyond_l2_by_hand():
    """512 sequences: 268.96 MB per KV head against 128 MB of L2, so 128 / 268.96 = 0.4759 of the re-reads hit and
    DRAM moves 1 + 3 x 0.5241 = 2.572 times the bytes; a device without a published L2 re-reads all four times."""
    hw = load_hardware("rtx-pro-6000-server")
    op = sliding_decode_attention_op(batch=512, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    assert l2_reuse_share(op, hw) == pytest.approx(128e6 / 268_959_744)
    assert dram_reread_factor(op, hw, "fa2") == pytest.approx(1 + 3 * (1 - 128e6 / 268_959_744))
    unpacked = CostModel(hw, KernelFeatureProfile(DEFAULT_PROFILE, "fa2")).cost(op)
    read, written = 2_151_677_952, 6_291_456  # queries + K, V of 512 x 1024 keys; output + the new K, V
    assert (op.bytes_read, op.bytes_written) == (read, written)
    assert unpacked.memory_s == pytest.approx((2.5723 * read + written) / (0.8 * 1597e9), rel=1e-4)
    no_l2 = hw.model_copy(update={"l2_cache_mb": None})
    assert dram_reread_factor(op, no_l2, "fa2") == 4.0
    assert dram_reread_factor(op, hw, "fa3") == 1.0  # FA3 keeps the group packed


def test_windowed_decode_runs_one_item_per_query_head_without_split_kv():
    """mha_varlen_fwd sets a split count only with the GQA group swapped in, which a window turns off: the windowed
    decode runs batch x heads items and no combine kernel; full-attention decodes and FA3 may split."""
    hw = load_hardware("rtx-pro-6000-server")
    win = sliding_decode_attention_op(batch=2, step=8191, heads=32, kv_heads=8, head_dim=128, window=8192)
    assert not splits_kv(win, "fa2") and not splits_kv(win, "fa3") and not splits_kv(win, "bw")
    assert splits_kv(replace(win, name="measured.attention"), "fa2")
    run = as_run_unpacked(win, hw, "fa2")
    assert run.shape[3:5] == (32, 32) and run.shape[:3] == win.shape[:3]


def test_fa2_splits_only_the_decodes_whose_gqa_group_it_swaps():
    """mha_varlen_fwd computes a split count only for a swapped decode (GQA, no window): an MHA or windowed decode on
    FA2 runs one CTA per (sequence, query head) over all its keys, in blocks of 256 / 128 / 64 keys by head size;
    FA3 and TRT-LLM-gen split all three."""
    from lvlmsim.calibrate.measured import decode_attention_op

    mha, gqa = decode_attention_op(1, 1023, 8, 8, 128), decode_attention_op(1, 1023, 8, 1, 128)
    win = sliding_decode_attention_op(batch=1, step=1023, heads=8, kv_heads=4, head_dim=256, window=1024)
    assert not splits_kv(mha, "fa2") and splits_kv(gqa, "fa2") and not splits_kv(win, "fa2")
    assert unsplit_key_blocks(mha, "fa2") == 8.0  # 1024 keys / 128
    assert unsplit_key_blocks(win, "fa2") == 16.0  # Gemma 3 4B's local layer: 1024 keys / 64 (head size 256)
    assert unsplit_key_blocks(decode_attention_op(1, 1000, 4, 4, 64), "fa2") == 4.0  # ceil(1001 / 256)
    assert unsplit_key_blocks(gqa, "fa2") == 0.0
    for kernel in ("fa3", "bw", None):
        assert unsplit_key_blocks(mha, kernel) == unsplit_key_blocks(win, kernel) == 0.0


def test_blackwell_decode_reduces_its_splits_inside_the_kernel():
    """TRT-LLM-gen's GQA generation kernels reduce KV splits in the kernel; only head sizes above 256 with more than
    16 query heads per KV head (KeepsMmaAb, split-V) run the separate reduction kernel."""
    from lvlmsim.calibrate.measured import decode_attention_op

    assert not splits_kv(decode_attention_op(1, 4095, 32, 8, 128), "bw")
    assert not splits_kv(decode_attention_op(1, 4095, 64, 4, 512), "bw")  # group 16: SwapsMmaAb
    assert splits_kv(decode_attention_op(1, 4095, 64, 2, 512), "bw")  # group 32 at head size 512
    full = decode_attention_op(1, 4095, 32, 8, 128)
    assert splits_kv(full, "fa2") and not splits_kv(full, "fa3")  # FA3's combine runs under PDL


def test_auto_applies_the_windowed_prefill_tiles_on_every_known_kernel():
    """FA2 devices get the windowed decode and prefill features; B300 (TRT-LLM-gen) and H100 (FA3) the windowed
    prefill tiles only: their windowed decode keeps the group packed, so it is priced as the base profile prices it."""
    op = sliding_decode_attention_op(batch=64, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    rtx, h100, b300 = (load_hardware(h) for h in ("rtx-pro-6000-server", "h100-sxm", "b300"))
    assert isinstance(load_profile_for(rtx, "auto"), KernelFeatureProfile)
    for hw in (b300, h100):
        prof = load_profile_for(hw, "auto")
        assert isinstance(prof, KernelFeatureProfile)
        assert CostModel(hw, prof).cost(op).time_s == CostModel(hw, prof.base).cost(op).time_s
    cm = CostModel(rtx, load_profile_for(rtx, "auto"))
    assert cm.cost(replace(op, name="measured.attention")).time_s < cm.cost(op).time_s  # no window: packed


@needs_shared
@pytest.mark.slow
def test_rtx_pro_6000_windowed_decode_scales_with_the_group_as_measured():
    """Rows never fitted on: memory-bound windowed decodes with groups of 8+ ran 3-7x slower than priced with the
    group packed; with the FA2 feature their measured/predicted median is within 0.6-1.4."""
    from lvlmsim.calibrate.measured import load_aiconfigurator

    hw = load_hardware("rtx-pro-6000-server")
    rows = [r for r in load_aiconfigurator(MEASURED / "aiconfigurator/data/rtx_pro_6000_server").rows
            if r.family == "generation_attention_sliding" and r.op.shape[3] >= 8 * r.op.shape[4]
            and r.op.bytes_read > 32e6]
    assert len(rows) > 200
    prof = load_profile_for(hw, "auto")
    meas = np.array([r.measured_s for r in rows])
    with_feature = np.median(meas / np.array([CostModel(hw, prof).cost(r.op).time_s for r in rows]))
    packed = np.median(meas / np.array([CostModel(hw, prof.base).cost(r.op).time_s for r in rows]))
    assert packed > 2.0
    assert 0.6 <= with_feature <= 1.4


@needs_shared
@pytest.mark.slow
def test_fa2_unsplit_decodes_with_few_ctas_take_their_walk_as_measured():
    """MHA decodes of 8+ key blocks with fewer (sequence, head) CTAs than SMs, on the two FA2 devices: a bandwidth
    price alone is 5-10x short of the measured time (one CTA walks a sequence's keys: 2.5-3 us per block); with the
    walk, the shipped model's measured/predicted median is within 0.8-1.25 on each device."""
    from lvlmsim.calibrate.measured import load_aiconfigurator

    for folder, hw_id in (("a100_sxm", "a100-sxm-80gb"), ("rtx_pro_6000_server", "rtx-pro-6000-server")):
        hw = load_hardware(hw_id)
        rows = [r for r in load_aiconfigurator(MEASURED / "aiconfigurator/data" / folder).rows
                if r.family == "generation_attention" and r.op.shape[3] == r.op.shape[4]
                and r.op.shape[0] * r.op.shape[3] < hw.sm_count and unsplit_key_blocks(r.op, "fa2") >= 8]
        assert len(rows) > 50
        prof = load_profile_for(hw, "auto")
        meas = np.array([r.measured_s for r in rows])
        ratio = np.median(meas / np.array([CostModel(hw, prof).cost(r.op).time_s for r in rows]))
        bandwidth = np.median(meas / np.array([r.op.bytes / hw.mem_bw_bytes_per_s for r in rows]))
        assert bandwidth > 4.0
        assert 0.8 <= ratio <= 1.25, (hw_id, ratio)


def test_general_fit_prices_training_rows_as_the_kernel_runs_them():
    """A windowed FA2 decode row enters the fit as KernelFeatureProfile prices it: 512 x 32 query-head items, no key
    split, DRAM bytes 2.572 x the read (see above) plus the written; on H100 (FA3, packed) the op's own bytes."""
    from lvlmsim.calibrate.fit import family_data
    from lvlmsim.calibrate.measured import Measurement
    from lvlmsim.calibrate.model import FORM_VARIANTS
    from lvlmsim.ops.op import ATTN_DECODE

    rtx, h100 = load_hardware("rtx-pro-6000-server"), load_hardware("h100-sxm")
    op = sliding_decode_attention_op(batch=512, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    row = Measurement(op, 1e-3, "generation_attention_sliding", "hand")
    form = FORM_VARIANTS["decode+split"]
    fd = family_data(ATTN_DECODE, [row], rtx, form)
    assert fd.memory_s[0] == pytest.approx((2.5723 * 2_151_677_952 + 6_291_456) / 1597e9, rel=1e-4)
    assert fd.x[0][0] == 512 * 32  # work items: sequences x query heads
    assert fd.x[-4][0] == 0.0  # splits_kv: no combine kernel
    assert fd.x[-2][0] == 8.0  # unsplit: each CTA walks its window of 1024 keys in 128-key blocks (head size 128)
    packed = family_data(ATTN_DECODE, [row], h100, form)
    assert packed.memory_s[0] == pytest.approx(op.bytes / h100.mem_bw_bytes_per_s)
    assert packed.x[0][0] == 512 * 8 and packed.x[-4][0] == 0.0  # FA3: packed, its combine under PDL
    assert packed.x[-2][0] == 0.0  # FA3 splits: no walk


def test_fa2_key_block_follows_the_split_kernel():
    assert [fa2_key_block(d) for d in (64, 80, 128, 192, 256)] == [256, 256, 128, 64, 64]


def test_windowed_prefill_tile_factor_by_hand():
    """256 queries, window 128, head size 128 (64 x 128 tiles): the four query blocks compute 1, 1, 2, 2 key blocks
    = 49,152 pairs under the window and under the causal mask alike; useful pairs are 128 x 129 / 2 + 128 x 128 =
    24,640 windowed against 256 x 257 / 2 = 32,896 causal, so the windowed kernel does 32,896 / 24,640 = 1.335 times
    the causal kernel's work per pair. The window never binds at 128 queries, nor without a window, nor on a kernel
    without known tiles."""
    op = sliding_prefill_attention_op(batch=2, isl=256, heads=16, kv_heads=8, head_dim=128, window=128)
    assert op.window_tokens == 128
    assert window_tile_factor(op, "fa2") == pytest.approx(32_896 / 24_640)
    assert window_tile_factor(op, None) == 1.0
    assert window_tile_factor(replace(op, name="measured.attention"), "fa2") == 1.0
    short = sliding_prefill_attention_op(batch=2, isl=128, heads=16, kv_heads=8, head_dim=128, window=128)
    assert window_tile_factor(short, "fa2") == 1.0
    hw = load_hardware("rtx-pro-6000-server")
    plain = CostModel(hw, DEFAULT_PROFILE).cost(op)
    tiled = CostModel(hw, KernelFeatureProfile(DEFAULT_PROFILE, "fa2")).cost(op)
    assert tiled.compute_s == pytest.approx(32_896 / 24_640 * plain.compute_s)
    assert tiled.memory_s == pytest.approx(plain.memory_s)


def test_blackwell_windowed_prefill_tiles_by_hand():
    """TRT-LLM-gen's sm100 context kernel: CTAs of 256 query rows, 128-key tiles, the key loop from the tile of the
    window's first key. 512 queries, window 128: CTA 0 computes tiles 0-1 (256 x 256 pairs), CTA 1 starts at tile
    (256 - 127) // 128 = 1 and ends at tile 3 (256 x 384): 163,840 pairs for 128 x 129 / 2 + 384 x 128 = 57,408
    useful; the causal kernel computes 256 x 256 + 256 x 512 = 196,608 for 512 x 513 / 2 = 131,328 useful. The
    factor is the ratio of the two overheads, whatever the head size."""
    op = sliding_prefill_attention_op(batch=2, isl=512, heads=16, kv_heads=8, head_dim=128, window=128)
    expected = (163_840 / 57_408) / (196_608 / 131_328)
    assert window_tile_factor(op, "bw") == pytest.approx(expected)
    assert window_tile_factor(replace(op, shape=(*op.shape[:5], 64)), "bw") == pytest.approx(expected)
    hw = load_hardware("b300")
    plain = CostModel(hw, DEFAULT_PROFILE).cost(op)
    tiled = CostModel(hw, KernelFeatureProfile(DEFAULT_PROFILE, "bw")).cost(op)
    assert tiled.compute_s == pytest.approx(expected * plain.compute_s)


def test_fa3_windowed_prefill_tiles_by_hand():
    """vLLM's FA3 runs a window on paged KV without TMA, which packs the GQA group (flash_api.cpp get_pagedkv_tma,
    get_pack_gqa). Head size 256: local tiles 128 x 64, causal 128 x 80 (tile_size.h). 256 queries, window 128,
    group 2: four blocks of 128 packed rows = 64 tokens each. Local key loops (from the first token's window start,
    block.h n_offset, to the last token's causal limit): 64, 128, 191, 191 keys -> 64, 128, 192, 192 in 64-key
    blocks = 576 keys x 128 rows = 73,728 pairs for 2 x (128 x 129 / 2 + 128 x 128) = 49,280 useful; causal:
    64, 128, 192, 256 keys -> 80, 160, 240, 320 = 800 x 128 = 102,400 pairs for 2 x 256 x 257 / 2 = 65,792 useful.
    The windowed kernel wastes less than the causal one here (factor < 1). Priced (TILED_WINDOWED_PREFILL)."""
    assert [fa3_prefill_tiles(d, True) for d in (64, 96, 128, 192, 256)] == [
        (192, 160), (192, 128), (128, 128), (128, 96), (128, 64)]
    assert [fa3_prefill_tiles(d, False) for d in (64, 256)] == [(192, 128), (128, 80)]
    op = sliding_prefill_attention_op(batch=3, isl=256, heads=4, kv_heads=2, head_dim=256, window=128)
    expected = (73_728 / 49_280) / (102_400 / 65_792)
    assert tile_work_factor(op, "fa3") == pytest.approx(expected)
    assert window_tile_factor(op, "fa3") == pytest.approx(expected)
    assert tile_work_factor(sliding_prefill_attention_op(3, 128, 4, 2, 256, window=128), "fa3") == 1.0
    # MHA (group 1): 128-row blocks of 128 tokens: local keys 128 and 255 -> 128 + 256 = 384 x 128 = 49,152 pairs
    # for 24,640 useful; causal 128 + 256 (80-key blocks: 160 + 320) = 480 x 128 = 61,440 for 32,896
    mha = sliding_prefill_attention_op(batch=1, isl=256, heads=2, kv_heads=2, head_dim=256, window=128)
    assert tile_work_factor(mha, "fa3") == pytest.approx((49_152 / 24_640) / (61_440 / 32_896))


def test_local_attention_ops_carry_their_window():
    """Gemma 3's local layers (window 1024) hand the window to the kernels; global layers carry none."""
    from lvlmsim.estimate import default_graph_config
    from lvlmsim.ops.graph import llm_ops
    from lvlmsim.ops.op import SeqWork
    from lvlmsim.specs.registry import load_model

    m = load_model("gemma-3-27b")
    ops = {op.name: op for op in llm_ops(m, (SeqWork(new_tokens=4096, past_tokens=0, emits_token=True),),
                                        "prefill", default_graph_config(m, 1))}
    assert ops["llm.attention.sliding"].window_tokens == 1024 and ops["llm.attention"].window_tokens == 0
