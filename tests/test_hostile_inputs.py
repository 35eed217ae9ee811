"""Hostile inputs found by the wave-7 audit (issue 15): each case was a traceback or a silent simulation before, and
is now refused with one line on stderr (exit 2) that names the field and the allowed values.

A case is (argv, message fragment). The runs are small (4-5 requests) so the file stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvlmsim.cli import app

runner = CliRunner()
HF = Path(__file__).resolve().parent / "fixtures" / "hf"


def refused(args: list[str], fragment: str) -> None:
    """`lvlmsim ARGS` exits 2 with exactly one stderr line that contains `fragment`, and prints no traceback."""
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Broken result / config files a user might hand over."""
    d = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, data in {
        "binary.json": bytes(range(256)),
        "strings.json": json.dumps({"duration": "abc", "completed": 5}).encode(),
        "nan.json": b'{"duration": NaN, "completed": 5}',
        "negative.json": json.dumps({"duration": 3.0, "completed": -5}).encode(),
    }.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    out["dir"] = str(d)
    return out


BENCH = ["bench", "--num-prompts", "4"]


@pytest.mark.parametrize(("flags", "fragment"), [
    # 0 used to fall back to the client's default length (1024 / 128) without a word
    (["--random-input-len", "0"], "--random-input-len: must be >= 1 token, got 0"),
    (["--random-output-len", "0"], "--random-output-len: must be >= 1 token, got 0"),
    (["--special-tokens", "-1"], "--special-tokens: must be in [0, --random-input-len 1024), got -1"),
    (["--special-tokens", "2000"], "--special-tokens: must be in [0, --random-input-len 1024), got 2000"),
    (["--client", "sglang", "--special-tokens", "1"], "--special-tokens: vllm only"),
    # inf reached the scenario as gamma cv 0 and was reported under a field the user never typed
    (["--request-rate", "2", "--burstiness", "inf"], "--burstiness: must be a finite number > 0"),
    (["--host", "tgi"], "--host: unknown host profile 'tgi'; allowed: off, sglang"),
    # flags the dataset does not read were dropped silently
    (["--image-count", "3"], "--image-count: applies to --dataset-name random-image only"),
    (["--image-resolution", "4k"], "--image-resolution: applies to --dataset-name random-image only"),
    (["--client", "sglang", "--image-format", "png"], "--image-format: applies to --dataset-name random-image"),
    (["--dataset-name", "sharegpt", "--random-input-len", "5"], "--random-input-len: applies to --dataset-name "
                                                                 "random or random-image only"),
    # every request longer than the context: 0 successful, 4 failed, exit 0 before
    (["--random-input-len", "200000"], "every request was rejected, none can be served; 4 of 4 requests rejected "
                                       "at admission: longer than max_model_len 128000 (4)"),
    (["--max-model-len", "100"], "longer than max_model_len 100"),
    (["--model", "llava-1.5-7b", "--dataset-name", "random-image", "--image-count", "10"],
     "longer than max_model_len 4096"),
])
def test_bench_flags(flags, fragment):
    refused([*BENCH, *flags], fragment)


@pytest.mark.parametrize(("name", "fragment"), [
    ("binary.json", "is not text (not UTF-8)"),  # UnicodeDecodeError traceback before
    ("strings.json", "duration: expected a finite number >= 0 (or null), got 'abc'"),  # row dropped unseen
    ("nan.json", "duration: expected a finite number >= 0 (or null), got nan"),  # printed '+nan%'
    ("negative.json", "completed: expected a finite number >= 0 (or null), got -5"),
])
def test_bench_compare_files(files, name, fragment):
    refused([*BENCH, "--compare", files[name]], f"--compare: {files[name]}")
    refused([*BENCH, "--compare", files[name]], fragment)


def test_bench_result_file_that_is_a_folder_is_refused_before_the_run(files):
    """IsADirectoryError traceback after the whole run before."""
    refused([*BENCH, "--result-file", files["dir"]], "--result-file:")
