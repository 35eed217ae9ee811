"""The `moe` validate family: table rows become the graph's MoE ops; the device-general fit reports out of sample."""

from __future__ import annotations

import numpy as np
import pytest
from shared_data import MEASURED, needs_shared

from lvlmsim.calibrate.moe import (
    CACHE_P,
    FIRST_TACTIC_TILES,
    PARAM_NAMES,
    SM120_AMPERE_TILES,
    START,
    MoEData,
    _topk_round_trip,
    cache_factor,
    compare_moe,
    default_block_m,
    default_smem_ratio,
    expert_gated,
    fit_moe,
    fit_tactic,
    kernel_family,
    kernel_launches,
    load_fit,
    load_moe_table,
    nelder_mead,
    onchip_boost_scale,
    params_for,
    predict,
    routing_counts,
    runtime_launch_floor_s,
    table_routing,
    tile_share,
    tile_smem_bytes,
    triton_config,
    untuned_tile,
    warps_per_tile_v2,
)
from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import experts_touched
from lvlmsim.specs import load_hardware
from lvlmsim.specs.registry import profiles_dir


def _table(tmp_path, rows: list[str]):
    d = tmp_path / "gpu" / "moe" / "vllm" / "0.24.0"
    d.mkdir(parents=True)
    head = ("kernel_source,moe_dtype,num_tokens,hidden_size,inter_size,topk,num_experts,moe_tp_size,moe_ep_size,"
            "distribution,latency\n")
    (d / "moe_perf.csv").write_text(head + "".join(r + "\n" for r in rows))
    return tmp_path / "gpu"


def test_spread_routing_touches_min_of_experts_and_picks():
    # aiconfigurator's `balanced` tables deal the T*k picks out evenly: 4 tokens x top-8 of 128 -> 32 experts
    assert experts_touched(128, 8, 4, spread=True) == 32
    assert experts_touched(128, 8, 64, spread=True) == 128


def test_rows_become_graph_ops_hand_checked(tmp_path):
    # Qwen3-30B-A3B's MoE layer, 4 tokens, balanced, one GPU: 32 experts touched, 32 token-expert rows;
    # gate/up GEMM: 2*32*1536*2048 flops, weights 32 experts * 2048*1536 * 2 bytes; the fastest kernel is kept
    root = _table(tmp_path, ["a,bfloat16,4,2048,768,8,128,1,1,balanced,0.124",
                             "b,bfloat16,4,2048,768,8,128,1,1,balanced,0.130",
                             "c,w4a16_mxfp4,4,2048,768,8,128,1,1,balanced,0.1"])
    d = load_moe_table(root, load_hardware("h100-sxm"))
    assert len(d) == 1 and sum(d.skipped.values()) == 1
    assert d.measured_s[0] == pytest.approx(0.124e-3)
    assert d.flops_up[0] == pytest.approx(2 * 32 * 1536 * 2048)
    weights_up = 32 * 2048 * 1536 * 2
    assert d.bytes_up[0] == pytest.approx(weights_up + 32 * 2048 * 2 + 32 * 1536 * 2)
    assert d.rows_per_expert[0] == pytest.approx(1.0)
    assert d.padded_rows[0] == 32 * 128  # one row per touched expert still costs a whole 128-row M tile


def test_expert_parallel_rows_hold_a_share_of_experts(tmp_path):
    root = _table(tmp_path, ["a,bfloat16,64,2048,768,8,128,1,8,balanced,0.095"])
    d = load_moe_table(root, load_hardware("h100-sxm"))
    # 64 tokens x 8 picks / 8 GPUs = 64 rows here, over the 16 local experts, all touched
    assert d.flops_up[0] == pytest.approx(2 * 64 * 1536 * 2048)
    assert d.rows_per_expert[0] == pytest.approx(64 / 16)


def test_nelder_mead_finds_a_quadratic_minimum():
    x, conv = nelder_mead(lambda z: float(np.sum((z - np.array([1.0, -2.0])) ** 2)), np.zeros(2), iters=500)
    assert x == pytest.approx([1.0, -2.0], abs=1e-3)
    assert not conv.at_cap and 0 < conv.iterations < 500  # its own tolerance ended it


def test_nelder_mead_reports_a_search_stopped_at_its_cap():
    """Five iterations cannot shrink the simplex's value span of a quadratic 3 units away below 1e-7: at_cap."""
    _x, conv = nelder_mead(lambda z: float(np.sum((z - 3.0) ** 2)), np.zeros(2), iters=5)
    assert conv == (5, True)


def test_fit_recovers_parameters_it_generated(tmp_path):
    root = _table(tmp_path, [f"a,bfloat16,{t},2048,768,8,128,1,1,balanced,1.0" for t in (1, 4, 16, 256, 4096)])
    hw = load_hardware("h100-sxm")
    d = load_moe_table(root, hw)
    truth = [0.5, 0.4, 0.3, 0.6, 0.7, 2e-5]  # ec per dtype class x4, em, floor
    synthetic = MoEData(**{**d.__dict__, "measured_s": predict(truth, d, hw)})
    got = fit_moe([(synthetic, hw)])
    assert np.max(np.abs(predict(got, synthetic, hw) / synthetic.measured_s - 1)) < 0.05


