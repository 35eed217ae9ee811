"""Fuzz suite (issue 15): hypothesis strategies over specs, API arguments, CLI flags and files.

Every case must end in one of two ways: an answer whose numbers are finite, or the project's error (LvlmsimError)
with a one-line message. A traceback of any other type, a multi-line error, or a non-finite number in an answer
fails the case. Hangs are bounded by the inputs (small request counts).

CI runs a fast subset: LVLMSIM_FUZZ_EXAMPLES (default 6) examples per test over 14 tests. The full suite is
LVLMSIM_FUZZ_EXAMPLES=20 (>= 280 cases); with LVLMSIM_FUZZ_REPORT=path the outcome counts (answered / refused, by
test) are appended to that file as JSON lines.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import lvlmsim
from lvlmsim.cli import app
from lvlmsim.engine.api import simulate
from lvlmsim.errors import LvlmsimError
from lvlmsim.specs.registry import load_hardware, load_model
from lvlmsim.specs.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("LVLMSIM_FUZZ_EXAMPLES", "6"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OUTCOMES: Counter = Counter()
runner = CliRunner()

# values that have broken number handling somewhere: non-finite, booleans, wrong types, extremes, edges
NASTY = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, 0, -1, 1e308, -1e-308, 2**63, "abc", "",
                     [], {}, "1e3", 0.5, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
)


def record(test: str, outcome: str) -> None:
    OUTCOMES[(test, outcome)] += 1


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("LVLMSIM_FUZZ_REPORT")
    if path:
        with open(path, "a") as fh:
            for (test, outcome), n in sorted(OUTCOMES.items()):
                fh.write(json.dumps({"test": test, "outcome": outcome, "cases": n}) + "\n")


def finite_numbers(obj, path="") -> list[str]:
    """Paths of non-finite floats anywhere in a plain structure."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in finite_numbers(v, f"{path}.{k}")]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in finite_numbers(v, f"{path}[{i}]")]
    return []


def outcome(test: str, fn) -> object | None:
    """Run fn; return its answer, or None when it refused with the project's one-line error."""
    try:
        result = fn()
    except LvlmsimError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, f"multi-line or empty error: {msg!r}"
        record(test, "refused")
        return None
    record(test, "answered")
    return result


def numeric_paths(doc, prefix=()) -> list[tuple]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in numeric_paths(v, (*prefix, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in numeric_paths(v, (*prefix, i))]
    return [prefix] if isinstance(doc, int | float) and not isinstance(doc, bool) else []


def set_path(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


HW = yaml.safe_load((REPO / "hardware_specs" / "h100-sxm.yaml").read_text())
MODEL = yaml.safe_load((REPO / "workloads" / "models" / "llava-1.5-7b.yaml").read_text())
SCEN = load_scenario("llava-chat-h100").model_dump(mode="json")
HW_PATHS = numeric_paths(HW)
MODEL_PATHS = numeric_paths(MODEL)
SCEN_PATHS = [p for p in numeric_paths(SCEN) if p[:2] != ("workload", "requests")]


def check_estimate(e) -> None:
    assert math.isfinite(e.ttft_s) and e.ttft_s >= 0
    assert math.isfinite(e.tpot_s) and e.tpot_s >= 0
    assert math.isfinite(e.e2e_s) and e.e2e_s >= 0


# ---------------------------------------------------------------------------------------------------------- specs
@FUZZ
@given(path=st.sampled_from(HW_PATHS), value=NASTY)
def test_hardware_field(tmp_path_factory, path, value):
    doc = json.loads(json.dumps(HW, default=str))
    set_path(doc, path, value)
    p = tmp_path_factory.mktemp("hw") / "hw.yaml"
    p.write_text(yaml.safe_dump(doc))
    hw = outcome("hardware_field", lambda: load_hardware(str(p)))
    if hw is not None:
        e = outcome("hardware_field_estimate", lambda: lvlmsim.estimate(hardware=hw))
        if e is not None:
            check_estimate(e)


@FUZZ
@given(path=st.sampled_from(MODEL_PATHS), value=NASTY)
def test_model_field(tmp_path_factory, path, value):
    doc = json.loads(json.dumps(MODEL, default=str))
    set_path(doc, path, value)
    p = tmp_path_factory.mktemp("m") / "m.yaml"
    p.write_text(yaml.safe_dump(doc))
    m = outcome("model_field", lambda: load_model(str(p)))
    if m is not None:
        e = outcome("model_field_estimate", lambda: lvlmsim.estimate(m))
        if e is not None:
            check_estimate(e)


@FUZZ
@given(path=st.sampled_from(SCEN_PATHS), value=NASTY)
def test_scenario_field_simulated(path, value):
    doc = json.loads(json.dumps(SCEN))
    set_path(doc, path, value)
    res = outcome("scenario_field", lambda: simulate(doc, requests=30))
    if res is not None:
        assert not finite_numbers(res.summary), finite_numbers(res.summary)
        assert res.summary["completed"] + res.summary["rejected"] + res.summary["in_flight"] == 30


@FUZZ
@given(text=st.text(max_size=400))
def test_yaml_text_as_hardware(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("t") / "x.yaml"
    p.write_text(text)
    outcome("yaml_text", lambda: load_hardware(str(p)))


@FUZZ
@given(data=st.binary(max_size=200))
def test_bytes_as_scenario(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("b") / "s.yaml"
    p.write_bytes(data)
    outcome("bytes_scenario", lambda: load_scenario(str(p)))


@FUZZ
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["[", "{a: "]))
def test_nested_yaml(tmp_path_factory, depth, kind):
    close = "]" if kind == "[" else "}"
    p = tmp_path_factory.mktemp("n") / "n.yaml"
    p.write_text("id: " + kind * depth + "1" + close * depth)
    outcome("nested_yaml", lambda: load_hardware(str(p)))


# ------------------------------------------------------------------------------------------------------------ API
@FUZZ
@given(kw=st.fixed_dictionaries({}, optional={
    "images": NASTY, "prompt_tokens": NASTY, "output_tokens": NASTY, "batch": NASTY, "tp": NASTY,
    "video_s": NASTY, "moe_skew": NASTY, "image_size": st.one_of(NASTY, st.text(max_size=12)),
    "video_fps": NASTY}))
def test_estimate_arguments(kw):
    e = outcome("estimate_args", lambda: lvlmsim.estimate(**kw))
    if e is not None:
        check_estimate(e)


@FUZZ
@given(requests=st.one_of(st.integers(-5, 60), NASTY), rate=st.one_of(st.floats(0.01, 100), NASTY),
       seed=st.one_of(st.integers(0, 5), NASTY))
def test_simulate_arguments(requests, rate, seed):
    if isinstance(requests, int | float) and not isinstance(requests, bool) and 200 < requests <= 10**9:
        requests = 200  # a valid huge count is a long run, not a fuzz case; beyond 10**9 it is refused
    res = outcome("simulate_args", lambda: simulate(requests=requests, rate=rate, seed=seed))
    if res is not None:
        assert not finite_numbers(res.summary)


@FUZZ
@given(target=NASTY, slo=st.one_of(st.text(max_size=20), st.just("ttft_p90=nan"), st.just("ttft_p90=-1")))
def test_plan_arguments_are_checked_before_any_search(target, slo):
    outcome("plan_args", lambda: lvlmsim.plan(target_rate=target, slos=slo, hardware="h100-sxm", tp=[1],
                                              layouts=["agg"], executor="serial"))


# ------------------------------------------------------------------------------------------------------------ CLI
FLAG_VALUES = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "true", "", "x", "3", "1e6", "0.5"])


