"""Host-side costs: the measured image tables, the `preprocess` stage of estimate, the host stage of the engine.

Oracles: interpolation worked by hand; the stage is the sum of its measured parts; a lone request gets the same TTFT
from estimate and simulate (both price the same host work); one preprocessing worker serialises simultaneous images
(and, with API costs, simultaneous prompts); the token delivery delay moves TTFT and E2E by itself, TPOT not at all.
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
    est = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1280x720", runtime="vllm", api_costs=False)
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
                                        "host.image_processor", "host.pixel_transfer"}
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
    delivery_s = load_host_profile("vllm").api.token_out_s  # in estimate's preprocess stage, in simulate's TTFT
    assert df.preprocess_s[0] + delivery_s == pytest.approx(est.stages["preprocess"].time_s, rel=1e-12)
    assert df.ttft_s[0] == pytest.approx(est.ttft_s, rel=1e-9)


def _burst(n: int, **serving) -> dict:
    return {"id": "burst", "model": QWEN, "hardware": "h100-sxm", "serving": {"runtime": "vllm", **serving},
            "workload": {"requests": n, "arrival": {"kind": "concurrency", "clients": n}, "prompt_tokens": 32,
                         "output_tokens": 4, "images": 1, "image_size": "1920x1080"}}


def test_one_worker_preprocesses_simultaneous_images_one_after_another():
    res = simulate(_burst(8, api_costs=False))
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
    v0 = simulate(_burst(4, host_costs="vllm-v0", api_costs=False)).summary["host"]["profile"]
    assert v0.startswith("vllm-v0")


def test_a_cpu_bound_run_shows_its_preprocessing_worker_saturated():
    """16 full-HD images at once and 4-token answers on a B200: the CPU, not the GPU, sets the pace. (On an H100 the
    vision encoder of a full-HD image takes about as long as its host work, ~70 ms, so neither saturates alone.)"""
    s = simulate({**_burst(16), "hardware": "b200"}).summary
    assert s["host"]["worker_utilisation"] > 0.9


def test_api_costs_add_the_measured_request_tokenisation_and_one_token_delivery_to_ttft():
    """With vs without API costs, by hand: TTFT and E2E grow by request + encode(prompt) + one token's
    detokenise+SSE; TPOT is untouched (every token is delayed alike)."""
    kw = {"image_size": "1280x720", "prompt_tokens": 300, "output_tokens": 32, "runtime": "vllm"}
    on, off = lvlmsim.estimate(QWEN, "h100-sxm", **kw), lvlmsim.estimate(QWEN, "h100-sxm", api_costs=False, **kw)
    host = load_host_profile("vllm")
    api = host.api
    body = host.encoded_bytes(1280 * 720) * api.image_byte_s  # the photo JPEG's bytes, sent inline
    want = api.request_s + api.encode(300) + body + api.detokenize_token_s + api.stream_token_s
    assert body > 0
    assert on.ttft_s - off.ttft_s == pytest.approx(want, rel=1e-9)
    assert on.e2e_s - off.e2e_s == pytest.approx(want, rel=1e-9)
    assert on.tpot_s == off.tpot_s
    ops = {r["op"] for r in on.op_rows() if r["stage"] == "preprocess"}
    assert {"host.api_request", "host.tokenize", "host.image_body", "host.token_delivery"} <= ops
    assert lvlmsim.estimate(QWEN, "h100-sxm", host=False).stages["preprocess"].time_s == 0.0


def test_the_measured_api_data_is_complete_and_has_its_method():
    """The shipped CPU file carries the API and tokenizer measurements, how they were taken, and sane magnitudes
    (a BPE encode well under 100 us per token, a streamed token under 1 ms, detokenise under the streamed event)."""
    from lvlmsim.specs.registry import host_dir

    doc = json.loads((host_dir() / "cpu-generic.json").read_text())
    assert "uvicorn" in doc["api"]["method"] and "tokenizers" in doc["tokenizer"]["method"]
    assert doc["api_environment"]["timing"]["statistic"].startswith("fits use the p10")
    api = load_host_profile("sglang").api
    assert 0 < api.encode(1000) / 1000 < 1e-4 and 0 < api.stream_token_s < 1e-3
    assert 0 < api.detokenize_token_s < api.stream_token_s
    assert 0 < api.request_s < 0.05


def test_the_tokenizer_is_timed_in_cpu_time_and_its_encode_is_linear():
    """A BPE encode is linear in the prompt (word by word): the shipped table, timed in thread CPU time, stays within
    25% of proportional from 256 to 4096 tokens. Its first, wall-time measurement on the shared machine grew 13x from
    1024 to 4096 tokens, other tenants' load in every call longer than a scheduler slice."""
    from lvlmsim.specs.registry import host_dir

    doc = json.loads((host_dir() / "cpu-generic.json").read_text())["tokenizer"]
    assert doc["timing"].startswith("time.thread_time")
    per_token = {m["tokens"]: m["p10_s"] / m["tokens"] for m in doc["encode"]["measurements"] if m["tokens"] >= 256}
    assert max(per_token.values()) / min(per_token.values()) < 1.25


