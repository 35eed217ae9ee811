"""Finding the efficiency profile for a device: a shipped calibrated profile, a file, or the roofline default.

Shipped profiles live in lvlmsim.specs.registry.profiles_dir() (calibration/profiles/ in a checkout), one JSON per
hardware id (`<id>.json`, with `hardware_id` inside). Loaded profiles are cached by path and modification time.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lvlmsim.calibrate.model import FittedProfile
from lvlmsim.cost.profile import DEFAULT_PROFILE, EfficiencyProfile, PeakProfile
from lvlmsim.errors import SpecError
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.registry import profiles_dir

PEAK_PROFILE = PeakProfile()
NAMED = ("auto", "default", "peak")


@functools.lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> FittedProfile:
    return FittedProfile.load(path)


def load_profile_file(path: str | Path) -> FittedProfile:
    """A profile JSON (cached); a missing or malformed file is a SpecError naming `profile`."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise SpecError(f"profile: file not found: {p} (give a profile JSON path, or one of: {', '.join(NAMED)})") \
            from None
    return _load(str(p.resolve()), mtime)


def shipped_profiles() -> dict[str, Path]:
    """Hardware id -> shipped profile JSON (by file name: calibration/profiles/<hardware id>.json)."""
    folder = profiles_dir()
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def shipped_profile_for(hardware_id: str) -> FittedProfile | None:
    path = shipped_profiles().get(hardware_id)
    if path is None:
        return None
    prof = load_profile_file(path)
    if prof.hardware_id != hardware_id:
        raise SpecError(f"profile: {path} says hardware_id '{prof.hardware_id}', expected '{hardware_id}'")
    return prof


def load_profile_for(hardware: HardwareSpec, ref: str | None = None) -> EfficiencyProfile:
    """`ref` None/'auto': shipped profile for this device id if any, else the flat default; 'default': flat derate;
    'peak': pure roofline; anything else: a profile JSON path."""
    if ref in (None, "auto"):
        return shipped_profile_for(hardware.id) or DEFAULT_PROFILE
    if ref == "default":
        return DEFAULT_PROFILE
    if ref == "peak":
        return PEAK_PROFILE
    if not isinstance(ref, str | Path) or not str(ref).strip():
        raise SpecError(f"profile: expected one of {', '.join(NAMED)} or a profile JSON path, got {ref!r}")
    return load_profile_file(ref)


def resolve_profile(hardware: HardwareSpec, profile: str | EfficiencyProfile | None) -> EfficiencyProfile:
    """A profile object as given, or one found by name: None or 'auto' is the shipped calibrated profile of this
    device if there is one, else the roofline default (see load_profile_for)."""
    if profile is None or isinstance(profile, str):
        return load_profile_for(hardware, profile)
    return profile
