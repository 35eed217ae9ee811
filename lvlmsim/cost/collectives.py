"""Which all-reduce algorithm a serving runtime runs: its custom one-shot/two-shot kernel or NCCL.

vLLM and SGLang reduce a tensor-parallel activation with their own custom all-reduce kernel (GPU peer-to-peer loads
over NVLink, registered IPC buffers, no NCCL protocol) when the message is below the kernel's buffer, the group size
is one it supports and the GPUs are fully NVLink-connected (or only two GPUs with peer-to-peer access over PCIe);
otherwise NCCL. Under CUDA graphs the custom kernel is several times faster for small messages (aiconfigurator H100:
4.3-4.7 us against NCCL's 6-16 us), so a decode step's per-layer all-reduces depend on the choice. The rules are data
(calibration/collectives.yaml, with their sources); this module only reads them and applies them to an op.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lvlmsim.errors import SpecError
from lvlmsim.specs.hardware import HardwareSpec

# Marks an all-reduce op the runtime sends to its custom kernel: a calibrated profile prices such an op with its
# `allreduce/custom` family (lvlmsim.calibrate.model.FittedProfile), every profile without one as an all-reduce.
CUSTOM_AR_SUFFIX = "@custom_ar"
CUSTOM_AR_ROLE = "custom"


@dataclass(frozen=True)
class CustomAllreducePolicy:
    """When a runtime runs its custom all-reduce kernel (calibration/collectives.yaml)."""

    runtime: str
    world_sizes: tuple[int, ...]
    max_bytes: float
    pcie_max_devices: int
    vendors: tuple[str, ...]
    sources: dict

    def picks_custom(self, hw: HardwareSpec, devices: int, message_bytes: float) -> bool:
        """True when the runtime runs its custom kernel for this all-reduce on `hw`, False for NCCL."""
        if devices not in self.world_sizes or not message_bytes < self.max_bytes:
            return False
        if hw.vendor.strip().lower() not in self.vendors:
            return False
        fabric = p2p_fabric(hw)
        if fabric == "nvlink":
            return True
        return fabric == "pcie" and devices <= self.pcie_max_devices


def p2p_fabric(hw: HardwareSpec) -> str:
    """'nvlink' (every GPU pair NVLink-connected: NVSwitch or an NVLink rack), 'pcie' (peer-to-peer over PCIe) or
    'none' (no peer-to-peer access), from the intra-node link the hardware spec names."""
    name = hw.intra_node_link.name.lower()
    if "nvlink" in name and "no nvlink" not in name:
        return "nvlink"
    if "no p2p" in name or name.startswith("none"):
        return "none"
    return "pcie"


def _policy(runtime: str, d: dict, where: str) -> CustomAllreducePolicy:
    try:
        sizes = tuple(int(x) for x in d["world_sizes"])
        out = CustomAllreducePolicy(runtime, sizes, float(d["max_bytes"]), int(d["pcie_max_devices"]),
                                    tuple(str(v).lower() for v in d["vendors"]), dict(d.get("sources") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{where}: expected world_sizes, max_bytes, pcie_max_devices, vendors ({exc})") from None
    if not out.max_bytes > 0 or any(s < 2 for s in sizes):
        raise SpecError(f"{where}: max_bytes must be > 0 and world_sizes >= 2")
    return out


@functools.lru_cache(maxsize=1)
def custom_allreduce_policies() -> dict[str, CustomAllreducePolicy]:
    """runtime name -> its custom all-reduce policy, from calibration/collectives.yaml."""
    from lvlmsim.specs.base import read_yaml
    from lvlmsim.specs.registry import collectives_path

    path = collectives_path()
    doc = read_yaml(path) or {}
    section = doc.get("custom_allreduce") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise SpecError(f"{path}: custom_allreduce: expected a mapping of runtime name -> policy")
    return {str(k): _policy(str(k), v if isinstance(v, dict) else {}, f"{path}: custom_allreduce.{k}")
            for k, v in section.items()}


def custom_allreduce_policy(runtime: str) -> CustomAllreducePolicy | None:
    """The runtime's policy, or None when it runs NCCL for every all-reduce (or is not listed)."""
    return custom_allreduce_policies().get(runtime)


@functools.lru_cache(maxsize=1)
def two_stage_from_bytes() -> dict[int, float]:
    """group size -> message bytes from which the custom kernel runs its two-stage algorithm (collectives.yaml
    custom_allreduce_kernel); a group size not listed always runs the one-stage kernel."""
    from lvlmsim.specs.base import read_yaml
    from lvlmsim.specs.registry import collectives_path

    path = collectives_path()
    doc = read_yaml(path) or {}
    section = doc.get("custom_allreduce_kernel") if isinstance(doc, dict) else None
    table = section.get("two_stage_from_bytes") if isinstance(section, dict) else None
    where = f"{path}: custom_allreduce_kernel.two_stage_from_bytes"
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a mapping of group size -> bytes")
    try:
        out = {int(k): float(v) for k, v in table.items()}
    except (TypeError, ValueError):
        raise SpecError(f"{where}: group sizes must be integers and bytes numbers") from None
    if any(n < 2 or not b > 0 for n, b in out.items()):
        raise SpecError(f"{where}: group sizes must be >= 2 and bytes > 0")
    return out


def custom_ar_one_stage(devices: float, message_bytes: float) -> bool:
    """Whether the custom kernel all-reduces `message_bytes` over `devices` GPUs in one stage (every GPU reads the
    whole message from every peer) rather than two (reduce-scatter, then all-gather)."""
    limit = two_stage_from_bytes().get(int(devices))
    return limit is None or message_bytes < limit

