"""Cost model: seconds per op (roofline + calibration), communication, and memory."""

from lvlmsim.cost.memory import MemoryReport, check_tp, memory_report
from lvlmsim.cost.profile import DEFAULT_PROFILE, DefaultProfile, Efficiency, EfficiencyProfile, PeakProfile
from lvlmsim.cost.roofline import CostModel, OpCost, allreduce_s

__all__ = [
    "DEFAULT_PROFILE", "CostModel", "DefaultProfile", "Efficiency", "EfficiencyProfile", "MemoryReport", "OpCost",
    "PeakProfile", "check_tp", "memory_report", "allreduce_s",
]
