"""Uncertainty of priced times: p10/p90 bands from the held-out errors of the profile's families.

A fitted profile knows, per family (`general:general-gpu:gemm`, `calibrated:h100-sxm:attn_decode`, ...), the 10th and
90th percentile of measured/predicted time on rows its fit never saw (leave-one-device-out for the general model, a
held-out half for a device's own profile; lvlmsim.calibrate.model.FamilyFit.band). A kernel family's error is shared
by all its calls (the same kernels, the same library), so one multiplier is drawn per family and applied to every op
it priced, in every stage at once; families are independent of one another. Each multiplier is log-normal with the
family's p10/p90. Draws are seeded: the same estimate gives the same band.

Profiles without bands (the flat roofline derate, a pure roofline) give no band: the caller reports None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from lvlmsim.cost.roofline import OpCost

Z90 = 1.2815515655446004  # standard normal 90th percentile
DRAWS = 2000


def family_band(profile, source: str) -> tuple[float, float] | None:
    """(p10, p90) multipliers of the family that priced ops with `source`, if the profile knows them."""
    band_for = getattr(profile, "band_for", None)
    return band_for(source) if band_for is not None else None


def log_normal(band: tuple[float, float]) -> tuple[float, float]:
    """(mu, sigma) of the log multiplier whose 10th/90th percentiles are the band."""
    lo, hi = math.log(band[0]), math.log(band[1])
    return (lo + hi) / 2.0, max(hi - lo, 0.0) / (2.0 * Z90)


def draw_multipliers(profile, sources: Iterable[str], draws: int = DRAWS, seed: int = 0) -> dict[str, object] | None:
    """{source: array of `draws` time multipliers} for every source with a band; None if no source has one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, object] = {}
    for src in sorted(set(sources)):
        band = family_band(profile, src)
        if band is None:
            continue
        mu, sigma = log_normal(band)
        out[src] = np.exp(mu + sigma * rng.standard_normal(draws))
    return out or None


def time_bands(profile, parts: Mapping[str, Iterable[OpCost]], draws: int = DRAWS,
               seed: int = 0) -> dict[str, tuple[float, float]] | None:
    """Per named part (e.g. ttft, decode), the (p10, p90) of its total seconds under the profile's family errors.

    One multiplier per family is shared across parts, so a part made of the same kernels moves together."""
    import numpy as np

    parts = {k: list(v) for k, v in parts.items()}
    mults = draw_multipliers(profile, (c.source for costs in parts.values() for c in costs), draws, seed)
    if mults is None:
        return None
    out = {}
    for name, costs in parts.items():
        by_source: dict[str, float] = {}
        for c in costs:
            by_source[c.source] = by_source.get(c.source, 0.0) + c.total_time_s
        total = np.zeros(draws)
        for src, t in by_source.items():
            total += t * mults[src] if src in mults else t
        out[name] = (float(np.quantile(total, 0.1)), float(np.quantile(total, 0.9)))
    return out


class QuantileProfile:
    """A profile at one end of its bands: every family's time multiplied by its p10 (`optimistic`) or p90
    (`pessimistic`) multiplier at once - the planner's robust end. Families without a band keep their time."""

    def __init__(self, base, quantile: str):
        if quantile not in ("p10", "p90"):
            raise ValueError(f"quantile must be p10 or p90, got {quantile!r}")
        self.base, self.quantile = base, quantile

    @property
    def name(self) -> str:
        return f"{getattr(self.base, 'name', 'custom')}@{self.quantile}"

    @property
    def timing_regime(self):
        return getattr(self.base, "timing_regime", None)

    def band_for(self, source: str):
        return family_band(self.base, source)

    def efficiency(self, op, hw):
        eff = self.base.efficiency(op, hw)
        band = family_band(self.base, eff.source)
        if band is None:
            return eff
        m = band[0] if self.quantile == "p10" else band[1]
        return eff.scaled_time(m)
