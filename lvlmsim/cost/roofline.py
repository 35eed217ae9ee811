"""Time of one op on one device: t = max(flops / (eff_c * peak), bytes / (eff_m * bw)) + floor.

Collectives use the link model (allreduce_s: a ring's bandwidth term, a tree's latency) instead of HBM. Every result
keeps its roofline coordinates and the provenance of its efficiencies, so any printed figure can be traced to its op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lvlmsim.cost.profile import DEFAULT_PROFILE, EfficiencyProfile
from lvlmsim.errors import InfeasibleError
from lvlmsim.ops.op import ALLREDUCE, ALLTOALL, Op
from lvlmsim.specs.hardware import HardwareSpec

COMPUTE, MEMORY, OVERHEAD, COMMUNICATION = "compute", "memory", "overhead", "communication"
# one network hop (InfiniBand/RoCE NIC to NIC, small message); NCCL's inter-node alpha is of this order
INTER_NODE_LATENCY_S = 10e-6


@dataclass(frozen=True, slots=True)
class OpCost:
    op: Op
    time_s: float  # one instance (one layer); total is time_s * op.count
    compute_s: float
    memory_s: float
    floor_s: float
    bound: str
    eff_compute: float
    eff_memory: float
    source: str
    measured_error_pct: float | None
    # one call at the datasheet: max(flops / peak, bytes / bandwidth), a collective at full link bandwidth; no
    # efficiency, floor or uncertainty draw takes the op below it (lvlmsim.cost.uncertainty clamps its bands here)
    peak_s: float = 0.0

    @property
    def total_time_s(self) -> float:
        return self.time_s * self.op.count

    @property
    def attained_flops(self) -> float:
        return self.op.flops / self.time_s if self.time_s else 0.0

    @property
    def intensity(self) -> float:
        return self.op.intensity


def allreduce_latency_s(devices: float, latency_s: float) -> float:
    """Latency part of an all-reduce over `devices`: log2(n) x the link's small-message latency.

    NCCL sends small messages by tree / low-latency protocols, whose latency grows with the tree depth, not with a
    ring's 2(n-1) hops. With the spec's latency (the 2-GPU smallest-message NCCL time) this gives 5/10/15 us on H100
    SXM for 2/4/8 GPUs against 6/9.5/16 us measured (aiconfigurator NCCL 2.29 all-reduce, <= 8 KiB), where 2(n-1)
    hops gave 10/30/70 us.
    """
    return math.log2(devices) * latency_s if devices > 1 else 0.0


def allreduce_s(message_bytes: float, devices: int, link_bw_bytes_s: float, latency_s: float) -> float:
    """All-reduce: a ring's bandwidth term (2(n-1)/n of the message crosses each link) + allreduce_latency_s."""
    if devices <= 1:
        return 0.0
    n = devices
    return 2 * (n - 1) / n * message_bytes / link_bw_bytes_s + allreduce_latency_s(n, latency_s)


def alltoall_s(message_bytes: float, devices: int, link_bw_bytes_s: float, latency_s: float) -> float:
    """All-to-all (or all-gather) of `message_bytes` per device: (n-1)/n of it crosses the link once, one latency.

    Expert-parallel dispatch/combine: each device sends its tokens' hidden states to the devices holding their
    experts; with balanced routing (n-1)/n of them leave the device.
    """
    if devices <= 1:
        return 0.0
    return (devices - 1) / devices * message_bytes / link_bw_bytes_s + latency_s


def alltoall_link(op: Op, hardware: HardwareSpec) -> tuple[float, float]:
    """(bytes/s, latency s) an all-to-all over `op.devices` GPUs runs at: the scale-up link (NVLink, NVL72) when the
    group fits in it, else the network (bandwidth 0 when the spec has none)."""
    if op.devices <= hardware.scale_up_devices:
        return (hardware.intra_node_link.collective_bw_bytes_s(op.devices),
                hardware.intra_node_link.latency_us * 1e-6)
    return hardware.inter_node_bw_gbps * 1e9, INTER_NODE_LATENCY_S


def fixed_latency_s(op: Op, hardware: HardwareSpec) -> float:
    """Time CostModel adds to `op` outside its efficiencies and floor: a collective's latency term (all-reduce:
    allreduce_latency_s; all-to-all: one link or network latency), 0 for every other op."""
    if op.devices <= 1 or op.kind not in (ALLREDUCE, ALLTOALL):
        return 0.0
    link_lat = hardware.intra_node_link.latency_us * 1e-6
    if op.kind == ALLREDUCE:
        return allreduce_latency_s(op.devices, link_lat)
    return alltoall_link(op, hardware)[1]


