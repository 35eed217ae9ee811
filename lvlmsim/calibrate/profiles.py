"""Finding the efficiency profile for a device: its own measured profile, the device-general model, a file, or the
roofline default.

Shipped profiles live in lvlmsim.specs.registry.profiles_dir() (calibration/profiles/ in a checkout), one JSON per
hardware id (`<id>.json`, with `hardware_id` inside); the device-general GPU model is `general/gpu.json` there.
`auto` resolution: a profile measured on this very device wins; any other GPU (or GPU SoC) is priced by the general
model at its datasheet features; other device kinds without a profile keep the flat roofline derate. Loaded files
are cached by path and modification time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from lvlmsim.calibrate.general import GeneralModel
from lvlmsim.calibrate.kernels import with_kernel_features
from lvlmsim.calibrate.mla_family import with_mla
from lvlmsim.calibrate.model import FittedProfile, op_role
from lvlmsim.calibrate.moe_family import with_moe
from lvlmsim.cost.collectives import CUSTOM_AR_ROLE
from lvlmsim.cost.profile import DEFAULT_PROFILE, Efficiency, EfficiencyProfile, PeakProfile, ProfileWrapper
from lvlmsim.errors import SpecError
from lvlmsim.ops.op import ALLTOALL, Op
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.registry import profiles_dir

PEAK_PROFILE = PeakProfile()
NAMED = ("auto", "general", "default", "peak")
GENERAL_KINDS = ("gpu", "soc")  # device kinds the GPU-fitted general model may price


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


def general_model_path() -> Path:
    return profiles_dir() / "general" / "gpu.json"


@functools.lru_cache(maxsize=4)
def _load_general(path: str, mtime_ns: int) -> GeneralModel:
    return GeneralModel.load(path)


def general_model() -> GeneralModel | None:
    """The shipped device-general model (None if the file is absent)."""
    p = general_model_path()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        return None
    return _load_general(str(p.resolve()), mtime)


@functools.lru_cache(maxsize=128)
def _general_for(spec_json: str, model_mtime: int) -> FittedProfile:
    return general_model().profile_for(HardwareSpec.model_validate_json(spec_json))


def general_profile_for(hardware: HardwareSpec) -> FittedProfile | None:
    """The general model evaluated at `hardware`'s datasheet (cached per spec), or None without a shipped model."""
    model = general_model()
    if model is None:
        return None
    return _general_for(hardware.model_dump_json(), general_model_path().stat().st_mtime_ns)


CUSTOM_AR_FAMILY = "allreduce/custom"
ALLTOALL_FAMILY = ALLTOALL
# Families a device's own profile may lack (nccl-tests all-reduce only in it) that the device-general model prices at
# its datasheet: vLLM's / SGLang's custom all-reduce kernel and the expert-parallel all-to-all
BORROWED_FAMILIES = (CUSTOM_AR_FAMILY, ALLTOALL_FAMILY)


def borrowed_family(op: Op) -> str | None:
    """The BORROWED_FAMILIES key that prices `op` (its kind, or kind/role), None for any other op."""
    role = op_role(op.kind, op.name)
    if role == CUSTOM_AR_ROLE:
        return CUSTOM_AR_FAMILY
    return ALLTOALL_FAMILY if op.kind == ALLTOALL else None


@dataclass(frozen=True)
class GeneralFamiliesPricedProfile(ProfileWrapper):
    """A device's own profile without some of BORROWED_FAMILIES: the ops of those `families` (a runtime's custom
    all-reduce kernel, ops lvlmsim.cost.collectives marks; expert-parallel all-to-alls) priced by the device-general
    model's family at this device's datasheet (its source, expected error and band say so), everything else by
    `base`."""

    general: FittedProfile
    families: frozenset[str]

    def _borrows(self, source: str) -> bool:
        return any(source.endswith(f":{key}") for key in self.families)

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        if borrowed_family(op) in self.families:
            return self.general.efficiency(op, hw)
        return self.base.efficiency(op, hw)

    def band_for(self, source: str) -> tuple[float, float] | None:
        return self.general.band_for(source) if self._borrows(source) else super().band_for(source)

    def band_for_op(self, source: str, op: Op) -> tuple[float, float] | None:
        if self._borrows(source):
            return self.general.band_for_op(source, op)
        return super().band_for_op(source, op)