def test_image_stages_are_timed_in_cpu_time_and_a_jpeg_decode_is_linear():
    """A random-pixel JPEG's decode is linear in its pixels (entropy decoding block by block): the shipped table,
    timed in thread CPU time, stays within 30% of proportional from 336x336 to 2560x1440 (its first, wall-time
    measurement on the shared machine ran 3.3x per pixel from the smallest to the largest)."""
    from lvlmsim.calibrate.bench import TimingPlan, time_fn
    from lvlmsim.specs.registry import host_dir

    doc = json.loads((host_dir() / "cpu-generic.json").read_text())
    assert doc["environment"]["timing"]["method"].startswith("time.thread_time")
    rows = doc["decode_by_content"]["random-jpeg"]["measurements"]
    per_px = [r["p10_s"] / r["pixels"] for r in rows]
    assert max(per_px) / min(per_px) < 1.3
    ticks = iter(range(0, 10_000, 3))  # time_fn reads the clock it is given: 3 s per call here
    assert time_fn(None, lambda: None, "cpu", TimingPlan(warmup=0, min_reps=2, max_reps=2, budget_s=0.0),
                   clock=lambda: float(next(ticks)))[:2] == (3.0, 3.0)


def test_interleaved_timing_reads_the_clock_it_is_given():
    """time_interleaved times each call with the clock passed (the tokenizer's: thread CPU time); a fake clock that
    advances 2 s per reading around a call of nothing gives 2 s per call."""
    from lvlmsim.calibrate.apicost import time_interleaved
    from lvlmsim.calibrate.bench import TimingPlan

    ticks = iter(range(0, 10_000, 2))
    out = time_interleaved({"a": lambda: None}, TimingPlan(warmup=0, min_reps=3, max_reps=3, budget_s=0.0),
                           clock=lambda: float(next(ticks)))
    assert out["a"] == (2.0, 2.0, 2.0, 3)


def _text_burst(n: int, **serving) -> dict:
    return {"id": "text", "model": QWEN, "hardware": "h100-sxm", "serving": {"runtime": "vllm", **serving},
            "workload": {"requests": n, "arrival": {"kind": "concurrency", "clients": n}, "prompt_tokens": 200,
                         "output_tokens": 8, "images": 0}}


def test_text_only_prompts_queue_for_the_front_end_worker_with_api_costs():
    """Four text prompts sent at once: the k-th waits for k - 1 others' API handling and tokenisation."""
    api = load_host_profile("vllm").api
    one = api.request_s + api.encode(200)
    res = simulate(_text_burst(4))
    assert sorted(res.requests.preprocess_s) == pytest.approx([k * one for k in range(1, 5)], rel=1e-9)
    assert res.summary["host"]["token_out_s"] == pytest.approx(api.token_out_s)
    assert res.summary["host"]["output_utilisation"] > 0
    off = simulate(_text_burst(4, api_costs=False))
    assert "token_out_s" not in off.summary["host"]
    assert (off.requests.preprocess_s == 0).all()


def test_token_delivery_moves_a_lone_requests_ttft_and_e2e_not_its_tpot():
    on, off = simulate(_text_burst(1)).requests, simulate(_text_burst(1, api_costs=False)).requests
    api = load_host_profile("vllm").api
    assert on.ttft_s[0] - off.ttft_s[0] == pytest.approx(api.request_s + api.encode(200) + api.token_out_s)
    assert on.e2e_s[0] - off.e2e_s[0] == pytest.approx(on.ttft_s[0] - off.ttft_s[0])
    assert on.tpot_s[0] == pytest.approx(off.tpot_s[0], rel=1e-12)


