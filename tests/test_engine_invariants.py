"""The engine's behavioural contract: conservation, determinism, Little's law, monotonicity, progress under FCFS,
up-front rejection of what cannot run, and hand-checkable single-request figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lvlmsim.calibrate.profiles import resolve_profile
from lvlmsim.engine.api import simulate
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.estimate import estimate_request
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.scenario import default_scenario, load_scenario

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def scenario(**over) -> dict:
    """The default scenario as a dict with nested overrides (a.b=c written as {"a": {"b": c}})."""
    doc = default_scenario().model_dump(mode="json")

    def merge(d, o):
        for k, v in o.items():
            if isinstance(v, dict) and isinstance(d.get(k), dict) and "kind" not in v:
                merge(d[k], v)
            else:
                d[k] = v

    merge(doc, over)
    return doc


def conserved(res) -> None:
    s = res.summary
    assert s["requests"] == s["completed"] + s["rejected"] + s["in_flight"]
    assert s["requests"] == len(res.requests)
    counts = res.requests.status.value_counts().to_dict()
    assert counts.get("completed", 0) == s["completed"]
    assert counts.get("rejected", 0) == s["rejected"]
    assert counts.get("in_flight", 0) == s["in_flight"]


# -------------------------------------------------------------------------------------------------------------------
# conservation


@pytest.mark.parametrize("case", [
    {},  # all complete
    {"horizon_s": 20.0, "workload": {"arrival": {"kind": "poisson", "rate_rps": 40}}},  # cut off: some in flight
    {"serving": {"max_model_len": 700}},  # long requests rejected
    {"serving": {"max_queue_len": 3}, "workload": {"arrival": {"kind": "gamma", "rate_rps": 40, "cv": 3}}},
    {"serving": {"chunked_prefill": False, "gpu_memory_utilization": 0.3}},  # v0 batching with preemption
])
def test_conservation(case):
    res = simulate(scenario(**case), requests=400, seed=2)
    conserved(res)
    s = res.summary
    if "horizon_s" in case:
        assert s["in_flight"] > 0
    if "max_model_len" in case.get("serving", {}) or "max_queue_len" in case.get("serving", {}):
        assert s["rejected"] > 0
        assert (res.requests[res.requests.status == "rejected"].reason != "").all()


def test_conservation_with_sessions_and_pools():
    conserved(simulate("multiturn-chat", requests=150, seed=1))
    conserved(simulate("qwen25vl-epd-l4-encoder", requests=150, seed=1))


# -------------------------------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("sid", ["llava-chat-h100", "qwen25vl-epd-h100", "multiturn-chat"])
def test_same_seed_same_results_bit_for_bit(sid):
    a = simulate(sid, requests=250, seed=5)
    b = simulate(sid, requests=250, seed=5)
    assert a.summary == b.summary
    pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    c = simulate(sid, requests=250, seed=6)
    assert c.summary != a.summary


# -------------------------------------------------------------------------------------------------------------------
# Little's law


def test_littles_law_holds_when_the_run_is_cut_off():
    res = simulate(scenario(horizon_s=30.0), requests=2000, seed=4, rate=40)
    s, df = res.summary, res.requests
    assert s["in_flight"] > 0
    assert s["queue_len_mean"] == pytest.approx(len(df) / s["span_s"] * df.queue_s.mean(), rel=1e-9)


@pytest.mark.parametrize("rate", [10.0, 35.0])
def test_littles_law_on_the_waiting_queues(rate):
    """L = lambda W: the time-average number waiting (integrated by the engine) equals the arrival rate times the
    mean time each request spent waiting (summed per request): to 1e-9. Under backlog the per-step samples of the
    time series agree too, within 5% (they are taken after each step's admissions)."""
    res = simulate(requests=1500, seed=4, rate=rate)
    s, df = res.summary, res.requests
    span = s["span_s"]
    lam = len(df) / span
    assert s["queue_len_mean"] == pytest.approx(lam * df.queue_s.mean(), rel=1e-9)
    if rate > 30:
        ts = res.timeseries
        dt = np.diff(np.append(ts.t_s.to_numpy(), span))
        sampled = float((ts.queue_len.to_numpy() * dt).sum() / span)
        assert sampled == pytest.approx(lam * df.queue_s.mean(), rel=0.05)


# -------------------------------------------------------------------------------------------------------------------
# monotonicity at a fixed seed


def _mean(res, col):
    return float(res.requests[col].mean())


def test_more_replicas_never_worse():
    base = None
    for n in (1, 2, 3):
        res = simulate(scenario(serving={"instances": n}), requests=600, seed=3, rate=24)
        conserved(res)
        cur = (_mean(res, "e2e_s"), _mean(res, "ttft_s"))
        if base is not None:
            assert cur[0] <= base[0] and cur[1] <= base[1]
        base = cur


def test_more_link_bandwidth_never_worse():
    prev = None
    for bw in (1.0, 10.0, 100.0):
        res = simulate(load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
                       | {"serving": load_scenario("qwen25vl-epd-h100").serving.model_dump(mode="json")
                          | {"link": {"bw_gbps": bw, "latency_us": 10}}}, requests=200, seed=3)
        cur = (_mean(res, "ttft_s"), _mean(res, "e2e_s"), _mean(res, "transfer_s"))
        if prev is not None:
            assert all(c <= p for c, p in zip(cur, prev, strict=True))
        prev = cur


def test_faster_device_never_worse():
    means = []
    for hw in ("a100-sxm-80gb", "h100-sxm", "h200-sxm"):
        res = simulate(scenario(hardware=hw), requests=500, seed=3, rate=10)
        means.append((_mean(res, "e2e_s"), _mean(res, "ttft_s"), res.summary["tpot_s"]["mean"]))
    for slow, fast in zip(means, means[1:], strict=False):
        assert all(f <= s for f, s in zip(fast, slow, strict=True))


# -------------------------------------------------------------------------------------------------------------------
# FCFS makes progress


def test_no_request_waits_forever_under_backlog():
    res = simulate(requests=800, seed=7, rate=80)  # ~4x capacity
    s, df = res.summary, res.requests
    assert s["saturation"]["verdict"] == "backlogged"
    assert s["completed"] == s["requests"]  # the queue drains once arrivals stop
    assert np.isfinite(df.finish_s).all()
    # FCFS: requests never preempted are admitted in arrival order
    clean = df[df.preemptions == 0].sort_values("arrival_s", kind="stable")
    assert clean.encode_start_s.is_monotonic_increasing


def test_preemption_by_recompute_still_completes():
    res = simulate(scenario(serving={"gpu_memory_utilization": 0.27}), requests=300, seed=1, rate=40)
    s = res.summary
    assert s["preemptions"] > 0
    assert s["completed"] == s["requests"]
    assert s["peak_kv_occupancy"] <= 1.0


# -------------------------------------------------------------------------------------------------------------------
# up-front rejection


def test_model_that_does_not_fit_is_rejected_with_the_memory_verdict():
    with pytest.raises(InfeasibleError, match=r"pool 'EPD' \(l4, tp=1\): does not fit: needs .* GiB"):
        simulate(scenario(model="llava-1.5-13b", hardware="l4"), requests=10)


def test_infeasible_tp_is_rejected():
    with pytest.raises(InfeasibleError, match=r"tp: 3 does not divide the 32 attention heads"):
        simulate(scenario(serving={"tp": 3}), requests=10)


def test_encoder_pool_that_does_not_fit_is_rejected():
    sc = load_scenario("qwen25vl-epd-l4-encoder").model_dump(mode="json")
    sc["serving"]["gpu_memory_utilization"] = 0.05
    with pytest.raises(InfeasibleError, match=r"pool 'E' \(l4, tp=1\): does not fit"):
        simulate(sc, requests=10)


# -------------------------------------------------------------------------------------------------------------------
# hand-checkable figures


@pytest.mark.parametrize("model_id, hw_id, size, prompt, out, tp", [
    ("llava-1.5-7b", "h100-sxm", (1024, 768), 64, 128, 1),
    ("qwen2.5-vl-7b", "h100-sxm", (1280, 720), 100, 50, 1),
    ("llama-3.2-11b-vision", "h100-sxm", (1120, 1120), 30, 200, 1),
    ("internvl2.5-8b", "l40s", (1024, 768), 80, 60, 4),
])
def test_lone_request_ttft_is_encode_plus_prefill(model_id, hw_id, size, prompt, out, tp):
    sc = {"model": model_id, "hardware": hw_id, "serving": {"tp": tp},
          "workload": {"requests": 1, "arrival": {"kind": "constant", "rate_rps": 1}, "prompt_tokens": prompt,
                       "output_tokens": out, "images": 1, "image_size": f"{size[0]}x{size[1]}"}}
    row = simulate(sc).requests.iloc[0]
    m, hw = load_model(model_id), load_hardware(hw_id)
    est = estimate_request(m, hw, images=1, image_size=size, prompt_tokens=prompt, output_tokens=out, tp=tp,
                           profile=resolve_profile(hw, None))
    assert row.queue_s == 0.0
    assert row.encode_end_s - row.encode_start_s == pytest.approx(est.stages["encode"].time_s, rel=1e-12)
    assert row.ttft_s == pytest.approx(est.stages["encode"].time_s + est.stages["prefill"].time_s, rel=1e-12)
    # decode: the engine prices every step (attention within 0.5%), the estimate samples 32 contexts
    assert row.e2e_s == pytest.approx(est.e2e_s, rel=5e-3)


@pytest.mark.parametrize("runtime", ["vllm", "eager"])
def test_lone_request_under_a_runtime_matches_the_estimate_with_that_runtime(runtime):
    # A runtime wraps the profile with its kernel floor and adds its launch overhead once per batch step. A lone
    # request runs encode + prefill in one step (one overhead) and one step per further token, exactly the
    # estimate's accounting for `runtime=` (one prefill overhead, one per decode step).
    import lvlmsim

    sc = {"model": "llava-1.5-7b", "hardware": "h100-sxm", "serving": {"runtime": runtime},
          "workload": {"requests": 1, "arrival": {"kind": "constant", "rate_rps": 1}, "prompt_tokens": 64,
                       "output_tokens": 128, "images": 1, "image_size": "336x336"}}
    res = simulate(sc)
    row = res.requests.iloc[0]
    est = lvlmsim.estimate("llava-1.5-7b", "h100-sxm", prompt_tokens=64, output_tokens=128, runtime=runtime)
    assert row.ttft_s == pytest.approx(est.ttft_s, rel=1e-12)
    assert row.e2e_s == pytest.approx(est.e2e_s, rel=5e-3)
    assert res.meta["pools"][0]["profile"].endswith(f"+{runtime}")
    plain = simulate(sc | {"serving": {}}).requests.iloc[0]
    assert row.ttft_s > plain.ttft_s  # launch overhead and (eager) kernel floors only ever add time
    # the argument overrides the scenario's
    assert simulate(sc, runtime="sglang").meta["pools"][0]["profile"].endswith("+sglang")


def test_unknown_runtime_names_the_field_and_the_allowed_values():
    with pytest.raises(SpecError, match="serving.runtime.*vllm.*eager"):
        simulate({"model": "llava-1.5-7b", "hardware": "h100-sxm", "serving": {"runtime": "tgi"}})
    with pytest.raises(SpecError, match="unknown runtime 'tgi'; allowed: vllm"):
        simulate(None, runtime="tgi")


def test_constant_rate_below_capacity_has_no_queueing():
    # one request every 2 s, each done in ~1.5 s: every arrival finds an idle instance
    sc = scenario(workload={"arrival": {"kind": "constant", "rate_rps": 0.5}, "output_tokens": 128,
                            "prompt_tokens": 64})
    res = simulate(sc, requests=30)
    df = res.requests
    assert (df.queue_s == 0.0).all()
    assert df.ttft_s.max() == pytest.approx(df.ttft_s.min(), rel=1e-9)
    # at half of capacity, overlapping requests wait at most for the step in progress
    res = simulate(scenario(workload={"arrival": {"kind": "constant", "rate_rps": 10}}), requests=400, seed=1)
    step = max(i["max_step_s"] for i in res.summary["instances"])
    assert res.requests.queue_s.max() <= step + 1e-12
    assert res.summary["saturation"]["verdict"] == "stable"


# -------------------------------------------------------------------------------------------------------------------
# load, pools, sessions, traces


def test_past_capacity_turns_backlogged_and_ttft_grows():
    low = simulate(requests=1500, seed=1, rate=12).summary
    high = simulate(requests=1500, seed=1, rate=40).summary
    assert low["saturation"]["verdict"] == "stable"
    assert high["saturation"]["verdict"] == "backlogged"
    assert high["ttft_s"]["p90"] > 10 * low["ttft_s"]["p90"]
    assert high["goodput_rps"] < high["throughput_rps"]


def test_chat_sessions_past_capacity_are_backlogged_though_later_turns_are_closed_loop():
    """Later turns wait for the previous answer, so requests in the system cannot pile up by themselves; the verdict
    counts sessions instead (started minus ended). multiturn-chat at 1 session/s is served within ~0.2 s p90; at 4
    sessions/s the p90 TTFT is seconds and sessions accumulate."""
    low = simulate("multiturn-chat", requests=2000, seed=1).summary
    high = simulate("multiturn-chat", requests=2000, seed=1, rate=4.0).summary
    assert low["saturation"]["unit"] == "sessions"
    assert (low["saturation"]["verdict"], high["saturation"]["verdict"]) == ("stable", "backlogged")
    assert high["ttft_s"]["p90"] > 10 * low["ttft_s"]["p90"]
    assert simulate(requests=50, seed=1).summary["saturation"]["unit"] == "requests"


def test_epd_records_transfer_time_per_request():
    res = simulate("qwen25vl-epd-h100", requests=200, seed=2)
    df = res.requests
    assert (df.transfer_s > 0).all()
    assert set(df.pool) == {"E>P>D"}
    assert df.instance.str.match(r"^E0>P0>D[01]$").all()
    assert res.summary["transfer_s"]["mean"] > 0
    assert (df.encode_end_s <= df.first_token_s).all()
    roles = {i["role"] for i in res.summary["instances"]}
    assert roles == {"E", "P", "D"}


@pytest.mark.parametrize("pools", [
    [{"role": "E"}, {"role": "PD"}],
    [{"role": "EP"}, {"role": "D", "instances": 2}],
])
def test_other_disaggregations(pools):
    sc = load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
    sc["serving"]["pools"] = pools
    res = simulate(sc, requests=120, seed=1)
    conserved(res)
    assert res.summary["completed"] == 120
    assert (res.requests.transfer_s > 0).all()


def test_sessions_wait_for_the_previous_answer():
    res = simulate("multiturn-chat", requests=120, seed=3)
    df = res.requests.sort_values(["session_id", "turn"])
    for _, chat in df.groupby("session_id"):
        fin = chat.finish_s.to_numpy()[:-1]
        arr = chat.arrival_s.to_numpy()[1:]
        assert (arr > fin).all()
        assert chat.prompt_tokens.is_monotonic_increasing
        assert chat.images.is_monotonic_increasing


def test_trace_replay_uses_the_trace_times():
    res = simulate("llava-trace-replay")
    df = res.requests
    assert len(df) == 60 and res.summary["completed"] == 60
    from lvlmsim.engine.trace import load_trace
    from lvlmsim.specs.registry import traces_dir

    times = sorted(r.arrival_s for r in load_trace(traces_dir() / "sample-chat.csv"))
    assert sorted(df.arrival_s) == pytest.approx(times)  # ids follow units (a session's turns together)


def test_video_requests_are_heavy_on_visual_tokens():
    res = simulate("video-qa", requests=40, seed=1)
    df = res.requests
    assert df.visual_tokens.min() >= 2562 and res.summary["completed"] == 40


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "kv_aware"])
def test_routers_spread_load(router):
    res = simulate(scenario(serving={"instances": 3, "router": router}), requests=300, seed=1, rate=20)
    counts = res.requests.instance.value_counts()
    assert len(counts) == 3
    if router == "round_robin":
        assert counts.max() - counts.min() <= 1


