"""What share of the datasheet bandwidth memory-bound small-m GEMMs reach, per device (issue 11, round 2).

    python benchmarks/gemm_bandwidth_share.py            # bf16 (~5 s)
    python benchmarks/gemm_bandwidth_share.py fp8        # another dtype (bf16, fp8, nvfp4)

The check behind the Little's-law question: if achieved bandwidth were capped by the bytes each SM keeps in flight
(bandwidth <= SMs x bytes in flight per SM / memory latency), a device whose datasheet bandwidth per SM is high for
its latency would stay below its datasheet bandwidth at any size, and that cap would be a device feature. Rows: the
GEMMs of aiconfigurator's vLLM tables with m in (1, 8, 16) and at least MIN_BYTES of traffic (weights plus
activations plus output, at 2 bytes for bf16, 1 for fp8, 0.5 for nvfp4 operands), read straight from the CSVs (all
rows, no subsample). Printed per device: the achieved share bytes / latency / datasheet bandwidth by traffic bucket,
the median and the largest share, the achieved bandwidth per SM at that largest share, and a least-squares line
time = t0 + bytes / bw_stream through the same rows (a fixed time per call plus streaming at a share of the
datasheet bandwidth; rms: its relative residual).
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.specs.registry import load_hardware  # noqa: E402

# device folder -> (hardware spec id, vLLM table version)
DEVICES = {"a100_sxm": ("a100-sxm-80gb", "0.14.0"), "h100_sxm": ("h100-sxm", "0.24.0"),
           "b300_sxm": ("b300", "0.24.0"), "rtx_pro_6000_server": ("rtx-pro-6000-server", "0.24.0")}
OPERAND_BYTES = {"bfloat16": 2.0, "fp8": 1.0, "nvfp4": 0.5}
DTYPE_NAMES = {"bf16": "bfloat16", "fp8": "fp8", "nvfp4": "nvfp4"}
M_VALUES = (1, 8, 16)
MIN_BYTES = 40e6  # at least ~the A100's 40 MB L2: streamed from DRAM, not a cached working set
SIZE_EDGES_MB = (64.0, 128.0, 256.0, 512.0, float("inf"))  # weight-traffic buckets


def traffic_bytes(m: int, n: int, k: int, operand_bytes: float) -> float:
    """Operand reads (x and W at the operand width) plus the 16-bit output write."""
    return operand_bytes * (m * k + n * k) + 2.0 * m * n


def shares(table: Path, dtype: str, bw_gbps: float) -> list[tuple[float, float]]:
    """(traffic bytes, achieved share of bw_gbps) of the table's small-m rows of `dtype` above MIN_BYTES."""
    out = []
    with table.open() as fh:
        for row in csv.DictReader(fh):
            if row["gemm_dtype"] != dtype or int(row["m"]) not in M_VALUES:
                continue
            nbytes = traffic_bytes(int(row["m"]), int(row["n"]), int(row["k"]), OPERAND_BYTES[dtype])
            if nbytes >= MIN_BYTES:
                out.append((nbytes, nbytes / (float(row["latency"]) * 1e-3) / (bw_gbps * 1e9)))
    return out


def fixed_plus_streaming(got: list[tuple[float, float]], bw_gbps: float) -> tuple[float, float, float]:
    """(t0 in s, bw_stream as a share of bw_gbps, rms relative residual) of time = t0 + bytes / bw_stream, least squares
    over `got`'s (bytes, share) rows (time = bytes / (share x bandwidth))."""
    nbytes = np.array([b for b, _ in got])
    time_s = nbytes / (np.array([s for _, s in got]) * bw_gbps * 1e9)
    (t0_s, s_per_byte), *_ = np.linalg.lstsq(np.vstack([np.ones_like(nbytes), nbytes]).T, time_s, rcond=None)
    rel = (time_s - t0_s - s_per_byte * nbytes) / time_s
    return float(t0_s), float(1.0 / s_per_byte / (bw_gbps * 1e9)), float(np.sqrt(np.mean(rel ** 2)))


def _bucket(nbytes: float) -> int:
    return next(i for i, edge in enumerate(SIZE_EDGES_MB) if nbytes / 1e6 < edge)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    dtype = DTYPE_NAMES.get(args[0] if args else "bf16")
    if dtype is None:
        print(f"unknown dtype {args[0]}; known: {', '.join(DTYPE_NAMES)}")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to measure")
        return 1
    lows = [f"{lo:.0f}" for lo in (MIN_BYTES / 1e6, *SIZE_EDGES_MB[:-1])]
    heads = [f"{lo}-{hi:.0f}" if hi != float("inf") else f">{lo}" for lo, hi in zip(lows, SIZE_EDGES_MB, strict=True)]
    print(f"{dtype}, m in {M_VALUES}, traffic >= {MIN_BYTES / 1e6:.0f} MB: median achieved share of the datasheet "
          f"bandwidth by traffic (MB), median / max, GB/s per SM at the max; time = t0 + bytes / bw_stream")
    print(f"  {'device':<21}{'GB/s':>6}{'SMs':>5}{'GB/s/SM':>8}  " + "".join(f"{h:>9}" for h in heads)
          + "   median    max  GB/s/SM@max   t0 us  bw_stream  rms %")
    for folder, (hw_id, version) in DEVICES.items():
        table = measured / "aiconfigurator" / "data" / folder / "gemm" / "vllm" / version / "gemm_perf.csv"
        hw = load_hardware(hw_id)
        got = shares(table, dtype, hw.mem_bw_gbps) if table.exists() else []
        if not got:
            continue
        by = defaultdict(list)
        for nbytes, share in got:
            by[_bucket(nbytes)].append(share)
        cells = "".join(f"{np.median(by[i]):9.2f}" if by[i] else f"{'.':>9}" for i in range(len(SIZE_EDGES_MB)))
        all_s = np.array([s for _, s in got])
        t0_s, stream, rms = fixed_plus_streaming(got, hw.mem_bw_gbps)
        print(f"  {folder:<21}{hw.mem_bw_gbps:6.0f}{hw.sm_count:5d}{hw.mem_bw_gbps / hw.sm_count:8.1f}  {cells}"
              f"   {np.median(all_s):6.2f} {all_s.max():6.2f}  {all_s.max() * hw.mem_bw_gbps / hw.sm_count:11.1f}"
              f"  {t0_s * 1e6:6.1f}  {stream:9.2f}  {rms * 100:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
