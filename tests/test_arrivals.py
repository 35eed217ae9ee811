"""Closed-loop and capped arrivals (benchmark clients), warm-up, and the lazy request stream.

Oracles: a concurrency cap is a conservation law (requests in flight never exceed it), a closed-loop client is
sequential (it sends only when its previous request has ended), and an infinite cap is today's open loop, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lvlmsim.engine.api import simulate
from lvlmsim.engine.workload import arrival_times, generate, stream
from lvlmsim.errors import SpecError
from lvlmsim.specs.registry import load_model
from lvlmsim.specs.scenario import load_scenario
from lvlmsim.specs.workload import WorkloadSpec


def _scenario(arrival: dict, requests: int = 120, **workload) -> dict:
    return {"id": "bench-like", "model": "llava-1.5-7b", "hardware": "h100-sxm", "seed": 3,
            "workload": {"requests": requests, "arrival": arrival, "prompt_tokens": {"kind": "uniform", "low": 200,
                         "high": 800}, "output_tokens": {"kind": "uniform", "low": 16, "high": 200}, **workload}}


def _max_in_flight(df: pd.DataFrame) -> int:
    """Most requests sent and not yet ended at any send time (an end at the same instant frees its slot first)."""
    ends = np.sort(df.finish_s.to_numpy())
    starts = df.arrival_s.to_numpy()
    return max(int((starts <= t).sum() - np.searchsorted(ends, t, side="right")) for t in starts)


@pytest.mark.parametrize("clients", [1, 4, 16])
def test_closed_loop_never_exceeds_its_clients_and_fills_them(clients: int):
    res = simulate(_scenario({"kind": "concurrency", "clients": clients}))
    df = res.requests
    assert (df.status == "completed").all()
    assert _max_in_flight(df) == clients  # never more, and the loop keeps every client busy
    assert res.meta["max_concurrency"] == clients


def test_each_client_sends_its_next_request_only_after_the_previous_ended():
    df = simulate(_scenario({"kind": "concurrency", "clients": 5})).requests
    assert sorted(df.client.unique()) == [0, 1, 2, 3, 4]
    for _, mine in df.sort_values("arrival_s", kind="stable").groupby("client"):
        assert (mine.arrival_s.to_numpy()[1:] >= mine.finish_s.to_numpy()[:-1]).all()
        # closed loop without think time: the next send is exactly the previous end
        assert np.allclose(mine.arrival_s.to_numpy()[1:], mine.finish_s.to_numpy()[:-1], rtol=0, atol=1e-12)


def test_one_client_runs_requests_back_to_back():
    """One client: the run's span is the sum of the end-to-end latencies, and nothing ever queues."""
    res = simulate(_scenario({"kind": "concurrency", "clients": 1}, requests=30))
    df = res.requests
    assert res.summary["span_s"] == pytest.approx(df.e2e_s.sum(), rel=1e-9)
    assert df.queue_s.max() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cap", ["inf", 10_000])
def test_an_unreachable_cap_is_the_open_loop_bit_for_bit(cap):
    arrival = {"kind": "poisson", "rate_rps": 20.0}
    open_loop = simulate(_scenario(arrival))
    capped = simulate(_scenario(arrival, max_concurrency=cap))
    cols = [c for c in open_loop.requests.columns]
    pd.testing.assert_frame_equal(open_loop.requests, capped.requests[cols])
    assert open_loop.summary == capped.summary


def test_rate_with_a_cap_never_sends_early_and_respects_the_cap():
    spec = _scenario({"kind": "poisson", "rate_rps": 40.0}, max_concurrency=6)
    df = simulate(spec).requests.sort_values("request_id")
    sc = load_scenario(spec)
    rng = np.random.default_rng(np.random.SeedSequence(sc.seed).spawn(1)[0])  # the arrival stream is the first
    scheduled = arrival_times(sc.workload.arrival, rng, len(df))
    assert (df.arrival_s.to_numpy() >= scheduled - 1e-12).all()
    assert (df.arrival_s.to_numpy() > scheduled + 1e-9).any()  # the cap did hold some back at 40 req/s
    assert _max_in_flight(df) <= 6
    assert (np.diff(df.arrival_s.to_numpy()) >= 0).all()  # FIFO: sent in the order they were scheduled


def test_warmup_requests_are_left_out_of_the_metrics():
    res = simulate(_scenario({"kind": "concurrency", "clients": 4}, requests=40, warmup_requests=8))
    df = res.requests
    assert len(df) == 32 and df.request_id.min() == 8
    w = res.summary["warmup"]
    assert w["requests"] == 8 and w["measured_from_s"] > 0
    assert res.summary["span_s"] == pytest.approx(df.finish_s.max() - w["measured_from_s"], rel=1e-12)
    assert res.summary["throughput_rps"] == pytest.approx(32 / res.summary["span_s"])


def test_duration_stops_a_closed_loop_from_sending():
    res = simulate(_scenario({"kind": "concurrency", "clients": 2}, requests=500, duration_s=1.0))
    df = res.requests
    assert 0 < len(df) < 500 and df.arrival_s.max() <= 1.0


@pytest.mark.parametrize(("workload", "field"), [
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"arrival": {"kind": "concurrency", "clients": 0}}, "clients"),
    ({"arrival": {"kind": "concurrency", "clients": 2}, "session": {"turns": 2}}, "max_concurrency"),
    ({"requests": 5, "warmup_requests": 5}, "warmup_requests"),
])
def test_bad_closed_loop_settings_name_the_field(workload: dict, field: str):
    with pytest.raises(SpecError, match=field):
        load_scenario({"id": "x", "workload": workload})


def test_a_rate_override_on_a_closed_loop_is_refused():
    with pytest.raises(SpecError, match="rate: a closed-loop arrival"):
        simulate(_scenario({"kind": "concurrency", "clients": 2}), rate=3.0)


def test_inf_and_no_cap_are_the_same_spec():
    assert WorkloadSpec(max_concurrency="inf").concurrency_cap is None
    assert WorkloadSpec(max_concurrency=8, arrival={"kind": "concurrency", "clients": 3}).concurrency_cap == 3


def test_requests_are_made_only_when_pulled():
    """The arrival process pulls units; nothing beyond what it pulled exists yet, and a scan sees the same run."""
    model = load_model("llava-1.5-7b")
    spec = WorkloadSpec(requests=50, images={"kind": "uniform", "low": 0, "high": 3})
    wl = stream(spec, model, 7)
    assert wl.requests == [] and wl.planned == 50
    units = wl.units()
    next(units)
    next(units)
    assert [r.id for r in wl.requests] == [0, 1]
    full = generate(spec, model, 7).requests
    scanned = list(wl.scan())
    assert [(r.id, r.prompt_tokens, r.visual_tokens, r.arrival_s) for r in scanned] == \
        [(r.id, r.prompt_tokens, r.visual_tokens, r.arrival_s) for r in full]
    assert scanned[0] is not wl.requests[0]  # a scan shares no object with the live stream
