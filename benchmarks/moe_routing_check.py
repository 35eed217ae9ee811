"""Does lvlmsim reproduce the load aiconfigurator's routing generators put on the timed GPU? Per shape and alpha.

    python benchmarks/moe_routing_check.py [--tokens 1,4,16,64,256,1024,4096,16384] [--ep 1,8]

The collectors (collector/helper.py `power_law_logits_v3`, ai-dynamo/aiconfigurator; the same generator in every
collector version the search index holds) draw each expert's weight from a power law on [1, 0.8 T] ([0.01, 2] while
T*k <= E), scale to T*k rows, round, hand the remainder to the busiest experts, swap the busiest EP group to rank 0,
deal the counts out as a [k, T] grid (`expert_assignments.reshape(topk, T).T`), turn each token's row into router
logits (one-hot sum, softmax) and pick k experts again with torch.topk. lvlmsim.calibrate.moe.routing_counts
reproduces those steps; this script prints, for the table's (E, k) shapes, per alpha and token count, the mean over
ROUTING_DRAWS draws of: the rows of the most loaded expert on the timed GPU, the distinct experts it touches and its
rows, first from the generator's counts as drawn and then after the top-k round trip (an expert dealt more than T rows
appears twice in some token's row and loses those picks to zero-logit experts, lowest index first), and the share of
all T*k rows the round trip moves. The last column is the operator graph's mean-load count of the
experts touched per GPU under `--moe-skew alpha` (lvlmsim.ops.graph.experts_touched, what `estimate` prices).
About 3 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate.moe import routing_counts  # noqa: E402
from lvlmsim.ops.graph import experts_touched  # noqa: E402

# (experts, top-k, model) of the tables' MoE shapes
SHAPES = ((8, 2, "Mixtral"), (16, 1, "Llama-4 Scout"), (128, 8, "Qwen3-30B/235B"), (160, 8, "Qwen3-480B"),
          (256, 8, "DeepSeek-V3"), (384, 8, "Kimi-K2"), (512, 22, "Nemotron-3 Super"))
ALPHAS = ("power_law_1.01", "power_law_1.2")


def load_stats(counts: np.ndarray) -> tuple[float, float, float]:
    """(rows of the busiest expert, distinct experts touched, rows) on the timed GPU, mean over draws."""
    return float(counts.max(axis=1).mean()), float((counts > 0).sum(axis=1).mean()), float(counts.sum(axis=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="1,4,16,64,256,1024,4096,16384")
    ap.add_argument("--ep", default="1,8")
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    eps = [int(e) for e in args.ep.split(",")]
    print(f"{'shape':<24}{'dist':<16}{'ep':>4}{'T':>7}  {'busiest':>16}  {'touched':>14}  {'rows':>18}"
          f"{'moved %':>9}{'graph touched':>15}")
    print(f"{'':<51}{'drawn -> top-k':>16}  {'drawn -> top-k':>14}  {'drawn -> top-k':>18}")
    for experts, topk, name in SHAPES:
        for ep in (e for e in eps if experts % e == 0):
            for dist in ALPHAS:
                for t in tokens:
                    drawn = routing_counts(t, experts, topk, ep, dist, round_trip=False)
                    after = routing_counts(t, experts, topk, ep, dist)
                    glob_d = routing_counts(t, experts, topk, 1, dist, round_trip=False)
                    glob_a = routing_counts(t, experts, topk, 1, dist)
                    moved = np.abs(glob_a - glob_d).sum(axis=1).mean() / 2 / (t * topk) * 100
                    (bd, td, rd), (ba, ta, ra) = load_stats(drawn), load_stats(after)
                    graph = experts_touched(experts, topk, t, skew=float(dist.removeprefix('power_law_'))) / ep
                    print(f"{f'{name} E{experts} k{topk}':<24}{dist:<16}{ep:>4}{t:>7}  {bd:>7.1f} -> {ba:<6.1f}"
                          f"  {td:>5.1f} -> {ta:<6.1f}  {rd:>8.1f} -> {ra:<8.1f}{moved:>8.1f}{graph:>15.1f}")


if __name__ == "__main__":
    main()
