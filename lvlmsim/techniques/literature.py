"""Accuracy deltas that each technique's own paper reports, as cited data (accuracy_literature.yaml).

lvlmsim does not estimate accuracy: these figures are defaults a user can edit, each with the paper, table,
benchmark, model, setting and URL it was read from. Kinds without a confirmed figure say why.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lvlmsim.errors import SpecError

LITERATURE_PATH = Path(__file__).with_name("accuracy_literature.yaml")


class LiteratureFigure(BaseModel):
    """One accuracy delta as its own paper reports it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    kind: str = Field(min_length=1)
    paper: str = Field(min_length=1)
    table: str = Field(min_length=1)
    benchmark: str = Field(min_length=1)
    model: str = Field(min_length=1)
    setting: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict, description="technique parameters the paper's setting uses")
    baseline_score: float
    technique_score: float
    delta_points: float
    url: str = Field(pattern=r"^https://")
    read_on: str = Field(min_length=1)

    @model_validator(mode="after")
    def _delta_is_the_difference(self) -> LiteratureFigure:
        if abs(self.technique_score - self.baseline_score - self.delta_points) > 1e-6:
            raise ValueError(f"delta_points: {self.delta_points} is not technique_score - baseline_score "
                             f"({self.technique_score} - {self.baseline_score})")
        return self

    def citation(self) -> str:
        """One line a reader can check: paper, table, benchmark, model, setting, scores and URL."""
        return (f"{self.paper}; {self.table}; {self.benchmark} on {self.model}, {self.setting}: "
                f"{self.baseline_score:g} -> {self.technique_score:g} ({self.url})")

    def matches(self, technique: Any) -> bool:
        """True when the technique's parameters are the paper's setting (the figure only holds there)."""
        return technique.kind == self.kind and all(getattr(technique, k, object()) == v
                                                   for k, v in self.params.items())


class _Literature(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    figures: list[LiteratureFigure]
    unconfirmed: dict[str, str]


@lru_cache(maxsize=1)
def _load() -> _Literature:
    try:
        lit = _Literature.model_validate(yaml.safe_load(LITERATURE_PATH.read_text()))
    except ValidationError as exc:
        raise SpecError(f"{LITERATURE_PATH.name}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    kinds = [f.kind for f in lit.figures]
    both = (set(kinds) & set(lit.unconfirmed)) | {k for k in kinds if kinds.count(k) > 1}
    if both:
        raise SpecError(f"{LITERATURE_PATH.name}: kind listed more than once: {sorted(both)}")
    return lit


def literature_figures() -> dict[str, LiteratureFigure]:
    """Confirmed figures by technique kind."""
    return {f.kind: f for f in _load().figures}


def unconfirmed_kinds() -> dict[str, str]:
    """Kinds with no figure shipped, and why."""
    return dict(_load().unconfirmed)
