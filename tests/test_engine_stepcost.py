"""The fast step pricer agrees with building the whole operator graph: exactly for steps with prefill tokens, within
the stated 0.5% for decode-only steps (their attention aggregates are rounded to a 1% geometric grid)."""

from __future__ import annotations

import dataclasses
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.stepcost import DECODE_REL_TOL, StepCost, reference_step_s
from lvlmsim.estimate import default_graph_config
from lvlmsim.ops.graph import encode_ops, visual_tokens_kept
from lvlmsim.ops.tokenization import tokenize_image
from lvlmsim.specs.registry import load_hardware, load_model

EXACT = 1e-12
CASES = [
    ("llava-1.5-7b", "h100-sxm", 1, ()),
    ("llava-1.5-7b", "l40s", 2, ()),
    ("qwen2.5-vl-7b", "h100-sxm", 1, ()),
    ("internvl2.5-8b", "l40s", 4, ()),
    ("llama-3.2-11b-vision", "h100-sxm", 2, ()),
    ("qwen2-vl-7b", "h200-sxm", 1, ((2, 0.5), (16, 0.25))),  # a FastV-like visual-token schedule
    ("llama-3.2-11b-vision", "a100-sxm-80gb", 1, ((4, 0.5),)),
]


def _setup(model_id, hw_id, tp, keep):
    m, hw = load_model(model_id), load_hardware(hw_id)
    cfg = dataclasses.replace(default_graph_config(m, tp), visual_keep=keep)
    cm = CostModel(hw)
    return m, cfg, cm, StepCost(m, cfg, cm)


def _random_batch(rng: random.Random, cross: bool, decode_only: bool):
    decs = []
    for _ in range(rng.randint(1 if decode_only else 0, 120)):
        v = 0 if cross else rng.choice([0, 576, 1200, 4821])
        decs.append((v + rng.randint(1, 6000), v, rng.choice([0, 1601, 6404]) if cross else 0))
    chunks = []
    if not decode_only:
        for _ in range(rng.randint(1, 4)):
            vis_total = 0 if cross else rng.choice([0, 576, 3330])
            prompt = vis_total + rng.randint(1, 2000)
            past = rng.randint(0, prompt - 1)
            new = rng.randint(1, min(prompt - past, 4096))
            chunks.append((new, past, max(0, min(past + new, vis_total) - past), min(past, vis_total),
                           (1601 if cross and rng.random() < 0.6 else 0), past + new == prompt))
    return decs, chunks


def _fast(sc: StepCost, decs, chunks):
    pruned = [sum(v - visual_tokens_kept(v, f) for _, v, _ in decs) for f in sc.fracs]
    return sc.step_s(len(decs), sum(p for p, _, _ in decs), chunks, dec_pruned=pruned,
                     dec_cross_n=sum(1 for d in decs if d[2]), dec_cross_sum=sum(d[2] for d in decs))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-tp{c[2]}-{'keep' if c[3] else 'full'}")
def test_random_batches_match_the_graph(case):
    m, cfg, cm, sc = _setup(*case)
    rng = random.Random(zlib.crc32(repr(case).encode()))
    cross = m.image_tokens_in_kv_of_cross_attention
    for i in range(40):
        decode_only = i % 2 == 0
        decs, chunks = _random_batch(rng, cross, decode_only)
        ref = reference_step_s(m, cfg, cm, decs, chunks)
        got = _fast(sc, decs, chunks)
        tol = DECODE_REL_TOL if decode_only else EXACT
        assert got == pytest.approx(ref, rel=tol), (decs[:3], chunks)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 256), past=st.lists(st.integers(1, 20000), min_size=1, max_size=1))
def test_decode_fast_path_within_stated_bound(n, past):
    m, cfg, cm, sc = _setup("llava-1.5-7b", "h100-sxm", 1, ())
    decs = [(past[0] + i, 0, 0) for i in range(n)]
    ref = reference_step_s(m, cfg, cm, decs)
    assert sc.decode_s(n, sum(p for p, _, _ in decs)) == pytest.approx(ref, rel=DECODE_REL_TOL)


def test_stated_bound_is_half_a_percent():
    assert 0.0049 < DECODE_REL_TOL < 0.0050


def test_encode_matches_the_graph():
    m, cfg, cm, sc = _setup("qwen2.5-vl-7b", "h100-sxm", 1, ())
    toks = [tokenize_image(m, 1280, 720), tokenize_image(m, 1920, 1080), tokenize_image(m, 640, 480)]
    lens = tuple(L for t in toks for L in t.vit_seq_lens)
    proj = sum(t.projector_in_tokens for t in toks)
    vis = sum(t.llm_tokens for t in toks)
    ref = cm.time_s(encode_ops(m, lens, proj, vis, cfg))
    assert sc.encode_s(list(reversed(lens)), proj, vis) == pytest.approx(ref, rel=EXACT)
