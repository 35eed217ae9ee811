"""Invariants and oracles for the engine features added after tests/test_engine_invariants.py and
tests/test_engine_oracle.py were written: expert parallelism and MoE decode, windowed (sliding / chunked) attention,
MLA's latent KV, Qwen3-VL's DeepStack, closed-loop clients and rate + concurrency cap, warm-up exclusion, the host
stage and API costs, disaggregated pools, and `simulate --uncertainty` draws.

Oracles: StepCost against the operator graph it stands for (llm_ops priced by the cost model) and a lone request on
an idle engine against `estimate` for the same request. Invariants: conservation, the concurrency bound, Little's
law for a closed loop, KV bytes against the memory model's formulas, determinism."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

import lvlmsim
from lvlmsim.calibrate.profiles import resolve_profile
from lvlmsim.cost.memory import kv_bytes_per_token, kv_slot_bytes, local_window_slots, sequence_kv_bytes
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.api import simulate
from lvlmsim.engine.stepcost import DECODE_REL_TOL, StepCost, reference_step_s
from lvlmsim.ops.op import default_graph_config
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.scenario import load_scenario

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXACT = 1e-12

# -------------------------------------------------------------------------------------------------------------------
# StepCost = the operator graph, for the newer model families


def _coster(model_id: str, hw_id: str, tp: int, ep: int, runtime: str | None = None):
    """The model's graph config and StepCost on a device, its profile wrapped by `runtime` (eager: launch queue)."""
    m, hw = load_model(model_id), load_hardware(hw_id)
    cfg = default_graph_config(m, tp, ep)
    prof = resolve_profile(hw, None)
    if runtime is not None:
        from lvlmsim.cost.runtime import serving_runtime

        prof = serving_runtime(runtime, False).apply(prof)
    cm = CostModel(hw, prof)
    return m, cfg, cm, StepCost(m, cfg, cm)


def _batch(rng: random.Random, decode_only: bool, equal_decodes: bool):
    """Decoding sequences (past, past visual, cross) and prefill chunks, images in both; `equal_decodes`: every
    decoding sequence has the same past (windowed layers price decodes at the batch's mean length)."""
    past = rng.randint(1, 9000)
    decs = []
    for _ in range(rng.randint(1 if decode_only else 0, 64)):
        p = past if equal_decodes else rng.randint(1, 9000)
        decs.append((p, min(p, rng.choice([0, 300, 1200])), 0))
    chunks = []
    if not decode_only:
        for _ in range(rng.randint(1, 3)):
            vis_total = rng.choice([0, 256, 1200, 2900])
            prompt = vis_total + rng.randint(1, 1500)
            done = rng.randint(0, prompt - 1)
            new = rng.randint(1, min(prompt - done, 4096))
            chunks.append((new, done, max(0, min(done + new, vis_total) - done), min(done, vis_total), 0,
                           done + new == prompt))
    return decs, chunks


@pytest.mark.parametrize("model_id, hw_id, tp, ep, equal_decodes", [
    ("qwen3-vl-8b", "h100-sxm", 1, 1, False),  # DeepStack: its add scales with a step's new visual tokens
    ("qwen3-vl-30b-a3b", "h100-sxm", 1, 1, False),  # MoE: experts touched by each step's own tokens
    ("qwen3-vl-30b-a3b", "h100-sxm", 2, 2, False),
    ("qwen3-vl-235b-a22b", "h200-sxm", 8, 8, False),  # EP 8: the all-to-all in every step
    ("deepseek-vl2", "h100-sxm", 1, 1, False),  # MLA: absorbed decode, up-projected prefill
    ("kimi-vl-a3b", "h100-sxm", 1, 1, False),
    ("gemma-3-27b", "h100-sxm", 2, 1, True),  # sliding windows
    ("llama-4-scout", "h100-sxm", 8, 8, True),  # chunked local attention + MoE under EP
])
@pytest.mark.parametrize("runtime", [None, "eager"])
def test_step_prices_equal_the_graph_for_the_newer_families(model_id, hw_id, tp, ep, equal_decodes, runtime):
    """Steps with prefill tokens are priced exactly as llm_ops of the whole batch (under eager: through the launch
    queue, every op in its place); decode-only steps within the stated 0.5% (their KV is on a 1% grid). Windowed
    models price decoding sequences at the batch's mean length (an upper bound when lengths straddle the window,
    tests/test_local_attention.py), so they get equal lengths here."""
    m, cfg, cm, sc = _coster(model_id, hw_id, tp, ep, runtime)
    rng = random.Random(f"{model_id}-{tp}-{ep}")
    for i in range(24):
        decode_only = i % 3 == 0
        decs, chunks = _batch(rng, decode_only, equal_decodes)
        ref = reference_step_s(m, cfg, cm, decs, chunks)
        got = sc.step_s(len(decs), sum(p for p, _, _ in decs), chunks)
        assert got == pytest.approx(ref, rel=DECODE_REL_TOL if decode_only else EXACT), (decs[:2], chunks)


