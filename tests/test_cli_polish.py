"""CLI polish a new user hits first: --version, help without emoji markup, scenarios listed with what they are, the
context-length check of `estimate`, and one exit-status policy for "does not fit" across commands."""

from __future__ import annotations

import json
import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import lvlmsim
from lvlmsim.cli import app
from lvlmsim.specs import registry
from lvlmsim.specs.scenario import load_scenario

runner = CliRunner()
# Pictographs rich would draw for ':name:' codes (e.g. ':a:' -> U+1F170) and other symbol planes
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF]")


def test_version_prints_the_package_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"lvlmsim {lvlmsim.__version__}"


def _commands() -> list[str]:
    return sorted(get_command(app).commands)


@pytest.mark.parametrize("command", _commands())
def test_help_has_no_emoji(command):
    res = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert res.exit_code == 0, res.output
    assert not EMOJI.search(res.output), EMOJI.findall(res.output)


def test_list_scenarios_says_what_each_one_is():
    res = runner.invoke(app, ["list", "scenarios"], terminal_width=400)
    assert res.exit_code == 0
    for sid in registry.scenario_ids():
        sc = load_scenario(sid)
        assert sid in res.output and sc.model in res.output
    assert "LLaVA-1.5-7B answering chat questions" in res.output


def test_estimate_past_the_context_length_is_an_error_unless_allowed():
    # 6 images of 8000x8000 are ~98k Qwen2-VL visual tokens against a 32k context
    args = ["estimate", "--model", "qwen2-vl-7b", "--images", "6", "--image-size", "8000x8000"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "context length of 32768" in res.output and "--allow-overflow" in res.output
    res = runner.invoke(app, [*args, "--allow-overflow", "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert any("estimated anyway" in n for n in doc["notes"])
    with pytest.raises(lvlmsim.errors.SpecError, match="context"):
        lvlmsim.estimate("qwen2-vl-7b", images=6, image_size=(8000, 8000))


def test_does_not_fit_exits_1_with_the_report_printed():
    """estimate answers 'no' like plan does: exit 1, report printed; simulate cannot run it at all: exit 2."""
    res = runner.invoke(app, ["estimate", "--model", "llava-1.5-13b", "--hardware", "l4", "--json"])
    assert res.exit_code == 1
    assert json.loads(res.stdout)["memory"]["fits"] is False
    res = runner.invoke(app, ["estimate", "--model", "llava-1.5-13b", "--hardware", "l4"])
    assert res.exit_code == 1 and "does not fit" in res.output
    res = runner.invoke(app, ["simulate", "-n", "5", "--model", "llava-1.5-13b", "--hardware", "l4"])
    assert res.exit_code == 2 and "error:" in res.output