def test_api_costs_need_measurements_for_the_cpu(tmp_path, monkeypatch):
    """A CPU file without API measurements refuses api costs by name, and still serves with them off."""
    import lvlmsim.cost.host as host_mod

    src = json.loads((host_mod.host_dir() / "cpu-generic.json").read_text())
    for k in ("api", "tokenizer", "api_environment"):
        src.pop(k)
    (tmp_path / "bare.json").write_text(json.dumps(src))
    (tmp_path / "runtimes.yaml").write_text((host_mod.host_dir() / "runtimes.yaml").read_text())
    monkeypatch.setattr(host_mod, "host_dir", lambda: tmp_path)
    host_mod._cpu_tables.cache_clear()
    try:
        with pytest.raises(SpecError, match="api_costs: .*allowed: api_costs false"):
            load_host_profile("vllm", cpu="bare")
        assert load_host_profile("vllm", cpu="bare", api=False).api is None
    finally:
        host_mod._cpu_tables.cache_clear()


def test_estimate_cli_switches_api_costs_off():
    args = ["estimate", "--runtime", "vllm", "--json", "--ops"]
    on = json.loads(CliRunner().invoke(app, args).stdout)
    off = json.loads(CliRunner().invoke(app, [*args, "--no-api-costs"]).stdout)
    assert any(o["op"] == "host.api_request" for o in on["ops"])
    assert not any(o["op"] == "host.api_request" for o in off["ops"])
    assert on["ttft_s"] > off["ttft_s"]