def test_mla_up_projection_keeps_its_place_in_an_eager_launch_queue():
    """Under eager the launch queue needs each op in issue order. MLA prefill up-projects the latent (kv_b_proj)
    before the output projection; StepCost prices it with the attention and queued both in one averaged slot at
    the up-projection's place, 18.3 us short on a 1,000-token Kimi-VL prefill on H100 (4.3 us on DeepSeek-VL2)."""
    for model_id in ("kimi-vl-a3b", "deepseek-vl2"):
        m, cfg, cm, sc = _coster(model_id, "h100-sxm", 1, 1, "eager")
        chunk = [(1000, 0, 0, 0, 0, True)]
        assert sc.step_s(0, 0, chunk) == pytest.approx(reference_step_s(m, cfg, cm, [], chunk), rel=EXACT)


def test_deepstack_add_is_priced_in_prefill_steps_with_images():
    """Qwen3-VL adds each of its 3 DeepStack levels into LLM layers 0-2 for every new visual token. StepCost
    memoised its token ops on the token count alone, from a batch without visual tokens, so a prefill step with
    images lacked llm.deepstack_add (22.8 us of an 800-token step with 500 visual tokens on H100)."""
    m, cfg, cm, sc = _coster("qwen3-vl-8b", "h100-sxm", 1, 1)
    text = sc.step_s(4, 4000, [(800, 0, 0, 0, 0, True)])
    image = sc.step_s(4, 4000, [(800, 0, 500, 0, 0, True)])
    assert image > text  # same token count, the visual ones add the DeepStack adds
    decs = [(1000, 0, 0)] * 4
    assert image == pytest.approx(reference_step_s(m, cfg, cm, decs, [(800, 0, 500, 0, 0, True)]), rel=EXACT)


# -------------------------------------------------------------------------------------------------------------------
# a lone request on an idle engine = estimate() for the same request


def _lone(model_id: str, hw_id: str, tp: int, ep: int, serving: dict, prompt: int = 300, out: int = 40) -> dict:
    return {"id": "lone", "model": model_id, "hardware": hw_id, "serving": {"tp": tp, "ep": ep, **serving},
            "workload": {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": prompt,
                         "output_tokens": out, "images": 1, "image_size": "1280x720"}}


@pytest.mark.parametrize("model_id, hw_id, tp, ep", [
    ("qwen3-vl-30b-a3b", "h100-sxm", 2, 2),
    ("qwen3-vl-235b-a22b", "h200-sxm", 8, 8),
    ("gemma-3-27b", "h100-sxm", 2, 1),
    ("llama-4-scout", "h100-sxm", 8, 1),
    ("deepseek-vl2", "h100-sxm", 1, 1),
    ("kimi-vl-a3b", "h100-sxm", 1, 1),
])
@pytest.mark.parametrize("serving", [
    {}, {"runtime": "vllm"}, {"runtime": "vllm", "api_costs": False}, {"runtime": "vllm", "host_costs": False},
    {"runtime": "vllm", "host_costs": "vllm-v1-piecewise"}, {"runtime": "sglang"}, {"runtime": "eager"},
], ids=["bare", "host+api", "host", "runtime-only", "piecewise", "sglang", "eager"])
def test_lone_request_equals_the_estimate(model_id, hw_id, tp, ep, serving):
    """TTFT to 1e-9 (the same ops: preprocess / API stage, encode, one prefill step, each runtime overhead once);
    TPOT and E2E within the decode grid's 0.5% (the estimate samples 32 decode contexts, the engine prices each step
    on a 1% KV grid)."""
    kw = {"prompt_tokens": 300, "output_tokens": 40, "image_size": "1280x720", "tp": tp}
    if ep > 1:
        kw["ep"] = ep
    if "runtime" in serving:
        kw["runtime"] = serving["runtime"]
        kw["host"] = serving.get("host_costs", serving["runtime"] != "eager")  # eager has no host profile
        kw["api_costs"] = serving.get("api_costs", True)
    est = lvlmsim.estimate(model_id, hw_id, **kw)
    row = simulate(_lone(model_id, hw_id, tp, ep, serving)).requests.iloc[0]
    assert row.queue_s == 0.0
    assert row.ttft_s == pytest.approx(est.ttft_s, rel=1e-9)
    assert row.tpot_s == pytest.approx(est.tpot_s, rel=DECODE_REL_TOL)
    assert row.e2e_s == pytest.approx(est.e2e_s, rel=DECODE_REL_TOL)


