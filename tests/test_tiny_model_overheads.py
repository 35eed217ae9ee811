"""benchmarks/tiny_model_overheads.py (issue 13, wave 7): the pre-declared rule on hand-made residuals, the imported
stand-ins against the model cards' parameter counts (hand-derived), and one priced row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("tiny_model_overheads", BENCH / "tiny_model_overheads.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


@pytest.fixture(scope="module")
def runs(mod):
    return {r["id"]: r for r in mod.load_runs()}


def test_three_consistent_independent_runs_ship_their_median(mod):
    """8, 9, 10 ms: median 9, spread 2 <= max(0.5 x 9, 2) = 4.5."""
    v = mod.verdict([("a", 8.0), ("b", 9.0), ("c", 10.0)], "ttft")
    assert v["ship"] and v["median_ms"] == 9.0 and v["spread_ms"] == 2.0 and v["allowed_spread_ms"] == 4.5


def test_runs_of_one_setup_count_once(mod):
    """Setup a's runs 8 and 12 count as their median 10: [9, 10, 10] ships 10; without c only two remain."""
    v = mod.verdict([("a", 8.0), ("a", 12.0), ("b", 9.0), ("c", 10.0)], "ttft")
    assert v["ship"] and v["independent_runs"] == 3 and v["residuals_ms"] == [9.0, 10.0, 10.0]
    v = mod.verdict([("a", 8.0), ("a", 9.0), ("b", 10.0)], "ttft")
    assert not v["ship"] and v["independent_runs"] == 2 and "needs 3" in v["why"]


def test_wide_spread_or_mixed_signs_ship_nothing(mod):
    """1, 5, 9 ms: spread 8 > max(2.5, 2); -0.3, 0.2, 0.25 ms: both signs."""
    v = mod.verdict([("a", 1.0), ("b", 5.0), ("c", 9.0)], "ttft")
    assert not v["ship"] and "spread" in v["why"]
    v = mod.verdict([("a", -0.3), ("b", 0.2), ("c", 0.25)], "tpot")
    assert not v["ship"] and "signs" in v["why"]


def test_tpot_spread_floor_is_a_fifth_of_a_millisecond(mod):
    """0.1, 0.25, 0.3 ms: median 0.25, allowed max(0.125, 0.2) = 0.2, spread 0.2: ships."""
    v = mod.verdict([("a", 0.1), ("b", 0.25), ("c", 0.3)], "tpot")
    assert v["ship"] and v["allowed_spread_ms"] == pytest.approx(0.2)


def test_stand_ins_have_the_model_cards_parameters(mod, runs):
    """Qwen3-0.6B: embedding 151936 x 1024 + 28 x (attention 1024 x (2048 + 1024 + 1024) + 2048 x 1024, MLP
    3 x 1024 x 3072, norms 2 x 1024 + q/k norms 2 x 128) + final norm 1024 = 596,049,920 (card: 0.6B, 0.44B without
    the embedding). Qwen2.5-0.5B: 151936 x 896 + 24 x (896 x (896 + 128 + 128) + 896 x 896 + 3 x 896 x 4864 +
    2 x 896) + 896 = 494,005,120 (card: 0.49B, 0.36B without the embedding; the q/k/v biases, 1152 a layer, are
    not counted)."""
    qwen3 = 151936 * 1024 + 28 * (1024 * 4096 + 2048 * 1024 + 3 * 1024 * 3072 + 2 * 1024 + 2 * 128) + 1024
    qwen25 = 151936 * 896 + 24 * (896 * 1152 + 896 * 896 + 3 * 896 * 4864 + 2 * 896) + 896
    assert mod.total_params(runs["tt-340-a100-qwen3-0.6b"]) == qwen3 == 596_049_920
    assert mod.total_params(runs["wmx-l4-qwen2.5-0.5b"]) == qwen25 == 494_005_120


def test_which_runs_qualify(mod, runs):
    """Synchronous V1 counts for both residuals, async V1 for TTFT only, an unpriced run for neither."""
    assert mod.qualifies(runs["tt-340-a100-qwen3-0.6b"], "ttft") and mod.qualifies(runs["tt-340-a100-qwen3-0.6b"],
                                                                                   "tpot")
    assert mod.qualifies(runs["wmx-l4-qwen2.5-0.5b"], "ttft") and not mod.qualifies(runs["wmx-l4-qwen2.5-0.5b"],
                                                                                    "tpot")
    assert not mod.qualifies(runs["vllm-17866-llama-3.2-1b"], "ttft")


def test_a_priced_row_compares_the_published_statistic(mod, runs, tmp_path):
    """The 128/128 row publishes means; the residual is published - priced with host costs on, and host costs add
    time to the first token (API, tokenisation, the token's way out)."""
    run = runs["tt-340-a100-qwen3-0.6b"]
    res = mod.price_run({**run, "rows": run["rows"][:1]}, tmp_path)[0]
    assert res["ttft"]["statistic"] == "mean_ttft_ms" and res["tpot"]["statistic"] == "mean_tpot_ms"
    for r in res.values():
        assert r["residual_ms"] == pytest.approx(r["published_ms"] - r["priced_ms"])
    assert res["ttft"]["priced_ms"] > res["ttft"]["gpu_only_ms"] > 0
