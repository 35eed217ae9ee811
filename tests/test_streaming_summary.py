"""Streaming summaries (simulate keep_requests=False): the same summary as the exact per-request path, counts and
means exactly, percentiles within the sketch's stated relative error; the mode is chosen automatically only above a
threshold, said in the summary, and refused where it does not apply."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.engine import api
from lvlmsim.engine.api import simulate
from lvlmsim.engine.metrics import weighted_stats
from lvlmsim.engine.sketch import MIN_VALUE_S, RELATIVE_ERROR, LogHistogram
from lvlmsim.errors import LvlmsimError
from lvlmsim.specs.scenario import default_scenario

BOUND = RELATIVE_ERROR * (1 + 1e-9)  # the stated bound, plus float rounding at bin edges
COUNTS = ("requests", "completed", "rejected", "in_flight", "preemptions", "steps", "throughput_rps", "goodput_rps",
          "output_tokens_per_s", "slo_attainment", "queue_len_mean", "span_s")


def within(sketch: float | None, exact: float | None) -> bool:
    if exact is None or sketch is None:
        return sketch is exact
    return abs(sketch - exact) <= BOUND * abs(exact) + MIN_VALUE_S


def test_sketch_percentiles_within_the_stated_error_of_numpy():
    """Lognormal latencies over six decades, zeros included: every percentile within RELATIVE_ERROR of
    np.percentile (linear interpolation), the mean exact."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.lognormal(-3.0, 2.0, 5000), np.zeros(40), [math.nan, math.inf]])
    h = LogHistogram()
    for v in x[:3000]:
        h.add(float(v))
    h.add_many(x[3000:], np.ones(x.size - 3000))
    finite = x[np.isfinite(x)]
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert within(h.percentile(q), float(np.percentile(finite, q))), q
    assert h.stats((50,))["mean"] == pytest.approx(finite.mean(), rel=1e-12)


def test_weighted_sketch_matches_weighted_stats():
    """Inter-token gaps are weighted by the sequences that saw them: same rule as metrics.weighted_stats."""
    rng = np.random.default_rng(3)
    v = rng.gamma(2.0, 0.01, 4000)
    w = rng.integers(1, 64, 4000).astype(float)
    h = LogHistogram()
    h.add_many(v, w)
    exact = weighted_stats(v, w)
    got = h.stats((50, 90, 99), weighted=True)
    assert got["mean"] == pytest.approx(exact["mean"], rel=1e-12)
    for k in ("p50", "p90", "p99"):
        assert within(got[k], exact[k]), k


def test_merged_sketches_equal_one_sketch():
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    for i, v in enumerate(np.linspace(0.001, 3.0, 999)):
        (a if i % 2 else b).add(float(v))
        both.add(float(v))
    a.merge(b)
    assert a.stats((50, 90, 99)) == both.stats((50, 90, 99))


def _scenario(**over) -> dict:
    doc = default_scenario().model_dump(mode="json")
    for k, v in over.items():
        doc[k] = {**doc[k], **v} if isinstance(v, dict) and "kind" not in v else v
    return doc


def assert_agree(exact: dict, streamed: dict) -> None:
    """Counts and rates identical, means to float rounding, percentiles within the stated error."""
    for k in COUNTS:
        assert streamed[k] == pytest.approx(exact[k], rel=1e-12), k
    metrics = ["ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s"] + (["transfer_s"] if "transfer_s" in exact else [])
    for m in metrics:
        e, s = exact[m], streamed[m]
        assert (s["mean"] is None) == (e["mean"] is None), m
        if e["mean"] is not None:
            assert s["mean"] == pytest.approx(e["mean"], rel=1e-9), m
        for p in ("p50", "p90", "p99"):
            assert within(s[p], e[p]), (m, p, s[p], e[p])
    for name, chk in exact["slos"]["check"].items():
        key = next(k for k in chk if k.startswith("p"))
        assert within(streamed["slos"]["check"][name][key], chk[key]), name
    assert streamed["saturation"] == exact["saturation"]
    assert streamed["instances"] == exact["instances"]
    assert "summary_mode" not in exact
    assert streamed["summary_mode"]["mode"] == "streaming"
    assert streamed["summary_mode"]["percentile_relative_error"] == RELATIVE_ERROR


@pytest.mark.parametrize("scenario, requests, rate", [
    (None, 3000, None),  # the default scenario, stable
    (None, 2000, 30.0),  # overloaded: preemptions, long queues
    ("qwen25vl-epd-l4-encoder", 400, None),  # disaggregated pools: transfer_s
    ("multiturn-chat", 400, None),  # sessions: later turns closed-loop
])
def test_streaming_agrees_with_the_exact_summary(scenario, requests, rate):
    exact = simulate(scenario, requests=requests, rate=rate, seed=4)
    streamed = simulate(scenario, requests=requests, rate=rate, seed=4, keep_requests=False)
    assert len(streamed.requests) == 0
    assert_agree(exact.summary, streamed.summary)


def test_streaming_counts_requests_still_in_flight_and_shed():
    """A run cut off by a horizon with a short queue cap: in-flight and rejected requests are folded at the end."""
    sc = _scenario(horizon_s=25.0, serving={"max_queue_len": 5},
                   workload={"arrival": {"kind": "poisson", "rate_rps": 40}})
    exact = simulate(sc, requests=1500, seed=2)
    streamed = simulate(sc, requests=1500, seed=2, keep_requests=False)
    assert exact.summary["in_flight"] > 0 and exact.summary["rejected"] > 0
    assert_agree(exact.summary, streamed.summary)


def test_auto_mode_streams_only_above_the_threshold(monkeypatch):
    """keep_requests=None (the CLI without --out) keeps the exact path at or below STREAM_THRESHOLD."""
    below = simulate(requests=300, seed=1, keep_requests=None)
    assert "summary_mode" not in below.summary and len(below.requests) == 300
    monkeypatch.setattr(api, "STREAM_THRESHOLD", 299)
    above = simulate(requests=300, seed=1, keep_requests=None)
    assert above.summary["summary_mode"]["mode"] == "streaming" and len(above.requests) == 0


def test_streaming_refuses_what_it_does_not_cover():
    classes = _scenario(workload={"classes": [{"name": "a", "fraction": 0.5}, {"name": "b", "fraction": 0.5}]})
    with pytest.raises(LvlmsimError, match="keep_requests: false .*workload.classes"):
        simulate(classes, requests=50, keep_requests=False)
    assert "summary_mode" not in simulate(classes, requests=50, keep_requests=None).summary
    with pytest.raises(LvlmsimError, match="keep_requests"):
        simulate(requests=50, keep_requests="no")
    res = simulate(requests=50, keep_requests=False)
    with pytest.raises(LvlmsimError, match="no per-request table"):
        res.write("unused-out-dir")


def test_cli_stream_flag(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["simulate", "-n", "200", "--stream"])
    assert ok.exit_code == 0, ok.output
    assert "streaming summary: percentiles within 0.50%" in ok.output
    bad = runner.invoke(app, ["simulate", "-n", "200", "--stream", "--out", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "--stream" in bad.output and "--out" in bad.output
    assert not (tmp_path / "o").exists()