def test_cost_and_energy_are_consistent():
    res = simulate(requests=300, seed=1)
    s = res.summary
    hw = load_hardware("h100-sxm")
    assert s["cost_usd"] == pytest.approx(hw.price_per_hour_usd * s["span_s"] / 3600)
    tokens = res.requests.output_tokens.sum()
    assert s["usd_per_1m_output_tokens"] == pytest.approx(s["cost_usd"] / tokens * 1e6)
    busy = s["instances"][0]["busy_s"]
    assert s["energy_j"] == pytest.approx(hw.idle_power_w * s["span_s"] + (hw.tdp_w - hw.idle_power_w) * busy)
    assert 0 < s["instances"][0]["utilisation"] <= 1.0 + 1e-9
    assert not math.isnan(s["itl_s"]["p99"])


def test_energy_is_unknown_not_zero_on_hardware_without_a_published_power():
    """TPU v6e has no published per-chip power (tdp_w null): energy must read None, while dollars still count."""
    res = simulate(scenario(hardware="tpu-v6e", model="qwen2-vl-7b"), requests=20, seed=1)
    s = res.summary
    assert s["energy_j"] is None and s["joules_per_output_token"] is None
    assert s["cost_usd"] == pytest.approx(load_hardware("tpu-v6e").price_per_hour_usd * s["span_s"] / 3600)


