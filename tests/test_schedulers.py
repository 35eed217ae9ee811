"""Scheduler policies: every policy runs every shipped scenario; each one's defining behaviour, checked against fcfs
where a limit of its parameter makes it fcfs (identical per-request timelines) and by a hand-derived ordering where
it should differ; encode-ahead and swap preemption by what they must change."""

from __future__ import annotations

import importlib

import pytest

from lvlmsim.engine.api import simulate
from lvlmsim.engine.schedulers import SchedulerPolicy, policy_class
from lvlmsim.errors import SpecError
from lvlmsim.specs.registry import scenario_ids
from lvlmsim.specs.scenario import load_scenario
from lvlmsim.specs.serving import SCHEDULERS

TIMELINE = ["request_id", "arrival_s", "queue_s", "encode_start_s", "encode_end_s", "first_token_s", "finish_s",
            "preemptions", "instance"]


def scenario(ref: str = "llava-chat-h100", **serving) -> dict:
    d = load_scenario(ref).model_dump(mode="json")
    d["serving"].update(serving)
    return d


def timeline(res) -> list[tuple]:
    return list(res.requests[TIMELINE].itertuples(index=False))


def test_every_registered_name_is_a_policy_module():
    """The spec's closed set and the modules agree: each name has a module whose POLICY carries that name."""
    for name in SCHEDULERS:
        cls = importlib.import_module(f"lvlmsim.engine.schedulers.{name}").POLICY
        assert issubclass(cls, SchedulerPolicy) and cls.name == name and policy_class(name) is cls


def test_routers_and_runtimes_match_their_declared_names():
    """The spec's closed sets of routers and runtimes name exactly the engine's routers and the runtime table."""
    from lvlmsim.cost.runtime import RUNTIMES
    from lvlmsim.engine.router import ROUTERS as ROUTER_CLASSES
    from lvlmsim.specs.serving import ROUTERS, RUNTIME_NAMES

    assert set(ROUTER_CLASSES) == set(ROUTERS)
    assert set(RUNTIMES) == set(RUNTIME_NAMES)


@pytest.mark.parametrize("policy", SCHEDULERS)
@pytest.mark.parametrize("sid", scenario_ids())
def test_policy_runs_every_shipped_scenario(policy: str, sid: str):
    res = simulate(scenario(sid, scheduler=policy), requests=120)
    s = res.summary
    assert s["requests"] == s["completed"] + s["rejected"] + s["in_flight"] > 0
    assert s["completed"] > 0
    assert res.meta.get("scheduler", "fcfs") == policy


def test_unknown_scheduler_is_one_clear_error():
    with pytest.raises(SpecError, match=r"scheduler.*fcfs"):
        simulate(scenario(scheduler="lifo"), requests=10)


@pytest.mark.parametrize("overrides", [
    {"scheduler": "sjf", "sjf_aging_tokens_per_s": 1e12},  # aging dominates: rank = arrival order
    {"scheduler": "sarathi", "scheduler_token_budget": 8192},  # the budget of fcfs (max_num_batched_tokens)
])
def test_policy_in_its_fcfs_limit_gives_fcfs_timelines(overrides: dict):
    """Overloaded (preemptions happen), so queue order, requeueing and budgets all matter."""
    base = simulate(scenario(), requests=600, rate=40, seed=3)
    other = simulate(scenario(**overrides), requests=600, rate=40, seed=3)
    assert base.summary["preemptions"] > 0
    assert timeline(other) == timeline(base)


def test_edf_without_deadlines_is_fcfs():
    d = scenario(scheduler="edf")
    d["slos"] = {}
    base = scenario()
    base["slos"] = {}
    assert timeline(simulate(d, requests=600, rate=40, seed=3)) == timeline(simulate(base, requests=600, rate=40,
                                                                                      seed=3))


CLASSES = [{"name": "interactive", "fraction": 0.3, "priority": 0, "ttft_slo_s": 0.5},
           {"name": "batch", "fraction": 0.7, "priority": 1, "ttft_slo_s": 60.0}]


