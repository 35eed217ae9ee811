"""Quantised GEMM bytes and the wave-quantised GEMM form of the device-general model (issue 11).

Oracles are hand-derived: NVFP4 stores one 1-byte FP8 scale per 16 four-bit values (0.5 + 1/16 bytes per value); a
W8A8 GEMM's kernel reads the fp8 copy of x (1 byte per value); a GEMM whose 128 x 128 tiles number fewer than the SMs
keeps tiles / SMs of the machine busy, and one more tile than SMs takes a second wave; cuBLAS's split-K reduction
kernel adds its share of the floor to a GEMM with few tiles and a long K, half of it at the threshold K or at as many
tiles as SMs, none to a short K or a full machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lvlmsim.calibrate.general import FAMILY_SETUPS
from lvlmsim.calibrate.measured import gemm_op
from lvlmsim.calibrate.model import FORM_VARIANTS, PYMATH, GemmForm, TileBoundGemmForm, WaveGemmForm, np_math
from lvlmsim.specs.registry import load_hardware
from tests.bench_modules import load_bench

RTX = load_hardware("rtx-pro-6000-server")  # 188 SMs
H100 = load_hardware("h100-sxm")  # 132 SMs
TILES = {"tile_m": 128.0, "tile_n": 128.0}


def _params(form) -> tuple[float, ...]:
    return tuple(q.init for q in form.core)


def test_nvfp4_gemm_reads_its_block_scales_and_the_fp4_activation():
    """m=64, n=4096, k=8192 NVFP4: weights 4096 x 8192 x (0.5 + 1/16) B, x 64 x 8192 x (0.5 + 1/16) B, y bf16."""
    op = gemm_op(64, 4096, 8192, "fp4")
    assert op.weight_bytes == pytest.approx(4096 * 8192 * 0.5625)
    assert op.bytes_read == pytest.approx(4096 * 8192 * 0.5625 + 64 * 8192 * 0.5625)
    assert op.bytes_written == pytest.approx(64 * 4096 * 2)


def test_fp8_gemm_reads_the_fp8_activation_and_bf16_is_unchanged():
    fp8, bf16 = gemm_op(64, 4096, 8192, "fp8"), gemm_op(64, 4096, 8192, "bf16")
    assert fp8.bytes_read == pytest.approx(4096 * 8192 * 1 + 64 * 8192 * 1)
    assert bf16.bytes_read == pytest.approx(4096 * 8192 * 2 + 64 * 8192 * 2)
    assert fp8.bytes_written == bf16.bytes_written == pytest.approx(64 * 4096 * 2)


def _wave_ratio(m: int, n: int, hw) -> float:
    """Compute efficiency of the wave form over the plain form's, same parameters and tiles."""
    op = gemm_op(m, n, 4096, "fp8")
    wave, plain = WaveGemmForm(), GemmForm()
    ec_w = wave.eff(PYMATH, _params(wave), TILES, wave.features(op, hw))[0]
    ec_p = plain.eff(PYMATH, _params(plain), TILES, plain.features(op, hw))[0]
    return ec_w / ec_p


def test_one_tile_keeps_one_sm_of_the_datasheet_count_busy():
    """A 16 x 128 GEMM is one 128 x 128 tile: 1/188 of RTX PRO 6000's SMs, 1/132 of H100's."""
    assert _wave_ratio(16, 128, RTX) == pytest.approx(1 / 188)
    assert _wave_ratio(16, 128, H100) == pytest.approx(1 / 132)


def test_one_tile_past_a_full_wave_takes_a_second_wave():
    """128 x (132 x 128) is 132 tiles, one full wave on H100; 133 tiles take two waves: 133 / 264."""
    assert _wave_ratio(128, 132 * 128, H100) == pytest.approx(1.0)
    assert _wave_ratio(128, 133 * 128, H100) == pytest.approx(133 / 264)


