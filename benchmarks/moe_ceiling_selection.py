"""Block-scaled fp8's compute ceiling: its own (shipped until round 5) or the per-tensor fp8 one, chosen by nested LOO.

    python benchmarks/moe_ceiling_selection.py [--data ../shared/data/measured/aiconfigurator/data] [--fit-rows 3000]

The MoE model prices each dtype class against its own fitted fraction of the datasheet peak (lvlmsim.calibrate.moe:
bf16, per-tensor fp8, block-scaled fp8, nvfp4). Block-scaled fp8 runs the same fp8 tensor-core MMA as per-tensor fp8;
what it adds is one fp32 scale per 128 x 128 weight block and one per 128 activation values (bytes the model already
counts) and the rescale of the partial sums at each 128-wide K step. Only H100 (vLLM's Triton and FlashInfer's
CUTLASS block-fp8 MoE) and B300 (TRT-LLM's) have block-scaled rows, so with a ceiling of its own each of those two
folds learns block fp8 from the other device alone. The candidates:

- free: its own ceiling (`fit_moe(...)`, the model until round 5);
- tied: the per-tensor fp8 ceiling for both (`fit_moe(..., tie_block_fp8=True)`), one parameter fewer.

For each held-out device the choice is made by a leave-one-device-out over its three training devices only (fit on
two, median |error| on the third, averaged), refitted on the three and reported on the held-out device, so the outer
figures are honest. Prints the inner scores, the choice per fold, the held-out median / p90 of each candidate and of
the nested choice, and the held-out median per kernel_source of the fp8 kernels. About 3 min.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moe_nested import device_hardware, moe_parser  # noqa: E402

from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import fit_moe, load_moe_table, predict, sample  # noqa: E402

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo
CANDIDATES = {"free": False, "tied": True}


def abs_err_pct(params, data, hw) -> np.ndarray:
    return np.abs(predict(params, data, hw) / data.measured_s - 1.0) * 100.0


def fit(tables: dict, hws: dict, devices: list[str], tied: bool, fit_rows: int, seed: int) -> list[float]:
    return fit_moe([(sample(tables[g], fit_rows, seed), hws[g]) for g in devices], tie_block_fp8=tied)


def inner_score(tables: dict, hws: dict, train: list[str], tied: bool, fit_rows: int, seed: int) -> float:
    """Mean over the training devices of the median |error| of a fit on the other two."""
    return float(np.mean([np.median(abs_err_pct(fit(tables, hws, [g for g in train if g != val], tied, fit_rows,
                                                    seed), tables[val], hws[val])) for val in train]))


def main() -> None:
    ap = moe_parser(__doc__)
    args = ap.parse_args()
    t0 = time.perf_counter()
    hws = device_hardware()
    tables = {g: load_moe_table(Path(args.data) / g, hws[g]) for g in DEVICES}
    print(f"loaded {len(tables)} tables in {time.perf_counter() - t0:.0f} s")
    print(f"{'held out':<22}{'inner free':>11}{'inner tied':>11}{'chosen':>8}"
          f"{'free med/p90':>15}{'tied med/p90':>15}{'nested med/p90':>16}  fp8 kernel_source median % free / tied")
    for held in DEVICES:
        train = [g for g in DEVICES if g != held]
        inner = {c: inner_score(tables, hws, train, tied, args.fit_rows, args.seed) for c, tied in CANDIDATES.items()}
        chosen = min(inner, key=inner.get)
        data, hw = tables[held], hws[held]
        errs = {c: abs_err_pct(fit(tables, hws, train, tied, args.fit_rows, args.seed), data, hw)
                for c, tied in CANDIDATES.items()}
        cells = {c: f"{np.median(e):.2f}/{np.percentile(e, 90):.1f}" for c, e in errs.items()}
        per_src = "; ".join(f"{s.removeprefix('vllm_')[:34]} {np.median(errs['free'][data.source == s]):.1f} / "
                            f"{np.median(errs['tied'][data.source == s]):.1f}"
                            for s in sorted(set(data.source)) if "fp8" in s)
        print(f"{hw.id:<22}{inner['free']:>11.2f}{inner['tied']:>11.2f}{chosen:>8}{cells['free']:>15}"
              f"{cells['tied']:>15}{cells[chosen]:>16}  {per_src}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
