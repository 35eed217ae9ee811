"""HardwareSpec: datasheet numbers of one device. Efficiencies never live here (they are calibration's)."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from lvlmsim.errors import InfeasibleError
from lvlmsim.specs.base import DTYPES, Dtype, StrictModel

MemoryType = Literal["hbm2", "hbm2e", "hbm3", "hbm3e", "gddr6", "gddr6x", "gddr7", "lpddr5", "ddr5"]
SLUG = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


class LinkSpec(StrictModel):
    """The intra-node fabric; bandwidth is per direction, as NVLink/PCIe datasheets halve their bidirectional total.

    topology 'switch' (NVSwitch, a PCIe switch): every device reaches the fabric at `bw_gbps` whatever the group size.
    topology 'mesh' (AMD xGMI): `bw_gbps` is ONE point-to-point link to one peer, and a collective over n devices
    drives n-1 of them at once (RCCL spreads its rings over every link), so it gets (n-1) x bw_gbps.
    """

    name: str
    bw_gbps: PositiveFloat = Field(description="GB/s per direction (1 GB = 1e9 bytes); per peer link on a mesh")
    latency_us: NonNegativeFloat = Field(description="one-way latency of a small message, microseconds")
    topology: Literal["switch", "mesh"] = Field("switch", description="switch: bw per device; mesh: bw per peer link")
    in_switch_reduction: bool | None = Field(
        None, description="the switch reduces in the network (NVLink SHARP: NVSwitch gen 3 on HGX H100/H200, NVLink "
        "Switch gen 4 on Blackwell; NCCL's NVLS algorithm); null where no source states it. A datasheet fact: no "
        "cost is priced from it (calibration/README.md, 'Collectives on H100', wave 11)")

    def collective_bw_bytes_s(self, devices: int) -> float:
        """Per-direction bytes/s one device drives in a collective over `devices` devices."""
        links = max(devices - 1, 1) if self.topology == "mesh" else 1
        return self.bw_gbps * 1e9 * links


# exp2 results per clock per SM of the special function units: the CUDA C++ Programming Guide's arithmetic
# instruction throughput table gives 16 for base-2 exponential (exp2f / MUFU.EX2) on every compute capability from 5.x
# through 9.0; Blackwell Ultra (sm_103) doubles it (NVIDIA technical blog 'Making Softmax More Efficient with NVIDIA
# Blackwell Ultra'), which its YAMLs state as sfu_exp2_per_clk_sm: 32.
SFU_EXP2_PER_CLK_SM = 16


class HardwareSpec(StrictModel):
    id: str = Field(description="lower-case slug, e.g. h100-sxm")
    name: str
    vendor: str
    kind: Literal["gpu", "cpu", "soc", "accelerator", "tpu", "npu", "hpu", "asic"] = Field(
        description="gpu, cpu, soc; tpu (Google), npu (Ascend), hpu (Gaudi), asic (Trainium, ...), accelerator (other)"
    )
    peak_tflops: dict[Dtype, PositiveFloat] = Field(description="dense (not 2:4 sparse) peak per dtype, TFLOP/s")
    mem_capacity_gib: PositiveFloat
    mem_bw_gbps: PositiveFloat = Field(description="device memory bandwidth, GB/s")
    l2_cache_mb: PositiveFloat | None = Field(
        description="last-level on-chip cache, MB; null where the device has software-managed SRAM, no published cache"
    )
    intra_node_link: LinkSpec
    inter_node_bw_gbps: NonNegativeFloat = Field(description="network bandwidth per device across nodes, GB/s")
    host_link_gbps: PositiveFloat | None = Field(
        None, description="device <-> host memory link (PCIe) per direction, GB/s; swap preemption moves KV over it")
    max_devices_per_node: PositiveInt = 8
    scale_up_domain: PositiveInt | None = Field(
        None, description="devices one intra_node_link fabric joins (GB200 NVL72: 72); default max_devices_per_node"
    )
    tdp_w: PositiveFloat | None = Field(
        description="board/chip power, W; null where the vendor publishes none (energy is then unknown)"
    )
    idle_power_w: NonNegativeFloat | None = None
    price_per_hour_usd: NonNegativeFloat
    price_date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    price_source: str
    source: str = Field(min_length=1, description="where the datasheet numbers come from")
    notes: str = ""
    # Datasheet features the device-general efficiency model reads (lvlmsim.calibrate.general); optional, and a device
    # without them is priced with the reference device's values for the missing ones (its ops say so).
    sm_count: PositiveInt | None = Field(
        None, description="streaming multiprocessors the shipping SKU enables (NVIDIA) / compute units (AMD)")
    boost_clock_mhz: PositiveFloat | None = Field(
        None, description="maximum SM clock the device reports (cudaDeviceProp clockRate; AMD peak engine clock), MHz")
    memory_type: MemoryType | None = Field(None, description="device memory technology")
    compute_capability: str | None = Field(None, pattern=r"^\d+\.\d+$",
                                           description="CUDA compute capability (sm_version), e.g. 9.0")
    sfu_exp2_tera_per_s: PositiveFloat | None = Field(
        None, description="special-function-unit exp2 throughput (softmax exponentials) of this SKU, tera results/s; "
                          "default sm_count x boost clock x exp2 results per clock per SM")
    sfu_exp2_per_clk_sm: PositiveInt | None = Field(
        None, description="exp2 (MUFU.EX2) results per clock per SM where the architecture differs from "
                          "SFU_EXP2_PER_CLK_SM (16), e.g. 32 on Blackwell Ultra (sm_103)")

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError("must be a lower-case slug of letters, digits, '-' and '.' (e.g. h100-sxm)")
        return v

    @field_validator("peak_tflops")
    @classmethod
    def _some_peak(cls, v: dict) -> dict:
        if not v:
            raise ValueError(f"needs at least one dtype among {', '.join(DTYPES)}")
        return v

    @model_validator(mode="after")
    def _si_values_finite(self):
        """Each datasheet number in SI units (bytes, FLOP/s, W) stays a finite float: 1e308 GiB was accepted and
        came out of the memory report as NaN; and a device idles below its board power."""
        scaled = [("mem_capacity_gib", self.mem_capacity_gib, 2**30), ("mem_bw_gbps", self.mem_bw_gbps, 1e9),
                  ("intra_node_link.bw_gbps", self.intra_node_link.bw_gbps, 1e9),
                  ("inter_node_bw_gbps", self.inter_node_bw_gbps, 1e9),
                  ("sfu_exp2_tera_per_s", self.sfu_exp2_tera_per_s, 1e12), ("host_link_gbps", self.host_link_gbps, 1e9)]
        scaled += [(f"peak_tflops.{k}", v, 1e12) for k, v in self.peak_tflops.items()]
        for name, value, unit in scaled:
            if value is not None and not math.isfinite(value * unit):
                raise ValueError(f"{name}: {value:g} is out of range (overflows in SI units); give the datasheet value")
        if self.tdp_w is not None and self.idle_power_w is not None and self.idle_power_w > self.tdp_w:
            raise ValueError(f"idle_power_w: {self.idle_power_w:g} W exceeds tdp_w {self.tdp_w:g} W; allowed: "
                             f"0..{self.tdp_w:g}")
        return self

    @property
    def mem_capacity_bytes(self) -> float:
        return self.mem_capacity_gib * 2**30

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_gbps * 1e9

    @property
    def scale_up_devices(self) -> int:
        """How many devices a collective can span on the intra-node link before it crosses the network."""
        return self.scale_up_domain or self.max_devices_per_node

    def supports(self, dtype: str) -> bool:
        return dtype in self.peak_tflops

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s (or OP/s for int types) for compute in `dtype`; fails clearly when the device lacks it."""
        try:
            return self.peak_tflops[dtype] * 1e12
        except KeyError:
            raise InfeasibleError(
                f"hardware '{self.id}' has no {dtype} compute; it supports: {', '.join(self.peak_tflops)}"
            ) from None

    def exp2_per_s(self) -> float | None:
        """Softmax exponentials per second (MUFU.EX2 throughput): the SKU's stated figure when given, else SMs x
        boost clock x exp2 results per clock per SM (`sfu_exp2_per_clk_sm`, default SFU_EXP2_PER_CLK_SM); None when
        neither is known."""
        if self.sfu_exp2_tera_per_s:
            return self.sfu_exp2_tera_per_s * 1e12
        if self.sm_count and self.boost_clock_mhz:
            return self.sm_count * self.boost_clock_mhz * 1e6 * (self.sfu_exp2_per_clk_sm or SFU_EXP2_PER_CLK_SM)
        return None

    def ridge_point(self, dtype: str) -> float:
        """Arithmetic intensity (FLOP/byte) where the roofline turns from memory- to compute-bound."""
        return self.peak_flops(dtype) / self.mem_bw_bytes_per_s