def test_tied_block_fp8_fit_shares_the_per_tensor_ceiling(tmp_path):
    """With tie_block_fp8 one parameter prices both fp8 classes: rows generated with one shared fp8 ceiling (0.35)
    are recovered, and the returned block-fp8 ceiling equals the per-tensor one."""
    rows = [f"a,{dt},{t},2048,768,8,128,1,1,balanced,1.0" for dt in ("fp8", "fp8_block") for t in (1, 16, 4096)]
    hw = load_hardware("h100-sxm")
    d = load_moe_table(_table(tmp_path, rows), hw)
    truth = [0.5, 0.35, 0.35, 0.6, 0.7, 2e-5]
    synthetic = MoEData(**{**d.__dict__, "measured_s": predict(truth, d, hw)})
    got = fit_moe([(synthetic, hw)], tie_block_fp8=True)
    assert got[2] == got[1]
    assert np.max(np.abs(predict(got, synthetic, hw) / synthetic.measured_s - 1)) < 0.05


def test_kernel_launches_per_layer_call_counted_by_hand():
    """Each library's launches per layer call (kernel_launches' docstring): vLLM 0.14 Triton without a router, one
    align kernel at T*k < 1024 over <= 64 experts; vLLM 0.24 adds the router top-k; TRT-LLM-gen monolithic routes in
    one kernel to 256 tokens and fuses the activation except for block fp8; CUTLASS sorts in one kernel to 256
    tokens of top-k 1/2/4/6/8, else three."""
    assert kernel_launches("vllm_fused_moe", "bfloat16", 4, 2, 8) == 1 + 4  # align, GEMM, act, GEMM, sum
    assert kernel_launches("vllm_fused_moe", "bfloat16", 4, 8, 128) == 2 + 4  # align + count_and_sort
    assert kernel_launches("vllm_fp8moe_triton_tritonexperts", "fp8_block", 1, 8, 256) == 1 + 2 + 4 + 2
    mono = "vllm_unquantizedfusedmoe_flashinfer_trtllm_trtllmbf16experts"
    assert kernel_launches(mono, "bfloat16", 4, 8, 128) == 1 + 3  # routing, GEMM1 (+act), GEMM2, finalize
    assert kernel_launches(mono, "bfloat16", 1024, 8, 128) == 3 + 3
    block = "vllm_fp8moe_flashinfer_trtllm_trtllmfp8expertsmonolithic"
    assert kernel_launches(block, "fp8_block", 4, 8, 256) == 1 + 1 + 3 + 1  # quant, routing, 3, activation
    modular = "vllm_fp8moe_flashinfer_trtllm_trtllmfp8expertsmodular"
    assert kernel_launches(modular, "fp8_block", 4096, 8, 256) == 1 + 1 + 1 + 3 + 1  # + router, cluster routing
    cutlass = "vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts"
    assert kernel_launches(cutlass, "fp8", 16, 8, 128) == 1 + 1 + 1 + 5
    assert kernel_launches(cutlass, "fp8", 512, 8, 128) == 1 + 1 + 3 + 5
    assert kernel_launches(cutlass, "fp8", 16, 22, 512) == 1 + 1 + 3 + 5  # top-22: no fused sort


def test_per_launch_floor_fit_recovers_its_cost_and_the_runtime_mode_holds_it(tmp_path):
    """floor="launch": rows generated with 4 us per launch (TRT-LLM 4-6 launches, Triton 6-7) are recovered;
    floor="runtime" keeps floor_s at the runtime's 2.7 us per kernel; an unknown mode is a one-line error."""
    srcs = ("vllm_unquantizedfusedmoe_flashinfer_trtllm_trtllmbf16experts,bfloat16",
            "vllm_unquantizedfusedmoe_triton_tritonexperts,bfloat16")
    rows = [f"{s},{t},2048,768,8,128,1,1,balanced,1.0" for s in srcs for t in (1, 16, 512, 4096)]
    hw = load_hardware("h100-sxm")
    d = load_moe_table(_table(tmp_path, rows), hw, every_kernel=True)
    assert sorted(set(d.launches)) == [4, 6, 7]
    truth = [0.5, 0.4, 0.4, 0.4, 0.7, 4e-6]
    synthetic = MoEData(**{**d.__dict__, "measured_s": predict(truth, d, hw, floor="launch")})
    got = fit_moe([(synthetic, hw)], floor="launch")
    assert got[-1] == pytest.approx(4e-6, rel=0.05)
    assert fit_moe([(synthetic, hw)], floor="layer")[-1] > 10e-6  # one cost per layer call: 4-7 launches of 4 us
    assert fit_moe([(synthetic, hw)], floor="runtime")[-1] == pytest.approx(runtime_launch_floor_s()) == 2.7e-6
    with pytest.raises(SpecError, match="floor 'kernel' is not one of layer, launch, runtime"):
        fit_moe([(synthetic, hw)], floor="kernel")


