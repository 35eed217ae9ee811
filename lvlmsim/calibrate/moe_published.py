"""Published old-default vs tuned kernel times of vLLM's Triton fused MoE, and whether they can price A100's rows.

A100's vLLM 0.14 MoE table runs vLLM's pre-v0.17 `get_default_config` wherever no tuned config file exists
(`lvlmsim.calibrate.moe.triton_config`); no other measured device runs that rule, so no fold of the leave-one-device-
out fit can learn it (docs/moe.md rounds 4, 8, 9). The only data that could price it is someone else's measurement of
the old default against a tuned file on the same GPU and shape. `calibration/vllm_fused_moe_published_timings.yaml`
holds every such pair found in the search tool's stored issue / pull-request text, each with its source and with
which default rule its default column ran (`default_rule`).

The plan (issue 12, wave 7) was to fit the old-default / tuned ratio as a function of rows per touched expert on
those pairs alone and to apply it to A100's default-config rows only if at least `MIN_OLD_RULE_SOURCES` independent
sources ran the old rule. `fit_allowed` says whether the file meets that; with the shipped file it does not (one
source), so nothing here enters the cost model: this module reads, checks and summarises the data
(`benchmarks/moe_published_defaults.py` prints it).
"""

from __future__ import annotations

import datetime
import statistics
from pathlib import Path
from typing import Literal

from pydantic import Field

from lvlmsim.specs.base import StrictModel, load_yaml_as

# Independent sources (distinct pull request, GPU and kernel shape) whose default column ran the old rule, needed
# before a ratio is fitted: a curve through fewer would be tuned to one author's rows (the brief's "~3"; house rule:
# never tune a constant to single published rows).
MIN_OLD_RULE_SOURCES = 3
DEFAULT_RULES = ("old", "new", "unstated")


class PublishedPoint(StrictModel):
    """One batch size of one source: the kernel time on the default config and on the tuned file."""

    batch: int = Field(gt=0)  # tokens M of the call
    default_us: float = Field(gt=0)
    tuned_us: float = Field(gt=0)

    @property
    def ratio(self) -> float:
        """Default over tuned time (above 1: the default config is slower)."""
        return self.default_us / self.tuned_us


class PublishedSource(StrictModel):
    """One published comparison: who measured what, on which GPU and kernel shape, under which default rule."""

    url: str = Field(pattern=r"^https://github\.com/[\w.-]+/[\w.-]+/(pull|issues)/\d+$")
    author: str = Field(min_length=1)
    date: datetime.date
    gpu: str = Field(min_length=1)
    model: str = Field(min_length=1)
    experts_local: int = Field(gt=0)  # E of the kernel call (local experts)
    inter_local: int = Field(gt=0)  # N: expert width per GPU
    hidden: int | None = Field(default=None, gt=0)  # K, where the source states it
    topk: int | None = Field(default=None, gt=0)  # where the source states it
    dtype: Literal["bfloat16"]
    default_rule: Literal["old", "new", "unstated"]
    rule_evidence: str = Field(min_length=1)
    timed: str = Field(min_length=1)
    points: tuple[PublishedPoint, ...] = Field(min_length=1)

    def rows_per_expert(self, batch: int) -> float | None:
        """Token-expert rows per touched local expert under even routing, batch * topk / min(E, batch * topk) (the
        unit of `MoEData.rows_per_expert`); None where the source states no top-k."""
        if self.topk is None:
            return None
        pairs = batch * self.topk
        return pairs / min(self.experts_local, pairs)

    @property
    def key(self) -> tuple[str, str, int, int]:
        """What makes two sources independent: another pull request, GPU or kernel shape."""
        return (self.url, self.gpu, self.experts_local, self.inter_local)


class PublishedTimings(StrictModel):
    sources: tuple[PublishedSource, ...] = Field(min_length=1)


def published_path() -> Path:
    from lvlmsim.specs.registry import data_root

    return data_root() / "calibration" / "vllm_fused_moe_published_timings.yaml"


def load_published(path: str | Path | None = None) -> PublishedTimings:
    """The published pairs (a SpecError naming the file and field on bad input)."""
    return load_yaml_as(PublishedTimings, Path(path) if path is not None else published_path())


def old_rule_sources(doc: PublishedTimings) -> list[PublishedSource]:
    """The sources whose default column ran vLLM's pre-v0.17 rule, one per independent key."""
    seen: dict[tuple[str, str, int, int], PublishedSource] = {}
    for src in doc.sources:
        if src.default_rule == "old":
            seen.setdefault(src.key, src)
    return list(seen.values())


def fit_allowed(doc: PublishedTimings) -> bool:
    """Whether enough independent old-rule sources exist to fit a ratio on them (`MIN_OLD_RULE_SOURCES`)."""
    return len(old_rule_sources(doc)) >= MIN_OLD_RULE_SOURCES


def ratio_summary(doc: PublishedTimings) -> dict[str, dict[str, float | int]]:
    """Per default rule: sources, points, and the median / min / max of default over tuned time."""
    out: dict[str, dict[str, float | int]] = {}
    for rule in DEFAULT_RULES:
        srcs = [s for s in doc.sources if s.default_rule == rule]
        ratios = [p.ratio for s in srcs for p in s.points]
        if ratios:
            out[rule] = {"sources": len(srcs), "points": len(ratios), "median": statistics.median(ratios),
                         "min": min(ratios), "max": max(ratios)}
    return out
