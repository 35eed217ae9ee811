"""The fitted MoE family in the profile `auto` prices with: a MoE layer's expert ops at the device-general MoE fit.

`benchmarks/moe_fit.py` fits lvlmsim.calibrate.moe's model leave-one-device-out on aiconfigurator's fused-MoE
tables (A100, H100, B300, RTX PRO 6000) and once on all of them, and writes `calibration/profiles/general/moe.json`.
The fit is dimensionless (compute ceilings per dtype class, a memory efficiency) plus a fixed cost per kernel
launch, times the kernels the GPU's MoE library launches per layer call (`moe.layer_launches`: TRT-LLM-gen on
sm_100/103, FlashInfer CUTLASS on sm_120, vLLM's Triton elsewhere), so it transfers to any GPU. `with_moe` wraps
a device's profile so that the ops of a MoE layer the fit was made on
are priced by its all-devices parameters, with source `general:moe-fit:<op kind>` and the fit's
held-out error (the median over devices of each held-out device's median |error|):

- the grouped expert GEMMs (`moe_gemm`): compute efficiency ec[dtype] * rows / padded rows, padded rows the
  token-expert rows spread evenly over the touched experts and rounded up to whole TILE_M tiles per expert; memory
  efficiency em; each carries half the layer's fixed cost (the per-launch cost times the layer's launches);
- the layer's dispatch, activation and combine (`llm.moe_dispatch`, `llm.moe_act`, `llm.moe_combine`): bytes at em,
  no fixed cost of their own (the fit's floor is the whole fused layer's).

The router GEMM, shared experts and collectives are outside the measured layer and keep the base profile's pricing.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from lvlmsim.calibrate.moe import (
    DTYPE_CLASSES,
    PARAM_NAMES,
    TILE_M,
    compute_efficiency,
    fit_file,
    fit_floor,
    layer_launches,
    load_fit,
)
from lvlmsim.cost.profile import Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import MOE_GEMM, Op
from lvlmsim.specs.hardware import HardwareSpec

SOURCE_NAME = "moe-fit"
LAYER_ELEMENTWISE = ("llm.moe_dispatch", "llm.moe_act", "llm.moe_combine")  # inside the measured fused layer
# an op's compute dtype -> the fit's dtype class (the graph does not tell per-tensor from block-scaled fp8: per-tensor)
OP_DTYPE_CLASS = {"fp8": "fp8", "fp4": "fp4"}


@dataclass(frozen=True)
class MoEFamily:
    """The all-devices MoE fit: compute ceilings per dtype class, memory efficiency, the layer's fixed cost; its
    held-out median |error| (%) and the (p10, p90) band of measured / predicted layer time pooled over the held-out
    devices."""

    ec: dict[str, float]
    em: float
    floor_s: float
    fitted_on: tuple[str, ...]
    error_pct: float | None
    band: tuple[float, float] | None
    floor: str = "layer"  # floor_s per layer call, or per kernel launch ("launch": times `layer_launches`)

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        """(compute, memory, floor) of a MoE layer op under the fit; see the module docstring."""
        source = f"general:{SOURCE_NAME}:{op.kind}"
        if op.kind != MOE_GEMM:  # dispatch / activation / combine: bytes at em, floor carried by the GEMMs
            return Efficiency(self.em, self.em, 0.0, source, self.error_pct)
        pairs, touched = float(op.shape[0]), float(op.shape[3])
        ec_max = self.ec[OP_DTYPE_CLASS.get(op.dtype, "bf16")]
        half_floor_s = self.floor_s / 2 * (layer_launches(hw, op.dtype, int(op.shape[4])) if self.floor != "layer"
                                           else 1.0)
        if pairs <= 0 or touched <= 0:
            return Efficiency(ec_max, self.em, half_floor_s, source, self.error_pct)
        padded = touched * math.ceil(pairs / touched / TILE_M) * TILE_M  # rows spread evenly over touched experts
        ec = float(compute_efficiency(ec_max, pairs, padded))
        return Efficiency(ec, self.em, half_floor_s, source, self.error_pct)


def load_moe_family(path: str | Path) -> MoEFamily:
    """The all-devices fit of an `lvlmsim-moe-fit` file; a missing or malformed file is a SpecError."""
    doc = load_fit(Path(path))
    try:
        p = dict(zip(PARAM_NAMES, (float(doc["all"]["params"][k]) for k in PARAM_NAMES), strict=True))
        errors = [float(f["held_out_median_abs_pct_err"]) for f in doc.get("folds", [])
                  if f.get("held_out_median_abs_pct_err") is not None]
        band = doc.get("band")
        return MoEFamily({c: p[f"ec_{c}"] for c in DTYPE_CLASSES}, p["em"], p["floor_s"],
                         tuple(doc["all"]["fit_on"]), round(statistics.median(errors), 1) if errors else None,
                         (float(band[0]), float(band[1])) if band else None, fit_floor(doc))
    except (ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"moe fit: cannot read {path}: {exc}") from exc


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> MoEFamily:
    return load_moe_family(path)


def shipped_moe_family() -> MoEFamily | None:
    """The shipped fit (None when calibration/profiles/general/moe.json is absent)."""
    from lvlmsim.specs.registry import profiles_dir

    p = fit_file(profiles_dir())
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        return None
    return _cached(str(p.resolve()), mtime)


def is_moe_layer_op(op: Op) -> bool:
    return op.kind == MOE_GEMM or op.name in LAYER_ELEMENTWISE


@dataclass(frozen=True)
class MoEPricedProfile(ProfileWrapper):
    """An EfficiencyProfile wrapper: MoE layer ops by the fitted MoE family, everything else by `base`."""

    moe: MoEFamily

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        return self.moe.efficiency(op, hw) if is_moe_layer_op(op) else self.base.efficiency(op, hw)

    def band_for(self, source: str) -> tuple[float, float] | None:
        """The MoE fit's held-out band for its sources, else the base profile's band."""
        if source.startswith(f"general:{SOURCE_NAME}:"):
            return self.moe.band
        return super().band_for(source)


def with_moe(profile: EfficiencyProfile) -> EfficiencyProfile:
    """`profile` with MoE layer ops priced by the shipped MoE fit (unchanged when no fit is shipped)."""
    fam = shipped_moe_family()
    return profile if fam is None else MoEPricedProfile(profile, fam)


__all__ = ["MoEFamily", "MoEPricedProfile", "load_moe_family", "shipped_moe_family", "with_moe"]
