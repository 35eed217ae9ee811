"""The parts of benchmarks/vllm_session_reuse_check.py (issue 13, wave 9) that do not need vLLM: the session it
replays and the KV cache groups it gives vLLM's manager. Oracles: tt-inference-server's batch-1 run order with its
prompt counts (bench-runs.yaml's session source) and vLLM 0.10.1.1's grouping rule worked by hand for Gemma 3 4B."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("vllm_session_reuse_check", BENCH / "vllm_session_reuse_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tt521_session_is_the_sweep_in_the_order_sent(check):
    """(128,128) x 8, (128,1024) x 4, then 1024-3072 x 4 and 4096 x 2 (get_num_prompts: 'input_len > 4000' -> 2)."""
    model_id, runs = check.sweep_session("tt-521")
    assert model_id == "gemma-3-4b"
    assert runs == [(128, 8, 128), (128, 4, 1024), (1024, 4, 128), (2048, 4, 128), (3072, 4, 128), (4096, 2, 128)]


def test_unknown_sweep_exits_with_its_name(check):
    with pytest.raises(SystemExit, match="tt-999"):
        check.sweep_session("tt-999")


def test_gemma3_4b_groups_as_vllm_groups_them(check):
    """34 layers, global when (i + 1) % 6 == 0: 29 sliding and 5 global; group size min(29, 5) = 5, so the sliding
    layers (first in layer order) make 5 groups of 5 and one of 4, then one global group."""
    groups = check.layer_groups("gemma-3-4b", hybrid=True)
    assert [kind for kind, _ in groups] == ["sliding"] * 6 + ["full"]
    assert [len(names) for _, names in groups] == [5, 5, 5, 5, 5, 4, 5]
    assert groups[-1][1] == ["layer.5", "layer.11", "layer.17", "layer.23", "layer.29"]
    assert groups[0][1] == ["layer.0", "layer.1", "layer.2", "layer.3", "layer.4"]
    assert sorted(n for _, names in groups for n in names) == sorted(f"layer.{i}" for i in range(34))


def test_control_and_global_only_models_are_one_group(check):
    assert check.layer_groups("gemma-3-4b", hybrid=False) == [("full", [f"layer.{i}" for i in range(34)])]
    kind, names = check.layer_groups("qwen3-vl-4b", hybrid=True)[0]
    assert kind == "full" and len(check.layer_groups("qwen3-vl-4b", hybrid=True)) == 1 and len(names) == 36


def test_without_vllm_the_script_says_what_is_missing(check, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # an import of vllm now raises ImportError
    with pytest.raises(SystemExit, match="cannot import vLLM's V1 KV cache manager"):
        check._vllm()