def test_unit_tiles_count_every_output_value_as_a_tile():
    form = WaveGemmForm()
    op = gemm_op(16, 128, 4096, "fp8")
    x = form.features(op, H100)
    ec_w = form.eff(PYMATH, _params(form), {"tile_m": 1.0, "tile_n": 1.0}, x)[0]
    ec_p = GemmForm().eff(PYMATH, _params(form), {"tile_m": 1.0, "tile_n": 1.0}, x[:-1])[0]
    assert ec_w == pytest.approx(ec_p * 16 * 128 / (math.ceil(16 * 128 / 132) * 132))


def test_wave_form_vectorised_path_matches_the_float_path():
    form = FORM_VARIANTS["gemm+waves+l2"]
    ops = [gemm_op(m, n, 4096, "fp8") for m, n in ((1, 64), (17, 4096), (4097, 16384))]
    feats = [form.features(op, RTX) for op in ops]
    cols = tuple(np.array(c, dtype=float) for c in zip(*feats, strict=True))
    from lvlmsim.calibrate.model import np_math

    vec = form.eff(np_math(), _params(form), TILES, cols)[0]
    for i, f in enumerate(feats):
        assert vec[i] == pytest.approx(form.eff(PYMATH, _params(form), TILES, f)[0], rel=1e-12)


def test_fp8_family_of_the_general_model_uses_the_wave_form():
    assert FAMILY_SETUPS["gemm.fp8"].variant == "gemm+waves+l2"


def _compute_s(form, k: int, pk: float) -> float:
    """Compute time at full peak over efficiency of an m = n = 4096 GEMM with k0 = 1024 and steepness p_k."""
    params = dict(zip(form.param_names, (q.init for q in form.params), strict=True))
    params.update(k0=1024.0, pk=pk, pm=0.8, pn=0.8)  # m and n below the cap
    op = gemm_op(4096, 4096, k, "fp4")
    ec = form.eff(PYMATH, tuple(params[q.name] for q in form.core), {"tile_m": 1.0, "tile_n": 1.0},
                  form.features(op, RTX))[0]
    return op.flops / ec


def test_monotone_form_never_prices_a_smaller_k_slower():
    """With p_k = 3 and k0 = 1024 the free form takes (1024/32)^3 / (1024/64)^3 / 2 = 4x longer at k = 32 than at 64;
    capped at p_k = 1 the k = 32 GEMM takes (1 + 32) / (1 + 16) / 2 of the k = 64 one's time (below 1)."""
    from lvlmsim.calibrate.model import MonotoneGemmForm

    free, mono = GemmForm(), MonotoneGemmForm()
    assert _compute_s(free, 32, 3.0) / _compute_s(free, 64, 3.0) == pytest.approx(
        (1 + 32**3) / (1 + 16**3) / 2, rel=1e-9)
    assert _compute_s(mono, 32, 3.0) / _compute_s(mono, 64, 3.0) == pytest.approx((1 + 32) / (1 + 16) / 2, rel=1e-9)
    assert _compute_s(mono, 32, 0.5) == pytest.approx(_compute_s(free, 32, 0.5))  # below the cap: unchanged


def test_nvfp4_family_of_the_general_model_is_capped():
    assert FAMILY_SETUPS["gemm.fp4"].variant == "gemm+mono+l2"
    assert FORM_VARIANTS["gemm+mono+l2"].base.max_steepness == 1.0


def _split_floor(m: int, n: int, k: int, hw, share: float = 1.5, k0: float = 1024.0) -> float:
    """The split-K form's floor over its floor parameter (other parameters at their initial values)."""
    from lvlmsim.calibrate.model import SplitKGemmForm

    form = SplitKGemmForm()
    params = dict(zip(form.param_names, (q.init for q in form.params), strict=True))
    params.update(split_share=share, split_k0=k0)
    p = tuple(params[q.name] for q in form.core)
    return form.eff(PYMATH, p, TILES, form.features(gemm_op(m, n, k, "bf16"), hw))[2] / params["floor_s"]


