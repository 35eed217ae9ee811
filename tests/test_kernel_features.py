"""FA2's windowed decode re-reads K/V per query head (flash_api.cpp turns GQA packing off with a window): the
kernel feature prices it on FA2 devices only, without fitting anything."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lvlmsim.calibrate.kernels import KernelFeatureProfile, attention_kernel, gqa_reread_factor
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


def test_windowed_decode_on_fa2_moves_the_group_times_the_kv_bytes_by_hand():
    """Flat derate (0.8 of bandwidth): 64 sequences x 1024 keys x 8 KV heads x 128 x 2 (K, V) x 2 B = 268 MB read
    4 times at 0.8 x 1792 GB/s is 0.75 ms, against 0.19 ms with the group packed."""
    hw = load_hardware("rtx-pro-6000-server")
    op = sliding_decode_attention_op(batch=64, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    packed = CostModel(hw, DEFAULT_PROFILE).cost(op)
    unpacked = CostModel(hw, KernelFeatureProfile(DEFAULT_PROFILE, "fa2")).cost(op)
    assert unpacked.memory_s == pytest.approx(4 * packed.memory_s)
    assert unpacked.memory_s == pytest.approx(4 * op.bytes / (0.8 * hw.mem_bw_bytes_per_s))
    assert unpacked.source == packed.source


def test_auto_applies_the_feature_on_fa2_devices_only():
    op = sliding_decode_attention_op(batch=64, step=4000, heads=32, kv_heads=8, head_dim=128, window=1024)
    rtx, h100 = load_hardware("rtx-pro-6000-server"), load_hardware("h100-sxm")
    assert isinstance(load_profile_for(rtx, "auto"), KernelFeatureProfile)
    assert not isinstance(load_profile_for(h100, "auto"), KernelFeatureProfile)
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
