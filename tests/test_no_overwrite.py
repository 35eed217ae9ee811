"""Every command that writes a file keeps one the user already has unless told --force (import-hf's -o replaced a
model YAML silently). Checked before any work: a refused path costs no import, run, benchmark or simulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.errors import SpecError
from lvlmsim.specs.outputs import refuse_to_replace

runner = CliRunner()
HF_CONFIG = Path(__file__).parent / "fixtures" / "hf" / "deepseek-vl2" / "config.json"


def _refused(args: list[str], path: Path, flag: str) -> None:
    """The command exits 2 with one line naming the flag, the file and --force, and the file is untouched."""
    before = path.read_bytes()
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: ") and str(path) in lines[0]
    assert "already exist" in lines[0] and "give --force" in lines[0]
    assert path.read_bytes() == before


def test_import_hf_keeps_an_existing_output_unless_forced(tmp_path):
    out = tmp_path / "m.yaml"
    out.write_text("mine: 1\n")
    _refused(["import-hf", str(HF_CONFIG), "-o", str(out)], out, "--output")
    res = runner.invoke(app, ["import-hf", str(HF_CONFIG), "-o", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text())["id"] == "deepseek-vl2"


def test_calibrate_keeps_the_profile_and_the_csv_beside_it(tmp_path):
    """Refused before the suite runs (it takes minutes): either file of the pair existing is enough."""
    (tmp_path / "p.csv").write_text("kept\n")
    _refused(["calibrate", "--out", str(tmp_path / "p.json")], tmp_path / "p.csv", "--out")
    (tmp_path / "q.json").write_text("{}\n")
    _refused(["calibrate", "--out", str(tmp_path / "q.json")], tmp_path / "q.json", "--out")


def test_bench_keeps_an_existing_result_file(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}\n")
    _refused(["bench", "--num-prompts", "4", "--result-file", str(out)], out, "--result-file")
    res = runner.invoke(app, ["bench", "--num-prompts", "4", "--random-input-len", "32", "--random-output-len", "8",
                              "--result-file", str(out), "--force", "--profile", "default"])
    assert res.exit_code == 0, res.output
    assert out.read_text() != "{}\n"


def test_simulate_keeps_an_earlier_runs_files_in_out(tmp_path):
    """A folder with other files is fine (simulate writes only its own names); one of its own names is refused."""
    from lvlmsim.engine.api import RESULT_FILES

    (tmp_path / "notes.txt").write_text("unrelated\n")
    args = ["simulate", "--out", str(tmp_path), "-n", "4", "--profile", "default"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    written = {p.name for p in tmp_path.iterdir()} - {"notes.txt"}
    assert written and written <= set(RESULT_FILES)  # the names the check looks for are the ones written
    _refused(args, tmp_path / "summary.json", "--out")
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_sweep_resumes_freely_but_no_resume_needs_force(tmp_path):
    """Resuming keeps every row of --out; --no-resume writes a new table over it."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": "llava-chat-h100",
                                    "overrides": {"workload.requests": 40, "profile": "default"},
                                    "runs": [{"serving.tp": 1}]}))
    out = tmp_path / "r.csv"
    base = ["sweep", str(path), "--out", str(out), "--executor", "serial"]
    assert runner.invoke(app, base).exit_code == 0
    assert runner.invoke(app, base).exit_code == 0  # resume: nothing lost
    _refused([*base, "--no-resume"], out, "--out")
    assert runner.invoke(app, [*base, "--no-resume", "--force"]).exit_code == 0


def test_refuse_to_replace_names_every_existing_file(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.csv"
    refuse_to_replace([a, b], "--out", force=False)  # neither exists
    a.write_text("1")
    b.write_text("2")
    with pytest.raises(SpecError, match=r"--out: .*a\.json, .*b\.csv already exist; give --force to replace them"):
        refuse_to_replace([a, b], "--out", force=False)
    refuse_to_replace([a, b], "--out", force=True)