def test_split_k_reduction_kernel_adds_its_share_of_the_floor():
    """16 x 32 x 65536 on H100: one tile of 132 SMs, K 64x the threshold: the full share (S = 1 - 1e-14); at K = k0
    half of it; at K = k0 / 16 the step is 16^-8 / (1 + 16^-8) of it."""
    one_tile_off = 1.0 - 1.0 / (1.0 + (132.0) ** 8)  # 1 - S(1/132; 1, 8): one tile leaves the machine idle
    assert _split_floor(16, 32, 65536, H100) == pytest.approx(1.0 + 1.5 * one_tile_off, rel=1e-12)
    assert _split_floor(16, 32, 1024, H100) == pytest.approx(1.0 + 1.5 * 0.5 * one_tile_off, rel=1e-12)
    assert _split_floor(16, 32, 64, H100) == pytest.approx(1.0 + 1.5 / (1.0 + 16.0**8) * one_tile_off, rel=1e-12)


def test_split_k_needs_too_few_tiles_for_the_sms():
    """128 x (132 x 128) is 132 tiles, as many as H100's SMs: half the share; 32 x 132 tiles: (1/32)^8 of it; on RTX
    PRO 6000 (188 SMs) the same 132 tiles are 0.70 of a wave: 1 - 1 / (1 + (188/132)^8) of it."""
    assert _split_floor(128, 132 * 128, 65536, H100) == pytest.approx(1.0 + 1.5 * 0.5, rel=1e-9)
    assert _split_floor(4096, 132 * 128, 65536, H100) == pytest.approx(1.0 + 1.5 / (1.0 + 32.0**8), rel=1e-9)
    assert _split_floor(128, 132 * 128, 65536, RTX) == pytest.approx(
        1.0 + 1.5 * (1.0 - 1.0 / (1.0 + (188.0 / 132.0) ** 8)), rel=1e-9)
    assert _split_floor(16, 32, 65536, H100, share=-0.5) == 1.0  # a negative share adds nothing


def test_split_k_form_vectorised_path_matches_the_float_path():
    form = FORM_VARIANTS["gemm+splitk+l2"]
    ops = [gemm_op(m, n, k, "bf16") for m, n, k in ((1, 64, 8192), (17, 4096, 512), (4097, 16384, 65536))]
    feats = [form.features(op, H100) for op in ops]
    cols = tuple(np.array(c, dtype=float) for c in zip(*feats, strict=True))
    from lvlmsim.calibrate.model import np_math

    params = _params(form)
    vec = form.eff(np_math(), params, TILES, cols)
    for i, f in enumerate(feats):
        one = form.eff(PYMATH, params, TILES, f)
        for j in range(3):
            assert vec[j][i] == pytest.approx(one[j], rel=1e-12)


def test_bf16_family_of_the_general_model_prices_split_k():
    assert FAMILY_SETUPS["gemm"].variant == "gemm+splitk+l2"


def test_stream_form_memory_time_is_a_fixed_time_plus_streaming():
    """StreamGemmForm (the candidate of benchmarks/gemm_stream_selection.py): 1 x 8192 x 8192 bf16 on H100 (3350 GB/s),
    em_max 0.85, t0 4 us, n-saturation 1 / (1 + (512 / 8192)^1): memory time at 100% bandwidth over the efficiency
    is 4 us + bytes / (0.85 x S_n x 3350 GB/s), the same fixed 4 us on RTX PRO 6000 (1597 GB/s)."""
    from lvlmsim.calibrate.model import StreamGemmForm

    form = StreamGemmForm()
    params = tuple(q.init for q in form.core)
    assert dict(zip(form.param_names, params, strict=False))["t0_s"] == 4e-6
    op = gemm_op(1, 8192, 8192, "bf16")
    share = 0.85 / (1.0 + 512.0 / 8192.0)
    for hw, bw in ((H100, 3350e9), (RTX, 1597e9)):
        em = form.eff(PYMATH, params, TILES, form.features(op, hw))[1]
        assert op.bytes / bw / em == pytest.approx(4e-6 + op.bytes / (share * bw), rel=1e-12)
    assert "b0" not in form.param_names and "pb" not in form.param_names


