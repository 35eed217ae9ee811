"""Sweeps: dotted-path axes checked against the scenario, one row per run, failures recorded, resumable, and the
process-pool executor equal to running in this process. Small runs: each simulation is a few hundred requests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.errors import SpecError
from lvlmsim.planner import load_sweep, read_table, sweep
from lvlmsim.planner.overrides import apply_overrides, resolve_path
from lvlmsim.planner.runs import run_key, scenario_payload
from lvlmsim.specs.scenario import load_scenario

runner = CliRunner()

# `profile: default` keeps these tests independent of the shipped calibration profiles (and quick).
FIXED = {"workload.requests": 60, "profile": "default"}


def spec(**extra) -> dict:
    doc = {
        "name": "t",
        "base": "llava-chat-h100",
        "overrides": dict(FIXED),
        "runs": [{"hardware": "h100-sxm", "serving.tp": 1}, {"hardware": "nope-gpu"},
                 {"hardware": "h100-sxm", "serving.pools": [{"role": "E"}, {"role": "PD", "instances": 2}]}],
        "grid": {"rate": [2, 4]},
    }
    doc.update(extra)
    return doc


def test_paths_resolve_against_the_scenario_and_bad_ones_name_the_valid_fields():
    sc = load_scenario("qwen25vl-epd-h100")
    assert resolve_path(sc, "serving.pools.D.instances") == ("serving", "pools", 2, "instances")
    assert resolve_path(sc, "serving.pools.0.tp") == ("serving", "pools", 0, "tp")
    assert resolve_path(sc, "workload.arrival.rate_rps") == ("workload", "arrival", "rate_rps")
    assert resolve_path(sc, "serving.link.bw_gbps") == ("serving", "link", "bw_gbps")
    with pytest.raises(SpecError, match=r"'tpp' is not a field of serving .*valid fields: instances, tp, .*router"):
        resolve_path(sc, "serving.tpp")
    with pytest.raises(SpecError, match=r"'X' is not an item of serving.pools; valid: 0, 1, 2, E, P, D"):
        resolve_path(sc, "serving.pools.X.instances")
    with pytest.raises(SpecError, match=r"valid fields: kind, rate_rps"):
        resolve_path(sc, "workload.arrival.rate")
    with pytest.raises(SpecError, match="the path must end there"):
        resolve_path(sc, "serving.tp.x")
    out, rate = apply_overrides(sc, {"serving.pools.D.instances": 5, "rate": 3.0})
    assert out.serving.pools[2].instances == 5 and rate == 3.0
    assert sc.serving.pools[2].instances == 2  # the base is untouched


def test_run_key_is_stable_and_input_sensitive():
    sc = load_scenario("llava-chat-h100")
    a = run_key(scenario_payload(sc, rate=4.0))
    assert a == run_key(scenario_payload(load_scenario("llava-chat-h100"), rate=4.0))
    assert a != run_key(scenario_payload(sc, rate=5.0))
    assert len(a) == 16 and int(a, 16) >= 0


def test_grid_times_runs_and_errors_recorded(tmp_path):
    out = tmp_path / "res.parquet"
    df = sweep(spec(), out=out, executor="serial")
    assert len(df) == 6 and list(df.run) == list(range(6))
    assert list(df.columns[:6]) == ["run", "run_key", "hardware", "serving.tp", "serving.pools", "rate"]
    assert list(df.rate) == [2, 4] * 3
    bad = df[df.hardware == "nope-gpu"]
    assert (bad.status == "error").all() and bad.error.str.contains("unknown hardware 'nope-gpu'").all()
    ok = df[df.status == "ok"]
    assert len(ok) == 4 and (ok.completed == 60).all() and ok.ttft_p90_s.notna().all()
    assert list(ok.gpus) == [1, 1, 3, 3]
    assert json.loads(df["serving.pools"].iloc[4])[1] == {"instances": 2, "role": "PD"}
    back = read_table(out)
    pd.testing.assert_frame_equal(back, df)


def test_interrupted_sweep_resumes_to_the_same_table(tmp_path):
    full = sweep(spec(), out=tmp_path / "full.parquet", executor="serial")

    out = tmp_path / "part.parquet"
    seen = []

    def stop_after_two(row):
        seen.append(row["run"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(spec(), out=out, executor="serial", on_row=stop_after_two)
    part = read_table(out)
    assert len(part) == 2 and not (tmp_path / "part.parquet.journal.jsonl").exists()
    sweep(spec(), out=out, executor="serial", max_runs=1)  # a budget: one more run, then stop
    assert len(read_table(out)) == 3

    ran = []
    resumed = sweep(spec(), out=out, executor="serial", on_row=lambda r: ran.append(r["run"]))
    assert sorted(ran) == [3, 4, 5]  # the three already in the output were skipped
    pd.testing.assert_frame_equal(resumed.drop(columns="wall_s"), full.drop(columns="wall_s"))


def test_journal_survives_a_hard_kill(tmp_path):
    """Rows are journaled as they finish, so even a process killed before writing the table loses nothing."""
    out = tmp_path / "res.parquet"
    full = sweep(spec(), out=out, executor="serial")
    journal = tmp_path / "res.parquet.journal.jsonl"
    rows = full.head(3).to_dict("records")
    journal.write_text("".join(json.dumps({k: (None if v is pd.NA or v != v else v) for k, v in r.items()},
                                          default=str) + "\n" for r in rows) + '{"cut sh')
    out.unlink()
    ran = []
    again = sweep(spec(), out=out, executor="serial", on_row=lambda r: ran.append(r["run"]))
    assert sorted(ran) == [3, 4, 5] and not journal.exists()
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), full.drop(columns="wall_s"))


def test_process_pool_equals_serial(tmp_path, pool_safe_main):
    doc = spec(runs=[{"hardware": "h100-sxm"}, {"hardware": "l40s"}])
    a = sweep(doc, executor="serial")
    b = sweep(doc, executor="local", workers=2)
    pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))


def test_cli_sweep_json_and_bad_axis(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec(runs=[{"serving.tp": 1}], grid={"rate": [3]})))
    out = tmp_path / "r.parquet"
    res = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--executor", "serial", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc) == 1 and doc[0]["status"] == "ok" and doc[0]["serving.tp"] == 1 and out.exists()

    path.write_text(yaml.safe_dump(spec(grid={"serving.tpp": [1]})))
    res = runner.invoke(app, ["sweep", str(path), "--out", str(out)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "serving.tpp" in lines[0] and "valid fields: instances, tp" in lines[0]

    path.write_text(yaml.safe_dump({**spec(), "axes": {"serving.tp": [1]}}))
    res = runner.invoke(app, ["sweep", str(path)])
    assert res.exit_code == 2 and "axes" in res.output and len(res.output.strip().splitlines()) == 1


def test_example_sweep_loads():
    sw = load_sweep(Path(__file__).resolve().parents[1] / "workloads" / "sweeps" / "llava-tp-hardware.yaml")
    assert len(sw) == 12 and sw.axes == ["hardware", "serving.tp", "serving.pools", "rate"]
