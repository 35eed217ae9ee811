"""Where the GEMM family's IN-SAMPLE residual lives, by device x dtype x regime (issue 11).

    python benchmarks/gemm_residual_map.py              # in-sample map (~1 min on the shared machine)
    python benchmarks/gemm_residual_map.py --held-out   # also each device's leave-one-out residuals (~1 min)
    python benchmarks/gemm_residual_map.py --variant gemm=gemm+l2   # a family key fitted with another form variant
    python benchmarks/gemm_residual_map.py --held-out --carriers     # only the cells that carry each median

The GEMM families (bf16, fp8, NVFP4) are fitted on all four devices with the shipped setup (in-sample: the form's
capacity, not its transfer) and every device's rows are priced. Rows are labelled by regime:
- m: token count 1-16 (GEMV-like), 17-128, 129-1024, > 1024;
- n, k: output features and reduction length, <= 1024, 1025-8192, > 8192;
- ai: arithmetic intensity FLOPs / bytes against the ridge point peak[dtype] / bandwidth (memory < 0.5, ridge 0.5-2,
  compute > 2);
- l2: the op's bytes against the datasheet L2 (< 0.5, 0.5-2, > 2 x L2);
- align: m a multiple of 16 (or m <= 16) and n, k powers of two ("pow2"), n or k not ("npow2"), odd m ("odd-m");
- tiles: output tiles of 128 x 128 against the SM count (< SMs / 4, < SMs, >= SMs).
One table per regime axis: per device and dtype the rows, median |error|, median signed error (pred / meas - 1) and
the share of rows above 8%; then the cells of the full cross product that hold the most rows above 8% (pooled over
devices per dtype, with each device's signed bias there). Then, per device over all its GEMM rows (all dtypes, as
the leave-one-out table's GEMM column pools them), the cells of dtype x m x ai that carry its median |error|: each
cell's share of the device's rows, its median |error| and signed error, and the device's median |error| were that
cell's rows priced exactly (`if exact`; the cells whose removal lowers the median most first). --carriers prints only
that table. Figures in %. Needs ../shared/data/measured.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general, model  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

KEYS = ["gemm", "gemm.fp8", "gemm.fp4"]
DTYPES = ("bf16", "fp8", "fp4")
TARGET_PCT = 8.0
AXES = ("m", "n", "k", "ai", "l2", "align", "tiles")
CROSS_AXES = ("m", "ai", "l2", "align", "tiles")  # the cross product worst_cells ranks (n and k would split it thin)
SHORT = {"a100_sxm": "A100", "h100_sxm": "H100", "b300_sxm": "B300", "rtx_pro_6000_server": "RTX"}
LABELS = {"m": ("1-16", "17-128", "129-1024", ">1024"), "n": ("<=1024", "1025-8192", ">8192"),
          "k": ("<=1024", "1025-8192", ">8192"), "ai": ("memory", "ridge", "compute"),
          "l2": ("<0.5 L2", "0.5-2 L2", ">2 L2"), "align": ("pow2", "npow2", "odd-m"),
          "tiles": ("<SMs/4", "<SMs", ">=SMs")}


def _bucket(x: float, edges: tuple[float, ...], labels: tuple[str, ...]) -> str:
    for edge, label in zip(edges, labels, strict=False):
        if x < edge:
            return label
    return labels[-1]


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def regime_labels(op, hw) -> dict[str, str]:
    """The regime cell of one GEMM op on one device, one label per axis of AXES."""
    m, n, k = (int(v) for v in op.shape[:3])
    peak = hw.peak_tflops.get(op.dtype) or hw.peak_tflops["bf16"]
    ridge = peak * 1e12 / (hw.mem_bw_gbps * 1e9)
    tiles = math.ceil(m / 128) * math.ceil(n / 128)
    sms = hw.sm_count or 132
    if m > 16 and m % 16:
        align = "odd-m"
    else:
        align = "pow2" if _pow2(n) and _pow2(k) else "npow2"
    return {
        "m": _bucket(m, (17, 129, 1025), LABELS["m"]),
        "n": _bucket(n, (1025, 8193), LABELS["n"]),
        "k": _bucket(k, (1025, 8193), LABELS["k"]),
        "ai": _bucket(op.flops / op.bytes / ridge, (0.5, 2.0), LABELS["ai"]),
        "l2": _bucket(op.bytes / (hw.l2_cache_mb * 1e6), (0.5, 2.0), LABELS["l2"]),
        "align": align,
        "tiles": _bucket(tiles / sms, (0.25, 1.0), LABELS["tiles"]),
    }


def residuals(model, devices: dict) -> dict[str, dict]:
    """device folder -> {'signed': pred/meas - 1 (%), 'dtype', one label array per axis}, priced by `model`."""
    out = {}
    for name, (hw, rows) in devices.items():
        prof = model(name).profile_for(hw)
        meas = np.array([r.measured_s for r in rows])
        signed = (cost_model_times(rows, hw, prof) / meas - 1.0) * 100.0
        labels = [regime_labels(r.op, hw) for r in rows]
        out[name] = {"signed": signed, "dtype": np.array([r.op.dtype for r in rows]),
                     **{ax: np.array([lab[ax] for lab in labels]) for ax in AXES}}
    return out


def _cell(signed: np.ndarray) -> str:
    if not len(signed):
        return "-"
    err = np.abs(signed)
    return f"{len(err)}: {np.median(err):.1f} ({np.median(signed):+.1f}) {100 * np.mean(err > TARGET_PCT):.0f}%"


def axis_table(res: dict, axis: str) -> list[str]:
    """Per device x dtype, one column per label of `axis`: 'rows: median |err| (median signed) share > 8%'."""
    present = {lab for r in res.values() for lab in r[axis]}
    labels = [lab for lab in LABELS[axis] if lab in present]
    out = [f"\n### by {axis}   (cell: rows: median |err| (median signed) share of rows > {TARGET_PCT:.0f}%)",
           "| device | dtype | all | " + " | ".join(labels) + " |", "|---" * (len(labels) + 3) + "|"]
    for name, r in res.items():
        for dt in DTYPES:
            sel = r["dtype"] == dt
            if not sel.any():
                continue
            cells = [_cell(r["signed"][sel])] + [_cell(r["signed"][sel & (r[axis] == lab)]) for lab in labels]
            out.append(f"| {SHORT.get(name, name)} | {dt} | " + " | ".join(cells) + " |")
    return out


def worst_cells(res: dict, top: int = 10) -> list[str]:
    """Cells of the cross product of CROSS_AXES holding the most rows above the target, per dtype pooled over
    devices."""
    out = []
    for dt in DTYPES:
        cells: dict[tuple, dict[str, np.ndarray]] = {}
        total_bad = 0
        for name, r in res.items():
            sel = r["dtype"] == dt
            total_bad += int(np.sum(np.abs(r["signed"][sel]) > TARGET_PCT))
            keys = list(zip(*(r[ax][sel] for ax in CROSS_AXES), strict=True))
            for key in set(keys):
                mask = np.array([kk == key for kk in keys])
                cells.setdefault(key, {})[name] = r["signed"][sel][mask]
        if not cells:
            continue
        ranked = sorted(cells.items(), key=lambda kv: -sum(int(np.sum(np.abs(v) > TARGET_PCT))
                                                           for v in kv[1].values()))
        out += [f"\n### {dt}: cells holding the most rows above {TARGET_PCT:.0f}% ({total_bad} such rows in all)",
                "| " + " | ".join(CROSS_AXES)
                + " | rows | > 8% | share of all > 8% | median |err| | signed per device |",
                "|---" * (len(CROSS_AXES) + 5) + "|"]
        for key, per_dev in ranked[:top]:
            allv = np.concatenate(list(per_dev.values()))
            bad = int(np.sum(np.abs(allv) > TARGET_PCT))
            dev = ", ".join(f"{SHORT.get(n, n)} {np.median(v):+.0f} ({len(v)})" for n, v in per_dev.items())
            out.append("| " + " | ".join(key) + f" | {len(allv)} | {bad} | {100 * bad / max(total_bad, 1):.0f}% | "
                       f"{np.median(np.abs(allv)):.1f} | {dev} |")
    return out


def carriers(res: dict, top: int = 6) -> list[str]:
    """Per device, the dtype x m x ai cells whose exact pricing would lower the device's pooled median |error| most."""
    out = [f"\n### cells carrying each device's median |error| (all dtypes pooled; target {TARGET_PCT:.0f}%)",
           "| device | median | dtype | m | ai | share of rows | rows > 8% (share of device's) | median |err| | "
           "signed | median if exact |", "|---" * 10 + "|"]
    for name, r in res.items():
        err = np.abs(r["signed"])
        keys = list(zip(r["dtype"], r["m"], r["ai"], strict=True))
        rows = []
        for key in set(keys):
            mask = np.array([kk == key for kk in keys])
            rows.append((float(np.median(np.where(mask, 0.0, err))), key, mask))
        for if_exact, key, mask in sorted(rows, key=lambda t: t[0])[:top]:
            bad = int(np.sum(err[mask] > TARGET_PCT))
            out.append(f"| {SHORT.get(name, name)} | {np.median(err):.1f} | {' | '.join(key)} | "
                       f"{100 * mask.mean():.0f}% | {bad} ({100 * bad / max(int(np.sum(err > TARGET_PCT)), 1):.0f}%) "
                       f"| {np.median(err[mask]):.1f} | {np.median(r['signed'][mask]):+.1f} | {if_exact:.1f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--held-out", action="store_true", help="also map each device's leave-one-out residuals")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VARIANT",
                    help="fit family KEY with form VARIANT (its form's links and ridge), e.g. gemm=gemm+l2")
    ap.add_argument("--carriers", action="store_true", help="print only the cells carrying each device's median")
    args = ap.parse_args(argv)
    for item in args.variant:
        key, _, variant = item.partition("=")
        if key not in KEYS or variant not in model.FORM_VARIANTS:
            print(f"--variant {item}: expected KEY=VARIANT with KEY in {', '.join(KEYS)} and VARIANT in "
                  f"{', '.join(sorted(model.FORM_VARIANTS))}")
            return 2
        general.FAMILY_SETUPS = {**general.FAMILY_SETUPS, key: general.FamilySetup(variant, None, None)}
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to map")
        return 1
    t0 = time.perf_counter()
    devices = {n: (hw, [r for r in rows if r.family == "gemm"])
               for n, (hw, rows) in load_devices(measured / "aiconfigurator" / "data").items()}
    devices = {n: v for n, v in devices.items() if v[1]}
    everyone = general.fit_general({hw.id: (hw, rows) for hw, rows in devices.values()}, families=KEYS)
    runs = {"in-sample (fitted on all four devices)": residuals(lambda _n: everyone, devices)}
    if args.held_out:
        folds = {held: general.fit_general({devices[n][0].id: devices[n] for n in devices if n != held},
                                           families=KEYS) for held in devices}
        runs["held out (fitted on the other three)"] = residuals(lambda n: folds[n], devices)
    for title, res in runs.items():
        print(f"\n## {title}")
        if not args.carriers:
            for axis in AXES:
                print("\n".join(axis_table(res, axis)))
            print("\n".join(worst_cells(res)))
        print("\n".join(carriers(res)))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
