"""Scenario specs: shipped scenarios load, the embedded default matches its file, bad fields name file and field."""

from __future__ import annotations

import pytest
import yaml

from lvlmsim.errors import SpecError, UnknownIdError
from lvlmsim.specs.registry import scenario_ids, scenarios_dir
from lvlmsim.specs.scenario import DEFAULT_SCENARIO_YAML, default_scenario, load_scenario

REQUIRED_SCENARIOS = {"llava-chat-h100", "qwen2vl-docs-h200", "internvl-l40s-tp4", "qwen25vl-epd-h100",
                      "qwen25vl-epd-l4-encoder", "multiturn-chat", "video-qa"}


def test_required_scenarios_ship_and_load():
    assert REQUIRED_SCENARIOS <= set(scenario_ids())
    for sid in scenario_ids():
        sc = load_scenario(sid)
        assert sc.id == sid
        assert sc.source_dir == scenarios_dir().resolve()


def test_embedded_default_matches_the_file():
    on_disk = yaml.safe_load((scenarios_dir() / "llava-chat-h100.yaml").read_text())
    assert on_disk == yaml.safe_load(DEFAULT_SCENARIO_YAML)
    assert load_scenario(None).model_dump() == default_scenario().model_dump()


def test_disaggregated_pools_parse():
    sc = load_scenario("qwen25vl-epd-l4-encoder")
    roles = [(p.role, p.hardware, p.instances) for p in sc.serving.pools]
    assert roles == [("E", "l4", 4), ("P", None, 1), ("D", None, 2)]
    assert sc.serving.link.bw_gbps == 12.5


def _yaml(tmp_path, text: str):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_bad_field_names_file_and_field(tmp_path):
    p = _yaml(tmp_path, "model: llava-1.5-7b\nhardware: h100-sxm\n"
                        "workload:\n  arrival: {kind: poisson, rate_rps: -2}\n")
    with pytest.raises(SpecError) as exc:
        load_scenario(str(p))
    msg = str(exc.value)
    assert str(p) in msg and "workload.arrival" in msg and "rate_rps" in msg


def test_typo_is_an_error_not_ignored(tmp_path):
    p = _yaml(tmp_path, "model: llava-1.5-7b\nhardware: h100-sxm\nserving: {max_num_seq: 10}\n")
    with pytest.raises(SpecError, match=r"serving.max_num_seq: Extra inputs are not permitted"):
        load_scenario(str(p))


@pytest.mark.parametrize("pools", [
    "[{role: P}, {role: E}, {role: D}]",
    "[{role: EP}]",
    "[{role: E}, {role: PD}, {role: D}]",
])
def test_pool_roles_must_cover_epd_in_order(tmp_path, pools):
    p = _yaml(tmp_path, f"model: llava-1.5-7b\nhardware: h100-sxm\nserving:\n  pools: {pools}\n")
    with pytest.raises(SpecError, match="serving: .*roles must cover"):
        load_scenario(str(p))


def test_unknown_scenario_suggests_ids():
    with pytest.raises(UnknownIdError, match="Did you mean: llava-chat-h100"):
        load_scenario("llava-chat-h10")


def test_overrides():
    sc = default_scenario().with_overrides(requests=50, rate=3.5, seed=9)
    assert (sc.workload.requests, sc.workload.arrival.rate_rps, sc.seed) == (50, 3.5, 9)
    with pytest.raises(SpecError, match="rate"):
        default_scenario().with_overrides(rate=0)
    tr = load_scenario("llava-trace-replay")
    with pytest.raises(SpecError, match="trace_rate_rps"):
        tr.with_overrides(rate=4.0)
    assert tr.with_overrides(rate=4.0, trace_rate_rps=2.0).workload.arrival.time_scale == 0.5


def test_malformed_yaml_names_line(tmp_path):
    p = _yaml(tmp_path, "model: llava-1.5-7b\nhardware: [h100\n")
    with pytest.raises(SpecError, match=r"s.yaml: line \d+"):
        load_scenario(str(p))