@FUZZ
@given(flag=st.sampled_from(["--images", "--prompt-tokens", "--output-tokens", "--batch", "--tp", "--video-s",
                             "--image-size"]), value=FLAG_VALUES)
def test_estimate_flags(flag, value):
    res = runner.invoke(app, ["estimate", flag, value, "--json"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1, 2)
    record("estimate_flags", "answered" if res.exit_code == 0 else "refused")
    if res.exit_code == 0:
        json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))


@FUZZ
@given(flag=st.sampled_from(["--requests", "--rate", "--seed", "--video-s", "--images"]), value=FLAG_VALUES)
def test_simulate_flags(flag, value):
    args = ["simulate", flag, value, "--json"]
    if flag != "--requests":
        args += ["--requests", "40"]
    elif value in ("1e6", "1e309"):
        return  # a valid huge count is a long run, not a fuzz case
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1, 2)
    record("simulate_flags", "answered" if res.exit_code == 0 else "refused")
    if res.exit_code == 0:
        json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))


# ---------------------------------------------------------------------------------------------------------- files
TRACE_CELL = st.sampled_from(["", "nan", "inf", "-1", "0", "1e9", "true", "abc", "3", "0.25", "1e308", "\x00", "é"])


@FUZZ
@given(cells=st.lists(st.tuples(TRACE_CELL, TRACE_CELL, TRACE_CELL), min_size=1, max_size=6))
def test_trace_cells(tmp_path_factory, cells):
    d = tmp_path_factory.mktemp("tr")
    (d / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{a},{b},{c}\n" for a, b, c in cells))
    doc = json.loads(json.dumps(SCEN))
    doc["workload"]["arrival"] = {"kind": "trace", "path": str(d / "t.csv")}
    res = outcome("trace_cells", lambda: simulate(doc))
    if res is not None:
        assert not finite_numbers(res.summary)


@FUZZ
@given(key=st.sampled_from(["ttft_s", "tpot_s", "e2e_s", "percentile"]), value=NASTY)
def test_slo_values(key, value):
    doc = json.loads(json.dumps(SCEN))
    doc["slos"][key] = value
    outcome("slo_values", lambda: simulate(doc, requests=20))


@FUZZ
@given(value=NASTY, field=st.sampled_from(["clients", "rate_rps", "cv"]),
       kind=st.sampled_from(["poisson", "gamma", "constant", "concurrency"]))
def test_arrivals(value, field, kind):
    doc = json.loads(json.dumps(SCEN))
    doc["workload"]["arrival"] = {"kind": kind, field: value}
    res = outcome("arrivals", lambda: simulate(doc, requests=20))
    if res is not None:
        assert not finite_numbers(res.summary)
