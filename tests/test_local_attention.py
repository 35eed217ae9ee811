"""Sliding-window and chunked local attention (issue 16): closed forms against brute force, KV held by memory and
the engine, and the engine's step cost against the graph."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvlmsim.cost.memory import (
    kv_bytes_per_token,
    kv_bytes_per_token_beyond_window,
    kv_slot_bytes,
    local_window_slots,
    sequence_kv_bytes,
)
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.stepcost import DECODE_REL_TOL, StepCost, reference_step_s
from lvlmsim.estimate import default_graph_config
from lvlmsim.ops.graph import llm_ops, local_keys_read, local_kv_held, local_pairs
from lvlmsim.ops.op import SeqWork
from lvlmsim.specs.registry import load_hardware, load_model


def brute_pairs_and_keys(past: int, new: int, w: int, kind: str) -> tuple[int, int]:
    """Count, position by position, the keys each query sees, and the distinct keys any of them sees."""
    seen: set[int] = set()
    pairs = 0
    for i in range(past, past + new):
        lo = max(0, i - w + 1) if kind == "sliding" else (i // w) * w
        pairs += i - lo + 1
        seen.update(range(lo, i + 1))
    return pairs, len(seen)


@settings(max_examples=200, deadline=None)
@given(past=st.integers(0, 300), new=st.integers(1, 300), w=st.integers(1, 64),
       kind=st.sampled_from(["sliding", "chunked"]))
def test_local_closed_forms_match_brute_force(past, new, w, kind):
    pairs, keys = brute_pairs_and_keys(past, new, w, kind)
    assert local_pairs(past, new, w, kind) == pairs
    assert local_keys_read(past, new, w, kind) == keys


def test_kv_held_is_capped_at_one_window():
    assert local_kv_held(500, 1024, "sliding") == 500
    assert local_kv_held(5000, 1024, "sliding") == 1024
    assert local_kv_held(20000, 8192, "chunked") == 8192


def test_gemma3_layer_pattern_is_five_local_to_one_global():
    lm = load_model("gemma-3-27b").llm
    assert lm.local_attention_layers == 52
    assert [i for i in range(62) if not lm.is_local_layer(i)] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]


def test_gemma3_kv_bytes_beyond_the_window_derived_by_hand():
    """Per layer and token: K and V x 16 kv heads x 128 x 2 B = 8192 B. All 62 layers: 507,904 B/token;
    past the 1024-token window only the 10 global layers grow: 81,920 B/token. An 8192-token sequence holds
    8192 x 81,920 + 1024 x 52 x 8192 = 671,088,640 + 436,207,616 = 1,107,296,256 B (vs 4,160,749,568 B without
    windows: 3.76x less)."""
    m = load_model("gemma-3-27b")
    cfg = default_graph_config(m, 1)
    assert kv_bytes_per_token(m, cfg) == 507_904
    assert kv_bytes_per_token_beyond_window(m, cfg) == 81_920
    assert sequence_kv_bytes(m, cfg, 8192, 0) == 1_107_296_256
    assert sequence_kv_bytes(m, cfg, 1000, 0) == 1000 * 507_904  # inside the window nothing is dropped
    # engine slots: 81,920 B each; the window costs ceil(1024 x 52 x 8192 / 81,920) = 5325 slots up front
    assert kv_slot_bytes(m, cfg) == 81_920
    assert local_window_slots(m, cfg, 8192) == 5325
    assert (8192 + 5325) * 81_920 >= sequence_kv_bytes(m, cfg, 8192, 0)


def test_decode_reads_only_the_window_in_local_layers():
    m = load_model("gemma-3-27b")
    cfg = default_graph_config(m, 1)
    ops = {op.name: op for op in llm_ops(m, (SeqWork(new_tokens=1, past_tokens=5000, emits_token=True),),
                                        "decode", cfg)}
    glob, loc = ops["llm.attention"], ops["llm.attention.sliding"]
    assert (glob.count, loc.count) == (10, 52)
    assert glob.shape[2] == 5001 and loc.shape[2] == 1024  # keys read per sequence
    assert loc.flops == pytest.approx(glob.flops * 1024 / 5001)


def _coster(model_id: str, tp: int = 1):
    m = load_model(model_id)
    cfg = default_graph_config(m, tp)
    cm = CostModel(load_hardware("h100-sxm"))
    return m, cfg, cm, StepCost(m, cfg, cm)


@pytest.mark.parametrize("chunks", [
    [(2048, 0, 0, 0, 0, True)],
    [(512, 3000, 0, 0, 0, False), (700, 0, 0, 0, 0, True)],
    [(4096, 9000, 0, 0, 0, True)],
])
def test_prefill_steps_match_the_graph_exactly(chunks):
    m, cfg, cm, sc = _coster("gemma-3-27b")
    assert sc.step_s(0, 0, chunks) == pytest.approx(reference_step_s(m, cfg, cm, [], chunks), rel=1e-12)


@pytest.mark.parametrize("n,past", [(1, 100), (8, 900), (32, 5000), (128, 20000)])
def test_decode_of_equal_lengths_matches_the_graph(n, past):
    m, cfg, cm, sc = _coster("gemma-3-27b")
    decs = [(past, 0, 0)] * n
    assert sc.decode_s(n, n * past) == pytest.approx(reference_step_s(m, cfg, cm, decs), rel=DECODE_REL_TOL)


def test_decode_of_mixed_lengths_is_an_upper_bound():
    """The engine keeps only the batch's summed length, so the local layers are priced at the mean length: an upper
    bound of the exact per-sequence min(past + 1, window) (min is concave)."""
    m, cfg, cm, sc = _coster("gemma-3-27b")
    decs = [(100, 0, 0), (200, 0, 0), (30000, 0, 0), (60000, 0, 0)]
    exact = reference_step_s(m, cfg, cm, decs)
    assert sc.decode_s(4, sum(p for p, _, _ in decs)) >= exact * (1 - DECODE_REL_TOL)


def test_windows_shrink_decode_time_and_kv_against_the_same_model_without_them():
    m = load_model("gemma-3-27b")
    dense = m.model_copy(update={"llm": m.llm.model_copy(update={"local_attention": None})})
    cfg = default_graph_config(m, 1)
    cm = CostModel(load_hardware("h100-sxm"))
    decs = [(30000, 0, 0)] * 16
    assert reference_step_s(m, cfg, cm, decs) < 0.8 * reference_step_s(dense, cfg, cm, decs)
    assert sequence_kv_bytes(m, cfg, 30000, 0) < 0.25 * sequence_kv_bytes(dense, cfg, 30000, 0)


def test_simulate_gives_windowed_models_blocks_of_global_layer_tokens(tmp_path):
    """Engine blocks hold tokens of the global layers only (the window is reserved per sequence), so the same
    memory budget makes 507,904 / 81,920 = 6.2x as many blocks as for the same model without windows."""
    import yaml

    from lvlmsim.engine.api import simulate
    from lvlmsim.specs.scenario import default_scenario

    m = load_model("gemma-3-27b")
    dense = m.model_dump(mode="json")
    dense["id"] = "gemma-3-27b-dense"
    dense["llm"]["local_attention"] = None
    path = tmp_path / "gemma-3-27b-dense.yaml"
    path.write_text(yaml.safe_dump(dense))
    blocks = {}
    for ref in ("gemma-3-27b", str(path)):
        doc = default_scenario().model_dump(mode="json")
        doc["model"] = ref
        doc["serving"]["tp"] = 2
        res = simulate(doc, requests=12, seed=1)
        assert res.summary["completed"] == 12
        blocks[ref] = res.summary["instances"][0]["kv_blocks"]
    assert blocks["gemma-3-27b"] / blocks[str(path)] == pytest.approx(507_904 / 81_920, rel=0.01)
