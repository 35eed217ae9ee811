"""`simulate --uncertainty N`: the simulation re-run under N draws of the cost model's per-family errors.

Each draw (DrawnProfile) draws one standard normal z per kernel family and multiplies every op of the family by
exp(mu + sigma z), mu and sigma from the op's held-out p10/p90 band (its size regime's, else its family's): fully
correlated within a family, as real kernels are, independent across families. The engine, arrivals and seed stay the
same, so the spread is the cost model's uncertainty alone. The report gives, per metric, the point run's value and the
p10/p50/p90 over draws.
"""

from __future__ import annotations

import math

import numpy as np

from lvlmsim.cost.roofline import fixed_latency_s
from lvlmsim.cost.uncertainty import family_band, log_normal, op_band
from lvlmsim.errors import SpecError

METRICS = {
    "ttft_s_p90": ("ttft_s", "p90"), "tpot_s_p90": ("tpot_s", "p90"), "e2e_s_p90": ("e2e_s", "p90"),
    "throughput_rps": ("throughput_rps", None), "output_tokens_per_s": ("output_tokens_per_s", None),
    "goodput_rps": ("goodput_rps", None),
}


def _metric(summary: dict, key: tuple[str, str | None]) -> float | None:
    v = summary.get(key[0])
    if key[1] is not None:
        v = v.get(key[1]) if isinstance(v, dict) else None
    return float(v) if isinstance(v, int | float) else None


class DrawnProfile:
    """One draw of the per-family errors: the auto (or named) profile of each device, every op's time multiplied by
    its band's multiplier at its family's z (efficiencies divided, floor multiplied). z is drawn lazily per source,
    seeded by (seed, source), so a draw is reproducible and shared by every op, stage and step of its family; sources
    without a band keep multiplier 1."""

    def __init__(self, ref=None, seed: int = 0):
        self.ref, self.seed = ref, int(seed)
        self._bases: dict[str, object] = {}
        self._z: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"draw{self.seed}"

    def base_for(self, hw):
        base = self._bases.get(hw.id)
        if base is None:
            from lvlmsim.calibrate.profiles import resolve_profile

            base = self._bases[hw.id] = resolve_profile(hw, self.ref)
        return base

    def z(self, source: str) -> float:
        """The family's standard normal draw, seeded by (seed, source): shared by every op the family prices."""
        z = self._z.get(source)
        if z is None:
            import zlib

            z = self._z[source] = float(
                np.random.default_rng([self.seed, zlib.crc32(source.encode())]).standard_normal())
        return z

    def multiplier(self, base, source: str, op=None) -> float:
        """exp(mu + sigma z) of the op's band (its regime's, else its family's) with its family's z; 1 unbanded."""
        band = op_band(base, source, op) if op is not None else family_band(base, source)
        if band is None:
            return 1.0
        mu, sigma = log_normal(band)
        return float(math.exp(mu + sigma * self.z(source)))

    def efficiency(self, op, hw):
        base = self.base_for(hw)
        eff = base.efficiency(op, hw)
        m = self.multiplier(base, eff.source, op)
        if m == 1.0:
            return eff
        return eff.scaled_time(m, fixed_latency_s(op, hw))

    @property
    def timing_regime(self):
        return getattr(next(iter(self._bases.values()), None), "timing_regime", None)


def uncertainty_runs(scenario, draws: int, *, profile=None, **kwargs) -> dict:
    """{metric: {point, p10, p50, p90}} over `draws` re-runs of simulate(scenario, **kwargs) with drawn errors."""
    from lvlmsim.engine.api import simulate

    if not isinstance(draws, int) or isinstance(draws, bool) or not 2 <= draws <= 1000:
        raise SpecError(f"uncertainty: number of draws must be an integer in 2..1000, got {draws!r}")
    if profile is not None and not isinstance(profile, str):
        raise SpecError("uncertainty: profile must be a name (auto, general, default) or a profile JSON path")
    point = simulate(scenario, profile=profile, **kwargs)
    runs = [simulate(scenario, profile=DrawnProfile(profile, seed=i), **kwargs).summary for i in range(draws)]
    out: dict = {"draws": draws, "method": "one normal z per kernel family; each op scaled by exp(mu + sigma z) of its "
                                           "own (regime) held-out p10/p90 band"}
    for name, key in METRICS.items():
        vals = [v for v in (_metric(s, key) for s in runs) if v is not None]
        p10, p50, p90 = (float(np.quantile(vals, q)) for q in (0.1, 0.5, 0.9)) if vals else (None, None, None)
        out[name] = {"point": _metric(point.summary, key), "p10": p10, "p50": p50, "p90": p90}
    return {"result": point, "uncertainty": out}