def test_kernel_family_names_the_library_behind_each_table_source():
    assert kernel_family("vllm_fused_moe") == "triton"  # A100's vLLM 0.14 table
    assert kernel_family("vllm_unquantizedfusedmoe_triton_tritonexperts") == "triton"
    assert kernel_family("vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts") == "cutlass"
    assert kernel_family("vllm_fp8moe_flashinfer_trtllm_trtllmfp8expertsmonolithic") == "trtllm"
    assert kernel_family("somebody_elses_kernel") == "other"


def test_the_fastest_rows_kernel_family_is_recorded(tmp_path):
    root = _table(tmp_path, ["vllm_unquantizedfusedmoe_triton_tritonexperts,bfloat16,4,2048,768,8,128,1,1,balanced,0.2",
                             "vllm_unquantizedfusedmoe_flashinfer_cutlass_x,bfloat16,4,2048,768,8,128,1,1,balanced,0.1"])
    d = load_moe_table(root, load_hardware("h100-sxm"))
    assert list(d.kernel) == ["cutlass"] and d.measured_s[0] == pytest.approx(0.1e-3)
    assert list(d.source) == ["vllm_unquantizedfusedmoe_flashinfer_cutlass_x"]


def test_every_kernel_rows_are_reported_per_kernel_source(tmp_path):
    """--by-kernel scores both kernels of a configuration, each under its own kernel_source regime."""
    root = _table(tmp_path, ["vllm_unquantizedfusedmoe_triton_tritonexperts,bfloat16,4,2048,768,8,128,1,1,balanced,0.2",
                             "vllm_unquantizedfusedmoe_flashinfer_cutlass_x,bfloat16,4,2048,768,8,128,1,1,balanced,0.1"])
    hw = load_hardware("h100-sxm")
    d = load_moe_table(root, hw, every_kernel=True)
    assert sorted(d.kernel) == ["cutlass", "triton"] and sorted(d.measured_s) == pytest.approx([0.1e-3, 0.2e-3])
    rep = compare_moe(d, hw, list(START), "test")
    assert rep["regimes"]["kernel_source vllm_unquantizedfusedmoe_triton_tritonexperts"]["n"] == 1


def test_balanced_generator_load_by_hand():
    """aiconfigurator's balanced picks: 64 tokens, top-8 of 128 (stride 16): token i takes (i + 16 j) mod 128, so every
    expert gets 64*8/128 = 4 rows; the first of 8 EP ranks holds experts 0-15: 64 rows, 16 touched, 16 tiles."""
    assert table_routing(64, 128, 8, 1, "balanced") == (512.0, 128.0, 128 * 128.0)
    assert table_routing(64, 128, 8, 8, "balanced") == (64.0, 16.0, 16 * 128.0)
    # fewer tokens than the stride: token i takes floor(i*16/T + 16 j): 2 tokens -> 16 distinct experts
    assert table_routing(2, 128, 8, 1, "balanced")[:2] == (16.0, 16.0)


def test_power_law_load_is_uneven_and_times_the_busiest_rank():
    rows, touched, _ = table_routing(256, 128, 8, 1, "power_law_1.2")
    assert rows == pytest.approx(256 * 8) and touched < 128  # all picks land, on fewer experts than balanced
    rows_ep, _, _ = table_routing(256, 128, 8, 8, "power_law_1.2")
    assert rows_ep > 256 * 8 / 8  # the most loaded of 8 ranks carries more than an even share
    first = table_routing(256, 128, 8, 8, "power_law_1.2")
    table_routing.cache_clear()
    assert table_routing(256, 128, 8, 8, "power_law_1.2") == first  # seeded draws: the same load every run


def test_topk_round_trip_by_hand():
    """4 tokens, top-2 of 8 experts, counts [5, 1, 1, 1, 0, 0, 0, 0]: the generator deals experts busiest first into a
    [2, 4] grid, rows (0 0 0 0) and (0 1 2 3), so token 0 holds expert 0 twice. torch.topk on its logits keeps 0 once
    and takes the lowest-index zero-logit expert, 1, for the lost pick: counts [4, 2, 1, 1, 0, ...]."""
    counts = np.array([5.0, 1, 1, 1, 0, 0, 0, 0])
    ties = np.arange(8)
    assert _topk_round_trip(counts, 4, 2, ties).tolist() == [4, 2, 1, 1, 0, 0, 0, 0]
    # no expert past T rows: nothing to re-pick
    assert _topk_round_trip(np.array([4.0, 2, 1, 1, 0, 0, 0, 0]), 4, 2, ties).tolist() == [4, 2, 1, 1, 0, 0, 0, 0]


def test_round_trip_caps_each_expert_at_one_row_a_token():
    """After top-k no expert holds more rows than there are tokens, every row still lands, and the generator's counts
    as drawn can break that cap (Mixtral's top-2 of 8 at 4096 tokens, alpha 1.2)."""
    drawn = routing_counts(4096, 8, 2, 1, "power_law_1.2", round_trip=False)
    after = routing_counts(4096, 8, 2, 1, "power_law_1.2")
    assert drawn.max() > 4096 and after.max() <= 4096
    assert after.sum(axis=1).tolist() == drawn.sum(axis=1).tolist() == [4096 * 2] * len(drawn)


