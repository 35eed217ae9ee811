"""Residual map of the MoE fit per held-out device: which cells push a device's median |error| over the target.

    python benchmarks/moe_residual_map.py [--data ../shared/data/measured/aiconfigurator/data] [--every-kernel]
                                          [--target 15] [--top 12] [--axis NAME ...]

Each device is scored with the fold of calibration/profiles/general/moe.json that held it out (as `lvlmsim validate`
does), on its fastest kernel per configuration (the headline rows) or, with --every-kernel, on every kernel's rows.
For each axis (kernel_source, dtype, token bucket, routing distribution, EP, experts, top-k, expert width per GPU N,
shape, the layer call's bytes over the device's L2 `ws_l2`, and `bound`: the term that is more than half the priced
time, launch floor / memory, else compute) one table per device: rows, share of the device's rows, median |error| %,
median log(measured / predicted) (+ slower than priced), the share of the cell's rows above the target, the share of
ALL the device's rows above the target that the cell holds, and the device's median |error| without the cell
("drop": how far removing it moves the headline; the cells that push a device over the target are those with the
largest drop). A last table ranks the kernel_source x token-bucket cells of every device by that drop. About 20 s
(table loading).
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

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo
TOKEN_BINS = [0, 4, 16, 64, 256, 1024, 4096, 10**9]
TOKEN_LABELS = ["1-4", "5-16", "17-64", "65-256", "257-1024", "1025-4096", ">4096"]
WS_BINS = [0, 0.25, 0.5, 1, 2, 4, np.inf]  # the layer call's bytes over the device's L2
WS_LABELS = ["<0.25 L2", "0.25-0.5 L2", "0.5-1 L2", "1-2 L2", "2-4 L2", ">4 L2"]
AXES = ("source", "dtype", "tokens", "distribution", "ep", "experts", "topk", "n_local", "shape", "ws_l2", "bound")


def short_source(src: str) -> str:
    """kernel_source without the common 'vllm_' prefix and '_flashinfer' noise, for narrow tables."""
    return src.removeprefix("vllm_").replace("flashinfer_", "fi_").replace("experts", "x")


def residual_frame(data_root: Path, gpu: str, hw, every_kernel: bool) -> pd.DataFrame:
    """One row per measured configuration (or kernel) with its held-out |error| % and log ratio."""
    params, _ = params_for(load_fit(fit_file(profiles_dir())), hw.id)
    data = load_moe_table(data_root / gpu, hw, every_kernel=every_kernel)
    pred = predict(params, data, hw)
    ratio = data.measured_s / pred
    p = dict(zip(PARAM_NAMES, params, strict=True))
    nbytes = data.bytes_up + data.bytes_down + data.ew_bytes
    floor_s, mem_s = p["floor_s"] * data.launches, nbytes / (p["em"] * hw.mem_bw_bytes_per_s)
    bound = np.where(floor_s > pred / 2, "launch floor", np.where(mem_s > pred / 2, "memory", "compute"))
    return pd.DataFrame({
        "source": [short_source(s) for s in data.source], "dtype": data.table_dtype,
        "tokens": pd.cut(data.tokens, TOKEN_BINS, labels=TOKEN_LABELS).astype(str),
        "distribution": data.distribution, "ep": data.ep, "experts": data.experts, "topk": data.topk,
        "n_local": data.inter_local,
        "shape": [f"{h}/{n} E{e} k{k}" for h, n, e, k in zip(data.hidden, data.inter_local, data.experts, data.topk,
                                                            strict=True)],
        "ws_l2": pd.cut(nbytes / (float(hw.l2_cache_mb or np.inf) * 1e6), WS_BINS, labels=WS_LABELS).astype(str),
        "bound": bound, "abs_err_pct": np.abs(1.0 / ratio - 1.0) * 100.0, "log_ratio": np.log(ratio)})


def cell_table(frame: pd.DataFrame, keys: list[str], target_pct: float) -> pd.DataFrame:
    """Per cell of `keys`: rows, share, median |err|, median log ratio, share above target, share of the device's
    above-target rows, and the device's median |err| without the cell."""
    over = frame.abs_err_pct > target_pct
    n_over = max(int(over.sum()), 1)
    out = []
    for key, g in frame.groupby(keys, observed=True):
        rest = frame.abs_err_pct[~frame.index.isin(g.index)]
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                    "rows": len(g), "share": len(g) / len(frame), "median_pct": g.abs_err_pct.median(),
                    "med_log_ratio": g.log_ratio.median(), "over_target": (g.abs_err_pct > target_pct).mean(),
                    "of_all_over": (g.abs_err_pct > target_pct).sum() / n_over,
                    "median_without": rest.median() if len(rest) else float("nan")})
    table = pd.DataFrame(out)
    table["drop"] = frame.abs_err_pct.median() - table.median_without
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--every-kernel", action="store_true", help="every kernel's rows, not the fastest per config")
    ap.add_argument("--target", type=float, default=15.0, help="target median |error| %% (default 15)")
    ap.add_argument("--top", type=int, default=12, help="cells per table (by drop), 0 for all")
    ap.add_argument("--axis", action="append", choices=AXES, help="default: all")
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    frames = {}
    for gpu, ref in DEVICES.items():
        hw = load_hardware(ref)
        frames[hw.id] = residual_frame(Path(args.data), gpu, hw, args.every_kernel)
        f = frames[hw.id]
        print(f"\n=== {hw.id}: {len(f)} rows, held-out median {f.abs_err_pct.median():.1f}% "
              f"(p90 {f.abs_err_pct.quantile(0.9):.1f}%), {100 * (f.abs_err_pct > args.target).mean():.0f}% of rows "
              f"above {args.target:g}%")
        for axis in args.axis or AXES:
            t = cell_table(f, [axis], args.target).sort_values("drop", ascending=False)
            print(f"\n{hw.id} by {axis}:")
            print((t.head(args.top) if args.top else t).round(3).to_string(index=False))
    print("\n=== kernel_source x token bucket, every device, ranked by the drop of the device's median without it")
    ranked = pd.concat([cell_table(f, ["source", "tokens"], args.target).assign(device=d) for d, f in frames.items()])
    ranked = ranked.sort_values("drop", ascending=False)
    cols = ["device", "source", "tokens", "rows", "share", "median_pct", "med_log_ratio", "of_all_over",
            "median_without", "drop"]
    print(ranked[cols].head(args.top * 3 if args.top else len(ranked)).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