# -------------------------------------------------------------------------------------------------------------------
# closed loop and concurrency cap


def _bench(arrival: dict, requests: int = 60, serving: dict | None = None, **workload) -> dict:
    return {"id": "bench", "model": "qwen3-vl-30b-a3b", "hardware": "h100-sxm", "seed": 3, "serving": serving or {},
            "workload": {"requests": requests, "arrival": arrival, "image_size": "640x480",
                         "prompt_tokens": {"kind": "uniform", "low": 100, "high": 600},
                         "output_tokens": {"kind": "uniform", "low": 8, "high": 80}, **workload}}


def _max_in_flight(df: pd.DataFrame) -> int:
    """Most requests sent and not yet received whole at any send time (a delivery at that instant frees first)."""
    ends = np.sort(df.finish_s.to_numpy())
    starts = df.arrival_s.to_numpy()
    return max(int((starts <= t).sum() - np.searchsorted(ends, t, side="right")) for t in starts)


SERVINGS = [{}, {"runtime": "vllm"}]  # without, and with the host stage and API costs (token delivery)


@pytest.mark.parametrize("serving", SERVINGS, ids=["bare", "host+api"])
@pytest.mark.parametrize("clients", [1, 5])
def test_closed_loop_holds_n_in_flight_and_obeys_littles_law(clients, serving):
    """A client sends its next request when its previous answer has reached it (its last token delivered, API costs
    included), so at most N are in flight, and N are while requests remain. Little's law for the loop: the clients
    are busy back to back from t = 0 until each runs out of requests, so sum(E2E) = N * span minus each client's
    final idle time, which is shorter than the longest E2E: N (1 - max E2E / span) <= throughput x mean E2E <= N,
    with equality for one client."""
    res = simulate(_bench({"kind": "concurrency", "clients": clients}, serving=serving))
    df, s = res.requests, res.summary
    assert _max_in_flight(df) == clients
    for _, mine in df.sort_values("arrival_s", kind="stable").groupby("client"):
        assert (mine.arrival_s.to_numpy()[1:] == mine.finish_s.to_numpy()[:-1]).all()  # no think time
    assert s["span_s"] == df.finish_s.max()  # the run lasts until the last answer is received
    n_in_system = s["throughput_rps"] * df.e2e_s.mean()
    assert n_in_system <= clients * (1 + 1e-12)
    assert n_in_system >= clients * (1 - df.e2e_s.max() / s["span_s"])
    if clients == 1:
        assert n_in_system == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("serving", SERVINGS, ids=["bare", "host+api"])
def test_rate_with_a_cap_never_exceeds_the_cap(serving):
    df = simulate(_bench({"kind": "poisson", "rate_rps": 40.0}, serving=serving, max_concurrency=4)).requests
    assert _max_in_flight(df) == 4


def test_a_sessions_next_turn_waits_for_the_previous_answer_to_be_delivered():
    """With API costs every token reaches the user token_out_s after the engine emits it; a chat's next turn is
    typed after the previous answer has arrived whole plus the think time (0 here), never before."""
    doc = _bench({"kind": "poisson", "rate_rps": 2.0}, requests=30, serving={"runtime": "vllm"},
                 session={"turns": 3, "think_time_s": 0.0})
    res = simulate(doc)
    df = res.requests.sort_values(["session_id", "turn"])
    assert res.summary["host"]["token_out_s"] > 0 and df.turn.max() == 3
    for _, chat in df.groupby("session_id"):
        assert (chat.arrival_s.to_numpy()[1:] == chat.finish_s.to_numpy()[:-1]).all()


# -------------------------------------------------------------------------------------------------------------------
# conservation and warm-up, under every arrival kind

ARRIVALS = {
    "poisson": ({"kind": "poisson", "rate_rps": 30.0}, {}),
    "gamma": ({"kind": "gamma", "rate_rps": 30.0, "cv": 3.0}, {}),
    "constant": ({"kind": "constant", "rate_rps": 30.0}, {}),
    "concurrency": ({"kind": "concurrency", "clients": 5}, {}),
    "rate+cap": ({"kind": "poisson", "rate_rps": 30.0}, {"max_concurrency": 4}),
}


def _first_sent(df: pd.DataFrame, n: int) -> list[int]:
    return list(df.sort_values(["arrival_s", "request_id"]).request_id[:n])