def test_one_token_power_law_picks_are_not_all_on_the_first_rank():
    """At one token of top-8 over 128 experts every power-law count rounds to zero and the generator's GPU sort leaves
    the 8 picks on arbitrary experts: under EP 16 (8 experts a rank) the busiest rank holds a few, not all 8 (which a
    stable sort of the zeros, experts 0-7, would put on rank 0)."""
    rows, touched, _ = table_routing(1, 128, 8, 16, "power_law_1.01")
    assert rows == touched and 1.0 <= rows < 4.0
    assert table_routing(1, 128, 8, 1, "power_law_1.01")[:2] == (8.0, 8.0)  # without EP every pick is local
    # the first vLLM collector's generator leaves ties in index order: experts 0-7, all on the timed rank
    assert table_routing(1, 128, 8, 16, "power_law_1.01", stable_ties=True)[:2] == (8.0, 8.0)


def test_the_first_collectors_rows_keep_their_one_token_picks_on_the_timed_rank(tmp_path):
    """A100's `vllm_fused_moe` rows (index-order ties) put one token's 8 picks on the timed GPU under EP 16; the
    vLLM 0.24 collector's rows spread them, so its timed GPU computes fewer rows."""
    hw = load_hardware("h100-sxm")
    row = "{},bfloat16,1,2048,768,8,128,1,16,power_law_1.01,0.05"
    old = load_moe_table(_table(tmp_path / "o", [row.format("vllm_fused_moe")]), hw)
    new = load_moe_table(_table(tmp_path / "n", [row.format("vllm_unquantizedfusedmoe_triton_tritonexperts")]), hw)
    assert old.pairs[0] == 8.0 and new.pairs[0] < 4.0


def test_nemotron_experts_are_priced_non_gated_except_on_the_all_gated_collector(tmp_path):
    """NemotronH's relu^2 experts: up GEMM h x inter (2688 x 1856), not h x 2*inter, and the activation reads one
    input; aiconfigurator's first vLLM collector (`vllm_fused_moe`) builds every expert gated whatever the model."""
    assert not expert_gated(2688, 1856, 6, 128, "vllm_unquantizedfusedmoe_triton_tritonexperts")
    assert expert_gated(2688, 1856, 6, 128, "vllm_fused_moe")
    assert expert_gated(2048, 768, 8, 128, "vllm_unquantizedfusedmoe_triton_tritonexperts")  # Qwen3: SwiGLU
    hw = load_hardware("h100-sxm")
    row = "{},bfloat16,1,2688,1856,6,128,1,1,balanced,0.1"
    relu2 = load_moe_table(_table(tmp_path / "n", [row.format("vllm_unquantizedfusedmoe_triton_tritonexperts")]), hw)
    gated = load_moe_table(_table(tmp_path / "g", [row.format("vllm_fused_moe")]), hw)
    assert gated.flops_up[0] == pytest.approx(2.0 * 6 * (2 * 1856) * 2688)  # 6 rows (one token, 6 experts)
    assert relu2.flops_up[0] == pytest.approx(gated.flops_up[0] / 2)
    assert relu2.flops_down[0] == gated.flops_down[0]


def test_triton_rows_under_ep_pay_for_every_token_expert_row(tmp_path):
    """vLLM's Triton kernel keeps all T*k rows and writes zeros for other ranks' rows; CUTLASS permutes local rows."""
    hw = load_hardware("h100-sxm")
    tri = load_moe_table(_table(tmp_path / "t", ["vllm_fused_moe,bfloat16,64,2048,768,8,128,1,8,balanced,0.1"]), hw)
    cut = load_moe_table(_table(tmp_path / "c", ["x_cutlass,bfloat16,64,2048,768,8,128,1,8,balanced,0.1"]), hw)
    assert tri.flops_up[0] == cut.flops_up[0]
    # activation over 512 - 64 extra rows (read 2x768, write 768) and zeros for 448 rows x (2*768 + 2048), bf16
    extra = 448 * 768 * 3 * 2 + 448 * (2 * 768 + 2048) * 2 + (448 / 64) * 64 * 2048 * 2  # + combine reads
    assert tri.ew_bytes[0] - cut.ew_bytes[0] == pytest.approx(extra)


def test_a_quantized_kernel_slower_than_bf16_is_reported_but_not_fitted(tmp_path):
    rows = [f"k_cutlass,{dt},{t},2048,768,8,128,1,1,balanced,{lat * t}" for t in (16, 256)
            for dt, lat in (("bfloat16", 0.01), ("fp8", 0.02), ("fp8_block", 0.006))]
    d = load_moe_table(_table(tmp_path, rows), load_hardware("h100-sxm"))
    excluded = {str(t) for t, x in zip(d.table_dtype, d.fit_excluded, strict=True) if x}
    assert excluded == {"fp8"}
    rep = compare_moe(d, load_hardware("h100-sxm"), list(START), "test")
    assert rep["n"] == 6 and "kernel cutlass (slower than bf16, not fitted)" in rep["regimes"]


