"""Published old-default vs tuned fused-MoE timings (lvlmsim.calibrate.moe_published): the shipped data, its checks
and the rule that decides whether a ratio may be fitted on it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lvlmsim.calibrate import moe_published as mp
from lvlmsim.errors import SpecError

SOURCE = """\
sources:
  - url: https://github.com/vllm-project/vllm/pull/{pr}
    author: someone
    date: 2025-06-03
    gpu: {gpu}
    model: m
    experts_local: 8
    inter_local: 14336
    hidden: 4096
    topk: 2
    dtype: bfloat16
    default_rule: {rule}
    rule_evidence: stated
    timed: kernel
    points:
      - {{batch: 32, default_us: {default_us}, tuned_us: 279.0}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_file_has_one_old_rule_source_so_no_ratio_is_fitted():
    """The finding of issue 12, wave 7: one independent pre-v0.17 source (H20 Mixtral), fewer than the three the plan
    required before fitting; adding sources to the file must update this test and docs/moe.md round 11."""
    doc = mp.load_published()
    old = mp.old_rule_sources(doc)
    assert [s.url for s in old] == ["https://github.com/vllm-project/vllm/pull/44152"]
    assert not mp.fit_allowed(doc)
    assert {s.default_rule for s in doc.sources} == {"old", "new", "unstated"}
    assert all(s.dtype == "bfloat16" for s in doc.sources)


def test_h20_mixtral_ratio_and_rows_per_touched_expert_by_hand():
    """Mixtral top-2 of 8 at 32 tokens: 64 rows on 8 touched experts = 8 per expert; 0.447 / 0.279 ms = 1.602. At one
    token the two rows touch two experts: 1 row per touched expert (not 2 / 8)."""
    src = mp.old_rule_sources(mp.load_published())[0]
    by_batch = {p.batch: p for p in src.points}
    assert src.rows_per_expert(32) == pytest.approx(8.0)
    assert src.rows_per_expert(1) == pytest.approx(1.0)
    assert src.rows_per_expert(2048) == pytest.approx(512.0)
    assert by_batch[32].ratio == pytest.approx(447.0 / 279.0)
    assert by_batch[2048].ratio == pytest.approx(3588.0 / 3606.0)


def test_rows_per_expert_is_none_without_a_stated_topk():
    a100 = [s for s in mp.load_published().sources if s.url.endswith("/37814")][0]
    assert a100.topk is None and a100.rows_per_expert(32) is None


def test_three_independent_old_rule_sources_allow_a_fit_and_duplicates_do_not_count(tmp_path):
    body = "".join(SOURCE.format(pr=pr, gpu=gpu, rule="old", default_us=447.0).split("sources:\n", 1)[1]
                   for pr, gpu in ((1, "A"), (2, "B"), (2, "B")))
    doc = mp.load_published(write(tmp_path, "sources:\n" + body))
    assert len(doc.sources) == 3 and len(mp.old_rule_sources(doc)) == 2 and not mp.fit_allowed(doc)
    body += SOURCE.format(pr=3, gpu="C", rule="old", default_us=447.0).split("sources:\n", 1)[1]
    assert mp.fit_allowed(mp.load_published(write(tmp_path, "sources:\n" + body)))


def test_ratio_summary_by_rule(tmp_path):
    body = "".join(SOURCE.format(pr=pr, gpu="A", rule=rule, default_us=us).split("sources:\n", 1)[1]
                   for pr, rule, us in ((1, "old", 558.0), (2, "old", 279.0), (3, "new", 279.0)))
    summary = mp.ratio_summary(mp.load_published(write(tmp_path, "sources:\n" + body)))
    assert summary["old"] == {"sources": 2, "points": 2, "median": pytest.approx(1.5), "min": 1.0, "max": 2.0}
    assert summary["new"]["points"] == 1 and "unstated" not in summary


@pytest.mark.parametrize("rule, us, field", [("oldish", 447.0, "default_rule"), ("old", 0.0, "default_us"),
                                             ("old", -1.0, "default_us")])
def test_bad_input_is_one_line_naming_the_field(tmp_path, rule, us, field):
    with pytest.raises(SpecError, match=field) as exc:
        mp.load_published(write(tmp_path, SOURCE.format(pr=1, gpu="A", rule=rule, default_us=us)))
    assert "\n" not in str(exc.value)


def test_unknown_field_and_bad_url_are_refused(tmp_path):
    text = SOURCE.format(pr=1, gpu="A", rule="old", default_us=447.0)
    with pytest.raises(SpecError, match="extra_note"):
        mp.load_published(write(tmp_path, text.replace("    timed: kernel", "    timed: kernel\n    extra_note: x")))
    with pytest.raises(SpecError, match="url"):
        mp.load_published(write(tmp_path, text.replace("https://github.com/vllm-project/vllm/pull/1", "a blog")))
