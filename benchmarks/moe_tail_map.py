"""Where each held-out device's MoE p90 tail sits: the rows above the device's p90 |error| cutoff, by regime.

    python benchmarks/moe_tail_map.py [--data ../shared/data/measured/aiconfigurator/data] [--quantile 0.9]
                                      [--min-lift 1.5] [--axis NAME ...]

Each device is scored with the fold of calibration/profiles/general/moe.json that held it out (as `lvlmsim validate`
and benchmarks/moe_residual_map.py do), on its fastest kernel per configuration (the headline rows). The tail is the
rows whose |error| is above the device's own quantile (default p90). For each regime axis (tokens, top-k, experts,
hidden, expert width per GPU, dtype, kernel_source, EP, routing distribution, rows per touched expert, the priced
bound of the row: launch floor / weight read / compute) one table per device: the cell's share of all rows, its share
of the tail, lift (tail share / row share), the share of its tail rows that run SLOWER than priced (sign), its median
log(measured / predicted) in the tail and overall. A last table lists, per axis value, the lift on every device, so a
regime common to all four tails shows as a row with lift > --min-lift on each; then the lift of every value of the
PIVOT_AXES side by side per device. |error| is |predicted / measured - 1|, so the p90 cutoff (about 40-45%) sits at
measured/priced 1.7x on the slow side but 0.7x on the fast side. About 60 s (table loading).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import PARAM_NAMES, fit_file, load_fit, load_moe_table, params_for, predict  # noqa: E402
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402

TOKEN_BINS = [0, 4, 16, 64, 256, 1024, 4096, 10**9]
TOKEN_LABELS = ["1-4", "5-16", "17-64", "65-256", "257-1024", "1025-4096", ">4096"]
ROWS_PER_EXPERT_BINS = [0, 1, 4, 16, 64, 128, 512, 10**9]
ROWS_PER_EXPERT_LABELS = ["<=1", "2-4", "5-16", "17-64", "65-128", "129-512", ">512"]
AXES = ("tokens", "topk", "experts", "hidden", "n_local", "dtype", "source", "ep", "distribution",
        "rows_per_expert", "bound")
PIVOT_AXES = ("tokens", "distribution", "topk", "ep", "rows_per_expert", "bound")


def priced_bound(params: list[float], data, hw) -> np.ndarray:
    """Which term dominates the priced time of each row: the launch floor, weight/activation traffic, or compute.
    Read off the shipped `predict` by switching terms off (no floor; unlimited bandwidth), not re-derived here."""
    p = dict(zip(PARAM_NAMES, params, strict=True))
    total = predict(params, data, hw)
    no_floor = predict([*params[:-1], 0.0], data, hw)
    compute_only = predict([*(p[n] if n != "em" else 1e9 for n in PARAM_NAMES[:-1]), 0.0], data, hw)
    floor = total - no_floor
    memory = no_floor - compute_only
    return np.select([floor >= np.maximum(memory, compute_only), memory >= compute_only],
                     ["launch floor", "memory"], "compute")


def tail_frame(data_root: Path, gpu: str, hw) -> pd.DataFrame:
    """One row per fastest-kernel configuration with its held-out |error| %, log ratio and regime labels."""
    params, _ = params_for(load_fit(fit_file(profiles_dir())), hw.id)
    data = load_moe_table(data_root / gpu, hw)
    ratio = data.measured_s / predict(params, data, hw)
    return pd.DataFrame({
        "tokens": pd.cut(data.tokens, TOKEN_BINS, labels=TOKEN_LABELS).astype(str), "topk": data.topk,
        "experts": data.experts, "hidden": data.hidden, "n_local": data.inter_local, "dtype": data.table_dtype,
        "source": [s.removeprefix("vllm_").replace("flashinfer_", "fi_") for s in data.source], "ep": data.ep,
        "distribution": data.distribution,
        "rows_per_expert": pd.cut(data.rows_per_expert, ROWS_PER_EXPERT_BINS,
                                  labels=ROWS_PER_EXPERT_LABELS).astype(str),
        "bound": priced_bound(params, data, hw),
        "abs_err_pct": np.abs(1.0 / ratio - 1.0) * 100.0, "log_ratio": np.log(ratio)})


def axis_table(frame: pd.DataFrame, axis: str, cutoff_pct: float) -> pd.DataFrame:
    """Per value of `axis`: share of rows, share of the tail, lift, slower-than-priced share of its tail rows, and
    its median log ratio in the tail and overall."""
    tail = frame.abs_err_pct > cutoff_pct
    out = []
    for value, g in frame.groupby(axis, observed=True):
        gt = g[g.abs_err_pct > cutoff_pct]
        share, tail_share = len(g) / len(frame), len(gt) / max(int(tail.sum()), 1)
        out.append({axis: value, "rows": len(g), "share": share, "tail_share": tail_share,
                    "lift": tail_share / share, "tail_slow": (gt.log_ratio > 0).mean() if len(gt) else np.nan,
                    "tail_med_log": gt.log_ratio.median() if len(gt) else np.nan,
                    "med_log": g.log_ratio.median()})
    return pd.DataFrame(out).sort_values("tail_share", ascending=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--quantile", type=float, default=0.9, help="tail cutoff quantile of |error| (default 0.9)")
    ap.add_argument("--min-lift", type=float, default=1.5, help="lift that marks a value over-represented")
    ap.add_argument("--axis", action="append", choices=AXES, help="default: all")
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    axes = args.axis or AXES
    lifts: dict[str, pd.DataFrame] = {}
    for gpu, ref in DEVICE_FOLDERS.items():
        hw = load_hardware(ref)
        f = tail_frame(Path(args.data), gpu, hw)
        cutoff = float(f.abs_err_pct.quantile(args.quantile))
        tail = f[f.abs_err_pct > cutoff]
        print(f"\n=== {hw.id}: {len(f)} rows, median {f.abs_err_pct.median():.1f}%, p{100 * args.quantile:g} "
              f"{cutoff:.1f}%; tail {len(tail)} rows, {100 * (tail.log_ratio > 0).mean():.0f}% slower than priced")
        for axis in axes:
            t = axis_table(f, axis, cutoff)
            print(f"\n{hw.id} tail by {axis}:")
            print(t.round(3).to_string(index=False))
            lifts[hw.id] = pd.concat([lifts.get(hw.id, pd.DataFrame()),
                                      t.assign(axis=axis, value=t[axis].astype(str))[["axis", "value", "lift",
                                                                                       "tail_share", "tail_slow"]]])
    print(f"\n=== values over-represented (lift > {args.min_lift:g}) in the tail of every device that has them")
    keyed = {d: t.set_index(["axis", "value"]) for d, t in lifts.items()}
    index = sorted(set().union(*(t.index for t in keyed.values())))
    rows = []
    for key in index:
        cells = {d: t.loc[key] for d, t in keyed.items() if key in t.index}
        if len(cells) >= 2 and all(c.lift > args.min_lift for c in cells.values()):
            rows.append({"axis": key[0], "value": key[1], "devices": len(cells),
                         **{f"{d} lift/tail/slow": f"{c.lift:.1f}/{c.tail_share:.2f}/{c.tail_slow:.2f}"
                            for d, c in cells.items()}})
    print(pd.DataFrame(rows).to_string(index=False) if rows else "none")
    for axis in (a for a in PIVOT_AXES if a in axes):
        print(f"\n=== tail lift (share of the cell's tail rows slower than priced) by {axis}, every device")
        print(pd.DataFrame({d: {v: f"{c.lift:.2f} ({c.tail_slow:.2f})" for (a, v), c in t.iterrows() if a == axis}
                            for d, t in keyed.items()}).fillna("-").to_string())


if __name__ == "__main__":
    main()
