"""The CLI contract: JSON shape, tables, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app

runner = CliRunner()

ACCEPTANCE = ["estimate", "--model", "llava-1.5-7b", "--hardware", "h100-sxm", "--images", "1", "--image-size",
              "336x336", "--prompt-tokens", "64", "--output-tokens", "128", "--json"]


def test_estimate_json_contract():
    res = runner.invoke(app, ACCEPTANCE)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["visual_tokens"] == 576
    for stage in ("encode", "prefill", "decode"):
        assert set(doc["stages"][stage]) >= {"time_s", "flops", "bytes", "bound"}
    assert doc["stages"]["prefill"]["bound"] == "compute"
    assert doc["stages"]["decode"]["bound"] == "memory"
    assert doc["e2e_s"] == pytest.approx(doc["ttft_s"] + doc["stages"]["decode"]["time_s"])
    assert set(doc["memory"]) >= {"weights_bytes", "kv_bytes_per_token", "fits"}
    assert doc["memory"]["fits"] is True


def test_ops_make_every_figure_traceable():
    res = runner.invoke(app, ACCEPTANCE + ["--ops"])
    doc = json.loads(res.stdout)
    for stage in ("encode", "prefill", "decode"):
        rows = [r for r in doc["ops"] if r["stage"] == stage]
        assert rows
        assert sum(r["time_s"] for r in rows) == pytest.approx(doc["stages"][stage]["time_s"])
        assert sum(r["flops"] for r in rows) == pytest.approx(doc["stages"][stage]["flops"])


def test_table_output_mentions_each_stage():
    res = runner.invoke(app, ["estimate", "--model", "llava-1.5-7b", "--hardware", "h100-sxm", "--ops"])
    assert res.exit_code == 0, res.output
    for word in ("encode", "prefill", "decode", "TTFT", "llm.mlp_up"):
        assert word in res.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "llava-1.5-7"], "unknown model 'llava-1.5-7'. Did you mean: llava-1.5-7b"),
        (["--hardware", "h100"], "unknown hardware 'h100'"),
        (["--image-size", "0x0"], "image_size"),
        (["--tp", "3"], "tp: 3 does not divide"),
        (["--prompt-tokens", "-1"], "prompt_tokens"),
        (["--model", "/nonexistent/model.yaml"], "file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    res = runner.invoke(app, ["estimate", *args])
    assert res.exit_code == 2
    assert needle in res.output
    assert "Traceback" not in res.output


def test_malformed_and_unknown_field_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nname: [unclosed\n")
    res = runner.invoke(app, ["estimate", "--model", str(bad)])
    assert res.exit_code == 2 and "malformed YAML" in res.output
    import yaml

    from lvlmsim.specs.registry import models_dir

    doc = yaml.safe_load((models_dir() / "llava-1.5-7b.yaml").read_text())
    doc["llm"]["num_layerz"] = 3
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["estimate", "--model", str(odd)])
    assert res.exit_code == 2 and "llm.num_layerz" in res.output


def test_list_models_and_hardware():
    res = runner.invoke(app, ["list", "models"])
    assert res.exit_code == 0 and "llava-1.5-7b" in res.stdout
    res = runner.invoke(app, ["list", "hardware"])
    assert res.exit_code == 0 and "h100-sxm" in res.stdout
    res = runner.invoke(app, ["list", "gpus"])
    assert res.exit_code == 2 and "allowed: models, hardware" in res.output


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "lvlmsim", "estimate", "--json", "--output-tokens", "4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["visual_tokens"] == 576


def test_no_help_text_is_eaten_as_rich_markup():
    """--help goes through rich, which read '[default: 0]' (bench --special-tokens, --image-count, ...) and
    'mean [min-max]' (validate --seeds) as style tags and printed nothing of them: every option's and command's help
    must render as written (a literal '[' escaped as '\\[')."""
    import typer
    from rich.text import Text

    from lvlmsim.cli import app

    root = typer.main.get_command(app)
    lost = []
    for name, cmd in root.commands.items():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            if Text.from_markup(text).plain != text.replace("\\[", "["):
                lost.append(f"{name}: {text!r}")
    assert not lost, lost