def test_untuned_first_tactic_tile_by_library_arch_and_dtype():
    """FlashInfer's CUTLASS MoE runs its first sm_90 tactic, 128 token rows x 16 weight columns, for per-tensor fp8
    only; other dtypes, libraries and archs carry no tile fact."""
    h100, b300, rtx = (load_hardware(h) for h in ("h100-sxm", "b300", "rtx-pro-6000-server"))
    assert untuned_tile("cutlass", h100, "fp8") == (128, 16)
    assert untuned_tile("cutlass", h100, "fp8_block") == (0, 128)  # DeepGEMM's per-call M tile (0: adaptive)
    assert untuned_tile("cutlass", h100, "fp8_block", FIRST_TACTIC_TILES) is None
    assert untuned_tile("cutlass", h100, "bfloat16") is None
    assert untuned_tile("triton", h100, "fp8") is None
    assert untuned_tile("cutlass", b300, "fp8") is None and untuned_tile("cutlass", rtx, "fp8") is None
    # the tried sm_120 table: bf16 and fp8 take the Ampere-style first tile, 32 x 128 (a 0.4 share); NVFP4 does not
    assert untuned_tile("cutlass", rtx, "bfloat16", SM120_AMPERE_TILES) == (32, 128)
    assert untuned_tile("cutlass", rtx, "nvfp4", SM120_AMPERE_TILES) is None
    assert untuned_tile("cutlass", h100, "fp8", SM120_AMPERE_TILES) == (128, 16)
    assert tile_share((32, 128)) == pytest.approx((2 * 32 * 128 / 160) / 128) == pytest.approx(0.4)


def test_tile_share_is_the_operand_intensity_ratio_by_hand():
    """2MN/(M+N): 128x16 -> 4096/144 = 28.44 FLOP/B, 128x128 -> 128; a tile as wide as the reference keeps 1."""
    assert tile_share((128, 16)) == pytest.approx((2 * 128 * 16 / 144) / 128)
    assert tile_share((128, 16)) == pytest.approx(2 / 9)
    assert tile_share((128, 128)) == 1.0 and tile_share((128, 256)) == 1.0


def test_untuned_tactic_rows_are_priced_on_their_tile_and_fitted_only_when_asked(tmp_path):
    """H100's per-tensor fp8 CUTLASS rows: at 16384 tokens (both GEMMs compute-bound) the GEMMs cost 4.5x
    (1 / tile_share) under 'priced' what they cost under 'off'; 'priced' keeps them out of the fit (slower than bf16),
    'fitted' fits them."""
    rows = [f"k_cutlass,{dt},{t},2048,768,8,128,1,1,balanced,{lat * t}" for t in (16, 16384)
            for dt, lat in (("bfloat16", 0.01), ("fp8", 0.02))]
    hw = load_hardware("h100-sxm")
    root = _table(tmp_path, rows)
    off, priced, fitted = (load_moe_table(root, hw, tactic=m) for m in ("off", "priced", "fitted"))
    fp8 = priced.table_dtype == "fp8"
    assert priced.tile_share[fp8] == pytest.approx([2 / 9] * 2) and (priced.tile_share[~fp8] == 1.0).all()
    assert (off.tile_share == 1.0).all()
    assert priced.fit_excluded[fp8].all() and off.fit_excluded[fp8].all() and not fitted.fit_excluded.any()
    params = [0.45, 0.42, 0.3, 0.55, 0.8, 0.0]  # no fixed cost: the GEMMs and the elementwise bytes only
    big = np.flatnonzero(fp8 & (priced.tokens == 16384))
    gemm = {}
    for name, d in (("off", off), ("priced", priced)):
        row = d.take(big)
        ew_s = row.ew_bytes[0] / (0.8 * hw.mem_bw_bytes_per_s)
        gemm[name] = predict(params, row, hw)[0] - ew_s
    assert gemm["priced"] / gemm["off"] == pytest.approx(4.5, rel=1e-6)
    with pytest.raises(SpecError, match="tactic 'tuned' is not one of off, priced, fitted"):
        load_moe_table(root, hw, tactic="tuned")


def test_block_fp8_rows_pad_to_the_per_call_tile(tmp_path):
    """H100's block-fp8 CUTLASS rows pad to the adaptive M tile DeepGEMM's dispatch stands for, at a full share (the
    first-tactic table alone keeps 128): 16 balanced tokens of top-8 over 128 experts put one row on each expert,
    128 x 16 padded rows, not 128 x 128."""
    root = _table(tmp_path, ["k_cutlass,fp8_block,16,2048,768,8,128,1,1,balanced,0.2"])
    hw = load_hardware("h100-sxm")
    first = load_moe_table(root, hw, untuned_tiles=FIRST_TACTIC_TILES)
    shipped = load_moe_table(root, hw)
    assert first.padded_rows[0] == 128 * 128 and shipped.padded_rows[0] == 128 * 16
    assert first.tile_share[0] == 1.0 and shipped.tile_share[0] == 1.0