@pytest.mark.parametrize("serving", SERVINGS, ids=["bare", "host+api"])
@pytest.mark.parametrize("kind", list(ARRIVALS))
def test_every_request_is_counted_once_and_warmup_only_leaves_the_metrics(kind, serving):
    """Every request sent completes (nothing is refused here) and is in the table once; throughput and output
    tokens per second are what the table's completed requests carry over the span. Warm-up requests are the first
    ones sent: the run is the same (the other rows equal the run without warm-up, bit for bit), the table and every
    metric leave them out, and the span starts at the next send and ends at the last answer received."""
    arrival, extra = ARRIVALS[kind]
    warm = 8
    full = simulate(_bench(arrival, serving=serving, **extra))
    res = simulate(_bench(arrival, serving=serving, warmup_requests=warm, **extra))
    for r, n in ((full, 60), (res, 60 - warm)):
        s, df = r.summary, r.requests
        assert r.meta["requests_planned"] == 60
        assert s["requests"] == len(df) == n == s["completed"] and df.request_id.is_unique
        assert s["throughput_rps"] * s["span_s"] == pytest.approx(n, rel=1e-12)
        assert s["output_tokens_per_s"] * s["span_s"] == pytest.approx(df.output_tokens.sum(), rel=1e-12)
    gone = _first_sent(full.requests, warm)
    assert set(full.requests.request_id) - set(res.requests.request_id) == set(gone)
    kept = full.requests[~full.requests.request_id.isin(gone)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, res.requests.reset_index(drop=True), check_exact=True)
    start = res.summary["warmup"]["measured_from_s"]
    assert start == res.requests.arrival_s.min()
    assert res.summary["span_s"] == pytest.approx(full.requests.finish_s.max() - start, rel=1e-12)


def test_warmup_counts_every_turn_sent_not_only_first_turns():
    """'The first N requests sent are warm-up': with chat sessions a later turn can be sent before the next session
    starts. The engine counted only first turns, so with 2 warm-up requests the two sessions' later turns (4
    requests, sent before measuring started) stayed in the metrics, outside the span that measures them."""
    doc = {"id": "w", "model": "llava-1.5-7b", "hardware": "h100-sxm", "seed": 1,
           "workload": {"requests": 12, "arrival": {"kind": "constant", "rate_rps": 0.5}, "prompt_tokens": 50,
                        "output_tokens": 20, "session": {"turns": 3, "think_time_s": 0.0}, "warmup_requests": 2}}
    res = simulate(doc)
    df = res.requests
    start = res.summary["warmup"]["measured_from_s"]
    assert len(df) == 10 and (df.arrival_s >= start).all()
    full = simulate({**doc, "workload": {**doc["workload"], "warmup_requests": 0}}).requests
    assert set(full.request_id) - set(df.request_id) == set(_first_sent(full, 2))  # session 0's turns 1 and 2


def test_a_replayed_trace_is_conserved_with_warmup_and_host_costs():
    sc = load_scenario("llava-trace-replay").model_dump(mode="json")
    sc["serving"]["runtime"] = "vllm"
    sc["workload"]["warmup_requests"] = 5
    res = simulate(sc)
    s, df = res.summary, res.requests
    assert s["requests"] == len(df) == s["completed"] == 55 and df.request_id.is_unique
    assert s["throughput_rps"] * s["span_s"] == pytest.approx(55, rel=1e-12)
    assert (df.arrival_s >= s["warmup"]["measured_from_s"]).all()


# -------------------------------------------------------------------------------------------------------------------
# MoE: every decode step is priced with its own batch (experts touched, all-to-all)


@pytest.mark.parametrize("n", [1, 8, 32])
def test_moe_decode_steps_are_priced_with_the_batch_that_runs_them(n):
    """n identical requests sent together prefill in one step and decode in lockstep: TPOT is the mean over the
    steps of the graph's decode step of n sequences at that step's context, with the experts those n tokens touch
    and EP 8's all-to-all (the engine within its 0.5% decode grid). Batch 1 touches 8 of 128 experts a layer,
    batch 32 about 111, so TPOT grows with n."""
    mid, hw_id, tp, ep, prompt, out = "qwen3-vl-235b-a22b", "h200-sxm", 8, 8, 200, 30
    m, hw = load_model(mid), load_hardware(hw_id)
    cfg = default_graph_config(m, tp, ep)
    cm = CostModel(hw, resolve_profile(hw, None))
    sc = {"id": "moe", "model": mid, "hardware": hw_id, "serving": {"tp": tp, "ep": ep},
          "workload": {"requests": n, "arrival": {"kind": "concurrency", "clients": n}, "prompt_tokens": prompt,
                       "output_tokens": out, "images": 0}}
    df = simulate(sc).requests
    assert df.first_token_s.nunique() == 1 and df.finish_s.nunique() == 1  # lockstep
    steps = [reference_step_s(m, cfg, cm, [(prompt + j, 0, 0)] * n) for j in range(out - 1)]
    assert df.tpot_s.iloc[0] == pytest.approx(sum(steps) / len(steps), rel=DECODE_REL_TOL)
    if n > 1:
        one = [reference_step_s(m, cfg, cm, [(prompt + j, 0, 0)]) for j in range(out - 1)]
        assert df.tpot_s.iloc[0] > 1.2 * sum(one) / len(one)


