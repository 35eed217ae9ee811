"""The dispatch-tile arithmetic of benchmarks/gemm_dispatch_selection.py and the traffic count of
benchmarks/gemm_bandwidth_share.py (issue 11, round 2), against hand-derived numbers."""

from __future__ import annotations

import pytest

from tests.bench_modules import load_bench as _load


def test_sm90_decode_gemm_runs_swapped_64x16_tiles_in_one_partial_wave():
    """H100 (sm90, 132 SMs), m 16, n 4096: 64 x 16 tiles over (n, m) -> 64 x 1 = 64 tiles, one wave of 132 slots:
    16 x 4096 / (132 x 64 x 16) = 0.4848; 64 of 132 SMs busy."""
    mod = _load("gemm_dispatch_selection")
    assert mod.dispatch_tile(16, 4096, 4096, 9) == (64.0, 16.0, True)
    assert mod.dispatch_useful(16, 4096, 4096, 9, 132) == pytest.approx(16 * 4096 / (132 * 64 * 16))
    assert mod.dispatch_occupancy(16, 4096, 4096, 9, 132) == pytest.approx(64 / 132)


def test_sm120_mid_m_gemm_pads_64x64_tiles():
    """RTX PRO 6000 (sm120, 188 SMs), m 200, n 1000: 64 x 64 tiles, ceil(200/64) x ceil(1000/64) = 4 x 16 = 64
    tiles in one wave: 200 x 1000 / (188 x 4096) = 0.2597."""
    mod = _load("gemm_dispatch_selection")
    assert mod.dispatch_tile(200, 1000, 512, 12) == (64.0, 64.0, False)
    assert mod.dispatch_useful(200, 1000, 512, 12, 188) == pytest.approx(200 * 1000 / (188 * 4096))


def test_sm100_m64_short_k_keeps_ab_unswapped_and_large_m_fills_waves():
    """B300 (sm100): m 64 with k < 4096 runs 64 x 64 unswapped, with k >= 4096 swapped 64 x 64 (128 x 64 on two SMs);
    m 4096, n 4096 in 128 x 128 per-SM tiles: 32 x 32 = 1024 tiles in ceil(1024/160) = 7 waves -> 1024 / 1120."""
    mod = _load("gemm_dispatch_selection")
    assert mod.dispatch_tile(64, 4096, 2048, 10) == (64.0, 64.0, False)
    assert mod.dispatch_tile(64, 4096, 8192, 10) == (64.0, 64.0, True)
    assert mod.dispatch_useful(4096, 4096, 4096, 10, 160) == pytest.approx(1024 / 1120)


def test_architecture_without_a_table_gets_128x128():
    mod = _load("gemm_dispatch_selection")
    assert mod.dispatch_tile(1, 4096, 4096, 8) == (128.0, 128.0, False)


def test_traffic_counts_operands_at_their_width_and_a_16_bit_output():
    """m 1, n = k = 4096: bf16 2 x (4096 + 4096^2) + 2 x 4096 bytes; nvfp4 operands half a byte each."""
    mod = _load("gemm_bandwidth_share")
    assert mod.traffic_bytes(1, 4096, 4096, 2.0) == 2 * (4096 + 4096 ** 2) + 2 * 4096
    assert mod.traffic_bytes(1, 4096, 4096, 0.5) == 0.5 * (4096 + 4096 ** 2) + 2 * 4096


def test_fixed_plus_streaming_recovers_a_known_line():
    """Rows timed exactly 5 us + bytes / (0.8 x 2000 GB/s): the fit returns t0 5 us, share 0.8, no residual."""
    mod = _load("gemm_bandwidth_share")
    bw_gbps = 2000.0
    rows = []
    for nbytes in (50e6, 100e6, 400e6):
        time_s = 5e-6 + nbytes / (0.8 * bw_gbps * 1e9)
        rows.append((nbytes, nbytes / time_s / (bw_gbps * 1e9)))
    t0_s, share, rms = mod.fixed_plus_streaming(rows, bw_gbps)
    assert t0_s == pytest.approx(5e-6, rel=1e-6)
    assert share == pytest.approx(0.8, rel=1e-6)
    assert rms == pytest.approx(0.0, abs=1e-9)