def test_the_api_measurement_runs_end_to_end_on_loopback():
    """The quick measurement: a locally trained BPE, a streamed round trip over 127.0.0.1 with the right token count
    (checked inside), and positive per-token slopes."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("uvicorn")
    from lvlmsim.calibrate.apicost import measure_api

    doc = measure_api(quick=True)
    assert doc["tokenizer"]["vocab_size"] > 1000
    assert doc["tokenizer"]["encode"]["per_token_s"] > 0 and doc["api"]["per_stream_token_s"] > 0
    assert [r["stream_tokens"] for r in doc["api"]["measurements"]] == [1, 64, 256]
    body = doc["api_image_body"]
    assert [r["image_bytes"] for r in body["measurements"]] == [0, 1 << 20] and body["per_image_byte_s"] > 0


def test_the_clients_synthetic_images_decode_from_their_own_measured_table():
    """Random-pixel JPEGs (what both benchmark clients send by default) decode slower than photo-like ones: each
    content reads its own measured table, and an unmeasured one is refused by name."""
    host = load_host_profile("vllm")
    px = 1280 * 720
    photo, noise = host.image_s(px, px)["decode"], host.image_s(px, px, "random-jpeg")["decode"]
    assert photo == pytest.approx(host.decode_table("photo-jpeg")(px)) and noise > 1.5 * photo
    with pytest.raises(SpecError, match="image_content: .*allowed: photo-jpeg, random-jpeg"):
        host.image_s(px, px, "random-webp")


def test_a_workloads_image_content_sets_the_host_stages_decode_by_hand():
    """One request with one 1080p image: preprocess_s differs between random-jpeg and photo-jpeg by exactly the
    difference of their decode tables at 1920 x 1080 input pixels."""
    def one(content: str):
        sc = _burst(1, api_costs=False)
        sc["workload"]["image_content"] = content
        return simulate(sc).requests.preprocess_s[0]

    host = load_host_profile("vllm")
    want = host.decode_table("random-jpeg")(1920 * 1080) - host.decode_table("photo-jpeg")(1920 * 1080)
    assert one("random-jpeg") - one("photo-jpeg") == pytest.approx(want, rel=1e-9)


def test_list_runtimes_shows_the_measured_api_costs():
    out = CliRunner().invoke(app, ["list", "runtimes"]).output
    assert "detokenise + SSE" in out and "per request" in out


def test_an_inline_image_costs_its_encoded_bytes_at_the_measured_rate():
    """The bytes an image is sent as come from the measured images' own file sizes (a measured size is returned
    exactly; random-pixel JPEGs are several times larger than photo-like ones), and the API turn adds those bytes
    times the measured per-byte cost; a text-only request adds nothing."""
    from lvlmsim.specs.registry import host_dir

    doc = json.loads((host_dir() / "cpu-generic.json").read_text())
    row = next(r for r in doc["measurements"]["decode"] if (r["width"], r["height"]) == (1280, 720))
    host = load_host_profile("vllm")
    assert host.encoded_bytes(1280 * 720) == pytest.approx(row["jpeg_bytes"])
    assert host.encoded_bytes(1280 * 720, "random-jpeg") > 1.5 * host.encoded_bytes(1280 * 720)
    api = host.api
    assert api.request_in_s(64, 1e6)["image_body"] == pytest.approx(1e6 * api.image_byte_s)
    assert "image_body" not in api.request_in_s(64)
    body = doc["api_image_body"]
    assert "base64" in body["method"] and body["environment"]["statistic"].startswith("fits use the p10")
    assert 1e-10 < api.image_byte_s < 1e-7  # 0.1 to 100 ms per MB


def test_a_burst_runs_every_api_turn_before_the_image_turns_behind_it():
    """Four image requests sent at once to one asyncio front end: each handler parses its body (API turn), then
    awaits its image work and goes to the back of the queue, so the k-th request's image turn ends after all four
    API turns and k image turns (by hand); a lone request pays its two turns back to back."""
    host = load_host_profile("vllm")
    model = load_model(QWEN)
    tok = lvlmsim.estimate(QWEN, "h100-sxm", image_size="1920x1080").images[0]
    px = processed_pixels(model, tok)
    api = host.api
    api_s = api.request_s + api.encode(32) + host.encoded_bytes(1920 * 1080) * api.image_byte_s
    image_s = sum(host.image_s(1920 * 1080, px).values())
    moved = host.transfer_s(transfer_bytes(model, px))
    burst = simulate(_burst(4)).requests.sort_values("preprocess_s")
    assert burst.preprocess_s.to_numpy() == pytest.approx([4 * api_s + k * image_s + moved for k in range(1, 5)],
                                                          rel=1e-9)
    lone = simulate(_burst(1)).requests
    assert lone.preprocess_s[0] == pytest.approx(api_s + image_s + moved, rel=1e-9)


def test_list_runtimes_shows_the_bench_server_defaults():
    """`lvlmsim list runtimes` says which knobs each runtime picks by itself (runtimes.yaml server_defaults), in one
    line per runtime: device names first, then the memory tiers."""
    from typer.testing import CliRunner

    from lvlmsim.cli import _server_defaults_text, app
    from lvlmsim.specs.base import read_yaml
    from lvlmsim.specs.registry import host_dir

    assert "bench server defaults" in CliRunner().invoke(app, ["list", "runtimes"]).output
    rt = read_yaml(host_dir() / "runtimes.yaml")["runtimes"]
    assert _server_defaults_text(rt["vllm-v1"]["server_defaults"]) == (
        "prefix_caching True; max_num_batched_tokens / max_num_seqs: a100: 2048/256; < 70 GiB: 2048/256; "
        "else: 8192/1024")
    assert _server_defaults_text(rt["sglang"]["server_defaults"]) == (
        "prefix_caching True, mixed_batches False; max_num_batched_tokens: < 35 GiB: 2048; < 60 GiB: 4096; "
        "< 160 GiB: 8192; else: 16384")
    assert _server_defaults_text(rt["vllm-v0"].get("server_defaults")) == "-"


def test_vllm_async_scheduling_profile_exposes_no_step_and_keeps_v1s_server_defaults():
    """vllm-v1-async (vLLM >= 0.14, async scheduling on by default) overlaps a step's host work with the forward pass:
    no host step, so each decode step is vllm-v1's 0.27 ms shorter; its server defaults are vllm-v1's (one YAML
    anchor): 2048 batched tokens / 256 sequences on an A100, 8192 / 1024 on an H100."""
    from lvlmsim.cost.host import server_defaults
    from lvlmsim.specs.registry import load_hardware

    sync, overlapped = load_host_profile("vllm-v1"), load_host_profile("vllm-v1-async")
    assert (sync.step_host_s, overlapped.step_host_s) == (2.7e-4, 0.0)
    assert server_defaults("vllm-v1-async", load_hardware("a100-sxm-80gb")) == {
        "prefix_caching": True, "max_num_batched_tokens": 2048, "max_num_seqs": 256}
    assert server_defaults("vllm-v1-async", load_hardware("h100-sxm")) == {
        "prefix_caching": True, "max_num_batched_tokens": 8192, "max_num_seqs": 1024}

    def tpot_s(host: str) -> float:
        args = ["estimate", "-m", "qwen3-vl-2b", "-w", "a100-sxm-80gb", "--images", "0", "--output-tokens", "16",
                "--runtime", "vllm", "--host", host, "--json"]
        return json.loads(CliRunner().invoke(app, args).stdout)["tpot_s"]

    assert tpot_s("vllm-v1") - tpot_s("vllm-v1-async") == pytest.approx(2.7e-4, rel=1e-9)


def _processor_rows() -> list[dict]:
    from lvlmsim.specs.registry import host_dir

    return json.loads((host_dir() / "cpu-generic.json").read_text())["measurements"]["processor"]


def test_the_processor_stage_is_read_and_priced_and_a_kept_size_is_not_resized():
    """SGLang #9812's 700x1120 images are multiples of 28 a side, so the Qwen processor keeps them (no resize) and
    their cost is decode + normalize + the processor's own work, the last read off its measured rows by hand."""
    est = lvlmsim.estimate(QWEN, "h100-sxm", image_size="700x1120", runtime="vllm", api_costs=False)
    host = load_host_profile("vllm")
    model = load_model(QWEN)
    px = processed_pixels(model, est.images[0])
    assert px == 700 * 1120
    row = next(r for r in _processor_rows() if r["pixels"] == px)
    parts = host.image_s(px, px)
    assert parts["processor"] == pytest.approx(row["measured_s"])  # a measured point is read back exactly
    assert parts["resize"] == 0.0
    assert host.image_s(px + 1, px)["resize"] == pytest.approx(host.stages["resize"](px))  # a real resize is priced
    ops = {r["op"]: r for r in est.op_rows() if r["stage"] == "preprocess"}
    assert "host.image_resize" not in ops
    want = sum(parts.values()) + host.transfer_s(transfer_bytes(model, px))
    assert est.stages["preprocess"].time_s == pytest.approx(want)


