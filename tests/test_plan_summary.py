"""The planner's answer at a glance: one row per GPU type from plan()'s candidate table (hand-made here, so every
figure is derived by hand), and the server command lines of the recommendation."""

from __future__ import annotations

import pandas as pd
import pytest

from lvlmsim.planner.summary import HOURS_PER_MONTH, by_hardware, by_hardware_frame, deploy_commands, pool_label
from lvlmsim.specs.registry import load_model
from lvlmsim.specs.scenario import load_scenario


def candidates() -> pd.DataFrame:
    rows = [
        # h100: two feasible configurations; the 2-GPU one is cheaper than tp2 x 2 replicas
        {"candidate": "h100 tp1 agg", "hardware": "h100", "status": "feasible", "reason": "", "gpus": 2,
         "price_per_gpu_hour_usd": 3.0, "max_rate_meeting_slo": 24.0, "ttft_p90_s": 0.1, "tpot_p90_s": 0.03},
        {"candidate": "h100 tp2 agg", "hardware": "h100", "status": "feasible", "reason": "", "gpus": 4,
         "price_per_gpu_hour_usd": 3.0, "max_rate_meeting_slo": 40.0, "ttft_p90_s": 0.05, "tpot_p90_s": 0.02},
        {"candidate": "l40s tp1 agg", "hardware": "l40s", "status": "feasible", "reason": "", "gpus": 3,
         "price_per_gpu_hour_usd": 1.5, "max_rate_meeting_slo": 21.0, "ttft_p90_s": 0.2, "tpot_p90_s": 0.045},
        # l4: pruned by the pre-screen twice with one reason, searched once and failed with another
        {"candidate": "l4 tp1 agg", "hardware": "l4", "status": "pruned", "reason": "tpot too high", "gpus": None,
         "price_per_gpu_hour_usd": 0.8},
        {"candidate": "l4 tp2 agg", "hardware": "l4", "status": "pruned", "reason": "tpot too high", "gpus": None,
         "price_per_gpu_hour_usd": 0.8},
        {"candidate": "l4 tp4 agg", "hardware": "l4", "status": "infeasible", "reason": "KV cache thrashes",
         "gpus": None, "price_per_gpu_hour_usd": 0.8},
    ]
    return pd.DataFrame(rows)


def test_one_row_per_gpu_type_with_cost_headroom_and_latency():
    t = by_hardware(candidates(), target_rate=20.0)
    h = t["h100"]
    assert (h["candidate"], h["gpus"], h["cost_per_hour_usd"]) == ("h100 tp1 agg", 2, 6.0)
    assert h["cost_per_month_usd"] == pytest.approx(6.0 * HOURS_PER_MONTH)
    assert h["headroom_pct"] == pytest.approx(20.0)  # 24 req/s within SLOs for a 20 req/s target
    assert (h["ttft_p90_s"], h["tpot_p90_s"], h["feasible"]) == (0.1, 0.03, True)
    assert t["l40s"]["cost_per_hour_usd"] == pytest.approx(4.5) and t["l40s"]["headroom_pct"] == pytest.approx(5.0)
    # a searched failure says more than a pre-screen drop, even when the drops are more numerous
    assert t["l4"] == {**t["l4"], "feasible": False, "reason": "KV cache thrashes", "cost_per_hour_usd": None}


def test_an_edited_price_changes_cost_and_the_choice():
    # at $1/GPU-hour for h100 the 2-GPU row costs 2, the 4-GPU row 4: still the 2-GPU one; l40s at $3 now costs 9
    t = by_hardware(candidates(), 20.0, prices={"h100": 1.0, "l40s": 3.0})
    assert t["h100"]["cost_per_hour_usd"] == 2.0 and t["l40s"]["cost_per_hour_usd"] == 9.0
    frame = by_hardware_frame(t)
    assert list(frame.hardware) == ["h100", "l40s", "l4"]  # cheapest first, impossible last


def test_deploy_lines_carry_the_recommended_tp_and_the_scenario_serving_settings():
    sc = load_scenario("llava-chat-h100")
    rec = {"tp": 2, "replicas": 3, "layout": "agg", "pools": [{"role": "EPD", "instances": 3, "tp": 2}]}
    cmds = deploy_commands(rec, load_model(sc.model), sc.serving)
    v, s = cmds["vllm"], cmds["sglang"]
    assert "vllm serve llava-hf/llava-1.5-7b-hf" in v and "--tensor-parallel-size 2" in v
    assert f"--max-num-seqs {sc.serving.max_num_seqs}" in v and "--enable-chunked-prefill" in v
    assert f"--max-num-batched-tokens {sc.serving.max_num_batched_tokens}" in v
    assert "--gpu-memory-utilization 0.9" in v and "3 replica(s)" in v
    assert "--model-path llava-hf/llava-1.5-7b-hf" in s and "--tp-size 2" in s
    assert f"--chunked-prefill-size {sc.serving.max_num_batched_tokens}" in s and "--mem-fraction-static 0.9" in s
    off = sc.serving.model_copy(update={"chunked_prefill": False})
    assert "--chunked-prefill-size -1" in deploy_commands(rec, load_model(sc.model), off)["sglang"]
    # SGLang mixes decodes into prefill batches only when told to; the simulated default (vLLM's) did
    assert "--enable-mixed-chunk" in s and "--enable-mixed-chunk" not in deploy_commands(rec, load_model(
        sc.model), sc.serving.model_copy(update={"mixed_batches": False}))["sglang"]
    assert deploy_commands(None, load_model(sc.model), sc.serving) is None


def test_deploy_lines_carry_the_recommended_ep_not_the_scenarios():
    # plan(ep=[1, 8]) on qwen3vl-moe-h200 (scenario ep 8) recommended ep 1 and printed --enable-expert-parallel
    sc = load_scenario("qwen3vl-moe-h200")
    assert sc.serving.ep == 8
    model = load_model(sc.model)
    base = {"tp": 8, "replicas": 1, "layout": "agg", "pools": [{"role": "EPD", "instances": 1, "tp": 8}]}
    dense = deploy_commands({**base, "ep": 1}, model, sc.serving)
    assert "--enable-expert-parallel" not in dense["vllm"] and "--ep-size" not in dense["sglang"]
    moe = deploy_commands({**base, "ep": 8}, model, sc.serving.model_copy(update={"ep": 1}))
    assert "--enable-expert-parallel" in moe["vllm"] and "--ep-size 8" in moe["sglang"]
    assert "--ep-size 8" in deploy_commands(base, model, sc.serving)["sglang"]  # no ep named: the scenario's


def test_pool_label_names_the_expert_parallel_degree_only_when_there_is_one():
    assert pool_label({"role": "EPD", "instances": 3, "tp": 2}) == "EPD 3 x tp2"
    assert pool_label({"role": "EPD", "instances": 1, "tp": 8, "ep": 8}) == "EPD 1 x tp8 ep8"
    assert pool_label({"role": "prefill", "instances": 2, "tp": 4, "ep": 1}) == "prefill 2 x tp4"