def test_fit_file_says_how_it_priced_untuned_tactic_rows():
    """A fit file written before the tile fact priced those rows on the reference tile; a bad mode is named."""
    assert fit_tactic({}) == "off" and fit_tactic({"tactic": "priced"}) == "priced"
    assert fit_tactic(load_fit(profiles_dir() / "general" / "moe.json")) == "priced"
    with pytest.raises(SpecError, match="tactic 'best' is not one of off, priced, fitted"):
        fit_tactic({"tactic": "best"})


def test_report_has_regimes_and_the_roofline_baseline(tmp_path):
    root = _table(tmp_path, ["a,bfloat16,4,2048,768,8,128,1,1,balanced,0.124",
                             "a,fp8_block,8192,2048,768,8,128,1,8,power_law_1.2,0.75"])
    hw = load_hardware("h100-sxm")
    rep = compare_moe(load_moe_table(root, hw), hw, list(START), "test")
    assert rep["n"] == 2 and rep["roofline_median_abs_pct_err"] is not None
    assert {"tokens 1-16", "tokens >4096", "ep 1", "ep 2-8", "dtype bfloat16", "dtype fp8_block"} <= set(rep["regimes"])


def test_triton_rows_of_an_unaligned_expert_width_are_their_own_regime(tmp_path):
    """Triton's 16-divisibility specialisation: 704 / 8 = 88 per GPU is unaligned, 768 / 8 = 96 is aligned, and a
    CUTLASS row of the unaligned width is not flagged (the regime is a Triton fact)."""
    rows = ["vllm_fused_moe,bfloat16,64,2816,704,8,128,8,1,balanced,0.1",
            "vllm_fused_moe,bfloat16,64,2048,768,8,128,8,1,balanced,0.1",
            "x_cutlass,fp8,64,2816,704,8,128,8,1,balanced,0.1"]
    hw = load_hardware("h100-sxm")
    d = load_moe_table(_table(tmp_path, rows), hw)
    assert sorted(d.inter_local.tolist()) == [88, 88, 96]
    rep = compare_moe(d, hw, list(START), "test")
    assert rep["regimes"]["triton, inter/GPU % 16 != 0"]["n"] == 1
    assert rep["regimes"]["aligned or not triton"]["n"] == 2


TRITON_SRC = "vllm_unquantizedfusedmoe_triton_tritonexperts"


def test_vllm_ships_tuned_triton_configs_per_gpu_experts_width_and_dtype():
    """calibration/vllm_fused_moe_configs.yaml: Mixtral's E=8 at N=7168 (TP 2) has an H100 file, N=14336 (TP 1)
    none; the block-fp8 list is its own; a GPU the listing does not name runs the default config."""
    assert triton_config("h100-sxm", 8, 7168, "bfloat16") == "tuned"
    assert triton_config("h100-sxm", 8, 14336, "bfloat16") == "default"
    assert triton_config("h100-sxm", 256, 128, "fp8_block") == "tuned"
    assert triton_config("h100-sxm", 8, 7168, "fp8_block") == "default"
    assert triton_config("h100-sxm", 8, 7168, "fp8") == "default"  # per-tensor fp8: no file listed
    assert triton_config("a100-sxm-80gb", 128, 192, "bfloat16") == "tuned"
    assert triton_config("b300", 8, 7168, "bfloat16") == "default"


def test_default_triton_config_tile_follows_get_default_config():
    assert default_block_m(128, 128, "bfloat16") == 16  # M <= E
    assert default_block_m(129, 128, "bfloat16") == 64
    assert default_block_m(1, 128, "fp8_block") == 64


def test_triton_rows_record_their_vllm_config_and_only_the_tried_model_prices_it(tmp_path):
    """Mixtral's shape on H100 at TP 1 (N 14336: no file) and TP 2 (N 7168: tuned); a CUTLASS row is not Triton.
    The shipped model prices both Triton rows alike; default_tiles pads the default row to 64-row tiles (16 tokens
    x top-2 = 32 rows over 8 experts, M 16 > E 8) and a seventh parameter slows its GEMMs."""
    rows = [f"{TRITON_SRC},bfloat16,16,4096,14336,2,8,1,1,balanced,0.5",
            f"{TRITON_SRC},bfloat16,16,4096,14336,2,8,2,1,balanced,0.3",
            "x_flashinfer_cutlass_y,bfloat16,16,4096,768,2,8,1,1,balanced,0.1"]
    hw = load_hardware("h100-sxm")
    d = load_moe_table(_table(tmp_path, rows), hw)
    by_width = dict(zip(d.inter_local.tolist(), d.triton_default.tolist(), strict=True))
    assert by_width == {14336: True, 7168: False, 768: False}
    assert d.padded_rows.tolist() == [8 * 128] * 3  # 4 rows per expert, one TILE_M tile each
    rep = compare_moe(d, hw, list(START), "test")
    assert rep["regimes"]["triton, vLLM default config"]["n"] == 1
    assert rep["regimes"]["triton, vLLM tuned config"]["n"] == 1 and rep["regimes"]["not triton"]["n"] == 1
    tiles = load_moe_table(_table(tmp_path / "t", rows), hw, default_tiles=True)
    assert dict(zip(tiles.inter_local.tolist(), tiles.padded_rows.tolist(), strict=True)) == {
        14336: 8 * 64, 7168: 8 * 128, 768: 8 * 128}
    base, slowed = predict(list(START), d, hw), predict([*START, 0.5], d, hw)
    dflt = d.triton_default
    assert slowed[~dflt] == pytest.approx(base[~dflt])
    no_gemm = MoEData(**{**d.__dict__, **{k: 0 * getattr(d, k) for k in ("flops_up", "bytes_up", "flops_down",
                                                                         "bytes_down")}})
    gemm_s = base[dflt] - predict(list(START), no_gemm, hw)[dflt]
    assert slowed[dflt] - base[dflt] == pytest.approx(gemm_s)  # GEMMs at half the efficiency: twice the time


