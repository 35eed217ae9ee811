"""Calibration profile interface: what the cost model asks of measured reality.

A profile maps an op (its kind and shape) on a device to a compute efficiency, a memory efficiency and a fixed
per-kernel floor. The default is the flat derate NVIDIA's aiconfigurator ships (80% of HBM bandwidth, a 3 us
constant) with 75% of peak compute; fitted profiles (lvlmsim.calibrate) replace it with smooth functions of shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lvlmsim.ops.op import Op
from lvlmsim.specs.hardware import HardwareSpec


@dataclass(frozen=True, slots=True)
class Efficiency:
    compute: float  # fraction of datasheet peak FLOP/s attained, (0, 1]
    memory: float  # fraction of datasheet bandwidth attained (HBM, or the link for collectives), (0, 1]
    floor_s: float  # fixed per-kernel cost: launch, tail, synchronisation
    source: str  # provenance shown with every op: "roofline-default" or "calibrated:<profile>:<family>"
    measured_error_pct: float | None = None  # median |error| this profile showed on held-out data for this family

    def scaled_time(self, multiplier: float, fixed_s: float = 0.0) -> Efficiency:
        """The same op `multiplier` times slower (efficiencies divided, floor multiplied), same provenance: how an
        uncertainty band's multiplier applies to a family's time. `fixed_s` is time the cost model adds outside the
        efficiencies (a collective's link latency, lvlmsim.cost.roofline.fixed_latency_s): the floor also absorbs
        (multiplier - 1) x fixed_s so that the whole time scales, as a fitted all-reduce floor that replaces that
        latency (and may be negative) requires. Efficiencies are capped at 1: a faster draw (multiplier < 1) never
        takes an op past the datasheet peak or bandwidth (lvlmsim.cost.uncertainty.drawn_time_s)."""
        return Efficiency(min(self.compute / multiplier, 1.0), min(self.memory / multiplier, 1.0),
                          self.floor_s * multiplier + (multiplier - 1.0) * fixed_s, self.source,
                          self.measured_error_pct)


@runtime_checkable
class EfficiencyProfile(Protocol):
    name: str

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency: ...


@dataclass(frozen=True)
class ProfileWrapper:
    """Base of the profiles that price some ops their own way (a runtime's floor, a kernel feature, the MoE or MLA
    fit) and leave every other op, their name, timing regime and uncertainty bands to the profile they wrap."""

    base: EfficiencyProfile

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def timing_regime(self) -> str | None:
        return getattr(self.base, "timing_regime", None)

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        return self.base.efficiency(op, hw)

    def band_for(self, source: str) -> tuple[float, float] | None:
        """The wrapped profile's p10/p90 band of a family (lvlmsim.cost.uncertainty), None without one."""
        band_for = getattr(self.base, "band_for", None)
        return band_for(source) if band_for is not None else None

    def band_for_op(self, source: str, op: Op) -> tuple[float, float] | None:
        """One op's band: the wrapped profile's regime band when it has one for `source`, else band_for(source)
        (which a wrapper pricing some ops itself overrides for its own sources)."""
        band_for_op = getattr(self.base, "band_for_op", None)
        band = band_for_op(source, op) if band_for_op is not None else None
        return band if band is not None else self.band_for(source)


@dataclass(frozen=True)
class DefaultProfile:
    """Flat derates (aiconfigurator's 0.8 bandwidth and 3 us; 0.75 of peak compute) for uncalibrated devices."""

    name: str = "roofline-default"
    compute_eff: float = 0.75
    memory_eff: float = 0.8
    floor_s: float = 3e-6
    link_eff: float = 0.8
    # alpha of a collective: aiconfigurator measured 6-16 us minimum all-reduce latency on NVLink
    collective_floor_s: float = 8e-6

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        if op.kind in ("allreduce", "alltoall"):
            return Efficiency(1.0, self.link_eff, self.collective_floor_s, self.name)
        return Efficiency(self.compute_eff, self.memory_eff, self.floor_s, self.name)


@dataclass(frozen=True)
class PeakProfile:
    """Pure roofline (100% of peak, no floor): the baseline calibrated models are compared against."""

    name: str = "roofline-peak"

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        return Efficiency(1.0, 1.0, 0.0, self.name)


DEFAULT_PROFILE = DefaultProfile()