def physics_side(op: Op, peak_flops: float, bw_bytes_s: float, eff_compute: float, eff_memory: float,
                 ) -> tuple[float, float]:
    """(eff_compute, eff_memory) that give `op` the same roofline body, max(compute, memory), with the larger term on
    the side of the datasheet ridge its intensity puts it.

    A fitted efficiency is a time, not a diagnosis: the CPU profile's GEMM form gives a one-row GEMM 0.28% of peak
    compute (its per-row cost), so a batch-1 decode GEMV at 1 FLOP/byte, far left of the CPU's 55 FLOP/byte ridge,
    came out compute-bound. Left of the ridge (by any roofline memory-bound) the whole body is charged to memory
    (compute at peak, the attained bandwidth bytes / body); right of it, to compute. The time is unchanged; the bound
    label and the effective ridge the explorer draws then agree with the roofline."""
    if op.flops <= 0 or op.bytes <= 0:
        return eff_compute, eff_memory
    compute_s, memory_s = op.flops / (eff_compute * peak_flops), op.bytes / (eff_memory * bw_bytes_s)
    left_of_ridge = op.flops / op.bytes < peak_flops / bw_bytes_s
    if left_of_ridge and compute_s >= memory_s:
        return 1.0, op.bytes / (bw_bytes_s * compute_s)
    if not left_of_ridge and memory_s > compute_s:
        return op.flops / (peak_flops * memory_s), 1.0
    return eff_compute, eff_memory


class CostModel:
    """Prices ops for one (hardware, profile) pair and memoises by op: the engine asks millions of times."""

    def __init__(self, hardware: HardwareSpec, profile: EfficiencyProfile | None = None):
        self.hardware = hardware
        self.profile = profile or DEFAULT_PROFILE
        self._cache: dict[Op, OpCost] = {}
        self._bw = hardware.mem_bw_bytes_per_s
        self._link_lat = hardware.intra_node_link.latency_us * 1e-6

    def cost(self, op: Op) -> OpCost:
        hit = self._cache.get(op)
        if hit is not None:
            return hit
        eff = self.profile.efficiency(op, self.hardware)
        if op.kind == ALLREDUCE:
            link_bw = self.hardware.intra_node_link.collective_bw_bytes_s(op.devices)
            comm = allreduce_s(op.bytes_read, op.devices, eff.memory * link_bw, self._link_lat)
            res = OpCost(op, comm + eff.floor_s if op.devices > 1 else 0.0, 0.0, comm, eff.floor_s,
                         COMMUNICATION, eff.compute, eff.memory, eff.source, eff.measured_error_pct,
                         allreduce_s(op.bytes_read, op.devices, link_bw, self._link_lat))
        elif op.kind == ALLTOALL:
            res = self._alltoall(op, eff)
        else:
            res = self._roofline(op, eff)
        self._cache[op] = res
        return res

    def _roofline(self, op: Op, eff) -> OpCost:
        """max(compute, memory) + floor, labelled by the term that sets the time, on the side of the datasheet ridge
        the op's intensity puts it (physics_side)."""
        peak = self.hardware.peak_flops(op.dtype)
        compute_s = op.flops / (eff.compute * peak)
        memory_s = op.bytes / (eff.memory * self._bw)
        body = max(compute_s, memory_s)
        ec, em = physics_side(op, peak, self._bw, eff.compute, eff.memory)
        if (ec, em) != (eff.compute, eff.memory):  # the same body, charged to the side the roofline puts the op on
            compute_s, memory_s = (op.flops / (ec * peak), op.bytes / (em * self._bw))
        if eff.floor_s > body:
            bound = OVERHEAD
        else:
            bound = COMPUTE if compute_s >= memory_s else MEMORY
        return OpCost(op, body + eff.floor_s, compute_s, memory_s, eff.floor_s, bound, ec, em, eff.source,
                      eff.measured_error_pct, max(op.flops / peak, op.bytes / self._bw))

    def _alltoall(self, op: Op, eff) -> OpCost:
        """Priced on the scale-up link (NVLink, NVL72) when the group fits in it, else on the network."""
        hw = self.hardware
        bw, lat = alltoall_link(op, hw)
        if bw <= 0:
            raise InfeasibleError(f"ep: {op.devices} devices span nodes but {hw.id} has inter_node_bw_gbps 0")
        comm = alltoall_s(op.bytes_read, op.devices, eff.memory * bw, lat)
        return OpCost(op, comm + eff.floor_s if op.devices > 1 else 0.0, 0.0, comm, eff.floor_s, COMMUNICATION,
                      eff.compute, eff.memory, eff.source, eff.measured_error_pct,
                      alltoall_s(op.bytes_read, op.devices, bw, lat))

    def time_s(self, ops) -> float:
        """Total seconds of a sequence of ops (each counted `count` times)."""
        total = 0.0
        cache = self._cache
        for op in ops:
            c = cache.get(op) or self.cost(op)
            total += c.time_s * op.count
        return total

    def clear(self) -> None:
        self._cache.clear()

    def cached_ops(self) -> int:
        """How many distinct ops are memoised (a long-lived cost model clears itself past a bound)."""
        return len(self._cache)
