"""Uncertainty of priced times: p10/p90 bands from the held-out errors of the profile's families.

A fitted profile knows, per family (`general:general-gpu:gemm`, `calibrated:h100-sxm:attn_decode`, ...) and, where
it has them, per size regime of the family (GEMM m, attention tokens, KV bytes, message size), the 10th and 90th
percentile of measured/predicted time: for the general model on a device it was not fitted on, the transfer band of
lvlmsim.calibrate.bands (device offset + row noise, from leave-one-device-out residuals); on a device it was fitted
on, that device's in-sample band; for a device's own profile, its held-out half (FamilyFit.band). A kernel family's
error is shared by all its calls (the same kernels, the same library, the same device), so one standard normal z is
drawn per family and every op it priced, in every stage at once, is multiplied by exp(mu + sigma z) with the mu and
sigma of the op's own band (its regime's, or the family's): the ops of a family move together, each by as much as its
regime is uncertain. Families are independent of one another. Draws are seeded: the same estimate gives the same band.

Profiles without bands (the flat roofline derate, a pure roofline) give no band: the caller reports None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from lvlmsim.cost.roofline import OpCost, fixed_latency_s

Z90 = 1.2815515655446004  # standard normal 90th percentile
DRAWS = 2000


def family_band(profile, source: str) -> tuple[float, float] | None:
    """(p10, p90) multipliers of the family that priced ops with `source`, if the profile knows them."""
    band_for = getattr(profile, "band_for", None)
    return band_for(source) if band_for is not None else None


def op_band(profile, source: str, op) -> tuple[float, float] | None:
    """(p10, p90) multipliers of one op priced with `source`: its regime's band where the profile has regime bands
    (band_for_op), else its family's."""
    band_for_op = getattr(profile, "band_for_op", None)
    if band_for_op is not None:
        return band_for_op(source, op)
    return family_band(profile, source)


def log_normal(band: tuple[float, float]) -> tuple[float, float]:
    """(mu, sigma) of the log multiplier whose 10th/90th percentiles are the band."""
    lo, hi = math.log(band[0]), math.log(band[1])
    return (lo + hi) / 2.0, max(hi - lo, 0.0) / (2.0 * Z90)


def time_bands(profile, parts: Mapping[str, Iterable[OpCost]], draws: int = DRAWS,
               seed: int = 0) -> dict[str, tuple[float, float]] | None:
    """Per named part (e.g. ttft, decode), the (p10, p90) of its total seconds under the profile's family errors.

    One z per family is shared across its ops and across parts, so a part made of the same kernels moves together;
    None when no op has a band."""
    import numpy as np

    parts = {k: list(v) for k, v in parts.items()}
    band_of: dict[int, tuple[float, float] | None] = {}  # per OpCost (the parts share them)
    for costs in parts.values():
        for c in costs:
            if id(c) not in band_of:
                band_of[id(c)] = op_band(profile, c.source, c.op)
    sources = sorted({c.source for costs in parts.values() for c in costs if band_of[id(c)] is not None})
    if not sources:
        return None
    rng = np.random.default_rng(seed)
    z = {src: rng.standard_normal(draws) for src in sources}
    out = {}
    for name, costs in parts.items():
        by_band: dict[tuple[str, tuple[float, float] | None], list[OpCost]] = {}
        for c in costs:
            by_band.setdefault((c.source, band_of[id(c)]), []).append(c)
        total = np.zeros(draws)
        for (src, band), group in by_band.items():
            if band is None:
                total += sum(c.total_time_s for c in group)
            else:
                mu, sigma = log_normal(band)
                total += drawn_time_s(group, np.exp(mu + sigma * z[src]))
        out[name] = (float(np.quantile(total, 0.1)), float(np.quantile(total, 0.9)))
    return out


def drawn_time_s(costs: Sequence[OpCost], multiplier):
    """Total seconds of `costs` when their family's time is `multiplier` (an array of draws) times the priced one,
    each op's roofline body held at or above its time at the datasheet peaks (OpCost.peak_s): a transfer band's p10
    may be 25% faster than a prediction already at 90% of a device's bandwidth, a time no kernel can take (the p10
    TPOT of llava-1.5-7b on an L4 came out 11% under its weights' read time at 300 GB/s). The same rule as
    Efficiency.scaled_time, which caps the drawn efficiencies at 1 for the simulations."""
    import numpy as np

    total = np.zeros_like(multiplier, dtype=float)
    for c in costs:
        body_s = max(c.time_s - c.floor_s, 0.0)  # the roofline part (a merged op's: the mean over its calls)
        rest_s = c.time_s - body_s  # the floor: scaled, never clamped
        total += c.op.count * (np.maximum(body_s * multiplier, c.peak_s) + rest_s * multiplier)
    return total


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

    def band_for_op(self, source: str, op):
        return op_band(self.base, source, op)

    def efficiency(self, op, hw):
        eff = self.base.efficiency(op, hw)
        band = op_band(self.base, eff.source, op)
        if band is None:
            return eff
        m = band[0] if self.quantile == "p10" else band[1]
        return eff.scaled_time(m, fixed_latency_s(op, hw))
