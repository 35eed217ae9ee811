"""Attention forms of the device-general model whose transfer runs through the datasheet (issues 11 and 16).

Oracles are hand-derived: the softmax exponential rate from SMs x clock x 16 (CUDA programming guide), 32 on
Blackwell Ultra; the exponentials of an attention op (one per score); the exponential share of the compute
time; FlashAttention-2's split-KV step (keys in blocks of 128 for head size 128, no split once batch x kv_heads
reaches 1.6 x SMs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lvlmsim.calibrate.general import FAMILY_SETUPS, device_features, fit_general_family, group_rows
from lvlmsim.calibrate.kernels import attention_kernel, regroups_gqa
from lvlmsim.calibrate.measured import (
    Measurement,
    decode_attention_op,
    encoder_attention_op,
    prefill_attention_op,
    sliding_decode_attention_op,
)
from lvlmsim.calibrate.model import (
    FORM_VARIANTS,
    PYMATH,
    REF_FLOP_PER_EXP,
    FamilyFit,
    FittedProfile,
    split_key_block,
)
from lvlmsim.ops.graph import softmax_exps
from lvlmsim.specs.registry import load_hardware

H100 = load_hardware("h100-sxm")
A100 = load_hardware("a100-sxm-80gb")
B300 = load_hardware("b300")
RTX = load_hardware("rtx-pro-6000-server")


def test_exp2_rate_from_sms_and_clock_or_the_stated_figure():
    assert H100.exp2_per_s() == pytest.approx(132 * 1980e6 * 16)
    assert RTX.exp2_per_s() == pytest.approx(188 * 2430e6 * 16)
    # Blackwell Ultra: twice the exp2 per SM and clock, on the shipping SKU's SMs and clock (not the full die's 10.7e12)
    assert B300.exp2_per_s() == pytest.approx(148 * 2032e6 * 32)
    assert load_hardware("gb300").exp2_per_s() == pytest.approx(152 * 2070e6 * 32)
    stated = B300.model_copy(update={"sfu_exp2_tera_per_s": 10.0})
    assert stated.exp2_per_s() == pytest.approx(10.0e12)  # a SKU's stated figure wins over SMs x clock x rate
    assert load_hardware("cpu-generic").exp2_per_s() is None
    assert REF_FLOP_PER_EXP == pytest.approx(989.4e12 / H100.exp2_per_s())


def test_softmax_exps_is_one_per_score():
    """Causal prefill of 1000 tokens, 2 sequences, 8 heads: 8 x 2 x 1000 x 1001 / 2 scores."""
    op = prefill_attention_op(2, 1000, 8, 2, 128)
    assert softmax_exps(op) == pytest.approx(8 * 2 * 1000 * 1001 / 2)
    enc = encoder_attention_op(3, 256, 16, 80)
    assert softmax_exps(enc) == pytest.approx(16 * 3 * 256 * 256)


def test_blackwell_flag_is_the_architecture_generation():
    assert device_features(B300)["blackwell"] == 1.0 and device_features(RTX)["blackwell"] == 1.0
    assert device_features(H100)["blackwell"] == 0.0 and device_features(A100)["blackwell"] == 0.0
    assert device_features(load_hardware("mi300x"))["blackwell"] == 0.0


def _profile(variant: str, params: dict[str, float], hw_id: str, kind: str) -> FittedProfile:
    form = FORM_VARIANTS[variant]
    fam = FamilyFit(kind=kind, params=params, hyper={k: v[0] for k, v in form.hyper_grid.items()}, variant=variant)
    return FittedProfile("t", hw_id, {kind: fam})


SOFTMAX_PARAMS = {"ec_max": 0.8, "q0": 1e-6, "pq": 1.0, "w0": 1e-6, "pw": 1.0, "exp_share": 0.5, "h1": 1e9,
                  "ph1": 2.0, "em_max": 0.8, "b0": 1.0, "pb": 1.0, "floor_s": 5e-6, "overlap": 0.0}


@pytest.mark.parametrize("hw", [H100, RTX, B300], ids=lambda h: h.id)
def test_softmax_form_adds_the_exponential_time_at_the_device_rate(hw):
    """With every saturation at 1: 1/ec = 1/0.8 + 0.5 x (exps / FLOPs) x (peak / exp2 rate)."""
    op = encoder_attention_op(4, 4096, 16, 64)
    prof = _profile("attention+softmax", SOFTMAX_PARAMS, hw.id, "attn_encoder")
    eff = prof.efficiency(op, hw)
    ratio = (1.0 / (4 * 64)) * hw.peak_flops("bf16") / hw.exp2_per_s()
    assert eff.compute == pytest.approx(1.0 / (1.0 / 0.8 + 0.5 * ratio), rel=1e-6)
    assert eff.floor_s == pytest.approx(5e-6)


def test_softmax_share_is_large_on_hopper_small_on_the_gddr_blackwell_part():
    """Head size 64: H100 does ~237 tensor FLOPs per exponential against 256 per score; RTX PRO 6000 ~64."""
    ratio = {hw.id: (1.0 / 256) * hw.peak_flops("bf16") / hw.exp2_per_s() for hw in (H100, RTX)}
    assert ratio["h100-sxm"] == pytest.approx(0.924, abs=0.001)
    assert ratio["rtx-pro-6000-server"] == pytest.approx(0.250, abs=0.001)


DECODE_PARAMS = {"ec_max": 0.5, "em_max": 0.9, "b0": 1.0, "pb": 1.0, "c0": 1e-9, "pc": 1.0, "g0": 1e-9, "pg": 1.0,
                 "h1": 1e9, "ph1": 2.0, "split_share": 0.4, "regroup_share": 0.5, "key_block_s": 2e-6, "floor_s": 1e-5,
                 "overlap": 0.0}


@pytest.mark.parametrize(("hw", "batch", "step", "split"), [
    (A100, 1, 7, False),  # 8 keys: one block of 128 keys
    (A100, 1, 1023, True),  # 8 blocks, 1 item against 1.6 x 108 SMs: FA2 splits and runs its combine kernel
    (A100, 2048, 1023, False),  # 2048 items fill the SMs: no split
    (H100, 1, 4095, False),  # FA3 splits, but launches its combine under PDL: no floor share
    (B300, 1, 4095, False),  # TRT-LLM-gen reduces its splits inside the kernel
])
def test_split_decode_adds_the_combine_kernel_to_the_floor(hw, batch, step, split):
    """8 query heads on one KV head (no FA2 regrouping copies, which need two KV heads): only the combine kernel adds
    to the floor, and only where the kernel runs one as a kernel of its own."""
    op = decode_attention_op(batch, step, 8, 1, 128)
    prof = _profile("decode+split", DECODE_PARAMS, hw.id, "attn_decode")
    floor = prof.efficiency(op, hw).floor_s
    assert floor == pytest.approx(1e-5 * (1.4 if split else 1.0), rel=1e-3)


@pytest.mark.parametrize(("hw", "batch", "heads", "kv_heads", "regroup"), [
    (A100, 4, 32, 8, True),  # FA2, GQA, batch and KV heads above one: the copies run
    (RTX, 4, 32, 8, True),
    (A100, 1, 32, 8, False),  # batch 1
    (A100, 4, 8, 8, False),  # MHA
    (A100, 4, 8, 1, False),  # one KV head
    (H100, 4, 32, 8, False),  # FA3 packs the group in the kernel
    (B300, 4, 32, 8, False),
])
def test_fa2_gqa_regrouping_adds_its_share_to_the_floor(hw, batch, heads, kv_heads, regroup):
    """3 keys (one block, no split): the floor is 1e-5 x (1 + 0.5) exactly where FA2 regroups the query heads."""
    op = decode_attention_op(batch, 2, heads, kv_heads, 128)
    assert regroups_gqa(op, attention_kernel(hw)) is regroup
    prof = _profile("decode+split", DECODE_PARAMS, hw.id, "attn_decode")
    assert prof.efficiency(op, hw).floor_s == pytest.approx(1e-5 * (1.5 if regroup else 1.0), rel=1e-6)


@pytest.mark.parametrize(("hw", "heads", "kv_heads", "walks"), [
    (A100, 8, 8, True),  # FA2, MHA: no GQA swap, so no split-KV; 8 CTAs walk 1024 key blocks each
    (RTX, 8, 8, True),
    (A100, 8, 1, False),  # FA2, GQA: swapped and split
    (H100, 8, 8, False),  # FA3 splits every decode
    (B300, 8, 8, False),  # TRT-LLM-gen spreads the keys over CTAs
])
def test_an_unsplit_decode_takes_at_least_its_walk_over_the_key_blocks(hw, heads, kv_heads, walks):
    """Batch 1, 131,072 keys of head size 128: 1024 blocks of 128 keys, the first held by the floor, so the memory time
    is at least 1023 x 2 us = 2.046 ms where FA2 does not split (MHA), and the bandwidth term alone elsewhere (the
    op's bytes at 0.9 of the datasheet bandwidth: every saturation at 1)."""
    op = decode_attention_op(1, 131071, heads, kv_heads, 128)
    assert op.shape[2] == 131072
    prof = _profile("decode+split", DECODE_PARAMS, hw.id, "attn_decode")
    eff = prof.efficiency(op, hw)
    memory_s = op.bytes / (hw.mem_bw_gbps * 1e9)
    assert memory_s / eff.memory == pytest.approx(1023 * 2e-6 if walks else memory_s / 0.9, rel=1e-6)
    assert eff.floor_s == pytest.approx(1e-5 * (1.4 if hw is A100 and not walks else 1.0), rel=1e-3)


def test_a_window_turns_the_regrouping_off():
    op = sliding_decode_attention_op(4, 2000, 32, 8, 128, window=1024)
    assert not regroups_gqa(op, "fa2")


def test_split_key_block_follows_flash_attention_2():
    assert (split_key_block(64), split_key_block(128), split_key_block(256)) == (256.0, 128.0, 64.0)


def test_split_form_runs_on_floats_and_arrays_alike():
    form = FORM_VARIANTS["decode+split"]
    core = [DECODE_PARAMS[q.name] for q in form.core]
    x = form.features(decode_attention_op(4, 4095, 32, 8, 128), RTX)
    scalar = form.eff(PYMATH, core, {}, x)
    from lvlmsim.calibrate.model import np_math

    vector = form.eff(np_math(), core, {}, tuple(np.array([v]) for v in x))
    assert [float(np.ravel(v)[0]) if hasattr(v, "__len__") else v for v in vector] == pytest.approx(list(scalar))


def test_family_setups_pick_their_forms_and_drop_borrowed_rows():
    """attn_decode fits the split form; attn_encoder the softmax form on its own rows only (no prefill rows)."""
    rng = np.random.default_rng(0)
    rows = []
    for b in (1, 4, 16, 64):
        for step in (15, 255, 2047):
            op = decode_attention_op(b, step, 32, 8, 128)
            rows.append(Measurement(op, 1e-5 + op.bytes / 2.5e12 * float(rng.uniform(0.9, 1.1)), "generation_attention",
                                    "synthetic"))
    per_dev = {"h100-sxm": (H100, rows), "a100-sxm-80gb": (A100, rows)}
    fam = fit_general_family("attn_decode", per_dev, rows_per_device=50, grid_rows=20, max_iter=5)
    assert fam.variant == "decode+split" and "split_share" in fam.coefs
    enc = [Measurement(encoder_attention_op(1, 1024, 16, 64), 1e-4, "encoder_attention", "s")]
    pre = [Measurement(prefill_attention_op(1, 1024, 16, 16, 64), 1e-4, "context_attention", "s")]
    grouped = group_rows({"h100-sxm": (H100, enc + pre)})
    assert not FAMILY_SETUPS["attn_encoder"].auxiliary
    assert len(grouped["attn_encoder"]["h100-sxm"][1]) == 1
    assert math.isclose(FAMILY_SETUPS["attn_decode"].ridge, 0.1)


def _work_selection(script: str = "attention_work_selection"):
    """benchmarks/<script>.py as a module; FORM_VARIANTS restored after its import adds its forms."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(script, path)
    mod = importlib.util.module_from_spec(spec)
    saved = dict(FORM_VARIANTS)
    try:
        spec.loader.exec_module(mod)
        forms = {k: FORM_VARIANTS[k] for k in set(FORM_VARIANTS) - set(saved)}
    finally:
        FORM_VARIANTS.clear()
        FORM_VARIANTS.update(saved)
    return mod, forms


def test_work_per_sm_counts_tokens_or_128_row_query_tiles_over_the_sms():
    """The nested check's per-SM work: 2 sequences x 16 heads x 300 tokens on H100's 132 SMs is 72.7 tokens or
    2 x 16 x ceil(300 / 128) = 96 tiles, 0.727 per SM; B300's 148 SMs hold the same work at 132/148 of that."""
    mod, forms = _work_selection()
    op = encoder_attention_op(2, 300, 16, 64)
    assert mod.parallel_work(op, H100, "sm_tokens") == pytest.approx(2 * 16 * 300 / 132)
    assert mod.parallel_work(op, H100, "sm_tiles") == pytest.approx(2 * 16 * 3 / 132)
    assert mod.parallel_work(op, B300, "sm_tiles") == pytest.approx(2 * 16 * 3 / 148)
    shipped = FORM_VARIANTS["attention+softmax"].features(op, H100)
    per_sm = forms["attention+softmax+sm_tokens"].features(op, H100)
    assert per_sm[1] == pytest.approx(2 * 16 * 300 / 132) and per_sm[:1] + per_sm[2:] == shipped[:1] + shipped[2:]
    assert set(forms) == {"attention+sm_tokens+l2", "attention+sm_tiles+l2", "attention+softmax+sm_tokens",
                          "attention+softmax+sm_tiles"}


def test_work_selection_candidates_change_only_their_named_links():
    """`+rate` links w0 to the SM's tensor rate with GEMM's prior 1/2, `-q0` drops q0's link, `clock` adds a floor
    in cycles (exponent -1) to the shipped links; the shipped candidate is FAMILY_SETUPS' own entry."""
    mod, _ = _work_selection()
    enc = mod.setup("encoder", "sm_tokens+rate-q0")
    assert enc.variant == "attention+softmax+sm_tokens" and "q0" not in enc.links
    assert enc.links["w0"] == {"log_sm_rate": 0.5} and enc.links["b0"] == FAMILY_SETUPS["attn_encoder"].links["b0"]
    clock = mod.setup("prefill", "clock")
    assert clock.links["floor_s"] == {**FAMILY_SETUPS["attn_prefill"].links["floor_s"], "log_clock": -1.0}
    assert mod.setup("prefill", "shipped") is FAMILY_SETUPS["attn_prefill"]


@pytest.mark.parametrize(("kernel", "tokens", "rows", "ctas"), [
    ("fa2", 300, 128, 2 * 16 * 3),  # FA2 (sm80 / sm120): 128-row query tiles
    ("fa3", 300, 192, 2 * 16 * 2),  # FA3 (sm90): 192 rows up to head size 96
    ("bw", 300, 256, 2 * 16 * 2),  # FA4 on sm100: two 128-row Q stages once the sequence exceeds one tile
    ("bw", 100, 128, 2 * 16 * 1),  # one Q stage for a sequence within one tile
    (None, 1, 128, 2 * 16 * 1),  # unknown kernel: FA2's tile; a 1-token sequence is one tile
])
def test_vit_ctas_are_one_per_query_tile_head_and_sequence(kernel, tokens, rows, ctas):
    from lvlmsim.calibrate.kernels import vit_ctas, vit_query_rows

    op = encoder_attention_op(2, tokens, 16, 64)
    assert vit_query_rows(kernel, 64, tokens) == rows
    assert vit_ctas(op, kernel) == ctas


def test_cta_form_grows_the_floor_with_ctas_per_sm_and_keeps_the_softmax_compute():
    """Batch 32 x 16 heads x 16 tokens on H100 (FA3, 132 SMs): 512 CTAs, floor 5 us x (1 + 0.1 x 512 / 132); the
    compute and memory efficiencies are SoftmaxAttentionForm's."""
    op = encoder_attention_op(32, 16, 16, 64)
    base = _profile("attention+softmax", SOFTMAX_PARAMS, H100.id, "attn_encoder").efficiency(op, H100)
    ctas = _profile("attention+softmax+ctas", {**SOFTMAX_PARAMS, "cta_share": 0.1}, H100.id,
                    "attn_encoder").efficiency(op, H100)
    assert ctas.floor_s == pytest.approx(5e-6 * (1.0 + 0.1 * 512 / 132))
    assert (ctas.compute, ctas.memory) == pytest.approx((base.compute, base.memory))
    one = _profile("attention+softmax+ctas", {**SOFTMAX_PARAMS, "cta_share": -0.3}, H100.id,
                   "attn_encoder").efficiency(op, H100)
    assert one.floor_s == pytest.approx(5e-6)  # a negative share adds nothing


def test_fa2_holds_two_vit_ctas_per_sm_and_its_floor_share_halves():
    """RTX PRO 6000 (FA2, 188 SMs, two 48 KB CTAs per SM): batch 32 x 16 heads x 16 tokens is 512 CTAs, 512 / (188 x
    2) per CTA slot; FA3 and FA4 hold one."""
    from lvlmsim.calibrate.kernels import vit_resident_ctas

    assert (vit_resident_ctas("fa2"), vit_resident_ctas("fa3"), vit_resident_ctas("bw"), vit_resident_ctas(None)) == (
        2, 1, 1, 2)
    op = encoder_attention_op(32, 16, 16, 64)
    eff = _profile("attention+softmax+ctas", {**SOFTMAX_PARAMS, "cta_share": 0.1}, RTX.id,
                   "attn_encoder").efficiency(op, RTX)
    assert eff.floor_s == pytest.approx(5e-6 * (1.0 + 0.1 * 512 / (188 * 2)))


def test_encoder_family_fits_the_per_cta_floor_share():
    assert FAMILY_SETUPS["attn_encoder"].variant == "attention+softmax+ctas"


@pytest.mark.parametrize(("kernel", "shape", "sms", "splits"), [
    # FA3, 1 x 1 head x 4096 tokens, head size 64: 22 query blocks of 192 rows and 22 key blocks of 192 on 132 SMs;
    # the bound is the fewest splits within 85% of the best wave efficiency (6: 132 / 132; 5 gives 110 / 132 = 0.83)
    # and the varlen scheduler takes ceil(22 / ceil(1.1 x 22 x 22 / 132)) = ceil(22 / 5) = 5
    ("fa3", (1, 4096, 1, 64), 132, 5),
    ("fa3", (1, 16384, 4, 64), 132, 1),  # 4 x 86 = 344 query blocks fill 80% of the SMs: no split
    ("fa3", (1000, 1024, 1, 64), 132, 1),  # beyond 992 sequences the varlen scheduler sets one split
    # FA4 on sm100: 16384 / 256 = 64 query blocks (two 128-row Q stages), 128 key blocks: min(160 // 64, 128, 128)
    ("bw", (1, 16384, 1, 64), 160, 2),
    ("bw", (1, 512, 1, 64), 160, 1),  # 4 key blocks of 128: never split
    ("fa2", (1, 16384, 1, 64), 188, 1),  # vLLM's varlen FA2 does not split outside a GQA decode
])
def test_vit_key_splits_follow_each_kernels_heuristic(kernel, shape, sms, splits):
    """benchmarks/encoder_split_selection.py's candidate: the key splits FA3's (hopper/heuristics.h plus the varlen
    scheduler) and FA4's (flash_attn/cute/interface.py) heuristics pick for a ViT attention, none for FA2."""
    mod, _ = _work_selection("encoder_split_selection")
    assert mod.kv_splits(encoder_attention_op(*shape), kernel, sms) == splits


def test_split_candidates_scale_work_and_ctas_by_the_splits():
    """`splits` multiplies the shipped form's work (tokens) and CTAs per SM by the splits (5 on H100 at 1 x 1 x 4096,
    head size 64) and leaves the rest; `fill` puts the split CTAs per SM slot in the work's place."""
    mod, forms = _work_selection("encoder_split_selection")
    op = encoder_attention_op(1, 4096, 1, 64)
    shipped = FORM_VARIANTS["attention+softmax+ctas"].features(op, H100)
    split = forms["attention+softmax+ctas+splits"].features(op, H100)
    fill = forms["attention+softmax+ctas+fill"].features(op, H100)
    assert split[1] == pytest.approx(5 * 4096) and split[-1] == pytest.approx(5 * 22 / 132)
    assert split[:1] + split[2:5] == shipped[:1] + shipped[2:5]
    assert fill[1] == pytest.approx(5 * 22 / 132) and "w0" not in mod.setup("fill").links
    assert mod.setup("ctas") == FAMILY_SETUPS["attn_encoder"]


@pytest.mark.parametrize("kernel, shape, ctas", [
    ("fa2", (256, 16, 40, 8, 64), 256 * 40 * 1),  # FA2's split kernel: 64 unpacked rows a block, every query head
    ("bw", (256, 16, 40, 8, 64), 256 * 40 * 1),  # TRT-LLM-gen: 256 unpacked rows a CTA
    ("fa3", (256, 16, 40, 8, 64), 256 * 8 * 1),  # FA3: 16 tokens x group 5 = 80 packed rows, one 192-row block
    ("fa2", (2, 300, 32, 8, 128), 2 * 32 * 5),  # ceil(300 / 64) = 5 blocks
    ("bw", (2, 300, 32, 8, 128), 2 * 32 * 2),  # ceil(300 / 256) = 2
    ("fa3", (2, 300, 32, 8, 128), 2 * 8 * 10),  # 300 x 4 = 1200 packed rows in 128-row blocks (head size 128)
    (None, (2, 300, 32, 8, 128), 2 * 32 * 5),  # unknown kernel: FA2's
    ("bw", (256, 1, 40, 8, 64), 256 * 40),  # a 1-token row counted as a context row (the default count)
    ("fa2", (256, 1, 40, 8, 64), 256 * 40),  # FA2 runs it as any prefill
])
def test_prefill_ctas_follow_each_kernels_query_blocks(kernel, shape, ctas):
    from lvlmsim.calibrate.kernels import prefill_ctas

    assert prefill_ctas(prefill_attention_op(*shape), kernel) == ctas


def test_prefill_ctas_can_count_blackwell_one_token_rows_on_the_generation_kernel():
    """The nested check's `ctas` candidate (not shipped): a 1-token row of 256 sequences x 40 heads (8 KV heads) runs
    TRT-LLM-gen's generation kernel, one CTA per (sequence, KV head): 256 x 8; longer rows keep the context count."""
    from lvlmsim.calibrate.kernels import prefill_ctas

    assert prefill_ctas(prefill_attention_op(256, 1, 40, 8, 64), "bw", decode_kernel_rows=True) == 256 * 8
    assert prefill_ctas(prefill_attention_op(256, 2, 40, 8, 64), "bw", decode_kernel_rows=True) == 256 * 40


PREFILL_PARAMS = {"ec_max": 0.6, "q0": 512.0, "pq": 1.0, "w0": 2e4, "pw": 1.0, "h0": 48.0, "ph": 1.0, "h1": 1024.0,
                  "ph1": 2.0, "em_max": 0.8, "b0": 1e6, "pb": 1.0, "cache_boost": 0.3, "cache_x": 0.2,
                  "cache_p": 2.0, "floor_s": 5e-6, "overlap": 0.0}


def test_prefill_cta_form_grows_the_floor_with_ctas_per_sm_and_keeps_the_rest():
    """Batch 256 x 16 tokens x 40 heads (8 KV heads) on B300 (TRT-LLM-gen, 148 SMs): 10240 CTAs, 69.19 per SM, so
    the floor is 5 us x (1 + 0.1 x 69.19) = 39.6 us; compute and memory efficiencies are the shipped attention+l2
    form's."""
    op = prefill_attention_op(256, 16, 40, 8, 64)
    base = _profile("attention+l2", PREFILL_PARAMS, B300.id, "attn_prefill").efficiency(op, B300)
    ctas = _profile("attention+ctas+l2", {**PREFILL_PARAMS, "cta_share": 0.1}, B300.id,
                    "attn_prefill").efficiency(op, B300)
    assert B300.sm_count == 148
    assert ctas.floor_s == pytest.approx(39.6e-6, rel=1e-3)
    assert (ctas.compute, ctas.memory) == pytest.approx((base.compute, base.memory))
    none = _profile("attention+ctas+l2", {**PREFILL_PARAMS, "cta_share": -0.2}, B300.id,
                    "attn_prefill").efficiency(op, B300)
    assert none.floor_s == pytest.approx(5e-6)  # a negative share adds nothing