def test_the_processor_stage_is_linear_in_pixels_within_60_percent_of_its_measurement():
    """The processor's own work is copies of the image's tensors (to-tensor, the temporal repeat, the patch permute
    into pixel_values), mostly first touches of fresh pages, so it grows with pixels: from 336x336 to 1932x1092 (19x
    the pixels) the least-squares line through the measured points is a copy's per-pixel cost (10-100 ns a pixel of
    2 x 3 float32 values written), its median point within 20% of it and every point within 60% (the page faults per
    call vary with the allocator's state: 1288x728's median call is 57% under the line)."""
    from lvlmsim.calibrate.host import _fit

    rows = _processor_rows()
    assert len(rows) >= 3 and rows[-1]["pixels"] / rows[0]["pixels"] > 10
    a, b, _ = _fit([(r["pixels"], r["measured_s"]) for r in rows])
    assert 10e-9 < b < 100e-9
    devs = sorted(abs((a + b * r["pixels"]) / r["measured_s"] - 1.0) for r in rows)
    assert devs[len(devs) // 2] < 0.2 and devs[-1] < 0.6
    for r in rows:  # measured at kept sizes only: the processor did not resize them
        assert r["grid_thw"][1] * r["grid_thw"][2] * 14 * 14 == r["pixels"]


def test_the_processor_measurement_runs_end_to_end():
    """The quick measurement of the processor stage produces a positive cost per size (needs the host-measure
    extra: transformers with its torchvision-backed Qwen2-VL processor)."""
    pytest.importorskip("torchvision", reason="host-measure extra (torchvision) not installed")
    pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl_fast",
                        reason="host-measure extra (transformers) not installed")
    from lvlmsim.calibrate.host import measure_processor

    stage = measure_processor(quick=True)["processor"]
    assert [r["pixels"] for r in stage["measurements"]] == [336 * 336, 700 * 1120]
    assert all(r["call_median_s"] > r["normalize_p10_s"] > 0 for r in stage["measurements"])
