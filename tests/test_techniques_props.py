"""Property tests: more compression never costs more; composition order never matters; bad values name the field."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lvlmsim
from lvlmsim.errors import SpecError
from lvlmsim.techniques import apply_to_estimate, parse_technique, validate_technique

LLAVA = lvlmsim.load_model("llava-1.5-7b")
NEXT = lvlmsim.load_model("llava-next-7b")
H100 = lvlmsim.load_hardware("h100-sxm")
FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(techniques, model=LLAVA, **kw):
    args = dict(images=1, image_size=(336, 336), prompt_tokens=64, output_tokens=32)
    args.update(kw)
    return apply_to_estimate(model, H100, techniques, **args)


def totals(e) -> tuple[float, float, float]:
    f = sum(s.flops for s in e.stages.values())
    b = sum(s.bytes for s in e.stages.values())
    return f, b, e.memory.needed_bytes


def no_more(a, b, what=("flops", "bytes", "memory")) -> None:
    """Every total of estimate `a` (more compression) is <= that of `b` (less)."""
    ta, tb = totals(a), totals(b)
    for name, x, y in zip(("flops", "bytes", "memory"), ta, tb, strict=True):
        if name in what:
            assert x <= y * (1 + 1e-12), f"{name}: {x} > {y}"


def ordered(lo, hi):
    return st.tuples(lo, hi).map(sorted)


@FAST
@given(ordered(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), st.integers(1, 31))
def test_fastv_keeping_fewer_never_costs_more(keeps, layer):
    lo, hi = keeps
    no_more(run([f"fastv:layer={layer},keep={lo}"]), run([f"fastv:layer={layer},keep={hi}"]))


@FAST
@given(ordered(st.integers(1, 31), st.integers(1, 31)))
def test_fastv_pruning_earlier_never_costs_more(layers):
    early, late = layers
    no_more(run([f"fastv:layer={early}"]), run([f"fastv:layer={late}"]))


@FAST
@given(ordered(st.integers(1, 2880), st.integers(1, 2880)))
def test_visionzip_fewer_tokens_never_costs_more(counts):
    lo, hi = counts
    no_more(run([f"visionzip:tokens={lo}"], NEXT, image_size=(672, 672)),
            run([f"visionzip:tokens={hi}"], NEXT, image_size=(672, 672)))


@FAST
@given(ordered(st.integers(1, 24), st.integers(1, 24)))
def test_tome_merging_more_never_costs_more(rs):
    lo, hi = rs
    no_more(run([f"tome:r={hi}"]), run([f"tome:r={lo}"]))


@FAST
@given(ordered(st.integers(2, 64), st.integers(2, 64)))
def test_pooling_more_never_costs_more(factors):
    lo, hi = factors
    no_more(run([f"pool:factor={hi}"]), run([f"pool:factor={lo}"]))


@FAST
@given(ordered(st.integers(1, 800), st.integers(1, 800)), st.sampled_from(["prompt", "rolling"]),
       st.booleans())
def test_smaller_kv_budget_never_costs_more(budgets, mode, visual_only):
    lo, hi = budgets
    v = str(visual_only).lower()
    no_more(run([f"kv_budget:tokens={lo},mode={mode},visual_only={v}"]),
            run([f"kv_budget:tokens={hi},mode={mode},visual_only={v}"]))


def test_fewer_kv_bits_never_cost_more_bytes_or_memory():
    ests = [run([f"kv_quant:bits={b}"]) for b in (2, 4)] + [run(["kv_quant:bits=8,format=int8"])]
    for a, b in itertools.pairwise(ests):
        no_more(a, b, what=("bytes", "memory"))
        assert totals(a)[0] == totals(b)[0]  # integer formats: same dequant FLOPs per element


@FAST
@given(ordered(st.integers(200_000, 3_000_000), st.integers(200_000, 3_000_000)))
def test_lower_resolution_cap_never_costs_more(caps):
    lo, hi = caps
    qwen = lvlmsim.load_model("qwen2-vl-7b")
    no_more(run([f"resolution_cap:max_pixels={lo}"], qwen, image_size=(1344, 1008)),
            run([f"resolution_cap:max_pixels={hi}"], qwen, image_size=(1344, 1008)))


COMMUTING = ["fastv:layer=3,keep=0.4", "kv_quant:bits=4", "weight_quant:scheme=fp8,module=vision",
             "attention:kernel=naive", "visionzip:tokens=128", "kv_budget:tokens=200", "speculative:alpha=0.7",
             "reuse:hit_rate=0.3,capacity_entries=4"]


@FAST
@given(st.permutations(COMMUTING), st.integers(2, len(COMMUTING)))
def test_composition_order_does_not_change_the_result(perm, n):
    chosen = perm[:n]
    ref = run(sorted(chosen))
    assert run(list(chosen)).to_dict() == ref.to_dict()


# bad values for one field of each kind: (kind, field, strategy of invalid values)
BAD = [
    ("fastv", "keep", st.floats(1.0001, 1e6) | st.floats(-1e6, -0.0001)),
    ("fastv", "layer", st.integers(-100, 0)),
    ("pyramiddrop", "ratio", st.floats(1.0001, 10) | st.floats(-10, 0.0)),
    ("kv_quant", "bits", st.integers(-5, 20).filter(lambda b: b not in (2, 4, 8))),
    ("kv_budget", "tokens", st.integers(-1000, 0)),
    ("speculative", "gamma", st.integers(17, 1000)),
    ("speculative", "alpha", st.floats(1.0001, 5)),
    ("tome", "r", st.integers(-50, -1)),
    ("reuse", "hit_rate", st.floats(1.0001, 5)),
    ("visionzip", "keep", st.floats(1.0001, 5)),
]


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(BAD), st.data())
def test_bad_values_give_spec_error_naming_the_field(case, data):
    kind, field, values = case
    value = data.draw(values)
    extra = ",alpha=0.5" if kind == "speculative" and field != "alpha" else ""
    with pytest.raises(SpecError, match=rf"technique '{kind}'.*{field}"):
        parse_technique(f"{kind}:{field}={value}{extra}")
    with pytest.raises(SpecError, match=field):
        validate_technique({"kind": kind, field: value, **({"alpha": 0.5} if extra else {})})


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["fastv", "kv_quant", "tome", "reuse", "attention"]),
       st.from_regex(r"[a-z]{3,10}", fullmatch=True))
def test_unknown_parameter_names_it_and_lists_allowed(kind, name):
    from lvlmsim.techniques import REGISTRY

    if name in REGISTRY[kind].model_fields:
        return
    with pytest.raises(SpecError, match=rf"unknown parameter '{name}'.*allowed: .*accuracy_source"):
        parse_technique(f"{kind}:{name}=1")


# ---------------------------------------------------------------------------------------------------------------
# the reuse cache: LRU is a stack algorithm, so a bigger cache never hits less on the same accesses


@settings(max_examples=60, deadline=None)
@given(accesses=st.lists(st.integers(0, 12), min_size=1, max_size=80), cap=st.integers(1, 10))
def test_lru_hits_never_fall_as_capacity_grows(accesses, cap):
    from lvlmsim.techniques.reuse import ReuseCache

    def hits(c: int) -> int:
        cache = ReuseCache(capacity_entries=c)
        for a in accesses:
            cache.access(a, 1.0)
        assert cache.hits + cache.misses == len(accesses)  # every access is a hit or a miss
        assert len(cache) <= c
        return cache.hits

    assert hits(cap) <= hits(cap + 1)
    # bounded in bytes with equal entries, the same cache: one byte per entry
    by_bytes = ReuseCache(capacity_bytes=float(cap))
    for a in accesses:
        by_bytes.access(a, 1.0)
    assert by_bytes.hits == hits(cap)
