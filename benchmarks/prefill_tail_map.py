"""Where the held-out prefill and ViT encoder attention p90 tails sit (issue 11): the rows beyond a quantile of |error|.

    python benchmarks/prefill_tail_map.py [--seeds 0,1] [--devices b300_sxm,rtx_pro_6000_server] [--quantile 0.8]
                                          [--axis NAME ...] [--table NAME ...]

For each subsample seed and held-out device, the general model's `attn_prefill` and `attn_encoder` families are fitted
on the other three devices (as one fold of `lvlmsim validate --leave-one-out` at that seed: the same table subsample,
the same fit) and price the held-out device's rows of each attention table (context_attention, its sliding-window
rows, encoder_attention) as `auto` does (kernel features included). The tail is the rows whose |error| is above the
table's own quantile (default p80). For each regime axis (batch, tokens per sequence, batch x heads, heads, KV heads
or the GQA group, head size, window, dtype, the kernel that ran the row - the tables' kernel_source - and the priced
bound: floor / memory / compute) a table: the value's share of the rows, its share of the tail, lift (tail share /
row share), the share of its tail rows that run SLOWER than priced (pred < meas), its median log(measured /
predicted) in the tail and overall. Then the one two-axis cell (tokens x batch x heads) that carries the largest
share of the tail, per device and table, and the p90 of |error| the table would have without that cell's rows.

|error| = |predicted / measured - 1| is lopsided: a row priced 2x slow counts 100%, 2x fast 50%; the p80 cut sits
at measured / priced 1/(1 + cut) on the slow-priced side but 1/(1 - cut) on the fast-priced side. Needs
../shared/data/measured. About 40 s per seed (table loading and two fits per held-out device).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.kernels import with_kernel_features  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.measured import Measurement  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.cost.profile import EfficiencyProfile  # noqa: E402
from lvlmsim.cost.roofline import CostModel  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402

FAMILIES = ("attn_prefill", "attn_encoder")
TABLES = ("context_attention", "context_attention_sliding", "encoder_attention")
TOKEN_BINS = [0, 1, 16, 64, 256, 1024, 4096, 10**9]
TOKEN_LABELS = ["1", "2-16", "17-64", "65-256", "257-1024", "1025-4096", ">4096"]
ITEM_BINS = [0, 1, 8, 64, 512, 4096, 10**9]
ITEM_LABELS = ["1", "2-8", "9-64", "65-512", "513-4096", ">4096"]
AXES = ("batch", "tokens", "bh", "heads", "group", "head_dim", "window", "dtype", "kernel", "bound")
CELL = ("tokens", "bh")


def priced(rows: list[Measurement], hw: HardwareSpec, prof: EfficiencyProfile) -> tuple[np.ndarray, np.ndarray]:
    """(predicted seconds, priced bound) of each row through the real CostModel: the bound is what sets the time,
    the per-kernel floor (`overhead`) where it exceeds both the compute and the memory time."""
    cm = CostModel(hw, prof)
    costs = [cm.cost(r.op) for r in rows]
    return np.array([c.time_s for c in costs]), np.array([str(c.bound) for c in costs])


def fold_frame(devices: dict, held: str) -> pd.DataFrame:
    """One row per held-out attention row of `held`: regime labels, |error| %, log(measured / predicted)."""
    train = {devices[n][0].id: devices[n] for n in devices if n != held}
    model = general.fit_general(train, families=list(FAMILIES))
    hw = devices[held][0]
    prof = with_kernel_features(model.profile_for(hw), hw)
    parts = []
    for table in TABLES:
        rows = [r for r in devices[held][1] if r.family == table]
        if not rows:
            continue
        pred, bound = priced(rows, hw, prof)
        meas = np.array([r.measured_s for r in rows])
        shape = np.array([r.op.shape[:6] for r in rows], dtype=float)
        batch, q, heads, kvh, d = shape[:, 0], shape[:, 1], shape[:, 3], shape[:, 4], shape[:, 5]
        parts.append(pd.DataFrame({
            "table": table, "batch": batch.astype(int), "q": q.astype(int),
            "tokens": pd.cut(q, TOKEN_BINS, labels=TOKEN_LABELS).astype(str),
            "bh": pd.cut(batch * heads, ITEM_BINS, labels=ITEM_LABELS).astype(str),
            "heads": heads.astype(int), "kv_heads": kvh.astype(int),
            "group": np.where(kvh > 0, heads / np.maximum(kvh, 1), 1).round(1),
            "head_dim": d.astype(int), "window": [r.op.window_tokens or 0 for r in rows],
            "dtype": [r.op.dtype for r in rows], "kernel": [r.tag.removeprefix("vllm_") for r in rows],
            "bound": bound, "meas_us": meas * 1e6, "pred_us": pred * 1e6,
            "abs_err_pct": np.abs(pred / meas - 1.0) * 100.0, "log_ratio": np.log(meas / pred)}))
    return pd.concat(parts, ignore_index=True)


def axis_table(frame: pd.DataFrame, axis: str, cutoff_pct: float) -> pd.DataFrame:
    """Per value of `axis`: rows, share, tail share, lift, slow share of its tail rows, median log ratios."""
    tail = frame.abs_err_pct > cutoff_pct
    out = []
    for value, g in frame.groupby(axis, observed=True):
        gt = g[g.abs_err_pct > cutoff_pct]
        share, tail_share = len(g) / len(frame), len(gt) / max(int(tail.sum()), 1)
        out.append({axis: value, "rows": len(g), "share": share, "tail_share": tail_share,
                    "lift": tail_share / share, "tail_slow": (gt.log_ratio > 0).mean() if len(gt) else np.nan,
                    "tail_med_log": gt.log_ratio.median() if len(gt) else np.nan, "med_log": g.log_ratio.median()})
    return pd.DataFrame(out).sort_values("tail_share", ascending=False)


def top_cell(frame: pd.DataFrame, cutoff_pct: float) -> str:
    """The (tokens, batch x heads) cell with the largest share of the tail, and the table's p90 without that cell."""
    tail = frame[frame.abs_err_pct > cutoff_pct]
    counts = tail.groupby(list(CELL)).size().sort_values(ascending=False)
    (tok, bh), n = counts.index[0], int(counts.iloc[0])
    cell = (frame.tokens == tok) & (frame.bh == bh)
    g = frame[cell]
    rest = frame[~cell].abs_err_pct
    return (f"largest tail cell: tokens {tok} x batch*heads {bh}: {n} of {len(tail)} tail rows "
            f"({100 * n / len(tail):.0f}%), {len(g)} rows, median log(meas/pred) {g.log_ratio.median():+.2f}; "
            f"table p90 {np.percentile(frame.abs_err_pct, 90):.1f}% -> {np.percentile(rest, 90):.1f}% without it")