def test_triton_warp_grid_and_tile_shared_memory_bytes_by_hand():
    """Triton's warpsPerTileV2 puts 4 warps on a 64 x 64 tile as 2 x 2 and on 16 x 32 as 1 x 4. One K step of
    64 x 64 x 32 bf16 copies (64 + 64) * 32 * 2 = 8192 bytes in; mma.sync reads each warp's 32 rows and 32 columns,
    4 * (32 + 32) * 32 * 2 = 16384 (every element twice); one wgmma reads each once, 8192."""
    assert warps_per_tile_v2(64, 64, 4) == (2, 2)
    assert warps_per_tile_v2(16, 32, 4) == (1, 4)
    assert warps_per_tile_v2(128, 128, 4) == (2, 2)
    assert tile_smem_bytes((64, 64, 32), 4, 2.0, "mma_sync") == 8192 + 16384
    assert tile_smem_bytes((64, 64, 32), 4, 2.0, "wgmma") == 8192 + 8192
    assert tile_smem_bytes((16, 32, 64), 4, 2.0, "wgmma") == tile_smem_bytes((16, 32, 64), 4, 2.0, "mma_sync")


def test_default_tile_shared_memory_ratio_per_architecture():
    """64 x 64 x 32 bf16: 24576 bytes per 262144 FLOPs; A100 2048 FLOP and 128 bytes per SM clock -> 1.5; H100
    (wgmma, 16384 bytes) at 4096 FLOP per clock -> 2.0; 16 x 32 x 64 on A100 (1 x 4 warps: 18432 bytes per 65536
    FLOPs) -> 4.5. A compute capability without a listed MMA path (sm_100) is not bounded."""
    assert default_smem_ratio("8.0", 8192, 128, "bfloat16") == pytest.approx(1.5)
    assert default_smem_ratio("9.0", 8192, 128, "bfloat16") == pytest.approx(2.0)
    assert default_smem_ratio("8.0", 128, 128, "bfloat16") == pytest.approx(4.5)  # M <= E: the small tile
    assert default_smem_ratio("10.0", 8192, 128, "bfloat16") == 1.0


def test_smem_modes_bound_only_default_config_rows(tmp_path):
    """Under 'mult' a default-config row's compute-bound GEMMs take ratio times longer; tuned rows never move; the
    shipped 'off' is the plain model; an unknown mode is a clear error."""
    rows = [f"{TRITON_SRC},bfloat16,4096,4096,14336,2,8,1,1,balanced,5.0",
            f"{TRITON_SRC},bfloat16,4096,4096,14336,2,8,2,1,balanced,3.0"]
    hw = load_hardware("a100-sxm-80gb")
    d = load_moe_table(_table(tmp_path, rows), hw, default_tiles=True)
    assert d.smem_ratio.tolist() == pytest.approx([1.5, 1.0])  # 14336 wide: no A100 file; 7168: tuned
    off, mult = predict(list(START), d, hw), predict(list(START), d, hw, smem="mult")
    assert mult[1] == pytest.approx(off[1])
    no_gemm = MoEData(**{**d.__dict__, **{k: 0 * getattr(d, k) for k in ("flops_up", "bytes_up", "flops_down",
                                                                         "bytes_down")}})
    fixed = predict(list(START), no_gemm, hw)[0]
    assert mult[0] - fixed == pytest.approx(1.5 * (off[0] - fixed))  # 1024 rows per expert: compute-bound
    with pytest.raises(SpecError, match="smem mode"):
        predict(list(START), d, hw, smem="fast")


def test_l2_cache_boost_follows_on_chip_over_dram_bandwidth_by_hand():
    """The residency boost scales with SMs x clock / DRAM bandwidth against H100 SXM's (132 x 1980 / 3350): 1 on
    H100, (188 x 2430 / 1597) / (132 x 1980 / 3350) = 3.67 on RTX PRO 6000; at bytes = cache_x x L2 half the boost is
    left, and no L2 on the datasheet means no boost."""
    h100, rtx = load_hardware("h100-sxm"), load_hardware("rtx-pro-6000-server")
    assert onchip_boost_scale(h100) == pytest.approx(1.0)
    assert onchip_boost_scale(rtx) == pytest.approx((188 * 2430 / 1597) / (132 * 1980 / 3350))
    assert CACHE_P == 2.0
    half = 0.2 * 128e6  # cache_x x RTX's 128 MB
    got = cache_factor(np.array([half, 1e12]), rtx, 0.3, 0.2)
    assert got[0] == pytest.approx(1 + 0.3 * onchip_boost_scale(rtx) / 2)
    assert got[1] == pytest.approx(1.0, abs=1e-6)
    assert cache_factor(np.array([half]), h100.model_copy(update={"l2_cache_mb": 0}), 0.3, 0.2)[0] == 1.0


