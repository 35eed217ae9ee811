"""Workload specs and generation: distributions, arrivals, sessions, video, and traces with line-numbered errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lvlmsim.engine.trace import TraceError, load_trace, read_column, read_trace, trace_mean_rate
from lvlmsim.engine.workload import arrival_times, counts, generate, sample
from lvlmsim.errors import SpecError
from lvlmsim.specs.base import validate_as
from lvlmsim.specs.registry import load_model, traces_dir
from lvlmsim.specs.workload import (
    ConstantArrival,
    EmpiricalDist,
    FixedDist,
    GammaArrival,
    LogNormalDist,
    PoissonArrival,
    WorkloadSpec,
)

LLAVA = load_model("llava-1.5-7b")
QWEN = load_model("qwen2.5-vl-7b")


def wl(**kw) -> WorkloadSpec:
    return validate_as(WorkloadSpec, kw, "test")


def test_number_is_shorthand_for_fixed_and_sizes_accept_strings():
    w = wl(prompt_tokens=50, image_size="1024x768")
    assert w.prompt_tokens == FixedDist(value=50)
    assert (w.image_size[0].width, w.image_size[0].height, w.image_size[0].weight) == (1024, 768, 1.0)
    w = wl(image_size=[{"size": "640x480", "weight": 3}, "336x336"])
    assert [c.weight for c in w.image_size] == [3.0, 1.0]


@pytest.mark.parametrize("bad, where", [
    ({"prompt_tokens": {"kind": "uniform", "low": 10, "high": 5}}, "prompt_tokens"),
    ({"images": {"kind": "empirical"}}, "images"),
    ({"arrival": {"kind": "gamma", "rate_rps": 0}}, "rate_rps"),
    ({"image_size": "10by20"}, "image_size"),
    ({"output_tokens": {"kind": "lognormal", "mean": 100, "sd": 3}}, "sd"),
])
def test_bad_values_name_the_field(bad, where):
    with pytest.raises(SpecError, match=where):
        wl(**bad)


def test_lognormal_mean_and_count_clipping():
    rng = np.random.default_rng(0)
    x = sample(LogNormalDist(mean=200, std=150), rng, 200_000)
    assert x.mean() == pytest.approx(200, rel=0.02)
    assert x.std() == pytest.approx(150, rel=0.05)
    c = counts(sample(validate_as(WorkloadSpec, {"prompt_tokens": {"kind": "normal", "mean": 0, "std": 5}}, "t")
                      .prompt_tokens, rng, 1000), 1)
    assert min(c) >= 1
    assert counts(np.array([-3.0, 0.4, 2.6]), 0) == [0, 0, 3]


def test_empirical_values_weights_and_trace_column():
    rng = np.random.default_rng(1)
    x = sample(EmpiricalDist(values=[1, 2], weights=[3, 1]), rng, 40_000)
    assert set(np.unique(x)) == {1.0, 2.0}
    assert (x == 1).mean() == pytest.approx(0.75, abs=0.01)
    path = traces_dir() / "sample-chat.csv"
    col = read_column(path, "output_tokens")
    y = sample(EmpiricalDist(trace=str(path), column="output_tokens"), rng, 1000, resolve=Path)
    assert set(y) <= set(col)


def test_arrival_processes():
    rng = np.random.default_rng(2)
    n = 100_000
    gaps = np.diff(arrival_times(PoissonArrival(rate_rps=10), rng, n))
    assert gaps.mean() == pytest.approx(0.1, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)
    gaps = np.diff(arrival_times(GammaArrival(rate_rps=10, cv=3), rng, n))
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    t = arrival_times(ConstantArrival(rate_rps=4), rng, 5)
    assert np.allclose(t, [0.25, 0.5, 0.75, 1.0, 1.25])


def test_generation_is_deterministic_and_rate_does_not_change_contents():
    a = generate(wl(requests=300, arrival={"kind": "poisson", "rate_rps": 5}, prompt_tokens={
        "kind": "lognormal", "mean": 80, "std": 40}, images={"kind": "uniform", "low": 0, "high": 3},
        image_size=["1024x768", "640x480"]), QWEN, seed=7)
    b = generate(wl(requests=300, arrival={"kind": "poisson", "rate_rps": 50}, prompt_tokens={
        "kind": "lognormal", "mean": 80, "std": 40}, images={"kind": "uniform", "low": 0, "high": 3},
        image_size=["1024x768", "640x480"]), QWEN, seed=7)
    key = [(r.prompt_tokens, r.output_tokens, r.visual_tokens, r.vit_seq_lens) for r in a.requests]
    assert key == [(r.prompt_tokens, r.output_tokens, r.visual_tokens, r.vit_seq_lens) for r in b.requests]
    assert [r.arrival_s * 10 for r in b.requests] == pytest.approx([r.arrival_s for r in a.requests])
    assert any(r.images == 0 for r in a.requests) and any(r.images >= 2 for r in a.requests)


def test_sessions_resend_history_and_images():
    w = generate(wl(requests=200, prompt_tokens=30, output_tokens=50, images=1,
                    session={"turns": 4, "think_time_s": 5, "new_images_per_turn": 1}), QWEN, seed=1)
    assert len(w.requests) == 200 and len(w.sessions) == 50
    chat = w.sessions[0]
    assert [r.turn for r in chat] == [1, 2, 3, 4]
    assert [r.prompt_tokens for r in chat] == [30, 110, 190, 270]  # each turn re-sends earlier prompts and answers
    assert [r.images for r in chat] == [1, 2, 3, 4]  # earlier images come again, one new per turn
    assert chat[2].image_ids == ("s0i0", "s0i1", "s0i2")
    assert math.isnan(chat[1].arrival_s) and chat[1].think_s == 5.0
    assert chat[3].visual_tokens > chat[0].visual_tokens


def test_video_requests_use_the_video_tokenizer():
    w = generate(wl(requests=20, images=0, video={"fraction": 1.0, "duration_s": 30}), QWEN, seed=0)
    assert {r.visual_tokens for r in w.requests} == {7682}
    assert all(len(r.vit_seq_lens) == 30 and r.video_s == 30 for r in w.requests)


def test_shipped_traces_parse():
    rows = read_trace(traces_dir() / "sample-chat.csv")
    assert len(rows) == 60
    assert any(r.session_id and r.turn == 3 for r in rows)
    assert any(r.image_tokens == 576 for r in rows)
    vids = load_trace(traces_dir() / "sample-video.jsonl")
    assert any(r.video_s > 0 for r in vids)
    assert trace_mean_rate(traces_dir() / "sample-chat.csv") > 0


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("body, line, column", [
    ("arrival_s,prompt_tokens,output_tokens\n0.1,10,20\n0.2,abc,20\n", 3, "prompt_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0.1,10,20\n0.2,10,20\n-1,10,20\n", 4, "arrival_s"),
    ("arrival_s,prompt_tokens,output_tokens\n0.1,10,0\n", 2, "output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens,images\n0.1,10,5,2\n", 2, "image_width"),
    ("arrival_s,prompt_tokens,output_tokens\n0.1,10,20\n0.3,,20\n", 3, "prompt_tokens"),
    ("arrival_s,prompt_tokens,output_tokens,images,image_width,image_height\n0.1,10,5,1,1.5,300\n", 2,
     "image_width"),
])
def test_bad_csv_rows_name_file_line_and_column(tmp_path, body, line, column):
    p = _write(tmp_path, "bad.csv", body)
    with pytest.raises(TraceError) as exc:
        read_trace(p)
    msg = str(exc.value)
    assert f"bad.csv:{line}:" in msg and f"'{column}'" in msg


def test_bad_jsonl_and_header(tmp_path):
    p = _write(tmp_path, "bad.jsonl", '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3}\n{oops\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:2: malformed JSON"):
        read_trace(p)
    p = _write(tmp_path, "bad2.jsonl", '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3}\n'
                                         '{"arrival_s": 1, "prompt_tokens": 5, "output_tokens": "x"}\n')
    with pytest.raises(TraceError, match=r"bad2.jsonl:2: column 'output_tokens'"):
        read_trace(p)
    p = _write(tmp_path, "nohdr.csv", "arrival_s,prompt\n0,1\n")
    with pytest.raises(TraceError, match=r"nohdr.csv:1: missing column\(s\) prompt_tokens, output_tokens"):
        read_trace(p)


def test_trace_replay_generation(tmp_path):
    p = _write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens,images,image_width,image_height,"
                                  "image_tokens\n2.0,10,5,1,1280,720,\n1.0,20,6,,,,576\n")
    w = generate(wl(arrival={"kind": "trace", "path": str(p), "time_scale": 0.5}), LLAVA, seed=0, resolve=Path)
    assert [r.arrival_s for r in w.requests] == [0.5, 1.0]  # sorted by time, scaled
    assert [r.visual_tokens for r in w.requests] == [576, 576]
    assert w.requests[0].vit_seq_lens == (577,)  # visual tokens alone: ViT work scaled from a native-size image
