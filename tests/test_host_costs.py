"""Host-side costs: the measured image tables, the `preprocess` stage of estimate, the host stage of the engine.

Oracles: interpolation worked by hand; the stage is the sum of its measured parts; a lone request gets the same TTFT
from estimate and simulate (both price the same host work); one preprocessing worker serialises simultaneous images.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import lvlmsim
from lvlmsim.cli import app
from lvlmsim.cost.host import StageTable, load_host_profile, processed_pixels, transfer_bytes
from lvlmsim.engine.api import simulate
from lvlmsim.errors import SpecError
from lvlmsim.specs.registry import load_model

QWEN = "qwen2.5-vl-7b"


def test_stage_table_interpolates_and_extrapolates_by_hand():
    t = StageTable((100.0, 200.0), (1.0, 3.0))
    assert t(150) == pytest.approx(2.0)
    assert t(50) == pytest.approx(0.5)  # through the origin below the first point
    assert t(300) == pytest.approx(5.0)  # the last segment's slope beyond the last point
    assert t(0) == 0.0


def test_plain_runtime_names_mean_their_current_version_and_unknown_ones_are_refused():
    assert load_host_profile("vllm").name == "vllm-v1"
    assert load_host_profile("vllm-v0").step_host_s > load_host_profile("vllm-v1").step_host_s
    with pytest.raises(SpecError, match="allowed: .*vllm-v0"):
        load_host_profile("tgi")


def test_estimate_json_always_has_a_preprocess_stage():
    doc = json.loads(CliRunner().invoke(app, ["estimate", "--json"]).stdout)
    assert list(doc["stages"])[0] == "preprocess"
    assert doc["stages"]["preprocess"]["time_s"] == 0
    assert any("host costs off" in n for n in doc["notes"])


def test_preprocess_stage_is_the_measured_image_work_plus_the_hand_off():
    est = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1280x720", runtime="vllm")
    host = load_host_profile("vllm")
    model = load_model(QWEN)
    tok = est.images[0]
    px = processed_pixels(model, tok)
    parts = host.image_s(1280 * 720, px)
    want = sum(parts.values()) + host.transfer_s(transfer_bytes(model, px))
    assert est.stages["preprocess"].time_s == pytest.approx(want)
    assert est.ttft_s == pytest.approx(sum(est.stages[s].time_s for s in ("preprocess", "encode", "prefill")))
    rows = [r for r in est.op_rows() if r["stage"] == "preprocess"]
    assert {r["op"] for r in rows} == {"host.image_decode", "host.image_resize", "host.image_normalize",
                                        "host.pixel_transfer"}
    off = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1280x720", runtime="vllm", host=False)
    assert off.stages["preprocess"].time_s == 0.0
    assert est.tpot_s == pytest.approx(off.tpot_s + host.step_host_s)  # the runtime's host time in every step


def test_a_lone_request_gets_the_same_ttft_from_estimate_and_simulate():
    est = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1280x720", prompt_tokens=64, output_tokens=16,
                           runtime="vllm")
    sc = {"id": "lone", "model": QWEN, "hardware": "h100-sxm", "serving": {"runtime": "vllm"},
          "workload": {"requests": 1, "arrival": {"kind": "concurrency", "clients": 1}, "prompt_tokens": 64,
                       "output_tokens": 16, "images": 1, "image_size": "1280x720"}}
    df = simulate(sc).requests
    assert df.preprocess_s[0] == pytest.approx(est.stages["preprocess"].time_s, rel=1e-12)
    assert df.ttft_s[0] == pytest.approx(est.ttft_s, rel=1e-9)


def _burst(n: int, **serving) -> dict:
    return {"id": "burst", "model": QWEN, "hardware": "h100-sxm", "serving": {"runtime": "vllm", **serving},
            "workload": {"requests": n, "arrival": {"kind": "concurrency", "clients": n}, "prompt_tokens": 32,
                         "output_tokens": 4, "images": 1, "image_size": "1920x1080"}}


def test_one_worker_preprocesses_simultaneous_images_one_after_another():
    res = simulate(_burst(8))
    df = res.requests.sort_values("preprocess_s")
    host = load_host_profile("vllm")
    model = load_model(QWEN)
    tok = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1920x1080").images[0]
    px = processed_pixels(model, tok)
    cpu = sum(host.image_s(1920 * 1080, px).values())
    moved = host.transfer_s(transfer_bytes(model, px))
    # all sent at t = 0; the k-th through the single worker waits for k - 1 others
    assert df.preprocess_s.to_numpy() == pytest.approx([k * cpu + moved for k in range(1, 9)], rel=1e-9)
    assert res.summary["host"]["preprocess_s"]["mean"] == pytest.approx(4.5 * cpu + moved, rel=1e-9)


def test_host_costs_switch_off_and_are_off_without_a_runtime():
    off = simulate(_burst(4, host_costs=False))
    assert "host" not in off.summary and "preprocess_s" not in off.requests
    no_rt = _burst(4)
    del no_rt["serving"]["runtime"]
    assert "host" not in simulate(no_rt).summary
    v0 = simulate(_burst(4, host_costs="vllm-v0")).summary["host"]["profile"]
    assert v0.startswith("vllm-v0")


def test_a_cpu_bound_run_shows_its_preprocessing_worker_saturated():
    """16 full-HD images at once and 4-token answers: the CPU, not the GPU, sets the pace."""
    s = simulate(_burst(16)).summary
    assert s["host"]["worker_utilisation"] > 0.9
