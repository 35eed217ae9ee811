"""The capacity planner: a constructed case with a known answer, the capacity search against a brute-force scan, the
analytic pre-screen never removing what the engine would accept, and the CLI's --json and bad input.

Scenarios use the flat default roofline profile (`profile: default`) and short answers so that every simulation is
small; the planner's logic does not depend on either."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.engine.api import simulate
from lvlmsim.errors import SpecError
from lvlmsim.planner import SearchSettings, capacity_search, evaluate, parse_layout, parse_slos, plan
from lvlmsim.planner.capacity import probe, replicas_settled
from lvlmsim.planner.plan import _Analytic
from lvlmsim.planner.runs import scenario_payload
from lvlmsim.specs.registry import load_hardware
from lvlmsim.specs.scenario import load_scenario, scenario_from_dict

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
FAST = SearchSettings(probe_duration_s=10.0, min_requests=60, max_requests=8000, tolerance=0.1)
SLOS = {"ttft_p90": 1.0, "tpot_p90": 0.05}


def small(**serving) -> dict:
    d = load_scenario("llava-chat-h100").model_dump(mode="json")
    d["profile"] = "default"
    d["workload"]["output_tokens"] = {"kind": "lognormal", "mean": 48, "std": 30, "max": 192}
    d["workload"]["requests"] = 300
    d["serving"].update(serving)
    return d


def device(tmp_path: Path, name: str, speed: float, price: float) -> str:
    """A copy of the H100 with every peak and the bandwidth scaled by `speed`, at `price` $/hour."""
    hw = yaml.safe_load((REPO / "hardware_specs" / "h100-sxm.yaml").read_text())
    hw.update(id=name, name=name, price_per_hour_usd=price, mem_bw_gbps=hw["mem_bw_gbps"] * speed,
              peak_tflops={k: v * speed for k, v in hw["peak_tflops"].items()})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(hw))
    return str(path)


def test_slo_and_layout_parsing():
    assert parse_slos("ttft_p90=1.0, tpot_p90=0.05") == SLOS
    assert parse_slos({"e2e_p99": 10}) == {"e2e_p99": 10.0}
    with pytest.raises(SpecError, match="unknown key 'ttft_p95'; allowed: ttft_p50, ttft_p90, ttft_p99, tpot_p50"):
        parse_slos("ttft_p95=1")
    with pytest.raises(SpecError, match="must be > 0"):
        parse_slos("ttft_p90=-1")
    assert parse_layout("agg").aggregated and parse_layout("E+PD:1:2").gpus(2) == 1 + 2 * 2
    assert parse_layout("E+P+D").counts == (1, 1, 1)
    with pytest.raises(SpecError, match="allowed: agg, E\\+PD, EP\\+D, E\\+P\\+D"):
        parse_layout("P+E")


def test_replicas_settled():
    assert replicas_settled(25.0, math.inf, 20.0)  # one replica suffices whatever the capacity above 25
    assert not replicas_settled(14.0, 28.0, 20.0)  # capacity 15 needs 2 replicas, capacity 25 needs 1
    assert replicas_settled(14.0, 17.5, 20.0)  # every capacity in [14, 17.5) needs 2
    assert not replicas_settled(9.0, 10.5, 20.0)  # 9.5 needs 3, 10.2 needs 2
    assert not replicas_settled(0.0, 5.0, 20.0)


def test_stopping_once_replicas_are_settled_changes_no_cost_or_rank():
    kw = dict(target_rate=12.0, slos=SLOS, hardware="h100-sxm,l40s", tp=[1, 2], layouts=["agg"], settings=FAST,
              executor="serial")
    quick, full = plan(small(), **kw), plan(small(), exact=True, **kw)
    cols = ["candidate", "status", "replicas", "gpus", "cost_per_hour_usd", "rank", "pareto_cost_latency"]
    assert quick.candidates[cols].equals(full.candidates[cols])
    assert quick.candidates.des_runs.sum() <= full.candidates.des_runs.sum()
    assert full.candidates.capacity_exact.all()
    lower = quick.candidates.set_index("candidate").capacity_per_replica_rps
    exact = full.candidates.set_index("candidate").capacity_per_replica_rps
    assert (lower <= exact * (1 + FAST.tolerance)).all()  # a settled-early capacity is a lower bound
    assert quick.recommended["max_rate_meeting_slo"] == pytest.approx(full.recommended["max_rate_meeting_slo"],
                                                                      rel=FAST.tolerance)


def test_known_answer_cheaper_per_unit_of_capacity(tmp_path):
    """'slow' is the same GPU at 20% of the speed for 60% of the price, so per request/s it costs about three times
    as much. With a target above one fast replica's capacity, rounding up replicas cannot change that (fast needs at
    most 2 T / c_fast replicas, slow at least T / c_slow): the plan must pick 'fast', with
    replicas = ceil(target / capacity of one fast replica)."""
    fast = device(tmp_path, "fast-gpu", 1.0, 2.0)
    slow = device(tmp_path, "slow-gpu", 0.2, 1.2)
    target = 60.0
    res = plan(small(), target_rate=target, slos=SLOS, hardware=[slow, fast], tp=[1], layouts=["agg"],
               settings=FAST, executor="serial")
    rows = res.candidates.set_index("candidate")
    f, s = rows.loc["fast-gpu tp1 agg"], rows.loc["slow-gpu tp1 agg"]
    assert f.status == s.status == "feasible"
    assert f.capacity_per_replica_rps < target  # the premise: more than one fast replica is needed
    assert 1.2 / s.capacity_per_replica_rps > 2 * 2.0 / f.capacity_per_replica_rps
    rec = res.recommended
    assert rec is not None and rec["hardware"] == fast and rec["verified"] is True
    need = math.ceil(target / f.capacity_per_replica_rps)
    assert need <= rec["replicas"] <= need + 1  # verification of the whole fleet may add one
    assert rec["gpus"] == rec["replicas"] and rec["cost_per_hour"] == pytest.approx(2.0 * rec["gpus"])
    assert rec["max_rate_meeting_slo"] >= target
    assert rec["pools"] == [{"role": "EPD", "instances": rec["replicas"], "tp": 1}]
    assert res.candidates["rank"].iloc[0] == 1 and res.candidates.candidate.iloc[0] == "fast-gpu tp1 agg"
    assert len(res.pareto) >= 1 and "fast-gpu tp1 agg" in set(res.pareto.candidate)
    st = res.stats
    assert st["des_runs"] == int(res.candidates.des_runs.sum()) + st["verify_runs"] + st["refine_runs"]
    assert rec["capacity_exact"] is True  # the recommended capacity is refined to the tolerance


def test_capacity_search_brackets_the_capacity_found_by_direct_simulation():
    payload = scenario_payload(scenario_from_dict(small(), "t"))
    s = SearchSettings(probe_duration_s=10.0, min_requests=60, max_requests=8000, tolerance=0.05)
    res = capacity_search(payload, SLOS, guess_rps=30.0, settings=s)
    lo, hi = res["bracket_lo_rps"], res["bracket_hi_rps"]
    assert 0 < lo < hi and (hi - lo) / hi <= 0.05
    assert res["des_runs"] >= sum(p["runs"] for p in res["probes"]) + 1  # probes plus the saturated run(s)
    assert lo <= res["saturated_rps"]  # never above what the configuration completes when backlogged

    def passes(rate: float) -> bool:
        return rate <= res["saturated_rps"] and probe(payload, rate, SLOS, s)["passed"]

    grid = np.linspace(0.5 * lo, 1.5 * hi, 9)
    ok = [passes(float(r)) for r in grid]
    passing, failing = grid[np.array(ok)], grid[~np.array(ok)]
    assert len(passing) and len(failing)
    # The true capacity lies between the highest passing and the lowest failing grid rate; so does the bracket.
    assert lo < failing.min() and hi > passing.max()


def test_prescreen_bounds_hold_against_the_engine():
    """A lower bound that exceeded what the engine measures would prune feasible configurations."""
    sc = scenario_from_dict(small(), "t")
    an = _Analytic(sc, {50, 90, 99})
    for hw, tp in (("h100-sxm", 1), ("l40s", 2)):
        d = small(tp=tp)
        d["hardware"] = hw
        r = simulate(d, requests=300, rate=0.5)
        _, _, measured = evaluate(r.requests, {}, 0.0)
        for key, bound in an.latency_bounds(load_hardware(hw), tp, {50, 90, 99}).items():
            assert bound <= measured[key] * 1.001, (hw, tp, key, bound, measured[key])


def test_nothing_meets_the_slos_is_a_verdict_not_a_recommendation(tmp_path):
    res = plan(small(), target_rate=5, slos="ttft_p90=0.001", hardware="h100-sxm,l40s", tp=[1, 3],
               layouts=["agg"], settings=FAST, executor="serial")
    assert res.recommended is None and not res.feasible
    assert "no configuration meets ttft_p90 <= 0.001 s" in res.verdict
    assert set(res.candidates.status) == {"pruned"} and res.stats["pruned_analytic"] == 4
    reasons = " ".join(res.candidates.reason)
    assert "even for a lone request" in reasons and "does not divide the 32 attention heads" in reasons
    assert res.stats["des_runs"] == 0


def test_technique_sets_are_candidates_and_refusals_are_recorded():
    res = plan(small(), target_rate=6.0, slos=SLOS, hardware="h100-sxm", tp=[1], layouts=["agg"], settings=FAST,
               executor="serial", techniques=[[], ["fastv:layer=2,keep=0.5"],
                                              ["kv_budget:tokens=256", "fastv:layer=2,keep=0.5"]])
    rows = res.candidates.set_index("candidate")
    assert rows.loc["h100-sxm tp1 agg", "status"] == "feasible"
    assert rows.loc["h100-sxm tp1 agg +fastv:layer=2,keep=0.5", "status"] == "feasible"
    both = rows[rows.index.str.contains("kv_budget")].iloc[0]  # the engine refuses a budget with a schedule
    assert both.status == "infeasible" and "'kv_budget' and 'fastv'" in both.reason and both.des_runs == 0
    assert res.recommended is not None and isinstance(res.recommended["techniques"], list)
    with pytest.raises(SpecError, match="nope"):
        plan(small(), target_rate=6.0, slos=SLOS, techniques=[["nope:x=1"]])


def test_cli_plan_json_and_bad_input(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(small()))
    args = ["plan", str(path), "--target-rate", "8", "--slo", "ttft_p90=1.0,tpot_p90=0.05", "--hardware",
            "h100-sxm", "--tp", "1", "--layouts", "agg,E+PD:1:2", "--probe-s", "10", "--tolerance", "0.1",
            "--executor", "serial", "--max-gpus", "2"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rec = doc["recommended"]
    for key in ("hardware", "tp", "layout", "pools", "replicas", "gpus", "cost_per_hour", "max_rate_meeting_slo"):
        assert key in rec
    assert rec["gpus"] <= 2 and rec["max_rate_meeting_slo"] >= 8
    assert {c["candidate"] for c in doc["candidates"]} == {"h100-sxm tp1 agg", "h100-sxm tp1 E+PD:1:2"}
    e_pd = next(c for c in doc["candidates"] if c["layout"] == "E+PD:1:2")
    assert e_pd["status"] == "pruned" and "max_gpus 2" in e_pd["reason"]  # one E+PD replica is 3 GPUs
    assert doc["pareto"] and doc["stats"]["candidates"] == 2

    res = runner.invoke(app, [*args[:-2], "--slo", "ttft_p90=0.001"])
    assert res.exit_code == 1 and "no feasible configuration" in res.output

    for bad, needle in ((["--slo", "ttft_p95=1"], "slo: unknown key 'ttft_p95'; allowed: ttft_p50"),
                        (["--layouts", "P+E"], "layout: unknown 'P+E'"),
                        (["--hardware", "nope-gpu"], "unknown hardware 'nope-gpu'"),
                        (["--target-rate", "-1"], "target_rate: must be a finite rate in (0, 1e+09]")):
        res = runner.invoke(app, ["plan", str(path), "--target-rate", "8", *bad])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], res.output
