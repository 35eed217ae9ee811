"""The tiled GEMM form of benchmarks/gemm_tile_selection.py (issue 11): tile quantisation, split-K and waves over
the SMs, checked against hand-derived numbers on an H100-sized machine (132 SMs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lvlmsim.calibrate.model import PYMATH, np_math

H100_SMS = 132.0


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gemm_tile_selection.py"
    spec = importlib.util.spec_from_file_location("gemm_tile_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _params(a0: float = 1e-12, k0: float = 1e-12) -> tuple[float, ...]:
    """ec_max 1, tile-intensity and K-loop saturations off unless given, memory side irrelevant here."""
    return (1.0, a0, k0, 1.0, 0.9, 1e6, 1.0, 64.0, 1.0, 2e-6)


def _ec(form, m: float, n: float, k: float, split_k: float, **kw) -> float:
    return form.eff(PYMATH, _params(**kw), {"split_k": split_k}, (m, n, k, 1e8, H100_SMS))[0]


def test_large_gemm_loses_only_its_last_partial_wave():
    """4096^3: 256x128 tiles give 512 CTAs = 4 waves of 132 (528 slots), 128x128 1024 in 8 waves, 64x64 4096 in 32:
    each keeps 512/528 of the machine busy; no split (tiles > SMs)."""
    form = _bench().TiledGemmForm()
    assert _ec(form, 4096, 4096, 4096, 128.0) == pytest.approx(512 / 528)


def test_split_k_fills_the_machine_for_a_skinny_gemm():
    """m 16, n 4096, k 4096: a 64x64 tile makes 64 CTAs, split 2 ways (floor(132 / 64), K 512 per split allows 8)
    -> 128 CTAs in one wave, each 16/64 useful rows: 16 x 4096 x 2 / (132 x 64 x 64) = 0.2424; 64x128 (32 tiles,
    split 4) gives the same. Without split-K (vLLM's CUTLASS fp8), 64 CTAs: half that."""
    form = _bench().TiledGemmForm()
    assert _ec(form, 16, 4096, 4096, 512.0) == pytest.approx(16 * 4096 * 2 / (132 * 64 * 64))
    assert _ec(form, 16, 4096, 4096, 0.0) == pytest.approx(16 * 4096 / (132 * 64 * 64))


def test_tile_intensity_and_k_loop_saturations():
    """a0 16: a 256x128 tile (intensity 256 x 128 / 384 = 85.3) runs at 1 / (1 + 16 / 85.3) = 0.842 of its MMA
    rate, so 4096^3 is 512/528 x 0.842. k0 128 (in 128 x 128 tiles' K): the skinny GEMM's 64x64 tiles split 2 ways
    carry 2048 x (64 x 64 / 16384) = 512 -> 1 / (1 + 128/512) = 0.8."""
    form = _bench().TiledGemmForm()
    assert _ec(form, 4096, 4096, 4096, 128.0, a0=16.0) == pytest.approx(512 / 528 / (1 + 16 * 384 / 32768))
    assert _ec(form, 16, 4096, 4096, 512.0, k0=128.0) == pytest.approx(16 * 4096 * 2 / (132 * 64 * 64) * 0.8)


def test_numpy_and_float_paths_agree():
    """The fit prices rows as numpy arrays, the engine one op at a time in floats: same numbers."""
    form = _bench().TiledGemmForm()
    m, n, k = np.array([1.0, 16, 100, 4096]), np.array([4096.0, 4096, 1000, 4096]), np.array([4096.0, 4096, 1500, 4096])
    h = {"split_k": 128.0}
    x = (m, n, k, np.full(4, 1e8), np.full(4, H100_SMS))
    vec = form.eff(np_math(), _params(a0=8.0, k0=64.0), h, x)[0]
    one = [form.eff(PYMATH, _params(a0=8.0, k0=64.0), h, tuple(float(c[i]) for c in x))[0] for i in range(4)]
    assert vec == pytest.approx(one)


def test_fp8_dispatch_prices_the_tile_vllm_picks():
    """m 16, n 4096, k 4096 in fp8: on sm90 vLLM swaps A and B and runs 64x16 tiles over (n, m): 64 tiles, one wave
    of 132 SMs, 16 x 4096 / (132 x 64 x 16) = 0.485 of the machine; on sm120 (188 SMs) 16x64 tiles over (m, n): 64
    tiles, 16 x 4096 / (188 x 16 x 64) = 0.340; m 512 on sm90 takes the default 128x128 tile: 4 x 32 = 128 tiles,
    one wave, 512 x 4096 / (132 x 16384)."""
    form = _bench().DispatchFp8GemmForm()

    def ec(m: float, sms: float, arch: float) -> float:
        return form.eff(PYMATH, _params(), {}, (m, 4096.0, 4096.0, 1e8, sms, arch))[0]

    assert ec(16, H100_SMS, 9) == pytest.approx(16 * 4096 / (132 * 64 * 16))
    assert ec(16, 188.0, 12) == pytest.approx(16 * 4096 / (188 * 16 * 64))
    assert ec(512, H100_SMS, 9) == pytest.approx(512 * 4096 / (132 * 16384))


@pytest.mark.parametrize("arch", [9.0, 10.0, 12.0])
def test_fp8_dispatch_numpy_and_float_paths_agree(arch: float):
    """Every dispatch branch (m 1 to 4096, sm100's m = 64 with k below and above 4096) prices the same in both paths,
    and exactly one tile applies to each row (the efficiency is never 0)."""
    bench = _bench()
    form = bench.DispatchFp8GemmForm()
    m = np.array([1.0, 16, 17, 32, 33, 64, 64, 65, 128, 129, 256, 257, 4096])
    n = np.full(len(m), 2048.0)
    k = np.where(np.arange(len(m)) == 6, 8192.0, 2048.0)
    x = (m, n, k, np.full(len(m), 1e8), np.full(len(m), 148.0), np.full(len(m), arch))
    vec = form.eff(np_math(), _params(a0=8.0, k0=64.0), {}, x)[0]
    one = [form.eff(PYMATH, _params(a0=8.0, k0=64.0), {}, tuple(float(c[i]) for c in x))[0] for i in range(len(m))]
    assert vec == pytest.approx(one) and min(one) > 0
    picked = sum(picks(m, n, k).astype(int) for cc, picks, *_ in bench.FP8_DISPATCH if cc == arch)
    assert (picked == 1).all()