# -------------------------------------------------------------------------------------------------------------------
# KV accounting: windowed layers, MLA's latent, admission up to the memory budget


@pytest.mark.parametrize("model_id, tp, slot_bytes, full_bytes", [
    # Gemma 3 27B: 62 layers, 16 KV heads x 128 x (K, V) x 2 B / tp 2 = 4,096 B a layer; 10 global layers keep every
    # token, 52 sliding ones a window of 1,024
    ("gemma-3-27b", 2, 10 * 4096, 62 * 4096),
    # Llama 4 Scout: 48 layers, 8 KV heads x 128 x 2 x 2 B / tp 8 = 512 B a layer; 12 global, 36 chunked (8,192)
    ("llama-4-scout", 8, 12 * 512, 48 * 512),
    # MLA: the latent (kv_lora_rank 512 + 64 rope dims) x 2 B in every layer, on every device whatever the tp
    ("deepseek-vl2", 1, 30 * 576 * 2, 30 * 576 * 2),
    ("deepseek-vl2", 2, 30 * 576 * 2, 30 * 576 * 2),
    ("kimi-vl-a3b", 1, 27 * 576 * 2, 27 * 576 * 2),
])
def test_kv_held_per_request_is_the_memory_models_bytes(model_id, tp, slot_bytes, full_bytes):
    """An engine slot holds a token of the layers that keep every token (hand-derived above); a lone request's peak
    blocks x block bytes cover its KV bytes by the memory model (windowed layers hold one window) to within a
    block and a slot. Past the window a windowed model's blocks grow by the global layers' bytes only."""
    m = load_model(model_id)
    cfg = default_graph_config(m, tp)
    assert kv_slot_bytes(m, cfg) == slot_bytes and kv_bytes_per_token(m, cfg) == full_bytes
    la = m.llm.local_attention
    short, long = (9000, 9800) if la is not None and la.window_tokens > 3000 else (3000, 3800)  # past the window
    held = {}
    for prompt in (200, short, long):
        sc = {"id": "kv", "model": model_id, "hardware": "h100-sxm", "serving": {"tp": tp},
              "workload": {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": prompt,
                           "output_tokens": 50, "images": 0}}
        s = simulate(sc).summary
        block_bytes = 16 * slot_bytes
        held[prompt] = s["peak_kv_occupancy"] * s["instances"][0]["kv_blocks"] * block_bytes
        true = sequence_kv_bytes(m, cfg, prompt + 50, 0)
        assert 0 <= held[prompt] - true < block_bytes + slot_bytes
    if la is not None:
        assert held[long] - held[short] == pytest.approx(800 * slot_bytes, abs=16 * slot_bytes)


@pytest.mark.parametrize("model_id, tp, ep, gpu_util", [
    ("gemma-3-27b", 2, 1, 0.42),
    ("deepseek-vl2", 1, 1, 0.70),
    ("qwen3-vl-30b-a3b", 2, 2, 0.45),
])
def test_engine_fills_the_kv_budget_and_never_more(model_id, tp, ep, gpu_util):
    """48 clients of 3,000-token prompts on a KV budget of ~20-40 such requests: the engine admits until the
    budget is within one request of full (peak occupancy >= 1 - one request's blocks / all blocks) and never past
    it; every request completes."""
    prompt, out = 3000, 64
    sc = {"id": "fill", "model": model_id, "hardware": "h100-sxm",
          "serving": {"tp": tp, "ep": ep, "gpu_memory_utilization": gpu_util, "max_num_seqs": 256},
          "workload": {"requests": 48, "arrival": {"kind": "concurrency", "clients": 48}, "prompt_tokens": prompt,
                       "output_tokens": out, "images": 0}}
    s = simulate(sc).summary
    m = load_model(model_id)
    total = s["instances"][0]["kv_blocks"]
    per_request = math.ceil((prompt + out + local_window_slots(m, default_graph_config(m, tp, ep), prompt + out))
                            / 16)
    assert 10 <= total // per_request < 48  # KV, not max_num_seqs, is the limit
    assert 1 - per_request / total <= s["peak_kv_occupancy"] <= 1.0
    assert s["completed"] == 48


# -------------------------------------------------------------------------------------------------------------------
# disaggregated pools: a lone request = the estimate plus its two transfers


