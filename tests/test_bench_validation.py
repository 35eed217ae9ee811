"""The validation table of published benchmark runs: complete rows, the error formula, the per-metric summary."""

from __future__ import annotations

import pytest

from lvlmsim.bench.validation import RowResult, load_rows, replay, row_args, summarize


def test_every_row_has_its_source_conditions_and_published_figures():
    rows = load_rows()
    assert len(rows) >= 4
    for row in rows:
        assert row["source"].strip() and row["measured"]
        assert {"client", "runtime", "model", "hardware", "tp"} <= set(row["conditions"])
        row_args(row)  # every row's flags are valid BenchArgs


def test_a_replayed_row_reports_lvlmsim_against_the_published_figure():
    row = next(r for r in load_rows() if r["args"].get("max_concurrency") == 1)
    res = replay(row)
    assert res.refused is None
    for k, published in row["measured"].items():
        assert res.error_pct[k] == pytest.approx((res.predicted[k] / published - 1) * 100)


def test_summary_is_the_median_absolute_error_per_metric():
    rows = [RowResult("a", "s", {}, {}, error_pct={"x": 10.0, "y": -4.0}),
            RowResult("b", "s", {}, {}, error_pct={"x": -30.0}),
            RowResult("c", "s", {}, {}, error_pct={"x": 20.0})]
    s = summarize(rows)
    assert s["x"] == {"median_abs_error_pct": 20.0, "rows": 3}
    assert s["y"] == {"median_abs_error_pct": 4.0, "rows": 1}


def test_rows_group_by_their_published_sweep():
    """The per-sweep summary groups rows by the first two parts of their id and medians within each group."""
    from lvlmsim.bench.validation import source_of, summarize_by_source

    assert source_of("tt-143-vllm-2xh100-x") == "tt-143" and source_of("sglang-9812-vllm-h200") == "sglang-9812"
    rows = [RowResult("tt-1-a", "s", {}, {}, error_pct={"x": 10.0}),
            RowResult("tt-1-b", "s", {}, {}, error_pct={"x": -30.0}),
            RowResult("sg-2-a", "s", {}, {}, error_pct={"x": 5.0})]
    by = summarize_by_source(rows)
    assert by["tt-1"]["x"] == {"median_abs_error_pct": 20.0, "rows": 2}
    assert by["sg-2"]["x"] == {"median_abs_error_pct": 5.0, "rows": 1}


def test_every_row_ran():
    """No row of the table is refused: each is a configuration lvlmsim can run (a refusal would be reported, but
    the shipped table should not carry one silently)."""
    from lvlmsim.bench.validation import run_validation

    results, summary = run_validation()
    assert [r.id for r in results if r.refused] == []
    assert summary["mean_ttft_ms"]["rows"] >= 10


def test_median_of_sweeps_weighs_every_sweep_the_same():
    """Three sweeps with medians 20, 5 and 50 give 20 whatever their row counts; a sweep without the metric does
    not count."""
    from lvlmsim.bench.validation import median_of_sweeps

    by = {"a": {"x": {"median_abs_error_pct": 20.0, "rows": 9}},
          "b": {"x": {"median_abs_error_pct": 5.0, "rows": 1}, "y": {"median_abs_error_pct": 7.0, "rows": 1}},
          "c": {"x": {"median_abs_error_pct": 50.0, "rows": 2}}}
    out = median_of_sweeps(by)
    assert out["x"] == {"median_abs_error_pct": 20.0, "sweeps": 3}
    assert out["y"] == {"median_abs_error_pct": 7.0, "sweeps": 1}


def test_ttft_floor_is_the_prompts_tensor_work_at_peak():
    """Qwen3-4B's 2048-token prompt on an RTX 4090, by hand: per token and layer the projections are
    2 x (2560 x 6144 + 4096 x 2560 + 3 x 2560 x 9728) FLOPs (qkv, o, gate-up-down) over 36 layers,
    causal attention 4 x 128 x 32 x (2048 x 2049 / 2) per layer, the LM head once (2 x 2560 x 151936); at the
    4090's 165.2 TFLOP/s dense BF16 peak."""
    from lvlmsim.bench.validation import ttft_floor_s

    row = next(r for r in load_rows() if r["id"] == "tt-394-vllm-4090-qwen3-4b-in2048-out128")
    proj = 2 * (2560 * 6144 + 4096 * 2560 + 3 * 2560 * 9728) * 36 * 2048
    attn = 4 * 128 * 32 * (2048 * 2049 / 2) * 36
    head = 2 * 2560 * 151936
    assert ttft_floor_s(row) == pytest.approx((proj + attn + head) / 165.2e12, rel=1e-3)


def test_inconsistent_flags_are_exactly_the_rows_below_their_ttft_floor():
    """A row is flagged iff its published mean TTFT is below the floor of its stated prompt at peak: the flags are
    the arithmetic, not a choice made after seeing the errors. The replay carries the same floor."""
    from lvlmsim.bench.validation import ttft_floor_s

    for row in load_rows():
        published = row["measured"].get("mean_ttft_ms")
        below = published is not None and ttft_floor_s(row) * 1e3 > published
        assert bool(row.get("inconsistent")) == below, row["id"]
    row = next(r for r in load_rows() if r.get("inconsistent"))
    assert replay(row).ttft_floor_ms == pytest.approx(ttft_floor_s(row) * 1e3)


def test_flagged_rows_leave_only_the_consistent_summary():
    from lvlmsim.bench.validation import consistent

    rows = [RowResult("a", "s", {}, {}, error_pct={"x": 10.0}),
            RowResult("b", "s", {}, {}, error_pct={"x": -80.0}, inconsistent="needs 2x the peak"),
            RowResult("c", "s", {}, {}, error_pct={"x": 20.0})]
    assert summarize(rows)["x"] == {"median_abs_error_pct": 20.0, "rows": 3}
    assert summarize(consistent(rows))["x"] == {"median_abs_error_pct": 15.0, "rows": 2}


def test_every_searched_run_names_its_source_and_the_criterion_it_failed():
    """workloads/validation/searched-runs.yaml records runs examined and not added: each names its source and says
    which numbered point of the file's pre-declared criterion it fails, so a later search can check the reason."""
    import re

    from lvlmsim.specs.base import read_yaml
    from lvlmsim.specs.registry import bench_runs_path

    doc = read_yaml(bench_runs_path().with_name("searched-runs.yaml"))
    assert doc["searched"]
    for entry in doc["searched"]:
        assert entry["source"].startswith("https://") and entry["who"] and entry["found"]
        assert re.search(r"\([1-6]\)", entry["not_added"]), entry["source"]