def _gemv_over_splitk(m: int, hw) -> float:
    """Compute efficiency of the gemv candidate over the shipped split-K form's, same parameters and tiles."""
    from lvlmsim.calibrate.model import GemvGemmForm, SplitKGemmForm

    op = gemm_op(m, 4096, 4096, "bf16")
    gemv, splitk = GemvGemmForm(), SplitKGemmForm()
    params = _params(splitk)
    return (gemv.eff(PYMATH, params, TILES, gemv.features(op, hw))[0]
            / splitk.eff(PYMATH, params, TILES, splitk.features(op, hw))[0])


def test_gemv_form_prices_a_one_row_gemm_at_the_fp32_share_of_the_tensor_peak():
    """GemvGemmForm (the candidate of benchmarks/gemm_gemv_selection.py): at m = 1 the compute share is times the
    device's FP32 / bf16 peak over H100's, RTX PRO 6000 (117 / 467.8) / (66.9 / 989.4) = 3.70; H100 itself, and any
    m > 1, price as the split-K form."""
    assert _gemv_over_splitk(1, RTX) == pytest.approx((117 / 467.8) / (66.9 / 989.4), rel=1e-12)
    assert _gemv_over_splitk(1, H100) == pytest.approx(1.0, rel=1e-12)
    assert _gemv_over_splitk(2, RTX) == pytest.approx(1.0, rel=1e-12)


def test_gemv_form_without_an_fp32_rate_prices_as_the_reference():
    """A device whose datasheet gives no FP32 rate gets the reference's share: scale 1."""
    from lvlmsim.calibrate.model import gemv_rate_scale

    no_fp32 = RTX.model_copy(update={"peak_tflops": {"bf16": 467.8}})
    assert gemv_rate_scale(gemm_op(1, 4096, 4096, "bf16"), no_fp32) == 1.0


def test_gemv_selection_candidates_differ_only_in_the_form(capsys):
    """benchmarks/gemm_gemv_selection.py compares the shipped bf16 setup with the same links and ridge on the gemv
    form, and refuses an unknown argument with the allowed one named."""
    mod = load_bench("gemm_gemv_selection")
    tensor, gemv = mod.candidates().values()
    assert tensor == FAMILY_SETUPS["gemm"]
    assert gemv.variant == "gemm+splitk+gemv+l2" and gemv.variant in FORM_VARIANTS
    assert (gemv.links, gemv.ridge) == (tensor.links, tensor.ridge)
    assert mod.main(["--bogus"]) == 2
    assert "allowed: --m1" in capsys.readouterr().out


