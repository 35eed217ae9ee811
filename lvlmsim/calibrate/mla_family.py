"""The fitted MLA family in the profile `auto` prices with: MLA attention cores at the device-general MLA fit.

`benchmarks/mla_fit.py` fits lvlmsim.calibrate.mla.MlaFit leave-one-device-out on aiconfigurator's MLA module tables
(H100, B300, RTX PRO 6000) and once on all of them, and writes `calibration/profiles/general/mla.json`. The fit is
dimensionless (a memory efficiency for the absorbed decode core, a compute efficiency for the MHA-form prefill core)
plus a fixed overhead per module call, so it transfers to any GPU. `with_mla` wraps a device's profile so that
`attn_mla_decode` / `attn_mla_prefill` ops are priced by the all-devices fit, with source
`general:mla-fit:<kind>` and the held-out (leave-one-device-out) median error of their phase; every other op keeps
the base profile's pricing.

The fit adds the core's compute and memory times (see MlaFit). The cost model takes the larger of the two, so the
sum is expressed as efficiencies: the dominant side carries the whole sum and its label (compute or memory), the
other keeps its own time; the per-call overhead rides on the kernel floor.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from lvlmsim.cost.profile import DEFAULT_PROFILE, Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import ATTN_MLA_DECODE, ATTN_MLA_PREFILL, Op
from lvlmsim.specs.hardware import HardwareSpec

FIT_FORMAT = "lvlmsim-mla-fit/1"
FIT_FILE = "general/mla.json"  # beside the device-general GPU model (general/gpu.json) in calibration/profiles
SOURCE_NAME = "mla-fit"
# the fixed side of each core in MlaFit.predict: decode's compute efficiency, prefill's memory efficiency
DECODE_COMPUTE_EFF = 0.75
PREFILL_MEMORY_EFF = 0.8
PARAM_NAMES = ("overhead_decode_s", "overhead_prefill_s", "e_decode", "e_prefill")


@dataclass(frozen=True)
class MlaFamily:
    """The all-devices MLA fit and, per core kind, its held-out median |error| (%) and (p10, p90) band of
    measured / predicted module time pooled over the held-out devices."""

    overhead_decode_s: float
    overhead_prefill_s: float
    e_decode: float
    e_prefill: float
    fitted_on: tuple[str, ...]
    errors_pct: dict[str, float]
    bands: dict[str, tuple[float, float]]

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        """Additive compute + memory time of the core, as the cost model's (compute, memory, floor) triple."""
        decode = op.kind == ATTN_MLA_DECODE
        ec, em = (DECODE_COMPUTE_EFF, self.e_decode) if decode else (self.e_prefill, PREFILL_MEMORY_EFF)
        overhead = self.overhead_decode_s if decode else self.overhead_prefill_s
        compute_s = op.flops / (ec * hw.peak_flops(op.dtype))
        memory_s = op.bytes / (em * hw.mem_bw_bytes_per_s)
        body = compute_s + memory_s
        if body > 0 and compute_s >= memory_s:
            ec = compute_s * ec / body
        elif body > 0:
            em = memory_s * em / body
        return Efficiency(ec, em, overhead + DEFAULT_PROFILE.floor_s, f"general:{SOURCE_NAME}:{op.kind}",
                          self.errors_pct.get(op.kind))


def fit_path(directory: Path) -> Path:
    return directory / FIT_FILE


def load_mla_family(path: str | Path) -> MlaFamily:
    """The all-devices fit of an `lvlmsim-mla-fit/1` file; a missing or malformed file is a SpecError."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != FIT_FORMAT:
            raise SpecError(f"mla fit: {path} is not a {FIT_FORMAT} file")
        p = doc["all"]["params"]
        return MlaFamily(*(float(p[k]) for k in PARAM_NAMES), fitted_on=tuple(doc["all"]["fit_on"]),
                         errors_pct={k: float(v) for k, v in doc["expected_error_pct"].items()},
                         bands={k: (float(v[0]), float(v[1])) for k, v in doc["band"].items()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"mla fit: cannot read {path}: {exc}") from exc


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> MlaFamily:
    return load_mla_family(path)


def shipped_mla_family() -> MlaFamily | None:
    """The shipped fit (None when calibration/profiles/general/mla.json is absent)."""
    from lvlmsim.specs.registry import profiles_dir

    p = fit_path(profiles_dir())
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        return None
    return _cached(str(p.resolve()), mtime)


@dataclass(frozen=True)
class MlaPricedProfile(ProfileWrapper):
    """An EfficiencyProfile wrapper: MLA cores by the fitted MLA family, everything else by `base`."""

    mla: MlaFamily

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        if op.kind in (ATTN_MLA_DECODE, ATTN_MLA_PREFILL):
            return self.mla.efficiency(op, hw)
        return self.base.efficiency(op, hw)

    def band_for(self, source: str) -> tuple[float, float] | None:
        """The MLA family's held-out band for its sources, else the base profile's band."""
        prefix = f"general:{SOURCE_NAME}:"
        if source.startswith(prefix):
            return self.mla.bands.get(source[len(prefix):])
        return super().band_for(source)


def with_mla(profile: EfficiencyProfile) -> EfficiencyProfile:
    """`profile` with MLA cores priced by the shipped MLA fit (unchanged when no fit is shipped)."""
    fam = shipped_mla_family()
    return profile if fam is None else MlaPricedProfile(profile, fam)


__all__ = ["FIT_FILE", "FIT_FORMAT", "MlaFamily", "MlaPricedProfile", "load_mla_family", "shipped_mla_family",
           "with_mla"]