@pytest.mark.parametrize("model_id", ["qwen3-vl-30b-a3b", "gemma-3-27b", "deepseek-vl2"])
def test_lone_request_through_e_p_d_pools_is_the_estimate_plus_its_transfers(model_id):
    """E -> P carries the image embeddings (visual tokens x hidden x 2 B), P -> D the sequence's KV by the memory
    model (one window in windowed layers, MLA's latent); each 10 us + bytes / 50 GB/s. TTFT = encode + the E->P
    transfer + prefill exactly; E2E adds the KV pull before decoding starts (decode within 0.5%)."""
    tp = 2 if model_id == "gemma-3-27b" else 1
    sc = load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
    sc["model"] = model_id
    for p in sc["serving"]["pools"]:
        p["tp"] = tp
    sc["workload"] = {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 300,
                      "output_tokens": 40, "images": 1, "image_size": "1280x720"}
    row = simulate(sc).requests.iloc[0]
    est = lvlmsim.estimate(model_id, "h100-sxm", prompt_tokens=300, output_tokens=40, image_size="1280x720", tp=tp)
    m = load_model(model_id)
    vis = est.images[0].llm_tokens
    e_to_p = 10e-6 + vis * m.llm.hidden_size * 2 / 50e9
    p_to_d = 10e-6 + sequence_kv_bytes(m, default_graph_config(m, tp), 300, vis) / 50e9
    assert row.transfer_s == pytest.approx(e_to_p + p_to_d, rel=1e-9)
    assert row.ttft_s == pytest.approx(est.stages["encode"].time_s + e_to_p + est.stages["prefill"].time_s,
                                       rel=1e-12)
    assert row.e2e_s == pytest.approx(est.e2e_s + e_to_p + p_to_d, rel=DECODE_REL_TOL)


# -------------------------------------------------------------------------------------------------------------------
# determinism, and the uncertainty draws


@pytest.mark.parametrize("doc", [
    _bench({"kind": "poisson", "rate_rps": 20.0}, serving={"tp": 2, "ep": 2}),
    {**_bench({"kind": "concurrency", "clients": 6}, serving={"runtime": "vllm"}, warmup_requests=5),
     "model": "gemma-3-27b", "serving": {"tp": 2, "runtime": "vllm"}},
    {**_bench({"kind": "poisson", "rate_rps": 20.0}, max_concurrency=4), "model": "deepseek-vl2"},
], ids=["moe-ep2", "windowed-closed-loop-host", "mla-rate-cap"])
def test_same_seed_same_run_bit_for_bit_and_another_seed_differs(doc):
    a, b = simulate(doc, seed=5), simulate(doc, seed=5)
    assert a.summary == b.summary
    pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    assert simulate(doc, seed=6).summary != a.summary


UNC_DOC = {"id": "u", "model": "qwen3-vl-30b-a3b", "hardware": "h100-sxm", "seed": 1,
           "workload": {"requests": 40, "arrival": {"kind": "poisson", "rate_rps": 2.0}, "prompt_tokens": 300,
                        "output_tokens": 60, "image_size": "640x480"}}


def test_uncertainty_draws_are_reproducible_and_follow_the_seed():
    from lvlmsim.engine.uncertainty import uncertainty_runs

    a, b = uncertainty_runs(UNC_DOC, 3), uncertainty_runs(UNC_DOC, 3)
    assert a["uncertainty"] == b["uncertainty"]
    assert a["result"].summary == b["result"].summary
    assert uncertainty_runs(UNC_DOC, 3, seed=2)["uncertainty"] != a["uncertainty"]


def test_median_of_the_draws_is_the_point_run_within_the_bands_bias_and_sampling_error():
    """Each draw scales every op of kernel family f by exp(mu_f + sigma_f z_f) (mu, sigma from f's held-out p10/p90
    band). At light load a latency percentile is ~ the point's times sum_f w_f exp(mu_f + sigma_f z_f), w_f the
    family's share of that metric's time, so the draws' median sits at the point times ~exp(mu) of the families (a
    band not centred on 1 is a bias the draws carry on purpose), off by the median's sampling error, ~1.2533 x sd /
    sqrt(draws), where sd = sqrt(sum_f w_f^2 sigma_f^2) <= max_f sigma_f whatever the shares. Tolerance on
    |ln(p50 / point)|: max_f |mu_f| + 3 such errors with sd = max sigma (0.034 + 0.19 here: the MoE GEMM family's
    sigma 0.25 dominates; 25 draws). A draw applied to the point run or not at all breaks the p10 < point < p90
    bracket; one biased by a wrong sign or scale moves the median past the tolerance."""
    from lvlmsim.cost.uncertainty import log_normal, op_band
    from lvlmsim.engine.uncertainty import uncertainty_runs

    draws = 25
    u = uncertainty_runs(UNC_DOC, draws)["uncertainty"]
    hw = load_hardware("h100-sxm")
    prof = resolve_profile(hw, None)
    est = lvlmsim.estimate("qwen3-vl-30b-a3b", "h100-sxm", prompt_tokens=300, output_tokens=60,
                           image_size="640x480")
    params = [log_normal(band) for stage in est.stages.values() for c in stage.ops
              if (band := op_band(prof, c.source, c.op)) is not None]
    tol = max(abs(mu) for mu, _ in params) + 3 * 1.2533 * max(sig for _, sig in params) / math.sqrt(draws)
    assert 0.1 < tol < 0.3
    for key in ("ttft_s_p90", "tpot_s_p90", "e2e_s_p90"):
        e = u[key]
        assert abs(math.log(e["p50"] / e["point"])) <= tol, (key, e)
        assert e["p10"] < e["point"] < e["p90"]


