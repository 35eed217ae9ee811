"""`simulate` and `plan` take the request from flags (--model --hardware --tp --image-size --images --prompt-tokens
--output-tokens --rate) over a scenario or none, name what they ran, and `plan --json` answers per GPU type with
deploy command lines."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.planner import SearchSettings, plan
from lvlmsim.specs.request_overrides import with_request
from lvlmsim.specs.scenario import load_scenario

runner = CliRunner()
FLAGS = ["--model", "qwen2-vl-7b", "--image-size", "1024x768", "--images", "1", "--prompt-tokens", "100",
         "--output-tokens", "50"]


def test_simulate_flags_replace_the_request_and_keep_the_rest():
    res = runner.invoke(app, ["simulate", "-n", "60", "--rate", "4", "--hardware", "l40s", "--tp", "2", *FLAGS,
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["scenario"]["model"], doc["scenario"]["hardware"]) == ("qwen2-vl-7b", "l40s")
    assert doc["scenario"]["pools"][0]["tp"] == 2 and doc["scenario"]["arrival"]["rate_rps"] == 4.0
    # the same numbers as the API on the scenario with_request builds
    from lvlmsim.engine.api import simulate

    sc = with_request(load_scenario(None), model="qwen2-vl-7b", hardware="l40s", tp=2, image_size="1024x768",
                      images=1, prompt_tokens=100, output_tokens=50)
    api = simulate(sc, requests=60, rate=4.0)
    assert doc["ttft_s"] == json.loads(json.dumps(api.summary["ttft_s"]))


def test_simulate_text_names_model_hardware_and_workload():
    res = runner.invoke(app, ["simulate", "-n", "40", *FLAGS])
    assert res.exit_code == 0, res.output
    assert "qwen2-vl-7b on h100-sxm; 1 image(s) of 1024x768; prompt 100 tokens, output 50 tokens" in res.output


def test_bad_flag_is_one_line_naming_it():
    res = runner.invoke(app, ["simulate", "-n", "10", "--image-size", "huge"])
    assert res.exit_code == 2 and "image_size" in res.output and "Traceback" not in res.output


def test_plan_json_by_hardware_and_deploy():
    args = ["plan", "--rate", "20", "--hardware", "h100-sxm,l40s", "--tp", "1", "--layouts", "agg", "--probe-s",
            "10", "--tolerance", "0.1", "--executor", "serial", "--slo", "ttft_p90=1.0,tpot_p90=0.05", *FLAGS,
            "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 1), res.output
    doc = json.loads(res.stdout)
    assert doc["model"] == "qwen2-vl-7b" and "1024x768" in doc["workload"] and "20 req/s" in doc["workload"]
    sc = with_request(load_scenario(None), model="qwen2-vl-7b", image_size="1024x768", images=1,
                      prompt_tokens=100, output_tokens=50)
    api = plan(sc, target_rate=20, slos={"ttft_p90": 1.0, "tpot_p90": 0.05}, hardware=["h100-sxm", "l40s"], tp=[1],
               layouts=["agg"], settings=SearchSettings(probe_duration_s=10, tolerance=0.1), executor="serial")
    assert set(doc["by_hardware"]) == {"h100-sxm", "l40s"}
    for hw, row in api.by_hardware().items():
        got = doc["by_hardware"][hw]
        assert set(got) >= {"gpus", "cost_per_hour_usd", "cost_per_month_usd", "headroom_pct", "ttft_p90_s",
                            "tpot_p90_s", "feasible", "reason"}
        assert (got["gpus"], got["feasible"]) == (row["gpus"], row["feasible"])
        if row["feasible"]:
            assert got["cost_per_month_usd"] == row["cost_per_hour_usd"] * 730
    if api.recommended is not None:
        assert "vllm serve Qwen/Qwen2-VL-7B-Instruct" in doc["deploy"]["vllm"]
        assert f"--tensor-parallel-size {api.recommended['tp']}" in doc["deploy"]["vllm"]
        assert "--model-path Qwen/Qwen2-VL-7B-Instruct" in doc["deploy"]["sglang"]
    else:
        assert doc["deploy"] is None


def test_replaced_request_does_not_keep_the_base_description():
    """The default scenario's description names LLaVA-1.5-7B and its photos; with the model and request replaced it
    must say what the scenario now is, not what it was (the explorer shows it under the Serving page's picker)."""
    base = load_scenario("llava-chat-h100")
    assert "LLaVA" in base.description
    sc = with_request(base, model="qwen2-vl-7b", images=2, prompt_tokens=132)
    assert "LLaVA" not in sc.description
    assert sc.description == ("scenario 'llava-chat-h100' (its arrivals, serving policy and SLOs) with the request "
                              "changed: model=qwen2-vl-7b, images=2, prompt_tokens=132")
    assert with_request(base).description == base.description
    # every changed field says what it became, the image sizes and techniques included
    sc = with_request(base, image_size="1024x768:3,640x480:1", techniques=["fastv:layer=2,keep=0.5"])
    assert sc.description.endswith("changed: image_size=1024x768:3,640x480, techniques=fastv:layer=2,keep=0.5")
    assert with_request(base, techniques=[]).description.endswith("changed: techniques=none")
