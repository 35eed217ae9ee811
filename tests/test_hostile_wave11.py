"""Hostile input left UNCLEAR in wave 10, and what a fresh pass over the CLI and the files found: each case here was
taken (or answered with a dump) before; now one line naming the field and what it allows (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lvlmsim.errors import SpecError
from lvlmsim.specs.inputs import load_yaml
from lvlmsim.specs.scenario import load_scenario
from lvlmsim.specs.workload import WorkloadSpec
from tests.cli_checks import refused

BASE = "id: s\nmodel: qwen3-vl-30b-a3b\nhardware: h100-sxm\n"
PLAN = ["plan", "--rate", "1", "--executor", "serial", "--slo", "ttft_p90=1,tpot_p90=0.05", "--no-verify"]


def _scenario(tmp_path: Path, body: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + body)
    return str(path)


@pytest.mark.parametrize(("body", "fragment"), [
    # pydantic's lax mode parsed the text: `ep: "2"` ran at ep 2, as every other numeric field of a scenario did
    ('serving: {tp: 2, ep: "2"}\n', "serving: ep: expected a number, got the text '2'"),
    ('serving: {tp: "2"}\n', "serving: tp: expected a number, got the text '2'"),
    ('serving: {gpu_memory_utilization: "0.9"}\n', "serving: gpu_memory_utilization: expected a number"),
    ('workload: {requests: "5"}\n', "workload: requests: expected a number, got the text '5'"),
    ('workload: {arrival: {kind: poisson, rate_rps: "12"}}\n', "rate_rps: expected a number, got the text '12'"),
    ('seed: "3"\n', "seed: expected a number, got the text '3'"),
    ('slos: {ttft_s: "1"}\n', "slos: ttft_s: expected a number, got the text '1'"),
    ('horizon_s: "1e3"\n', "horizon_s: expected a number, got the text '1e3'"),  # quoted: text, as written
])
def test_scenario_number_written_as_text_is_refused(tmp_path, body, fragment):
    refused(["simulate", _scenario(tmp_path, body)], fragment)


def test_hardware_number_written_as_text_is_refused(tmp_path):
    """The same base model reads hardware: a quoted bandwidth is refused by name, not parsed."""
    from lvlmsim.specs.registry import hardware_dir

    text = (hardware_dir() / "h100-sxm.yaml").read_text()
    assert "\nmem_bw_gbps: " in text
    bad = tmp_path / "hw.yaml"
    bad.write_text(text.replace("\nmem_bw_gbps: ", '\nmem_bw_gbps: "', 1).replace('"3350', '"3350"', 1))
    refused(["estimate", "--hardware", str(bad)], "mem_bw_gbps: expected a number, got the text '3350'")


@pytest.mark.parametrize(("text", "value"), [
    ("1e3", 1000.0), ("1e-3", 0.001), ("-2.5E+2", -250.0), (".5e1", 5.0), ("1_000e0", 1000.0),
])
def test_exponent_floats_read_as_numbers(text, value):
    """YAML 1.1 (PyYAML) reads '1e3' as text; YAML 1.2 and JSON as a number, which is what it means here."""
    assert load_yaml(f"x: {text}", "t")["x"] == value


@pytest.mark.parametrize("text", ["e3", "1e", "1.2.3", "'1e3'", "0x1e3"])
def test_what_is_not_an_exponent_float_stays_as_yaml_reads_it(text):
    import yaml

    assert load_yaml(f"x: {text}", "t") == yaml.safe_load(f"x: {text}")


def test_exponent_rate_in_a_scenario_is_a_rate(tmp_path):
    sc = load_scenario(Path(_scenario(tmp_path, "workload: {arrival: {kind: poisson, rate_rps: 1.5e1}}\n")))
    assert sc.workload.arrival.rate_rps == 15.0


@pytest.mark.parametrize(("items", "shown"), [
    ("[5]", "got 5 (int)"),
    ("[true]", "got True (bool)"),
    ("[[fastv]]", "got ['fastv'] (list)"),
    ("[fastv, 2.5]", "techniques.1: "),
])
def test_scenario_technique_of_the_wrong_type_is_one_line_with_the_kinds(tmp_path, items, shown):
    """`techniques: [5]` read as pydantic's dump of both union branches ('dict[str,any]: ...; str: ...')."""
    path = _scenario(tmp_path, f"workload: {{requests: 5}}\nserving: {{tp: 2}}\ntechniques: {items}\n")
    refused(["simulate", path], shown)
    refused(["simulate", path], "expected a technique as 'KIND:key=value,...' or a mapping with 'kind'")
    refused(["simulate", path], "allowed kinds: attention, fastv, ")


def test_plan_checks_the_scenarios_techniques_before_the_search(tmp_path):
    path = _scenario(tmp_path, "workload: {requests: 5}\ntechniques: [5]\n")
    refused([*PLAN, path, "--tp", "1"], "techniques.0: expected a technique")


@pytest.mark.parametrize("eps", ["2", "1,2", "2,4"])
def test_plan_ep_on_a_dense_model_is_refused_before_the_search(eps):
    """A plan searches one model; a dense one has no experts, so ep > 1 formed only candidates that could not run
    (each listed as not chosen). estimate, bench and simulate refuse it; so does plan now."""
    refused([*PLAN, "--model", "llava-1.5-7b", "--tp", "2,4", "--ep", eps],
            f"ep: llava-1.5-7b has no mixture-of-experts layers (expert parallelism applies to MoE models only); "
            f"allowed: 1, got {eps.replace(',', ', ')}")