def with_general_families(profile: EfficiencyProfile, own: FittedProfile | None,
                          hardware: HardwareSpec) -> EfficiencyProfile:
    """`profile` (built on the device's `own` measured profile, or on the general model) able to price a runtime's
    custom all-reduce and expert-parallel all-to-alls: unchanged unless `own` lacks such a family and the general
    model has it."""
    if own is None:
        return profile
    missing = [key for key in BORROWED_FAMILIES if key not in own.families]
    general = general_profile_for(hardware) if missing else None
    if general is None:
        return profile
    borrowed = frozenset(key for key in missing if key in general.families)
    return GeneralFamiliesPricedProfile(profile, general, borrowed) if borrowed else profile


def fitted_base(profile: EfficiencyProfile) -> EfficiencyProfile:
    """The profile inside its wrappers (runtime floors, quantiles, the MLA family, kernel features)."""
    while hasattr(profile, "base"):
        profile = profile.base
    return profile


def profile_provenance(hardware: HardwareSpec, ref: str | None = None) -> dict:
    """Which model prices `hardware` and how sure it is: {profile, profile_kind, expected_error_pct}.

    profile_kind: 'measured' (fitted on this device's own kernels), 'transferred' (the general model, or a profile
    fitted on another device), 'flat' (the roofline derate). expected_error_pct: the largest held-out median error
    among the GEMM, prefill and decode attention families (None for the flat derate)."""
    return provenance_of(load_profile_for(hardware, ref), hardware)


def provenance_of(profile: EfficiencyProfile, hardware: HardwareSpec) -> dict:
    """profile_provenance of a profile already resolved for `hardware` (what an estimate priced with)."""
    base = fitted_base(profile)
    name = getattr(profile, "name", "custom")
    if not isinstance(base, FittedProfile):
        return {"profile": name, "profile_kind": "flat", "expected_error_pct": None}
    kind = "measured" if base.source_prefix == "calibrated" and base.hardware_id == hardware.id else "transferred"
    errs = [f.holdout_median_abs_pct_err for k, f in base.families.items()
            if k in ("gemm", "attn_prefill", "attn_decode") and f.holdout_median_abs_pct_err is not None]
    return {"profile": name, "profile_kind": kind, "expected_error_pct": max(errs) if errs else None}


def transfer_note(profile: EfficiencyProfile, hardware: HardwareSpec) -> str | None:
    """A warning when the device-general model prices `hardware` outside every category it was fitted on (another
    vendor, no fitted attention kernel generation: GeneralModel.profile_for's meta['outside_fitted']); None
    otherwise. Its expected error and bands are then transfer figures among the fitted devices, not a bound."""
    base = fitted_base(profile)
    reasons = base.meta.get("outside_fitted") if isinstance(base, FittedProfile) else None
    if not reasons:
        return None
    err = provenance_of(profile, hardware)["expected_error_pct"]
    err_txt = f"the expected error ~{err:.0f}% and " if err is not None else ""
    return (f"{hardware.id} is transferred: priced by the device-general model '{base.name}' fitted on "
            f"{', '.join(base.meta.get('fitted_on') or [])} only, outside every category it was fitted on "
            f"({'; '.join(reasons)}); no kernel of this device was measured, so its error is unknown: "
            f"{err_txt}the p10-p90 bands are transfer figures among the fitted devices, not a bound for it")


