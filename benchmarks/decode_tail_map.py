"""Where the held-out decode attention p90 tail sits: the rows above a quantile of |error|, by regime (issue 11).

    python benchmarks/decode_tail_map.py [--held b300_sxm rtx_pro_6000_server] [--seeds 0 1] [--quantile 0.8]
                                         [--table generation_attention]

Per held-out device and seed, the decode family (shipped setup, `attn_decode`) is fitted on the other three devices'
decode rows at that seed, as the leave-one-out table's fold is (`loo.load_devices(seed)`, `fit_general(seed=seed)`),
and the held-out device's rows of one decode table are priced as `auto` prices them (its kernel's behaviour
included). The tail is the rows whose |pred / meas - 1| exceeds the device's own quantile (default p80). That metric
is lopsided: a row priced too SLOW (pred > meas) can be off by any amount, one priced too FAST by at most 100%, so a
cutoff of 60% admits pred/meas > 1.6 on one side but only < 0.4 (measured 2.5x the price) on the other; `over` is
the share of tail rows priced above their measured time, and the header also gives the p90 of the symmetric
error max(pred/meas, meas/pred) - 1.

Regime axes: batch, KV length (step + 1), (sequence, KV head) items batch x kv_heads, items per SM, GQA group
(heads / kv_heads), head size, KV bytes against the datasheet L2, the priced bound (CostModel's: overhead = floor above
the body, memory, compute), and the kernel the table names (`kernel_source`; one per device in the decode tables:
A100 `vllm_flash_attn` (FA2), H100 `vllm_flash_attn_fa3` (+ 800 `..._fa4` rows at head size 512), B300
`vllm_flashinfer_trtllmdecode` (TRT-LLM-gen), RTX PRO 6000 `vllm_flash_attn_fa2`; fp8-KV rows are not loaded: the
loader keeps rows whose KV dtype is the attention dtype, so RTX PRO 6000's FlashInfer `fidecode` rows, all fp8 KV,
are out). Per axis: the cell's rows, share of all rows, share of the tail, lift (tail share / share), `over` (share
of its tail rows priced slow), the median pred/meas in the tail and overall. Then the two-way table items x KV
length (tail share, median pred/meas), which shows whether one regime carries the tail. Needs ../shared/data/measured
(never copied into the project). About 1 min per seed (table loading) plus ~10 s per fold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, kernels  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.cost.roofline import CostModel  # noqa: E402

KEY = "attn_decode"
TABLES = ("generation_attention", "generation_attention_sliding")
MIB = 2.0**20
BATCH_BINS = [0, 1, 8, 64, 512, 10**9]
BATCH_LABELS = ["1", "2-8", "9-64", "65-512", ">512"]
KV_BINS = [0, 16, 128, 1024, 8192, 10**9]
KV_LABELS = ["<=16", "17-128", "129-1024", "1025-8192", ">8192"]
ITEM_BINS = [0, 8, 64, 512, 4096, 10**9]
ITEM_LABELS = ["<=8", "9-64", "65-512", "513-4096", ">4096"]
PER_SM_BINS = [0, 0.25, 1.0, 4.0, 16.0, 1e9]
PER_SM_LABELS = ["<0.25", "0.25-1", "1-4", "4-16", ">16"]
L2_BINS = [0, 0.1, 0.5, 1.25, 4.0, 1e12]
L2_LABELS = ["<0.1 L2", "0.1-0.5 L2", "0.5-1.25 L2", "1.25-4 L2", ">4 L2"]
AXES = ("batch", "kv", "items", "items_per_sm", "group", "head_dim", "kv_l2", "bound", "kernel")


def fold_frame(devices: dict, held: str, seed: int, table: str) -> pd.DataFrame:
    """One row per held-out decode row of `table`: regime labels, pred / meas, |error| %, the fold fitted without
    `held` at `seed`."""
    train = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES])
             for n in devices if n != held}
    hw, rows = devices[held][0], [r for r in devices[held][1] if r.family == table]
    fitted = general.fit_general(train, seed=seed, families=[KEY])
    cm = CostModel(hw, kernels.with_kernel_features(fitted.profile_for(hw), hw))
    out = []
    for r in rows:
        batch, _q, kv, heads, kvh, d = r.op.shape[:6]
        cost = cm.cost(r.op)
        items = batch * kvh
        kv_bytes = 2.0 * batch * kv * kvh * d * 2.0
        out.append({"batch": batch, "kv": kv, "items": items, "items_per_sm": items / hw.sm_count,
                    "group": int(heads // max(kvh, 1)), "head_dim": int(d), "kv_l2": kv_bytes / (hw.l2_cache_mb * MIB),
                    "bound": cost.bound, "kernel": r.tag, "ratio": cost.time_s / r.measured_s,
                    "meas_us": r.measured_s * 1e6, "pred_us": cost.time_s * 1e6})
    frame = pd.DataFrame(out)
    frame["abs_err_pct"] = np.abs(frame.ratio - 1.0) * 100.0
    for col, bins, labels in (("batch", BATCH_BINS, BATCH_LABELS), ("kv", KV_BINS, KV_LABELS),
                              ("items", ITEM_BINS, ITEM_LABELS), ("items_per_sm", PER_SM_BINS, PER_SM_LABELS),
                              ("kv_l2", L2_BINS, L2_LABELS)):
        frame[col] = pd.cut(frame[col], bins, labels=labels).astype(str)
    return frame


def symmetric_p90_pct(frame: pd.DataFrame) -> float:
    """p90 of max(pred/meas, meas/pred) - 1 in %: the tail as it would read were a row priced 2x fast counted as
    far off as one priced 2x slow (|pred/meas - 1| counts the first 50%, the second 100%)."""
    return float(np.percentile(np.maximum(frame.ratio, 1.0 / frame.ratio) - 1.0, 90) * 100.0)


def axis_table(frame: pd.DataFrame, axis: str, cutoff: float) -> pd.DataFrame:
    """Per value of `axis`: rows, share, tail share, lift, over (tail rows priced slow), median pred/meas in the
    tail and overall."""
    n_tail = max(int((frame.abs_err_pct > cutoff).sum()), 1)
    out = []
    for value, g in frame.groupby(axis, observed=True):
        gt = g[g.abs_err_pct > cutoff]
        share, tail_share = len(g) / len(frame), len(gt) / n_tail
        out.append({axis: value, "rows": len(g), "share": share, "tail_share": tail_share,
                    "lift": tail_share / share, "over": (gt.ratio > 1).mean() if len(gt) else np.nan,
                    "tail_med_ratio": gt.ratio.median() if len(gt) else np.nan, "med_ratio": g.ratio.median()})
    return pd.DataFrame(out).sort_values("tail_share", ascending=False)


def pivot(frame: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """items x KV length: 'tail share / median pred/meas (rows)' per cell."""
    n_tail = max(int((frame.abs_err_pct > cutoff).sum()), 1)
    cells = {}
    for (items, kv), g in frame.groupby(["items", "kv"], observed=True):
        tail = int((g.abs_err_pct > cutoff).sum())
        cells.setdefault(kv, {})[items] = f"{tail / n_tail:.2f}/{g.ratio.median():.2f} ({len(g)})"
    table = pd.DataFrame(cells).reindex(index=ITEM_LABELS, columns=KV_LABELS)
    return table.astype(object).fillna("-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held", nargs="+", default=["b300_sxm", "rtx_pro_6000_server"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--quantile", type=float, default=0.8)
    ap.add_argument("--table", choices=TABLES, default=TABLES[0])
    ap.add_argument("--axis", action="append", choices=AXES, help="default: all")
    args = ap.parse_args()
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    pd.set_option("display.width", 250)
    for seed in args.seeds:
        devices = load_devices(measured / "aiconfigurator" / "data", seed=seed)
        for held in args.held:
            frame = fold_frame(devices, held, seed, args.table)
            cutoff = float(frame.abs_err_pct.quantile(args.quantile))
            tail = frame[frame.abs_err_pct > cutoff]
            print(f"\n=== {held} held out, seed {seed}, {args.table}: {len(frame)} rows, median "
                  f"{frame.abs_err_pct.median():.1f}%, p90 {frame.abs_err_pct.quantile(0.9):.1f}%, "
                  f"p{100 * args.quantile:g} cutoff {cutoff:.1f}%; tail {len(tail)} rows, "
                  f"{100 * (tail.ratio > 1).mean():.0f}% priced slow (pred > meas); symmetric p90 "
                  f"{symmetric_p90_pct(frame):.1f}%")
            for axis in args.axis or AXES:
                print(f"\n{held} s{seed} tail by {axis}:")
                print(axis_table(frame, axis, cutoff).round(2).to_string(index=False))
            print(f"\n{held} s{seed} items x KV length: tail share / median pred/meas (rows)")
            print(pivot(frame, cutoff).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
