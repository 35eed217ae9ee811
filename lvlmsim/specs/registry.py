"""Finds the YAML data folders from a checkout or from an installed wheel, and resolves ids or paths to specs.

A checkout keeps `hardware_specs/`, `workloads/` and `calibration/profiles/` at the top level; a wheel carries the
same folders under `lvlmsim/_data/`. This module is the only place that knows either layout.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lvlmsim.errors import SpecError, UnknownIdError
from lvlmsim.specs.base import load_yaml_as
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec

_PKG = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder holding hardware_specs/ and workloads/: the checkout root, else the wheel's _data/."""
    checkout = _PKG.parent
    if (checkout / "hardware_specs").is_dir() and (checkout / "workloads").is_dir():
        return checkout
    return _PKG / "_data"


def hardware_dir() -> Path:
    return data_root() / "hardware_specs"


def models_dir() -> Path:
    return data_root() / "workloads" / "models"


def scenarios_dir() -> Path:
    return data_root() / "workloads" / "scenarios"


def traces_dir() -> Path:
    return data_root() / "workloads" / "traces"


def datasets_dir() -> Path:
    """Benchmark datasets as distributions (`lvlmsim bench --dataset-name`)."""
    return data_root() / "workloads" / "datasets"


def bench_runs_path() -> Path:
    """Published benchmark-client runs with their conditions (lvlmsim.bench.validation)."""
    return data_root() / "workloads" / "validation" / "bench-runs.yaml"


def host_dir() -> Path:
    """Host-side cost data: measured CPU preprocessing (calibration/host/*.json), runtime profiles (runtimes.yaml)."""
    return data_root() / "calibration" / "host"


def collectives_path() -> Path:
    """Which all-reduce algorithm each serving runtime runs (lvlmsim.cost.collectives)."""
    return data_root() / "calibration" / "collectives.yaml"


def moe_configs_path() -> Path:
    """Which tuned Triton fused-MoE configs vLLM ships per GPU (lvlmsim.calibrate.moe.triton_config)."""
    return data_root() / "calibration" / "vllm_fused_moe_configs.yaml"


def profiles_dir() -> Path:
    return data_root() / "calibration" / "profiles"


def _ids(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def hardware_ids() -> list[str]:
    return list(_ids(hardware_dir()))


def model_ids() -> list[str]:
    return list(_ids(models_dir()))


def scenario_ids() -> list[str]:
    return list(_ids(scenarios_dir()))


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref


def resolve_path(kind: str, ref: str, folder: Path) -> Path:
    """An id in `folder`, or a path to a YAML file; unknown ids raise with the closest suggestions."""
    if _looks_like_path(ref):
        return Path(ref)
    direct = folder / f"{ref}.yaml"  # an id is a file stem: one stat, not a listing of the folder, on the hot path
    if direct.is_file():
        return direct
    known = _ids(folder)
    if ref in known:
        return known[ref]
    raise UnknownIdError(kind, ref, known)


@functools.lru_cache(maxsize=256)
def _load_hardware(path: str) -> HardwareSpec:
    return load_yaml_as(HardwareSpec, Path(path))


@functools.lru_cache(maxsize=256)
def _load_model(path: str) -> ModelSpec:
    return load_yaml_as(ModelSpec, Path(path))


def _ref(kind: str, ref: object, example: str) -> str:
    """An id or path as text (a pathlib.Path too); anything else is a SpecError naming what is accepted."""
    if isinstance(ref, Path):
        return str(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(f"{kind}: expected an id such as {example}, a YAML path or a spec object, got {ref!r}")
    return ref


def load_hardware(ref: str | Path | HardwareSpec) -> HardwareSpec:
    """A HardwareSpec from an id (`h100-sxm`), a YAML path, or an existing spec."""
    if isinstance(ref, HardwareSpec):
        return ref
    path = resolve_path("hardware", _ref("hardware", ref, "h100-sxm"), hardware_dir())
    return _load_hardware(str(path.resolve()))


def load_model(ref: str | Path | ModelSpec) -> ModelSpec:
    """A ModelSpec from an id (`llava-1.5-7b`), a YAML path, or an existing spec."""
    if isinstance(ref, ModelSpec):
        return ref
    return _load_model(str(resolve_path("model", _ref("model", ref, "llava-1.5-7b"), models_dir()).resolve()))