def test_run_level_figures_cover_the_measured_window_after_warmup():
    """Warm-up leaves the run alone; span, throughput and the other run-level figures cover the measured window.
    Busy time, the queue integral and the inter-token gaps counted from t = 0 while the span starts after the
    warm-up: 16 busy clients with 100 of 200 requests as warm-up read utilisation 1.89, a queue length twice lambda
    x W and twice the joules per token. Now: a closed loop that never lets the GPU idle is busy the whole window
    (utilisation 1), busy time before the window is at most its start, the queue obeys Little's law up to the
    warm-up requests still waiting after the start, and one client's ITL is its token-weighted TPOT exactly."""
    doc = {"id": "w", "model": "qwen3-vl-30b-a3b", "hardware": "h100-sxm", "seed": 3,
           "workload": {"requests": 200, "arrival": {"kind": "concurrency", "clients": 16}, "prompt_tokens": 300,
                        "output_tokens": 100, "image_size": "640x480", "warmup_requests": 100}}
    warm, full = simulate(doc), simulate({**doc, "workload": {**doc["workload"], "warmup_requests": 0}})
    s, df = warm.summary, warm.requests
    start = s["warmup"]["measured_from_s"]
    assert s["instances"][0]["utilisation"] == pytest.approx(1.0, rel=1e-12)
    assert 0 <= full.summary["instances"][0]["busy_s"] - s["instances"][0]["busy_s"] <= start * (1 + 1e-12)
    assert s["queue_len_mean"] == pytest.approx(len(df) / s["span_s"] * df.queue_s.mean(), rel=0.02)
    hw = load_hardware("h100-sxm")
    assert s["energy_j"] <= hw.tdp_w * s["span_s"] * (1 + 1e-12)
    one = simulate({**doc, "workload": {**doc["workload"], "requests": 30, "arrival": {"kind": "concurrency",
                                                                                       "clients": 1},
                                        "output_tokens": {"kind": "uniform", "low": 8, "high": 300},
                                        "warmup_requests": 10}})
    d = one.requests
    weighted_tpot = float((d.tpot_s * (d.output_tokens - 1)).sum() / (d.output_tokens - 1).sum())
    assert one.summary["itl_s"]["mean"] == pytest.approx(weighted_tpot, rel=1e-12)
    assert one.summary["instances"][0]["utilisation"] <= 1.0


@pytest.mark.parametrize("keep_requests", [True, False])
def test_open_loop_warmup_window_starts_mid_step(keep_requests):
    """A Poisson send opens the window while a step is in flight (general path or a decode stretch): the busy time
    counts from the send, never more than the window, in the exact and in the streaming summary."""
    doc = _bench({"kind": "poisson", "rate_rps": 40.0}, requests=120, warmup_requests=30)
    s = simulate(doc, keep_requests=keep_requests).summary
    full = simulate({**doc, "workload": {**doc["workload"], "warmup_requests": 0}}).summary
    busy, busy_all = s["instances"][0]["busy_s"], full["instances"][0]["busy_s"]
    assert 0 < busy <= s["span_s"] * (1 + 1e-12)
    assert 0 <= busy_all - busy <= s["warmup"]["measured_from_s"] * (1 + 1e-12)


# -------------------------------------------------------------------------------------------------------------------
# the engine's two paths and the reference scheduler agree on the newer families