def report(frame: pd.DataFrame, label: str, quantile: float, axes: tuple[str, ...]) -> None:
    for table, f in frame.groupby("table", sort=False):
        cutoff = float(f.abs_err_pct.quantile(quantile))
        tail = f[f.abs_err_pct > cutoff]
        print(f"\n=== {label} {table}: {len(f)} rows, median {f.abs_err_pct.median():.1f}%, "
              f"p90 {np.percentile(f.abs_err_pct, 90):.1f}%, p{100 * quantile:g} {cutoff:.1f}%; tail {len(tail)} "
              f"rows, {100 * (tail.log_ratio > 0).mean():.0f}% slower than priced (measured > predicted)")
        print(top_cell(f, cutoff))
        for axis in axes:
            print(f"\n{label} {table} tail by {axis}:")
            print(axis_table(f, axis, cutoff).round(3).to_string(index=False))
        worst = tail.reindex(tail.abs_err_pct.sort_values(ascending=False).index).head(8)
        print(f"\n{label} {table} worst rows:")
        print(worst[["batch", "q", "heads", "kv_heads", "head_dim", "window", "kernel", "bound", "meas_us",
                     "pred_us", "abs_err_pct"]].round(1).to_string(index=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1", help="comma-separated subsample seeds (default 0,1)")
    ap.add_argument("--devices", default="b300_sxm,rtx_pro_6000_server", help="held-out device folders")
    ap.add_argument("--quantile", type=float, default=0.8, help="tail cutoff quantile of |error| (default 0.8)")
    ap.add_argument("--axis", action="append", choices=AXES, help="default: all")
    ap.add_argument("--table", action="append", choices=TABLES, help="default: all")
    args = ap.parse_args()
    if not 0.0 < args.quantile < 1.0:
        print("--quantile: must lie strictly between 0 and 1, e.g. 0.8")
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        print("--seeds: a comma-separated list of integers, e.g. 0,1")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    pd.set_option("display.width", 250)
    for seed in seeds:
        devices = load_devices(measured / "aiconfigurator" / "data", seed=seed)
        held = [d for d in args.devices.split(",") if d]
        unknown = [d for d in held if d not in devices]
        if unknown:
            print(f"--devices: unknown folder(s) {', '.join(unknown)}; known: {', '.join(devices)}")
            return 2
        for dev in held:
            frame = fold_frame(devices, dev)
            if args.table:
                frame = frame[frame.table.isin(args.table)]
            report(frame, f"{dev} seed {seed}", args.quantile, tuple(args.axis or AXES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