def test_l2_cache_mode_speeds_up_only_the_memory_terms_and_fits_two_more_parameters(tmp_path):
    """Under 'l2' a memory-bound row's memory time is divided by cache_factor of its bytes; the fit returns the two
    CACHE_PARAM_NAMES after PARAM_NAMES and recovers rows it generated; an unknown mode is a clear error."""
    root = _table(tmp_path, [f"x_cutlass,bfloat16,{t},2048,768,8,128,1,1,balanced,1.0" for t in (1, 16, 256, 4096)])
    hw = load_hardware("rtx-pro-6000-server")
    d = load_moe_table(root, hw)
    p = [*START[:-1], 0.0]  # no fixed cost: a one-token row is all memory time
    off = predict(p, d, hw)
    on = predict([*p, 0.3, 0.2], d, hw, cache="l2")
    nbytes = d.bytes_up[0] + d.bytes_down[0] + d.ew_bytes[0]
    assert on[0] == pytest.approx(off[0] / cache_factor(np.array([nbytes]), hw, 0.3, 0.2)[0])
    truth = [0.5, 0.4, 0.3, 0.6, 0.7, 2e-5, 0.4, 0.1]
    synthetic = MoEData(**{**d.__dict__, "measured_s": predict(truth, d, hw, cache="l2")})
    got = fit_moe([(synthetic, hw)], cache="l2")
    assert len(got) == len(PARAM_NAMES) + 2
    assert np.max(np.abs(predict(got, synthetic, hw, cache="l2") / synthetic.measured_s - 1)) < 0.05
    with pytest.raises(SpecError, match="cache mode"):
        predict(p, d, hw, cache="l3")


def test_the_default_config_parameter_is_left_alone_without_default_config_rows(tmp_path):
    root = _table(tmp_path, [f"x_cutlass,bfloat16,{t},2048,768,8,128,1,1,balanced,{0.05 + t * 1e-4}"
                             for t in (1, 16, 256)])
    hw = load_hardware("h100-sxm")
    got = fit_moe([(load_moe_table(root, hw), hw)], triton_default=True)
    assert len(got) == len(PARAM_NAMES) + 1 and got[-1] == pytest.approx(1.0)


def test_bad_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="moe_perf.csv"):
        load_moe_table(tmp_path, load_hardware("h100-sxm"))


def test_shipped_fit_reports_each_device_with_the_fold_that_held_it_out():
    doc = load_fit(profiles_dir() / "general" / "moe.json")
    params, source = params_for(doc, "h100-sxm")
    assert len(params) == len(PARAM_NAMES) and "h100-sxm" not in source
    assert "a100-sxm-80gb" in source
    _, src_other = params_for(doc, "h200-sxm")  # not measured: the all-device fit
    assert "h100-sxm" in src_other


@needs_shared
def test_validate_reports_moe_on_the_shared_h100_table():
    from lvlmsim.calibrate.moe import moe_report

    rep = moe_report(load_hardware("h100-sxm"), MEASURED / "aiconfigurator/data/h100_sxm", profiles_dir())
    assert rep is not None and rep["n"] > 40000
    assert rep["median_abs_pct_err"] < rep["roofline_median_abs_pct_err"]


def test_validate_counts_the_moe_table_in_its_header_and_skips(tmp_path):
    """A gemm table and a moe table: the header's rows and tables include the moe ones (1 row, 1 file) and the moe
    row skipped for its dtype is in the moe cell's `skipped`, as the text prints it."""
    from lvlmsim.calibrate.validate import validate
    from lvlmsim.cost.profile import DEFAULT_PROFILE

    root = _table(tmp_path, ["a,bfloat16,4,2048,768,8,128,1,1,balanced,0.124",
                             "c,w4a16_mxfp4,4,2048,768,8,128,1,1,balanced,0.1"])
    g = root / "gemm" / "vllm" / "0.1"
    g.mkdir(parents=True)
    (g / "gemm_perf.csv").write_text("kernel_source,gemm_dtype,m,n,k,latency\nlin,bfloat16,128,4096,4096,0.02\n")
    report, info = validate(load_hardware("h100-sxm"), root, DEFAULT_PROFILE)
    assert report["moe"]["n"] == 1 and report["gemm"]["n"] == 1
    assert info["rows"] == 2 and sorted(info["files"]) == ["gemm/vllm/0.1/gemm_perf.csv",
                                                          "moe/vllm/0.24.0/moe_perf.csv"]
    assert sum(report["moe"]["skipped"].values()) == 1 and report["gemm"]["skipped"] == {}