@pytest.mark.parametrize("policy", ["priority", "edf"])
def test_urgent_class_overtakes_under_overload(policy: str):
    """At 40 req/s (over 2x capacity) fcfs gives both classes the same queueing; priority and edf serve the urgent
    class first, so its p90 TTFT is far below the other class's (and below its own under fcfs)."""
    runs = {}
    for pol in ("fcfs", policy):
        d = scenario(scheduler=pol)
        d["workload"]["classes"] = CLASSES
        runs[pol] = simulate(d, requests=800, rate=40, seed=3).summary["classes"]
    fc, pr = runs["fcfs"], runs[policy]
    assert fc["interactive"]["ttft_s"]["p90"] > 0.5 * fc["batch"]["ttft_s"]["p90"]
    assert pr["interactive"]["ttft_s"]["p90"] < 0.1 * pr["batch"]["ttft_s"]["p90"]
    assert pr["interactive"]["ttft_s"]["p90"] < 0.1 * fc["interactive"]["ttft_s"]["p90"]
    assert pr["interactive"]["requests"] == fc["interactive"]["requests"]


def test_classes_are_interleaved_in_their_fractions():
    d = scenario()
    d["workload"]["classes"] = CLASSES
    res = simulate(d, requests=1000)
    share = (res.requests.request_class == "interactive").mean()
    assert abs(share - 0.3) < 0.01
    first_100 = (res.requests.request_class.head(100) == "interactive").mean()
    assert abs(first_100 - 0.3) < 0.05  # low-discrepancy: no stretch of one class


def test_sjf_serves_short_prompts_first_under_overload():
    """Half the prompts are 64 tokens, half 4000, and 4 batch slots: at 8 req/s the queue grows, and sjf (no aging)
    gives the short prompts a far lower median TTFT than fcfs does, at the long prompts' expense."""
    def run(policy: str):
        d = scenario(scheduler=policy, sjf_aging_tokens_per_s=0.0, max_num_seqs=4)
        d["workload"]["prompt_tokens"] = {"kind": "empirical", "values": [64, 4000]}
        d["workload"]["images"] = 0
        df = simulate(d, requests=400, rate=8, seed=5).requests
        short = df.prompt_tokens < 1000
        return df.ttft_s[short].median(), df.ttft_s[~short].median()

    fs, fl = run("fcfs")
    ss, sl = run("sjf")
    assert ss < 0.5 * fs and sl > fl


def step_tokens(monkeypatch, policy: str) -> list[int]:
    """New tokens (decodes + prefill chunks) of every batch step priced by the general path."""
    from lvlmsim.engine.stepcost import StepCost

    seen: list[int] = []
    real = StepCost.step_s

    def spy(self, n_dec, dec_past_sum, chunks=(), **kw):
        seen.append(n_dec + sum(c[0] for c in chunks))
        return real(self, n_dec, dec_past_sum, chunks, **kw)

    monkeypatch.setattr(StepCost, "step_s", spy)
    d = scenario(scheduler=policy)
    d["workload"]["prompt_tokens"] = {"kind": "empirical", "values": [8000, 100, 100, 100]}
    d["serving"]["max_model_len"] = 16384
    d["serving"]["allow_long_max_model_len"] = True  # past llava-1.5-7b's 4096: the prompts are long on purpose
    simulate(d, requests=200, rate=3, seed=2)
    return seen


def test_sarathi_keeps_every_step_within_its_token_budget(monkeypatch):
    """Stall-free batching: with 8000-token prompts, fcfs packs prefill chunks of up to 8192 tokens into a step
    (every decode waits for it); sarathi never puts more than its 512-token budget in one step."""
    assert max(step_tokens(monkeypatch, "fcfs")) > 4000
    assert max(step_tokens(monkeypatch, "sarathi")) <= 512


def test_sarathi_budget_below_max_num_seqs_is_refused():
    with pytest.raises(SpecError, match="scheduler_token_budget"):
        simulate(scenario(scheduler="sarathi", scheduler_token_budget=64), requests=10)


