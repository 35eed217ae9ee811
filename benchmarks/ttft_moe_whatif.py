"""What-if (issue 13, not shipped): the #340 Qwen3-30B-A3B rows on an A100 with every MoE layer priced at
aiconfigurator's measured A100 fused-MoE time instead of lvlmsim's MoE fit.

The MoE fit (lvlmsim.calibrate.moe_family, owned by the MoE family's work) prices a layer of 128 experts, top-8,
width 768, hidden 2048 at about 1.1 ms for a 128-token prefill on the A100, where the measured vllm_fused_moe takes
0.73 ms. This script swaps, for this one shape only, the layer's ops (the two grouped expert GEMMs and the dispatch,
activation and combine inside the fused kernel; the router GEMM stays outside, as in the measurement) for the
measured time at the op's token count (log-linear interpolation between the table's token counts, distribution
`balanced` if measured, else `power_law_1.01`), replays the #340 30B-A3B rows of workloads/validation/bench-runs.yaml
with and without the swap, and prints the TTFT and TPOT of both. At one request at a time a TTFT holds only that
request's prefill, so it moves with the prefill-sized layers alone; the TPOT column shows the same swap on the
1-token decode layers (0.06 ms measured), for the record. It reads the measured table from ../shared (the table
itself stays there) and changes nothing that lvlmsim ships.

    PYTHONPATH=. python benchmarks/ttft_moe_whatif.py
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lvlmsim.bench.run import run_bench  # noqa: E402
from lvlmsim.bench.validation import load_rows, row_args  # noqa: E402
from lvlmsim.calibrate.moe_family import LAYER_ELEMENTWISE  # noqa: E402
from lvlmsim.calibrate.profiles import resolve_profile  # noqa: E402
from lvlmsim.cost.profile import Efficiency, ProfileWrapper  # noqa: E402
from lvlmsim.cost.roofline import CostModel  # noqa: E402
from lvlmsim.estimate import estimate_request  # noqa: E402
from lvlmsim.ops.op import MOE_GEMM, Op  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402
from lvlmsim.specs.registry import load_hardware, load_model  # noqa: E402

TABLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "measured" / "aiconfigurator" / "data" / \
    "a100_sxm" / "moe" / "vllm" / "0.14.0" / "moe_perf.csv"
SHAPE = {"moe_dtype": "bfloat16", "hidden_size": 2048, "inter_size": 768, "topk": 8, "num_experts": 128,
         "moe_tp_size": 1, "moe_ep_size": 1}
LAYER_OPS = ("llm.moe_experts_up", "llm.moe_experts_down", *LAYER_ELEMENTWISE)
HUGE = 1e6  # an efficiency that makes the roofline body vanish, so the op's time is its floor


def measured_layer() -> tuple[str, np.ndarray, np.ndarray]:
    """(distribution, token counts, layer ms) of the measured fused-MoE layer of this shape on the A100."""
    d = pd.read_csv(TABLE)
    for k, v in SHAPE.items():
        d = d[d[k] == v]
    dist = "balanced" if (d.distribution == "balanced").any() else "power_law_1.01"
    d = d[d.distribution == dist].sort_values("num_tokens")
    return dist, d.num_tokens.to_numpy(float), d.latency.to_numpy(float)


@dataclass(frozen=True)
class MeasuredMoE(ProfileWrapper):
    """The base profile, except that this shape's MoE layer takes the measured time: half on each expert GEMM."""

    tokens: tuple[float, ...] = ()
    ms: tuple[float, ...] = ()

    def layer_s(self, tokens: float) -> float:
        x = np.log(np.asarray(self.tokens))
        return float(np.interp(math.log(max(tokens, 1.0)), x, np.asarray(self.ms))) * 1e-3

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        if op.name in ("llm.moe_experts_up", "llm.moe_experts_down") and op.kind == MOE_GEMM:
            tokens = float(op.shape[0]) / SHAPE["topk"]
            return Efficiency(HUGE, HUGE, self.layer_s(tokens) / 2, "what-if:measured-fused-moe")
        if op.name in LAYER_ELEMENTWISE:
            return Efficiency(HUGE, HUGE, 0.0, "what-if:measured-fused-moe")
        return self.base.efficiency(op, hw)


def priced_layer_ms(profile, tokens: int) -> float:
    """One MoE layer of a `tokens`-token prefill on the A100 under `profile` (the five ops of the fused kernel)."""
    hw = load_hardware("a100-sxm-80gb")
    est = estimate_request(load_model("qwen3-vl-30b-a3b"), hw, images=0, prompt_tokens=tokens, output_tokens=2, tp=1)
    cm = CostModel(hw, profile)
    return sum(cm.cost(c.op).time_s for c in est.stages["prefill"].ops
               if c.op.name in LAYER_OPS) * 1e3


def main() -> None:
    if not TABLE.is_file():
        print(f"skipped: the measured table is not here ({TABLE}); it lives in ../shared")
        return
    dist, tokens, ms = measured_layer()
    base = resolve_profile(load_hardware("a100-sxm-80gb"), None)
    whatif = MeasuredMoE(base, tuple(tokens), tuple(ms))
    print(f"measured A100 fused MoE (128 experts, top-8, 2048 -> 768, bf16, {dist}):")
    for t in (16, 128, 1024, 2048):
        print(f"    {t:>5} tokens: lvlmsim {priced_layer_ms(base, t):6.3f} ms/layer, measured "
              f"{whatif.layer_s(t) * 1e3:6.3f} ms/layer")
    print(f"\n{'row':<46} {'published':>9} {'lvlmsim':>9} {'what-if':>9}   TTFT error now / what-if   "
          "TPOT now / what-if")
    for row in load_rows():
        if not row["id"].startswith("tt-340-vllm-a100-qwen3-30b-a3b"):
            continue
        a = row_args(row)
        now = run_bench(a).result
        alt = run_bench(a, profile=whatif).result
        pub = row["measured"]
        e_now = (now["mean_ttft_ms"] / pub["mean_ttft_ms"] - 1) * 100
        e_alt = (alt["mean_ttft_ms"] / pub["mean_ttft_ms"] - 1) * 100
        t_now = (now["mean_tpot_ms"] / pub["mean_tpot_ms"] - 1) * 100
        t_alt = (alt["mean_tpot_ms"] / pub["mean_tpot_ms"] - 1) * 100
        print(f"{row['id']:<46} {pub['mean_ttft_ms']:>9.1f} {now['mean_ttft_ms']:>9.1f} {alt['mean_ttft_ms']:>9.1f}"
              f"   {e_now:+7.1f}% / {e_alt:+7.1f}%          {t_now:+6.1f}% / {t_alt:+6.1f}%")


if __name__ == "__main__":
    main()