def transfer_notes(hardware_ids, profile=None) -> list[str]:
    """transfer_note of each distinct device (ids or specs) under `profile` (a name, a path or a profile object, as
    resolve_profile takes), in order, without repeats."""
    from lvlmsim.specs.registry import load_hardware

    notes: list[str] = []
    for h in dict.fromkeys(hardware_ids):
        hw = load_hardware(h)
        note = transfer_note(resolve_profile(hw, profile), hw)
        if note and note not in notes:
            notes.append(note)
    return notes


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
    """`ref` None/'auto': the profile measured on this device if shipped, else the general model for a GPU, else the
    flat default; 'general': the general model even where a measured profile exists; 'default': flat derate;
    'peak': pure roofline; anything else: a profile JSON path. A suffix '@p90' ('@p10') puts every family at the
    pessimistic (optimistic) end of its uncertainty band, e.g. 'auto@p90' (what `plan --robust` prices with)."""
    if isinstance(ref, str) and ref.rsplit("@", 1)[-1] in ("p10", "p90") and "@" in ref:
        from lvlmsim.cost.uncertainty import QuantileProfile

        base_ref, q = ref.rsplit("@", 1)
        return QuantileProfile(load_profile_for(hardware, base_ref or None), q)
    if ref in (None, "auto"):
        own = shipped_profile_for(hardware.id)
        if hardware.kind not in GENERAL_KINDS:
            return own or DEFAULT_PROFILE
        # MLA cores and MoE layers: the device-general MLA and MoE fits (calibrate.mla_family, calibrate.moe_family),
        # on a GPU's own profile or the model's; windowed decode as the device's attention kernel runs it
        # (lvlmsim.calibrate.kernels)
        base = with_moe(with_mla(own or general_profile_for(hardware) or DEFAULT_PROFILE))
        return with_kernel_features(with_general_families(base, own, hardware), hardware)
    if ref == "general":
        general = general_profile_for(hardware)
        if general is None:
            raise SpecError(f"profile: no device-general model is shipped ({general_model_path()} is missing)")
        return with_kernel_features(with_moe(with_mla(general)), hardware)
    if ref == "default":
        return DEFAULT_PROFILE
    if ref == "peak":
        return PEAK_PROFILE
    if not isinstance(ref, str | Path) or not str(ref).strip():
        raise SpecError(f"profile: expected one of {', '.join(NAMED)} or a profile JSON path, got {ref!r}")
    if "@" in str(ref) and not Path(ref).exists():  # 'auto@p50' was 'file not found', naming no band suffix
        raise SpecError(f"profile: unknown band suffix '@{str(ref).rpartition('@')[2]}' in {str(ref)!r}; allowed: "
                        f"@p10, @p90 after {', '.join(NAMED)} or a profile JSON path (e.g. auto@p90)")
    prof = load_profile_file(ref)
    if prof.hardware_id == hardware.id:
        return prof
    _refuse_cpu_gpu_transfer(prof.hardware_id, hardware, ref)
    return _flagged(str(Path(ref).resolve()), hardware.id)


def _refuse_cpu_gpu_transfer(fitted_on: str, hardware: HardwareSpec, ref) -> None:
    """A profile fitted on a CPU cannot price an accelerator, nor an accelerator's a CPU: its efficiencies are another
    kind of machine's kernels (a CPU's GEMV at 0.3% of peak), which no datasheet ratio carries over (`calibrate
    --device cpu` then `estimate --hardware h100-sxm --profile my-cpu.json` priced an H100 decode step 6.6x slow). A
    device lvlmsim does not know is transferred and flagged as before."""
    from lvlmsim.errors import LvlmsimError
    from lvlmsim.specs.registry import load_hardware

    try:
        kind = load_hardware(fitted_on).kind
    except LvlmsimError:
        return
    if (kind == "cpu") != (hardware.kind == "cpu"):
        named = "auto, general, default, peak" if hardware.kind in GENERAL_KINDS else "auto, default, peak"
        raise SpecError(f"profile: {ref} was fitted on {fitted_on} (a {kind}) and cannot price {hardware.id} (a "
                        f"{hardware.kind}); allowed: a profile fitted on a {hardware.kind}, {named}")


@functools.lru_cache(maxsize=32)
def _flagged(path: str, hardware_id: str) -> FittedProfile:
    """A profile fitted on another device, applied to `hardware_id` by datasheet ratios: never silently - its name
    and every op's source say so (`transferred:<profile>-on-<device>:<family>`), and provenance reports it."""
    prof = load_profile_file(path)
    meta = dict(prof.meta, transferred_from=prof.hardware_id, applied_to=hardware_id)
    out = FittedProfile(f"{prof.name}-on-{hardware_id}", prof.hardware_id, prof.families, aliases=prof.aliases,
                        meta=meta)
    out.source_prefix = "transferred"
    return out


def resolve_profile(hardware: HardwareSpec, profile: str | EfficiencyProfile | None) -> EfficiencyProfile:
    """A profile object as given, or one found by name: None or 'auto' is the shipped calibrated profile of this
    device if there is one, else the device-general model for a GPU (see load_profile_for)."""
    if profile is None or isinstance(profile, str):
        return load_profile_for(hardware, profile)
    if not hasattr(profile, "efficiency"):  # a number or a list passed as a profile failed deep in the pricing
        raise SpecError(f"profile: expected auto | general | default | peak, a profile JSON path or an "
                        f"EfficiencyProfile, got {profile!r}")
    return profile
