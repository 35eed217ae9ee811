"""`lvlmsim app`: the streamlit command it builds, where it finds the app, and its one-line errors."""

from __future__ import annotations

import importlib.util

from typer.testing import CliRunner

from lvlmsim.cli import app, app_cmd
from lvlmsim.specs import registry

runner = CliRunner()


def test_app_folder_is_found_through_the_registry():
    assert app_cmd.app_dir() == registry.data_root() / "app"
    assert (app_cmd.app_dir() / "Home.py").is_file()


def test_print_command_is_a_headless_streamlit_run_on_the_chosen_port():
    res = runner.invoke(app, ["app", "--port", "9123", "--print-command", "--", "--theme.base", "dark"])
    assert res.exit_code == 0, res.output
    cmd = res.stdout.split()
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("Home.py")
    for flag, value in (("--server.headless", "true"), ("--server.port", "9123"), ("--server.address", "127.0.0.1")):
        assert cmd[cmd.index(flag) + 1] == value
    assert cmd[-2:] == ["--theme.base", "dark"]


def test_installed_layout_resolves_under_the_wheel_data_folder(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Home.py").write_text("")
    monkeypatch.setattr(registry, "data_root", lambda: tmp_path)
    assert app_cmd.streamlit_command(8600)[4] == str(tmp_path / "app" / "Home.py")


def test_missing_streamlit_or_bad_port_is_one_line_and_status_2(monkeypatch):
    res = runner.invoke(app, ["app", "--port", "0", "--print-command"])
    assert res.exit_code == 2 and "--port" in res.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    res = runner.invoke(app, ["app", "--print-command"])
    assert res.exit_code == 2 and "pip install streamlit altair" in res.output
