"""Faces over simulate(): sweeps over scenario fields and capacity planning under latency SLOs.

    sweep("workloads/sweeps/llava-tp-hardware.yaml", out="results.parquet", executor="local")  -> DataFrame
    plan("llava-chat-h100", target_rate=20, slos="ttft_p90=1.0,tpot_p90=0.05", hardware="h100-sxm,l40s")
        -> PlanResult (.recommended, .candidates, .pareto, .pareto_throughput, .verdict, .stats)
"""

from lvlmsim.planner.capacity import SLO_KEYS, SearchSettings, capacity_search, evaluate, parse_slos
from lvlmsim.planner.executors import EXECUTORS
from lvlmsim.planner.plan import DEFAULT_LAYOUTS, DEFAULT_TP, Layout, PlanResult, parse_layout, plan
from lvlmsim.planner.sweep import Sweep, SweepSpec, load_sweep, read_table, sweep

__all__ = [
    "DEFAULT_LAYOUTS", "DEFAULT_TP", "EXECUTORS", "SLO_KEYS", "Layout", "PlanResult", "SearchSettings", "Sweep",
    "SweepSpec", "capacity_search", "evaluate", "load_sweep", "parse_layout", "parse_slos", "plan", "read_table",
    "sweep",
]