def test_encode_ahead_encodes_a_request_waiting_for_a_batch_slot():
    """max_num_seqs 1: the second request waits until the first finishes. Co-batched, its encoder runs when it is
    admitted; encoded ahead, it runs in one of the first request's steps (the encoder budget has room), so the
    step that prefills it after the first finishes is shorter by exactly the encoder time."""
    def run(policy: str):
        d = scenario(encoder_policy=policy, max_num_seqs=1)
        d["workload"]["arrival"] = {"kind": "constant", "rate_rps": 1000}
        return simulate(d, requests=2).requests.set_index("request_id")

    co, ahead = run("co_batch"), run("encode_ahead")
    assert co.encode_start_s[1] >= co.finish_s[0]
    assert ahead.encode_start_s[1] < ahead.finish_s[0]
    enc_s = co.encode_end_s[1] - co.encode_start_s[1]
    assert enc_s > 0
    assert ahead.first_token_s[1] - ahead.finish_s[0] == pytest.approx(co.first_token_s[1] - co.finish_s[0] - enc_s,
                                                                       rel=1e-6)


def test_encode_ahead_needs_a_fifo_queue():
    with pytest.raises(SpecError, match="encode_ahead"):
        simulate(scenario(encoder_policy="encode_ahead", scheduler="sjf"), requests=10)


def test_swap_preemption_keeps_the_kv_and_pays_the_host_link():
    """Overloaded: both preempt, every request completes, and swap finishes requests sooner on average: moving a
    sequence's KV over 64 GB/s PCIe takes milliseconds, recomputing it is a prefill of prompt + generated tokens
    that also competes for the step budget."""
    rec = simulate(scenario(), requests=600, rate=40, seed=3)
    swp = simulate(scenario(preemption="swap"), requests=600, rate=40, seed=3)
    assert rec.summary["preemptions"] > 0 and swp.summary["preemptions"] > 0
    assert swp.summary["completed"] == 600
    assert swp.summary["e2e_s"]["mean"] < rec.summary["e2e_s"]["mean"]


def test_swap_time_is_kv_bytes_over_the_host_link():
    """One number by hand: LLaVA-1.5-7B KV is 32 layers x 2 x 4096 x 2 bytes = 512 KiB per token; 1000 tokens over
    the H100's 64 GB/s PCIe Gen5 link take 524288000 / 64e9 = 8.192 ms."""
    from lvlmsim.engine.cluster import swap_time
    from lvlmsim.engine.request import Request
    from lvlmsim.ops.op import default_graph_config
    from lvlmsim.specs.registry import load_hardware, load_model
    from lvlmsim.specs.serving import ServingSpec

    m, hw = load_model("llava-1.5-7b"), load_hardware("h100-sxm")
    seconds = swap_time(m, default_graph_config(m, 1), hw, ServingSpec(preemption="swap"), "pool")
    assert seconds(Request(0, arrival_s=0.0, prompt_tokens=1000, output_tokens=1), 1000) == pytest.approx(8.192e-3)


def test_swap_without_a_host_link_is_refused_by_name():
    d = scenario(preemption="swap")
    d["hardware"] = "a10g"
    with pytest.raises(SpecError, match=r"serving\.preemption.*host_link_gbps"):
        simulate(d, requests=10)


def test_keyed_queue_serves_in_key_order_and_requeues_ahead_of_equals():
    from lvlmsim.engine.request import Request
    from lvlmsim.engine.schedulers import KeyedQueue

    q = KeyedQueue(lambda r: r.priority)
    rs = [Request(i, arrival_s=float(i), prompt_tokens=1, output_tokens=1) for i in range(5)]
    for r, p in zip(rs, (1, 0, 1, 0, 1), strict=False):
        r.priority = p
    for r in rs[:4]:
        q.append(r)
    assert [r.id for r in q] == [1, 3, 0, 2] and len(q) == 4
    assert q.popleft().id == 1
    q.appendleft(rs[4])  # a preempted request goes back ahead of the queued ones with its key, behind lower keys
    assert q[0].id == 3
    assert [q.popleft().id for _ in range(4)] == [3, 4, 0, 2]
