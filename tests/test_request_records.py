"""Per-request records stay truthful after preemption (issue 15): the re-encode of a preempted request used to
overwrite encode_start_s/encode_end_s (so encode_end_s > first_token_s for every preempted request), and queue_s
mixed the initial queueing with the waits after preemption."""

from __future__ import annotations

import numpy as np
import pytest

from lvlmsim.engine.api import simulate
from lvlmsim.specs.scenario import load_scenario


@pytest.fixture(scope="module")
def preempted():
    """A KV cache squeezed to a few sequences' worth under 3x overload: many requests are preempted."""
    d = load_scenario("llava-chat-h100").model_dump(mode="json")
    d["serving"]["gpu_memory_utilization"] = 0.2
    res = simulate(d, requests=600, rate=40, seed=2)
    df = res.requests
    assert (df.preemptions > 0).sum() >= 20, "the scenario must preempt for this test to mean anything"
    return df


def test_first_encode_precedes_the_first_token(preempted):
    done = preempted[preempted.status == "completed"]
    assert (done.encode_start_s <= done.encode_end_s).all()
    assert (done.encode_end_s <= done.first_token_s + 1e-12).all()
    assert (done.last_encode_end_s >= done.encode_end_s).all()


def test_reencodes_are_counted_and_only_after_a_preemption(preempted):
    df = preempted
    assert (df.reencodes <= df.preemptions).all()
    clean = df[df.preemptions == 0]
    assert (clean.reencodes == 0).all()
    assert np.allclose(clean.last_encode_end_s, clean.encode_end_s, equal_nan=True)
    assert (df.reencodes > 0).any()  # vLLM drops a preempted request's encoder outputs; the engine re-encodes


def test_queue_split_into_initial_and_after_preemption(preempted):
    df = preempted
    assert (df.preempted_wait_s >= 0).all()
    assert (df.preempted_wait_s <= df.queue_s + 1e-9).all()
    assert (df[df.preemptions == 0].preempted_wait_s == 0).all()
    assert (df[df.preemptions > 0].preempted_wait_s > 0).any()


@pytest.mark.parametrize("rate", [None, 50.0])
def test_a_replayed_sessions_turns_wait_for_the_previous_answer(rate):
    """Compressing a multi-turn trace (here ~50x its recorded rate) let a turn start before the previous answer;
    a later turn is now sent after that answer, and never before its own recorded (scaled) arrival."""
    res = simulate("llava-trace-replay", rate=rate)
    df = res.requests
    chats = df[df.session_id >= 0].sort_values(["session_id", "turn"])
    assert chats.session_id.nunique() >= 2 and (chats.turn > 1).any()
    for _, chat in chats.groupby("session_id"):
        prev_finish = chat.finish_s.to_numpy()[:-1]
        later_arrival = chat.arrival_s.to_numpy()[1:]
        assert (later_arrival >= prev_finish - 1e-12).all()
    assert res.summary["completed"] == len(df)