def test_progress_is_driven_by_completions_and_rate_rescales_traces():
    calls = []
    res = simulate(requests=400, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (400, 400)
    assert len(calls) < 300 and all(b == 400 for _, b in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    fast = simulate("llava-trace-replay", rate=20.0)
    from lvlmsim.engine.trace import load_trace, trace_mean_rate
    from lvlmsim.specs.registry import traces_dir

    path = traces_dir() / "sample-chat.csv"
    scale = trace_mean_rate(path) / 20.0
    # open arrivals (single requests, first turns) keep their recorded times x scale; later turns of a session wait
    # for the previous answer as well, so they may come later than their scaled time, never earlier
    rows = load_trace(path)
    opens = sorted(r.arrival_s * scale for r in rows if r.session_id is None or (r.turn or 1) == 1)
    df = fast.requests
    assert sorted(df[(df.session_id < 0) | (df.turn == 1)].arrival_s) == pytest.approx(opens)
    later = sorted(r.arrival_s * scale for r in rows if r.session_id is not None and (r.turn or 1) > 1)
    got = sorted(df[(df.session_id >= 0) & (df.turn > 1)].arrival_s)
    assert all(g >= t - 1e-9 for g, t in zip(got, later, strict=True))
    assert res.summary["completed"] == 400


@pytest.mark.parametrize("chunked", [True, False])
def test_inter_token_latency_agrees_with_tpot(chunked):
    """Token-weighted ITL and per-request TPOT describe the same gaps (v0's prefill-only steps stall decoders)."""
    res = simulate(scenario(serving={"chunked_prefill": chunked}), requests=600, seed=2, rate=18)
    df = res.requests
    done = df[df.output_tokens > 1]
    token_weighted_tpot = float((done.tpot_s * (done.output_tokens - 1)).sum() / (done.output_tokens - 1).sum())
    assert res.summary["itl_s"]["mean"] == pytest.approx(token_weighted_tpot, rel=0.02)