def test_overlap_selection_candidates_differ_only_in_the_overlap_link(capsys):
    """benchmarks/gemm_overlap_selection.py compares each family's shipped setup (no `overlap` link) against the same
    plus beta by sync_mma, same form and ridge, and refuses an unknown dtype or a bad --seed, naming what it takes."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("gemm_overlap_selection", bench / "gemm_overlap_selection.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    for key in ("gemm", "gemm.fp8"):
        before, linked = mod.candidates(key).values()
        shipped_links = FAMILY_SETUPS[key].links or mod.general.LINKS["gemm"]
        assert before.links == shipped_links and "overlap" not in before.links
        assert linked.links == {**shipped_links, "overlap": {"sync_mma": 0.0}}
        assert (before.variant, before.ridge) == (linked.variant, linked.ridge) == (FAMILY_SETUPS[key].variant,
                                                                                 FAMILY_SETUPS[key].ridge)
    assert mod.main(["fp4"]) == 2
    assert "allowed: bf16, fp8" in capsys.readouterr().out
    assert mod.main(["--seed", "x"]) == 2
    assert "--seed: expected a non-negative integer" in capsys.readouterr().out


def _tile_bound_eff(m: int, n: int, hw, params: tuple[float, ...] | None = None) -> float:
    form = TileBoundGemmForm()
    op = gemm_op(m, n, 16384, "fp4")
    return form.eff(PYMATH, params or _params(form), TILES, form.features(op, hw))[0]


def test_tile_bound_prices_one_128_tile_walking_k_on_one_sm():
    """m=8, n=128, k=16384 NVFP4 on RTX PRO 6000: one 128 x 128 CTA on 1 of 188 SMs, so compute takes at least
    2 x 128^2 x 16384 / (1871.2 TFLOPS / 188) = 53.9 us; as an efficiency 8 x 128 / (128^2 x 188)."""
    assert _tile_bound_eff(8, 128, RTX) == pytest.approx(8 * 128 / (128 * 128 * 188))
    op = gemm_op(8, 128, 16384, "fp4")
    bound_s = op.flops / (_tile_bound_eff(8, 128, RTX) * 1871.2e12)
    assert bound_s == pytest.approx(2 * 128 * 128 * 16384 / (1871.2e12 / 188))


def test_tile_bound_counts_whole_waves_of_128_tiles():
    """256 x (188 x 128): 376 tiles, two full waves on 188 SMs, bound 1; one more column of tiles takes a third."""
    full = (1.0, 1e-9, 1.0, 1e-9, 1.0, 1e-9, 1.0) + _params(TileBoundGemmForm())[7:]  # ec_max 1, saturated in m, n, k
    assert _tile_bound_eff(256, 188 * 128, RTX, full) == pytest.approx(1.0)
    assert _tile_bound_eff(256, 189 * 128, RTX, full) == pytest.approx(2 * 189 / (3 * 188))


def test_tile_bound_is_a_bound_not_a_product():
    """Where the tiles fill the SMs the fitted efficiency decides alone (the monotone form's own value)."""
    form, mono = TileBoundGemmForm(), FORM_VARIANTS["gemm+mono+l2"].base
    op = gemm_op(4096, 188 * 128, 16384, "fp4")
    x = form.features(op, RTX)
    assert form.eff(PYMATH, _params(form), TILES, x)[0] == mono.eff(PYMATH, _params(form), TILES, x[:-1])[0]


def test_tile_bound_vectorised_path_matches_the_float_path():
    form = TileBoundGemmForm()
    ops = [gemm_op(m, n, 4096, "fp4") for m, n in ((1, 64), (8, 4096), (300, 20000), (4096, 8192))]
    xs = [form.features(op, RTX) for op in ops]
    cols = tuple(np.array(c, dtype=float) for c in zip(*xs, strict=True))
    vec = form.eff(np_math(), _params(form), TILES, cols)[0]
    assert vec == pytest.approx([form.eff(PYMATH, _params(form), TILES, x)[0] for x in xs])


def test_tilebound_selection_candidates_differ_only_in_the_form(capsys):
    """benchmarks/gemm_tilebound_selection.py compares the shipped NVFP4 setup with the same links and ridge on the
    tile-bounded form, and refuses an unknown argument with the allowed one named."""
    mod = load_bench("gemm_tilebound_selection")
    shipped, tiles = mod.candidates().values()
    assert shipped == FAMILY_SETUPS["gemm.fp4"]
    assert tiles.variant == "gemm+mono+tiles+l2" and tiles.variant in FORM_VARIANTS
    assert (tiles.links, tiles.ridge) == (shipped.links, shipped.ridge)
    assert mod.main(["--bogus"]) == 2
    assert "allowed: --seed N" in capsys.readouterr().out
