"""The pieces of benchmarks/decode_tail_selection.py (issue 11) that decide what a candidate prices.

Oracles are hand-counted: padded tiles of each decode kernel (FA2 64 query rows x kBlockN keys, FA3 kBlockM x kBlockN,
TRT-LLM-gen 8 / 16 / 32 heads x 128 keys), bf16 K and V bytes, and the fixed L2 step (half resident at the capacity)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lvlmsim.calibrate import general, kernels
from lvlmsim.calibrate.fit import np_math
from lvlmsim.calibrate.measured import decode_attention_op, sliding_decode_attention_op
from lvlmsim.calibrate.model import FORM_VARIANTS
from lvlmsim.errors import SpecError
from lvlmsim.specs.registry import load_hardware


@pytest.fixture(scope="module")
def sel():
    """The script as a module; FORM_VARIANTS and the decode setup restored after the tests."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "decode_tail_selection.py"
    spec = importlib.util.spec_from_file_location("decode_tail_selection", path)
    mod = importlib.util.module_from_spec(spec)
    saved = dict(FORM_VARIANTS)
    spec.loader.exec_module(mod)
    yield mod
    mod.use("shipped")
    FORM_VARIANTS.clear()
    FORM_VARIANTS.update(saved)


def test_fa2_pads_the_swapped_group_to_64_rows_and_mha_to_one_block_per_head(sel):
    """Batch 2, 2 keys, head size 128 (kBlockN 128). GQA 8/2: 4 items x 64 rows x 128 keys x 128 x 4 FLOPs over
    4 x 2 x 8 x 2 x 128 = 1024x; MHA 8/8: 16 items x 64 x 128 x 128 x 4 over the same 16384 FLOPs = 4096x."""
    gqa = decode_attention_op(batch=2, step=1, heads=8, kv_heads=2, head_dim=128)
    mha = decode_attention_op(batch=2, step=1, heads=8, kv_heads=8, head_dim=128)
    assert sel.decode_tile_factor(gqa, "fa2") == 1024.0
    assert sel.decode_tile_factor(mha, "fa2") == 4096.0


def test_fa3_and_trtllm_pack_the_group_into_their_own_tiles(sel):
    """GQA 8/2 at head size 128: FA3's 128 x 128 tile 4 x 128 x 128 x 128 x 4 / 16384 = 2048x; TRT-LLM-gen's 8 heads x
    128 keys 128x; a group of 16 fills a 16-head tile (64x of 65536 FLOPs) and a group of 64 two 32-head tiles (64x)."""
    gqa = decode_attention_op(batch=2, step=1, heads=8, kv_heads=2, head_dim=128)
    assert sel.decode_tile_factor(gqa, "fa3") == 2048.0
    assert sel.decode_tile_factor(gqa, "bw") == 128.0
    assert sel.decode_tile_factor(decode_attention_op(batch=2, step=1, heads=32, kv_heads=2, head_dim=128),
                                  "bw") == 64.0
    assert sel.decode_tile_factor(decode_attention_op(batch=2, step=1, heads=64, kv_heads=1, head_dim=128),
                                  "bw") == 64.0


def test_tiles_leave_windowed_decodes_and_unknown_kernels_alone(sel):
    """A windowed decode keeps the shipped pricing (FA2's unsplit walk); a device of unknown kernel has no tiles."""
    windowed = sliding_decode_attention_op(batch=2, step=1023, heads=8, kv_heads=2, head_dim=128, window=512)
    assert sel.decode_tile_factor(windowed, "fa2") == 1.0
    assert sel.decode_tile_factor(decode_attention_op(batch=2, step=1, heads=8, kv_heads=2, head_dim=128), None) == 1.0


def test_kv_cache_bytes_count_k_and_v_in_bf16(sel):
    """Batch 2 x 2 keys (step 1) x 2 KV heads x 128 x 2 bytes x (K, V) = 4096 bytes; no query, output or new entry."""
    assert sel.kv_cache_bytes(decode_attention_op(batch=2, step=1, heads=8, kv_heads=2, head_dim=128)) == 4096.0


def test_resident_step_is_half_at_the_l2_capacity(sel):
    """Memory efficiency x (1 + boost x S): S = 1/2 with the KV at the L2 capacity, ~1 far inside it, ~0 far outside."""
    form = FORM_VARIANTS[sel.ResidentDecodeForm.name]
    hw = load_hardware("rtx-pro-6000-server")
    x = np.array(form.features(decode_attention_op(batch=2, step=1, heads=8, kv_heads=2, head_dim=128), hw))
    params = [q.init for q in form.core]
    params[[q.name for q in form.core].index("cache_boost")] = 0.5
    ems = []
    for kv_over_l2 in (1e-3, 1.0, 10.0):
        x[-1] = kv_over_l2
        ems.append(form.eff(np_math(), params, {}, tuple(x))[1])
    base = ems[2] / (1.0 + 0.5 / (1.0 + 10.0 ** sel.RESIDENT_STEEPNESS))
    assert ems[1] / base == pytest.approx(1.25)
    assert ems[0] / base == pytest.approx(1.5)
    assert ems[2] / base == pytest.approx(1.0, abs=1e-7)


def test_use_installs_each_candidate_and_restores_the_shipped_setup(sel):
    """`persistent` adds the flag (FA3 and TRT-LLM-gen devices only) and its c0 link; `shipped` puts everything back."""
    shipped = general.FAMILY_SETUPS["attn_decode"]
    sel.use("persistent")
    assert general.FAMILY_SETUPS["attn_decode"].links["c0"]["persistent_decode"] == 0.0
    flags = {h: general.device_features(load_hardware(h))["persistent_decode"]
             for h in ("a100-sxm-80gb", "h100-sxm", "b300", "rtx-pro-6000-server")}
    assert flags == {"a100-sxm-80gb": 0.0, "h100-sxm": 1.0, "b300": 1.0, "rtx-pro-6000-server": 0.0}
    sel.use("resident-onchip")
    assert general.FAMILY_SETUPS["attn_decode"].variant == sel.ResidentDecodeForm.name
    assert general.FAMILY_SETUPS["attn_decode"].links["cache_boost"] == {"log_onchip": 1.0}
    sel.use("tiles")
    assert kernels.window_tile_factor is not sel.SHIPPED_TILE_FACTOR
    sel.use("shipped")
    assert general.FAMILY_SETUPS["attn_decode"] is shipped
    assert "persistent_decode" not in general.device_features(load_hardware("h100-sxm"))
    assert kernels.window_tile_factor is sel.SHIPPED_TILE_FACTOR
    with pytest.raises(SpecError, match="candidate: 'walk'"):
        sel.use("walk")
