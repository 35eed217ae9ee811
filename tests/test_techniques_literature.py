"""Literature accuracy figures: every shipped figure carries a checkable source, every technique kind is either
cited or says why not, and the Techniques page shows the citation and uses the figure as its editable default."""

from __future__ import annotations

import pytest
import yaml

from lvlmsim.errors import SpecError
from lvlmsim.techniques import REGISTRY, parse_technique
from lvlmsim.techniques import literature as lit


def test_every_kind_is_cited_or_says_why_not_and_never_both():
    figures, gaps = lit.literature_figures(), lit.unconfirmed_kinds()
    assert set(figures) | set(gaps) == set(REGISTRY)
    assert not set(figures) & set(gaps)
    assert all(why.strip() for why in gaps.values())


def test_each_figure_carries_paper_table_benchmark_model_setting_and_url():
    for kind, fig in lit.literature_figures().items():
        assert kind in REGISTRY
        assert fig.url.startswith("https://") and fig.paper and fig.table and fig.benchmark and fig.model
        assert fig.delta_points == pytest.approx(fig.technique_score - fig.baseline_score)
        for text in (fig.paper, fig.benchmark, fig.model, fig.url):
            assert text in fig.citation()
        assert set(fig.params) <= set(REGISTRY[kind].model_fields)  # the setting names real parameters


def test_fastv_and_awq_figures_are_the_differences_of_their_rows():
    """FastV README A-OKVQA 81.9 -> 81.3 at K=2 R=50%; AWQ README VILA-1.5-8B GQA 61.9 -> 61.7 at INT4."""
    figs = lit.literature_figures()
    assert figs["fastv"].delta_points == -0.6 and figs["fastv"].matches(parse_technique("fastv:layer=2,keep=0.5"))
    assert not figs["fastv"].matches(parse_technique("fastv:layer=3,keep=0.5"))
    assert figs["weight_quant"].delta_points == -0.2
    assert figs["weight_quant"].matches(parse_technique("weight_quant:scheme=w4a16"))
    assert not figs["weight_quant"].matches(parse_technique("weight_quant:scheme=w8a8"))


def test_pyramiddrop_figure_holds_only_at_the_papers_setting():
    """PyramidDrop's appendix Table 1: GQA 62.0 -> 61.9 on LLaVA-1.5-7B at lambda=0.5, 4 stages (the defaults)."""
    fig = lit.literature_figures()["pyramiddrop"]
    assert (fig.baseline_score, fig.technique_score, fig.delta_points) == (62.0, 61.9, -0.1)
    assert fig.matches(parse_technique("pyramiddrop"))
    assert not fig.matches(parse_technique("pyramiddrop:ratio=0.3"))
    assert not fig.matches(parse_technique("fastv"))


def test_a_figure_whose_delta_is_not_the_difference_is_refused(tmp_path, monkeypatch):
    doc = yaml.safe_load(lit.LITERATURE_PATH.read_text())
    doc["figures"][0]["delta_points"] = 5.0
    bad = tmp_path / "accuracy_literature.yaml"
    bad.write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(lit, "LITERATURE_PATH", bad)
    lit._load.cache_clear()
    try:
        with pytest.raises(SpecError, match="delta_points"):
            lit.literature_figures()
    finally:
        lit._load.cache_clear()


def test_techniques_page_shows_the_citation_and_uses_the_figure():
    from tests.test_app import errors, rerun, start

    at = start("techniques")
    at.text_area(key="tech.list").set_value("pyramiddrop\npyramiddrop:ratio=0.3\nfastv:layer=2,keep=0.5")
    at = rerun(at)
    fig = lit.literature_figures()["pyramiddrop"]
    frame = next(d.value for d in at.dataframe if "combination" in d.value)
    row = frame[frame["combination"] == "pyramiddrop"].iloc[0]
    assert row["accuracy_delta"] == pytest.approx(fig.delta_points), errors(at)
    other = frame[frame["combination"] == "pyramiddrop:ratio=0.3"].iloc[0]
    assert other["accuracy_delta"] == 0.0  # another setting: the paper's figure does not apply
    shown = next(d.value for d in at.dataframe if "delta_points" in d.value)
    editor = next(d.value for d in at.dataframe if "source" in d.value)
    assert fig.url in editor.iloc[0]["source"] and fig.paper in editor.iloc[0]["source"]
    assert fig.url in set(shown["url"]) and fig.benchmark in set(shown["benchmark"])
    caption = " ".join(c.value for c in at.caption)
    assert "visionzip" in caption and lit.unconfirmed_kinds()["visionzip"] in caption
    fastv = frame[frame["combination"] == "fastv:layer=2,keep=0.5"].iloc[0]
    assert fastv["accuracy_delta"] == pytest.approx(lit.literature_figures()["fastv"].delta_points)