def test_plan_ep_1_on_a_dense_model_is_the_default():
    from lvlmsim.planner.plan import _validate

    inp = _validate("llava-chat-h100", 1.0, "ttft_p90=1", None, "1", "agg", None, None, None, "ttft_p90", "serial",
                    None, ep="1")
    assert inp.eps == [1]
    with pytest.raises(SpecError, match="^ep: llava-1.5-7b has no mixture-of-experts"):
        _validate("llava-chat-h100", 1.0, "ttft_p90=1", None, "1", "agg", None, None, None, "ttft_p90", "serial",
                  None, ep=[1, 2])


@pytest.mark.parametrize("cap, expected", [("inf", None), ("Infinity", None), (float("inf"), None), (4, 4)])
def test_max_concurrency_reads_its_own_text_forms(cap, expected):
    """The strict text check leaves `max_concurrency` to its own validator: 'inf' means no cap, as both clients take."""
    assert WorkloadSpec.model_validate({"max_concurrency": cap}).max_concurrency == expected


def test_max_concurrency_refuses_other_text():
    with pytest.raises(ValidationError, match="expected a whole number or 'inf', got the text '2'"):
        WorkloadSpec.model_validate({"max_concurrency": "2"})


@pytest.mark.parametrize(("body", "fragment"), [
    # 10^9 replicas (or pool instances) filled memory for minutes without a word (16 GB in one probe)
    ("serving: {instances: 1000000000}\n",
     "serving.instances: Input should be less than or equal to 10000 (got 1000000000)"),
    ("serving:\n  pools:\n    - {role: E, instances: 1000000000}\n    - {role: PD}\n",
     "serving.pools.0.instances: Input should be less than or equal to 10000"),
])
def test_scenario_instances_past_what_the_engine_builds_are_refused(tmp_path, body, fragment):
    refused(["simulate", _scenario(tmp_path, "workload: {requests: 5}\n" + body)], fragment)


def test_plan_layout_with_a_billion_instances_is_refused():
    refused([*PLAN, "--model", "llava-1.5-7b", "--tp", "1", "--layouts", "E+PD:1:1000000000"],
            "layout: 'E+PD:1:1000000000': at most 10,000 instances per pool, got 1,000,000,000")


def test_plan_fleet_too_large_to_simulate_is_recommended_unverified_and_says_why():
    """A target of 10^6 req/s needs ~63,000 replicas of one H100: the fleet is past what the engine builds, so it is
    not simulated whole; the recommendation says so (it was a 16 GB build before the cap, a refusal after it)."""
    from lvlmsim.planner.plan import _choose, _verdict

    row = {"candidate": "h100-sxm tp1 agg", "status": "feasible", "hardware": "h100-sxm", "tp": 1, "ep": 1,
           "layout": "agg", "techniques": "", "replicas": 63132, "gpus": 63132, "cost_per_hour_usd": 189396.0,
           "capacity_per_replica_rps": 15.8}
    rec, runs = _choose([row], {}, None, {"ttft_p90": 1.0}, 1e6, None, 160.0, None, True, "ttft_p90_s")
    assert runs == 0 and rec is not None and rec["verified"] is False
    assert rec["verify_reason"].startswith("not simulated: its largest pool has 63,132 instances, past the "
                                           "engine's 10,000")
    import pandas as pd

    assert _verdict(rec, pd.DataFrame(), 1e6, {"ttft_p90": 1.0}, None).endswith(
        "; not simulated: its largest pool has 63,132 instances, past the engine's 10,000; the capacity is one "
        "replica's x replicas")


@pytest.mark.parametrize("command", [
    ["estimate"],
    ["simulate", "-n", "5"],
    [*PLAN, "--model", "llava-1.5-7b", "--tp", "1"],
])
def test_image_size_of_a_text_only_request_is_refused(command):
    """--images 0 --image-size 640x480 was taken and changed nothing (the size of no image)."""
    refused([*command, "--images", "0", "--image-size", "640x480"],
            "--image-size: describes the request's images, but --images is 0 (text only)")


def test_image_size_alone_and_images_zero_alone_are_taken():
    from typer.testing import CliRunner

    from lvlmsim.cli import app

    for flags in (["--images", "0"], ["--image-size", "640x480"], ["--images", "2", "--image-size", "640x480"]):
        assert CliRunner().invoke(app, ["estimate", *flags]).exit_code == 0, flags


@pytest.mark.parametrize("ref", ["@p200", "auto@p50", "general@", "@p"])
def test_profile_band_suffix_outside_p10_p90_is_named(ref):
    """'auto@p50' read 'file not found: auto@p50 (... one of: auto, general, default, peak)': no word of the
    suffix that was meant."""
    refused(["estimate", "--profile", ref], f"profile: unknown band suffix '@{ref.rpartition('@')[2]}' in '{ref}'; "
                                            "allowed: @p10, @p90 after auto, general, default, peak")


def test_calibrate_cuda_without_a_gpu_says_so_without_hardware_given(tmp_path):
    """Without --hardware it read "cannot tell which hardware spec 'None' is; pass --hardware ID": the GPU's name
    was None because there was no GPU, which it did not say (with --hardware it did)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    refused(["calibrate", "--device", "cuda", "--out", str(tmp_path / "p.json")],
            "--device: 'cuda' requested but torch sees no CUDA device (allowed: cpu, cuda)")