def _timelines(doc: dict, blocks: int, engine: str) -> list[tuple]:
    """Per-request records of one run with a KV pool of `blocks`: 'fast' (the engine), 'general' (decode fast path
    off) or 'reference' (lvlmsim.engine.reference: per sequence, no aggregates)."""
    import simpy

    from lvlmsim.engine.blocks import BlockManager
    from lvlmsim.engine.cluster import Cluster, build_pool
    from lvlmsim.engine.instance import LlmInstance
    from lvlmsim.engine.reference import ReferenceInstance
    from lvlmsim.engine.router import make_router
    from lvlmsim.engine.workload import stream

    sc = load_scenario(doc)
    model, hw = load_model(sc.model), load_hardware(sc.hardware)
    wl = stream(sc.workload, model, sc.seed)
    env = simpy.Environment()
    s = sc.serving
    pool = build_pool(env, model, s.pool_list()[0], hw, s, wl, CostModel(hw, resolve_profile(hw, None)))
    pool.total_blocks = blocks
    inst = pool.instances[0]
    inst.kv = BlockManager(blocks, inst.kv.size)
    if engine == "reference":
        pool.instances = [ReferenceInstance(
            env, inst.name, inst.pool, inst.coster, total_blocks=blocks, block_size=s.block_size,
            max_num_seqs=s.max_num_seqs, max_num_batched_tokens=s.max_num_batched_tokens,
            chunked_prefill=s.chunked_prefill, encoder_budget=s.encoder_budget, encoder_cache=s.encoder_cache,
            overhead_s=inst.overhead_s)]
        pool.router = make_router(s.router, pool.instances)
    Cluster(env, model, s, [pool], wl)
    LlmInstance.use_fast_path = engine != "general"
    try:
        env.run()
    finally:
        LlmInstance.use_fast_path = True

    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    keys = ("id", "arrival_s", "queue_s", "encode_start_s", "first_token_s", "finish_s", "preemptions", "status")
    return [tuple(clean(getattr(r, k)) for k in keys) for r in wl.requests]


@pytest.mark.parametrize("model_id, tp, ep", [("gemma-3-27b", 2, 1), ("qwen3-vl-30b-a3b", 2, 2),
                                              ("deepseek-vl2", 1, 1), ("llama-4-scout", 8, 1)])
def test_fast_general_and_reference_engines_agree_on_the_newer_families(model_id, tp, ep):
    """Windowed layers' reserved window slots, MLA's latent slots and MoE/EP step prices go through the decode fast
    path, the general path and the reference scheduler alike: per-request timelines float for float, on small KV
    pools that preempt and workloads that reject."""
    rng = random.Random(model_id)
    preempted = 0
    for _ in range(4):
        doc = {"model": model_id, "hardware": "h100-sxm", "seed": rng.randint(0, 9999),
               "serving": {"tp": tp, "ep": ep, "max_num_seqs": rng.randint(2, 24),
                           "max_num_batched_tokens": rng.choice([512, 2048, 8192]),
                           "chunked_prefill": rng.random() < 0.7},
               "workload": {"requests": rng.randint(5, 30), "arrival": {"kind": "poisson",
                                                                        "rate_rps": rng.uniform(1, 100)},
                            "prompt_tokens": {"kind": "empirical", "values": [rng.randint(1, 2500) for _ in "abc"]},
                            "output_tokens": {"kind": "empirical", "values": [rng.randint(1, 300) for _ in "abc"]},
                            "images": {"kind": "empirical", "values": [0, 1]}}}
        blocks = rng.randint(150, 800)
        fast = _timelines(doc, blocks, "fast")
        assert fast == _timelines(doc, blocks, "general") == _timelines(doc, blocks, "reference")
        preempted += sum(t[6] for t in fast)
    assert preempted > 0


@pytest.mark.parametrize("model_id, pools, router", [
    ("qwen3-vl-235b-a22b", [{"role": "E", "tp": 1}, {"role": "P", "tp": 8, "ep": 8}, {"role": "D", "tp": 8, "ep": 8}],
     "least_outstanding"),
    ("qwen3-vl-30b-a3b", [{"role": "EP", "tp": 2, "ep": 2}, {"role": "D", "instances": 2, "tp": 2}], "round_robin"),
    ("gemma-3-27b", [{"role": "E", "tp": 1}, {"role": "PD", "instances": 2, "tp": 2}], "kv_aware"),
])
def test_disaggregated_pools_conserve_requests_under_a_closed_loop_with_warmup(model_id, pools, router):
    """Across pools (EP per pool, windowed KV pulled P -> D, each router): every measured request completes once, at
    most N are in flight, no instance is busier than the window, and Little's law bounds the loop."""
    sc = load_scenario("qwen25vl-epd-h100").model_dump(mode="json")
    sc["model"], sc["hardware"] = model_id, "h200-sxm"
    sc["serving"].update(pools=pools, router=router)
    sc["workload"].update(requests=60, arrival={"kind": "concurrency", "clients": 6}, warmup_requests=8)
    res = simulate(sc)
    s, df = res.summary, res.requests
    assert s["requests"] == len(df) == s["completed"] == 52 and df.request_id.is_unique
    assert _max_in_flight(df) <= 6
    assert all(0 < i["utilisation"] <= 1 + 1e-12 for i in s["instances"])
    assert s["throughput_rps"] * df.e2e_s.mean() <= 6 * (1 + 1e-12)
