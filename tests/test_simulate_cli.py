"""`lvlmsim simulate`: the --json contract, bit-for-bit repeats, --out files, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app

runner = CliRunner()

STATS = {"mean", "p50", "p90", "p99"}


def run_json(*args: str) -> dict:
    res = runner.invoke(app, ["simulate", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_json_contract():
    doc = run_json("--requests", "300", "--seed", "1")
    for key in ("requests", "completed", "rejected", "throughput_rps", "output_tokens_per_s", "goodput_rps",
                "slo_attainment", "saturation"):
        assert key in doc
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(doc[key]) >= STATS
        assert all(isinstance(doc[key][k], float) for k in STATS)
    assert doc["requests"] == doc["completed"] == 300
    assert doc["saturation"]["verdict"] in ("stable", "backlogged")
    assert doc["scenario"]["id"] == "llava-chat-h100"


def test_json_repeats_bit_for_bit():
    a = runner.invoke(app, ["simulate", "--json", "--requests", "400", "--seed", "3"])
    b = runner.invoke(app, ["simulate", "--json", "--requests", "400", "--seed", "3"])
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout


def test_rate_past_capacity_is_backlogged():
    low = run_json("--requests", "800", "--seed", "1", "--rate", "10")
    high = run_json("--requests", "800", "--seed", "1", "--rate", "60")
    assert (low["saturation"]["verdict"], high["saturation"]["verdict"]) == ("stable", "backlogged")
    assert high["ttft_s"]["p90"] > low["ttft_s"]["p90"]


def test_epd_scenario_reports_transfers():
    doc = run_json("qwen25vl-epd-h100", "--requests", "100")
    assert doc["transfer_s"]["mean"] > 0
    assert [p["role"] for p in doc["scenario"]["pools"]] == ["E", "P", "D"]


def test_table_output():
    res = runner.invoke(app, ["simulate", "-n", "100"])
    assert res.exit_code == 0, res.output
    for word in ("TTFT", "TPOT", "end-to-end", "saturation", "goodput", "EPD0"):
        assert word in res.stdout


def test_out_writes_tables_and_summary(tmp_path):
    res = runner.invoke(app, ["simulate", "-n", "120", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert "summary.json" in files
    req = tmp_path / "run" / ("requests.parquet" if "requests.parquet" in files else "requests.csv")
    df = pd.read_parquet(req) if req.suffix == ".parquet" else pd.read_csv(req)
    assert len(df) == 120 and {"ttft_s", "tpot_s", "e2e_s", "status", "transfer_s"} <= set(df.columns)
    doc = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert doc["summary"]["completed"] == 120


@pytest.mark.parametrize("args, needle", [
    (["no-such-scenario"], "unknown scenario 'no-such-scenario'"),
    (["--requests", "0"], "requests: expected an integer in [1, 1e+09], got 0"),
    (["--rate", "-1"], "rate (requests/s): expected a number (inf allowed) > 0, got -1.0"),
    (["--runtime", "tgi"], "--runtime: unknown runtime 'tgi'; allowed: vllm, sglang, trtllm, eager"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    res = runner.invoke(app, ["simulate", *args])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0]


def test_bad_scenario_file_and_infeasible_model(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llava-1.5-7b\nhardware: h100-sxm\nworkload: {requests: 5, images: {kind: nope}}\n")
    res = runner.invoke(app, ["simulate", str(bad)])
    assert res.exit_code == 2
    assert str(bad) in res.output and "workload.images" in res.output
    big = tmp_path / "big.yaml"
    big.write_text("model: llava-1.5-13b\nhardware: l4\nworkload: {requests: 5}\n")
    res = runner.invoke(app, ["simulate", str(big)])
    assert res.exit_code == 2
    assert "does not fit" in res.output and len(res.output.strip().splitlines()) == 1


def test_module_entry_point_acceptance():
    """The acceptance command, as a user types it."""
    cmd = [sys.executable, "-m", "lvlmsim", "simulate", "--json", "--requests", "2000", "--seed", "1"]
    a = subprocess.run(cmd, capture_output=True, text=True, check=True)
    doc = json.loads(a.stdout)
    assert doc["completed"] == doc["requests"] == 2000
    assert doc["saturation"]["verdict"] == "stable"


def test_runtime_flag_adds_launch_overhead_to_every_step():
    plain = run_json("--requests", "100", "--seed", "2")
    eager = run_json("--requests", "100", "--seed", "2", "--runtime", "eager")
    assert eager["scenario"]["pools"][0]["profile"].endswith("+eager")
    assert eager["tpot_s"]["p50"] > plain["tpot_s"]["p50"] + 60e-6  # at least the 66 us host step overhead
