"""Host-side costs: what the serving process's CPU does to a request that the GPU kernels do not show.

Two data files (lvlmsim.specs.registry.host_dir), each figure with its source:

* calibration/host/<cpu>.json: image decode, resize and normalise+patchify times, measured on a CPU core at several
  image sizes by lvlmsim.calibrate.host, and the pipe bandwidth of a process hand-off. An image's time per stage is
  read off the measured points by linear interpolation in pixels (through the origin below the smallest point, the
  last segment's slope beyond the largest): the stages are not linear in pixels on a real cache hierarchy (the
  least-squares fits and their errors are in the file), so the table itself is the model.
* calibration/host/runtimes.yaml: per runtime and version, the per-step CPU time on the critical path, the
  preprocessing workers, and whether processed pixels cross a process boundary.

Which pixels: decode works on the uploaded image (width x height), resize and normalise on the processed one, which
is what the vision encoder sees: its patches x patch_size^2 (sum of the tokenization's ViT sequence lengths). The
hand-off carries the processed pixels as float32 RGB, times the temporal patch (Qwen2-VL's processor repeats an image
to fill its temporal patch of 2).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from lvlmsim.errors import SpecError
from lvlmsim.specs.base import read_yaml
from lvlmsim.specs.registry import host_dir

DEFAULT_CPU = "cpu-generic"
STAGES = ("decode", "resize", "normalize")
PIXEL_BYTES = 3 * 4  # float32 RGB, as the HF image processors return pixel_values


@dataclass(frozen=True)
class StageTable:
    """Measured (pixels, seconds) points of one image stage; seconds(pixels) interpolates them."""

    pixels: tuple[float, ...]
    seconds: tuple[float, ...]

    def __call__(self, pixels: float) -> float:
        if pixels <= 0:
            return 0.0
        x, t = self.pixels, self.seconds
        if pixels <= x[0]:
            return t[0] * pixels / x[0]
        if pixels >= x[-1]:
            slope = (t[-1] - t[-2]) / (x[-1] - x[-2]) if len(x) > 1 else t[-1] / x[-1]
            return t[-1] + slope * (pixels - x[-1])
        return float(np.interp(pixels, x, t))


@dataclass(frozen=True)
class HostProfile:
    """One runtime version's host costs on one measured CPU."""

    name: str
    runtime: str
    versions: str
    step_host_s: float
    preprocess_workers: int
    transfer: str
    sources: dict
    cpu: str
    stages: dict
    transfer_latency_s: float
    transfer_bytes_per_s: float

    def image_s(self, input_pixels: float, processed_pixels: float) -> dict[str, float]:
        """Seconds of each stage for ONE image on one worker."""
        return {"decode": self.stages["decode"](input_pixels), "resize": self.stages["resize"](processed_pixels),
                "normalize": self.stages["normalize"](processed_pixels)}

    def transfer_s(self, nbytes: float) -> float:
        if self.transfer != "ipc" or nbytes <= 0:
            return 0.0
        return self.transfer_latency_s + nbytes / self.transfer_bytes_per_s

    def describe(self) -> str:
        return (f"{self.name} ({self.versions}) on {self.cpu}: {self.preprocess_workers} preprocessing worker(s), "
                f"step host {self.step_host_s * 1e3:.2f} ms, pixels by {self.transfer}")


def processed_pixels(model, tok) -> int:
    """Pixels the vision encoder sees for one tokenization: its ViT tokens x patch area."""
    return sum(tok.vit_seq_lens) * model.vision.patch_size ** 2


def transfer_bytes(model, pixels: float) -> float:
    return pixels * PIXEL_BYTES * model.vision.temporal_patch_size


@functools.lru_cache(maxsize=8)
def _cpu_tables(cpu: str) -> tuple[dict, float, float, str]:
    path = host_dir() / f"{cpu}.json"
    if not path.is_file():
        known = sorted(p.stem for p in host_dir().glob("*.json"))
        raise SpecError(f"host cpu: no measured host profile '{cpu}' in {host_dir()}; known: {', '.join(known)}")
    doc = json.loads(path.read_text())
    tables = {}
    for stage in STAGES:
        rows = sorted(doc["measurements"][stage], key=lambda r: r["pixels"])
        tables[stage] = StageTable(tuple(float(r["pixels"]) for r in rows), tuple(float(r["p10_s"]) for r in rows))
    tr = doc["transfer"]
    return tables, float(tr["latency_s"]), float(tr["bytes_per_s"]), doc["environment"].get("cpu", cpu)


@functools.lru_cache(maxsize=1)
def _runtimes() -> dict:
    return read_yaml(host_dir() / "runtimes.yaml")


def host_profile_names() -> list[str]:
    doc = _runtimes()
    return sorted(set(doc["runtimes"]) | set(doc["defaults"]))


def load_host_profile(name: str, cpu: str = DEFAULT_CPU) -> HostProfile:
    """A runtime's host profile by profile name (vllm-v0, vllm-v1, sglang, trtllm) or plain runtime name (vllm ->
    its current default version); an unknown name is a SpecError listing the allowed ones."""
    doc = _runtimes()
    key = str(name).strip().lower()
    key = doc["defaults"].get(key, key)
    if key not in doc["runtimes"]:
        raise SpecError(f"host profile: unknown runtime '{name}'; allowed: {', '.join(host_profile_names())}")
    r = doc["runtimes"][key]
    tables, lat, bw, cpu_name = _cpu_tables(cpu)
    return HostProfile(name=key, runtime=r["runtime"], versions=str(r["versions"]), step_host_s=float(r["step_host_s"]),
                       preprocess_workers=int(r["preprocess_workers"]), transfer=str(r["transfer"]),
                       sources=dict(r.get("sources", {})), cpu=cpu_name, stages=tables, transfer_latency_s=lat,
                       transfer_bytes_per_s=bw)


__all__ = ["HostProfile", "StageTable", "host_profile_names", "load_host_profile", "processed_pixels",
           "transfer_bytes"]
