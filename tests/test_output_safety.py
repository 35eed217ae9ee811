"""Outputs are all-or-nothing (issue 15): the destination is checked before any work, result sets are staged and
renamed with their completion marker last, JSON is strict, and a sweep stops its workers on SIGTERM and SIGKILL.
Faults are injected where they would hurt: inside a writer, after the run, in the parent process."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app
from lvlmsim.errors import SpecError
from lvlmsim.specs.outputs import atomic_write_text, check_out_dir, check_out_file, strict_json, write_files_atomically

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _no_constants(name):
    raise ValueError(name)


@pytest.mark.parametrize("bad", ["", "  "])
def test_empty_out_is_refused_before_the_run(monkeypatch, bad):
    import lvlmsim.engine.api as api

    monkeypatch.setattr(api, "simulate", lambda *a, **k: pytest.fail("ran before checking --out"))
    res = runner.invoke(app, ["simulate", "-n", "50", "--out", bad])
    assert res.exit_code == 2 and "--out: empty path" in res.output


def test_out_that_is_a_file_is_refused_before_the_run(tmp_path, monkeypatch):
    import lvlmsim.engine.api as api

    monkeypatch.setattr(api, "simulate", lambda *a, **k: pytest.fail("ran before checking --out"))
    f = tmp_path / "file"
    f.write_text("x")
    for target in (f, f / "below"):
        res = runner.invoke(app, ["simulate", "-n", "50", "--out", str(target)])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output


def test_table_outputs_refuse_extensions_they_cannot_read_back(tmp_path):
    with pytest.raises(SpecError, match="extension '.txt'; allowed: .parquet, .csv"):
        check_out_file(tmp_path / "x.txt", (".parquet", ".csv"))
    with pytest.raises(SpecError, match="empty path"):
        check_out_file("", (".parquet", ".csv"))
    assert check_out_file(tmp_path / "new" / "x.csv", (".parquet", ".csv")).name == "x.csv"
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"


def test_a_failing_writer_leaves_the_previous_result_set_untouched(tmp_path):
    """Fault injection: the second of three files fails half-written. The old set stays whole; no temp files."""
    old = {"requests.csv": "old requests\n", "timeseries.csv": "old ts\n", "summary.json": "{\"old\": true}\n"}
    for name, text in old.items():
        (tmp_path / name).write_text(text)

    def boom(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError("disk full")

    writers = [("requests.csv", lambda t: t.write_text("new")), ("timeseries.csv", boom),
               ("summary.json", lambda t: t.write_text("{}"))]
    with pytest.raises(OSError, match="disk full"):
        write_files_atomically(tmp_path, writers, marker="summary.json")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == old


def test_the_completion_marker_is_renamed_last(tmp_path, monkeypatch):
    """Fault injection: the process dies between two renames. The old summary is gone, so the half-new set is not
    mistaken for a complete one."""
    (tmp_path / "summary.json").write_text("{\"old\": true}")
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_files_atomically(tmp_path, [("summary.json", lambda t: t.write_text("{}")),
                                          ("a.csv", lambda t: t.write_text("a")),
                                          ("b.csv", lambda t: t.write_text("b"))], marker="summary.json")
    assert calls == ["a.csv", "b.csv"]
    assert not (tmp_path / "summary.json").exists()


def test_atomic_text_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "m.yaml"
    p.write_text("old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("EIO")))
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["m.yaml"]


def test_simulate_out_writes_a_complete_set_with_plain_permissions(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["simulate", "-n", "60", "--out", str(out)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["requests.parquet", "summary.json", "timeseries.parquet"]
    assert len(pd.read_parquet(out / "requests.parquet")) == 60
    json.loads((out / "summary.json").read_text(), parse_constant=_no_constants)
    assert (out / "summary.json").stat().st_mode & 0o044  # readable by others, as open() would leave it


def test_strict_json_turns_non_finite_into_null_with_a_note():
    text = strict_json({"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}, "e": 2})
    doc = json.loads(text, parse_constant=_no_constants)
    assert doc == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2, "non_finite": ["a", "b[1]", "c.d"]}
    assert json.loads(strict_json({"x": 1.5})) == {"x": 1.5}


def test_cli_json_is_strict_json():
    res = runner.invoke(app, ["simulate", "-n", "30", "--json"])
    assert res.exit_code == 0
    json.loads(res.stdout, parse_constant=_no_constants)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.strip()
    return bool(st) and not st.startswith("Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table with ps")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_sweep_workers_die_with_the_sweep(tmp_path, sig):
    """SIGTERM is handled like Ctrl-C (exit 130, finished runs kept); after SIGKILL the pool workers exit too."""
    cmd = [sys.executable, "-m", "lvlmsim", "sweep", str(REPO / "workloads" / "sweeps" / "llava-tp-hardware.yaml"),
           "--out", str(tmp_path / "s.parquet"), "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.3)
        workers = _children(proc.pid)
    if proc.poll() is not None:
        pytest.skip("the sweep finished before workers could be seen")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "interrupted" in err
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.3)
    assert not any(_alive(w) for w in workers)
