"""Where a served TTFT's prefill time goes, op by op, against MEASURED kernels (issue 13, wave 6): each prefill op
lvlmsim prices for a published bench row, beside the time aiconfigurator measured for that kernel at the same shape.

For each row of a published sweep (workloads/validation/bench-runs.yaml) this prices one text-only request of the
row's prompt length with the public API (`lvlmsim.estimate`, output 1, the row's runtime, model, hardware and tp), and
looks every prefill op up in the device's measured tables (../shared/data/measured/aiconfigurator/data/<device>):

* GEMM (m, n, k, bf16): the vLLM GEMM table; a shape off the grid is interpolated in log2(m), log2(n), log2(k) on the
  log of the attained FLOP/s of the (up to) eight surrounding grid shapes, then time = FLOPs / FLOP/s (a grid shape
  reads its own row; outside the grid the edge's FLOP/s is held);
* context attention (batch, isl, heads, kv heads per GPU, head dim, window): the vLLM context-attention table, same
  rule along log2(isl); a head dim the table lacks takes the nearest measured one's FLOP/s (A100: only 128); a sliding
  window the table lacks takes the causal row's FLOP/s over the window's query-key pairs;
* tensor-parallel all-reduce (bytes, GPUs): NCCL's all_reduce and vLLM's custom kernel (CUDA-graph rows), each
  interpolated in log2(bytes) on the log of the time; the one the runtime picks (calibration/collectives.yaml) counts;
* every other op (norms, rotary, activation, embedding gather, host and runtime overheads) has no measured table and
  is carried at lvlmsim's price, listed apart.

It then prints the sum of the measured kernels plus the unmeasured ops' prices against lvlmsim's one-pass prefill,
lvlmsim's served TTFT of the row with prefix caching off (`lvlmsim.bench.run.run_bench`, the row's server otherwise
as the table has it: chunked prefill, host stages), and the published mean TTFT. Nothing is fitted or changed.

    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-521      # ~10 s
    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-143 --ops 4096
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

import lvlmsim  # noqa: E402
from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.measured import gemm_op, prefill_attention_op, sliding_prefill_attention_op  # noqa: E402
from lvlmsim.cost.collectives import custom_allreduce_policy  # noqa: E402
from lvlmsim.ops.op import ALLREDUCE, ATTN_PREFILL, GEMM, Op  # noqa: E402
from lvlmsim.specs.registry import load_hardware  # noqa: E402

MEASURED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured" / "aiconfigurator" / "data"


# ------------------------------------------------------------------------------------------------------------------
# interpolation on a measured grid


def _bracket(grid: list[float], v: float) -> tuple[float, float, float]:
    """(lo, hi, weight of hi) of `v` on a sorted grid, in log2; held at the grid's edges."""
    if v <= grid[0]:
        return grid[0], grid[0], 0.0
    if v >= grid[-1]:
        return grid[-1], grid[-1], 0.0
    hi = next(g for g in grid if g >= v)
    lo = max(g for g in grid if g <= v)
    if hi == lo:
        return lo, hi, 0.0
    return lo, hi, (math.log2(v) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))


def interp_log(points: dict[tuple, float], axes: list[list[float]], at: tuple[float, ...]) -> float | None:
    """Multilinear interpolation of log(value) over the grid corners around `at` (log2 coordinates). Missing corners
    are dropped and the remaining weights renormalised; None when no corner is measured."""
    brackets = [_bracket(ax, v) for ax, v in zip(axes, at, strict=True)]
    acc, wsum = 0.0, 0.0
    for pick in product((0, 1), repeat=len(at)):
        corner = tuple(b[1] if p else b[0] for b, p in zip(brackets, pick, strict=True))
        w = math.prod(b[2] if p else 1.0 - b[2] for b, p in zip(brackets, pick, strict=True))
        val = points.get(corner)
        if w > 0 and val is not None and val > 0:
            acc += w * math.log(val)
            wsum += w
    return math.exp(acc / wsum) if wsum > 0 else None


@dataclass
class Grid:
    """Measured values keyed by shape, with each axis's sorted grid (what interp_log reads)."""

    points: dict[tuple, float]
    axes: list[list[float]]

    @classmethod
    def of(cls, df: pd.DataFrame, keys: list[str], value: pd.Series) -> Grid:
        pts = {tuple(float(x) for x in k): float(v) for k, v in zip(df[keys].itertuples(index=False), value,
                                                                      strict=True)}
        return cls(pts, [sorted({float(x) for x in df[k]}) for k in keys])

    def at(self, *coords: float) -> float | None:
        return interp_log(self.points, self.axes, tuple(float(c) for c in coords))


# ------------------------------------------------------------------------------------------------------------------
# the device's tables


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    if not found:
        raise SystemExit(f"no {pattern} under {folder}")
    return found[0]


@dataclass
class Tables:
    gemm_flops: Grid  # FLOP/s by (m, n, k), bf16
    attn: pd.DataFrame  # context attention rows, batch 1
    custom_s: dict[int, Grid]  # vLLM custom all-reduce (CUDA-graph rows), seconds by bf16 elements, per GPU count
    nccl_by_gpus: dict[int, Grid]  # NCCL all_reduce (half), the same
    sources: list[str]


def load_tables(folder: Path) -> Tables:
    g_path = _one(folder / "gemm" / "vllm", "gemm_perf.csv")
    g = pd.read_csv(g_path)
    g = g[g.gemm_dtype == "bfloat16"]
    gemm = Grid.of(g, ["m", "n", "k"], pd.Series([gemm_op(*r).flops for r in g[["m", "n", "k"]].itertuples(
        index=False)], index=g.index) / (g.latency * 1e-3))
    a_path = _one(folder / "attention" / "vllm", "context_attention_perf.csv")
    a = pd.read_csv(a_path)
    a = a[(a.batch_size == 1) & (a.attn_dtype == "bfloat16") & (a.step == 0)]
    if "kernel_source" in a and "vllm_flash_attn_fa3" in set(a.kernel_source):
        a = a[a.kernel_source == "vllm_flash_attn_fa3"]  # H100: FA3 is what vLLM runs on sm90 (fa4 rows are sm100)
    n_path = _one(folder / "comm" / "nccl", "nccl_perf.csv")
    n = pd.read_csv(n_path)
    n = n[(n.op_name == "all_reduce") & (n.nccl_dtype == "half")]
    nccl = {int(d): Grid.of(s, ["message_size"], s.latency * 1e-3) for d, s in n.groupby("num_gpus")}
    c_path = _one(folder / "comm" / "vllm", "custom_allreduce_perf.csv")
    c = pd.read_csv(c_path)
    c = c[c.backend == "vllm_graph"]
    custom = {int(d): Grid.of(s, ["message_size"], s.latency * 1e-3) for d, s in c.groupby("num_gpus")}
    rel = [str(p.relative_to(folder.parent)) for p in (g_path, a_path, n_path, c_path)]
    return Tables(gemm, a, custom, nccl, rel)


# ------------------------------------------------------------------------------------------------------------------
# one op -> measured seconds per call (None: no table), with how it was read


def gemm_measured_s(t: Tables, op: Op) -> tuple[float | None, str]:
    m, n, k = op.shape
    flops_s = t.gemm_flops.at(m, n, k)
    exact = (float(m), float(n), float(k)) in t.gemm_flops.points
    return (op.flops / flops_s if flops_s else None), ("grid" if exact else "interp")


def _row_flops(r, window: int) -> float:
    """FLOPs of one measured attention row as the graph counts them (its own builders; `window` 0: causal)."""
    shape = dict(batch=1, isl=int(r.isl), heads=int(r.num_heads), kv_heads=int(r.num_key_value_heads),
                 head_dim=int(r.head_dim))
    op = sliding_prefill_attention_op(**shape, window=window) if window else prefill_attention_op(**shape)
    return op.flops


def _attn_grid(rows: pd.DataFrame, window: int, table_window: int) -> Grid | None:
    """FLOP/s by isl of the rows measured at `table_window`, counted as `window`-attention FLOPs."""
    if "window_size" in rows:
        rows = rows[rows.window_size == table_window]
    elif table_window:  # a table without a window column measured causal kernels only
        return None
    if rows.empty:
        return None
    flops = pd.Series([_row_flops(r, window) for r in rows.itertuples()], index=rows.index)
    return Grid.of(rows, ["isl"], flops / (rows.latency * 1e-3))


def attention_measured_s(t: Tables, op: Op) -> tuple[float | None, str]:
    _, q, _, heads, kv_heads, hd = op.shape
    a = t.attn[(t.attn.num_heads == heads) & (t.attn.num_key_value_heads == kv_heads)]
    if a.empty:
        return None, "no heads row"
    hd_near = min(set(a.head_dim), key=lambda h: abs(math.log2(h / hd)))
    a = a[a.head_dim == hd_near]
    note = "interp" if hd_near == hd else f"hd{int(hd_near)} FLOP/s"
    grid = _attn_grid(a, op.window_tokens, op.window_tokens)
    if grid is None:  # the table has no row at this window: the causal kernel's FLOP/s over the window's pairs
        grid, note = _attn_grid(a, 0, 0), note + ", causal FLOP/s for the window"
    flops_s = grid.at(q) if grid else None
    return (op.flops / flops_s if flops_s else None), note


def allreduce_measured_s(t: Tables, op: Op, hw_id: str) -> tuple[float | None, str]:
    msg_bytes, devices = op.shape
    policy = custom_allreduce_policy("vllm")
    custom = policy is not None and policy.picks_custom(load_hardware(hw_id), int(devices), float(msg_bytes))
    grid = (t.custom_s if custom else t.nccl_by_gpus).get(int(devices))
    s = grid.at(msg_bytes / 2.0) if grid else None  # tables count bf16 elements
    return s, "custom AR" if custom else "NCCL"


def measured_s(t: Tables, op: Op, hw_id: str) -> tuple[float | None, str]:
    if op.kind == GEMM:
        return gemm_measured_s(t, op)
    if op.kind == ATTN_PREFILL:
        return attention_measured_s(t, op)
    if op.kind == ALLREDUCE:
        return allreduce_measured_s(t, op, hw_id)
    return None, "no table"


# ------------------------------------------------------------------------------------------------------------------
# rows


@dataclass
class RowSums:
    priced_measured_ops_s: float  # lvlmsim's price of the ops that have a measured table
    measured_ops_s: float  # the tables' time of the same ops
    unmeasured_s: float  # lvlmsim's price of every other prefill op (elementwise, overheads)
    prefill_s: float  # lvlmsim's one-pass prefill
    ttft_s: float  # lvlmsim's one-request TTFT (host stages included)


def op_table(est, t: Tables, hw_id: str, show: bool) -> RowSums:
    pm = mm = un = 0.0
    if show:
        print(f"    {'op':<24}{'kind':<13}{'shape':<34}{'calls':>6}{'priced us':>11}{'measured us':>13}"
              f"{'ratio':>7}  bound / how read")
    for oc in est.stages["prefill"].ops:
        m, how = measured_s(t, oc.op, hw_id)
        if m is None:
            un += oc.total_time_s
        else:
            pm += oc.total_time_s
            mm += m * oc.op.count
        if show:
            shape = ",".join(f"{x:g}" for x in oc.op.shape)
            shape += f" w{oc.op.window_tokens}" if oc.op.window_tokens else ""
            ms = f"{m * 1e6:13.1f}{oc.time_s / m:7.2f}" if m else f"{'-':>13}{'':>7}"
            print(f"    {oc.op.name:<24}{oc.op.kind:<13}{shape:<34}{oc.op.count:>6}{oc.time_s * 1e6:11.1f}{ms}"
                  f"  {oc.bound} / {how}")
    return RowSums(pm, mm, un, est.stages["prefill"].time_s, est.ttft_s)


def served_ttft_ms(row: dict) -> float:
    """lvlmsim's mean TTFT of the row's run with the server's prefix caching turned off."""
    from lvlmsim.bench.run import run_bench
    from lvlmsim.bench.validation import row_args

    a = row_args(row)
    a.serving["prefix_caching"] = False
    return run_bench(a).result["mean_ttft_ms"]


def main() -> None:
    from lvlmsim.bench.validation import load_rows, source_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="tt-521", help="published sweep id (tt-521, tt-143, ...)")
    ap.add_argument("--ops", default="", help="comma-separated prompt lengths whose op table is printed")
    opts = ap.parse_args()
    rows = [r for r in load_rows() if source_of(r["id"]) == opts.sweep and "mean_ttft_ms" in r["measured"]]
    if not rows:
        raise SystemExit(f"--sweep: no published rows of '{opts.sweep}' with a mean TTFT")
    show = {int(x) for x in opts.ops.split(",") if x}
    folders = {hw: f for f, hw in DEVICE_FOLDERS.items()}
    tables: dict[str, Tables] = {}
    print(f"{opts.sweep}  (ms; 'priced'/'measured': lvlmsim's and the tables' time of the ops with a measured table)")
    print(f"  {'row':<46}{'isl':>6}{'priced':>9}{'measured':>10}{'unmeas.':>9}{'kernels':>9}{'prefill':>9}"
          f"{'TTFT':>8}{'served':>8}{'publ.':>8}")
    for row in rows:
        c = row["conditions"]
        if c["hardware"] not in folders:
            print(f"  {row['id']:<46} skipped: no measured tables of {c['hardware']}")
            continue
        if c["hardware"] not in tables:
            tables[c["hardware"]] = load_tables(MEASURED / folders[c["hardware"]])
            print(f"  tables of {c['hardware']}: {', '.join(tables[c['hardware']].sources)}")
        isl = int(row["args"]["random_input_len"])
        est = lvlmsim.estimate(c["model"], c["hardware"], images=0, prompt_tokens=isl, output_tokens=1,
                               tp=int(c.get("tp", 1)), runtime=c["runtime"])
        if isl in show:
            print(f"  ops of {row['id']} ({c['model']}, tp {c.get('tp', 1)}; per call):")
        s = op_table(est, tables[c["hardware"]], c["hardware"], isl in show)
        print(f"  {row['id']:<46}{isl:>6}{s.priced_measured_ops_s * 1e3:9.1f}{s.measured_ops_s * 1e3:10.1f}"
              f"{s.unmeasured_s * 1e3:9.1f}{(s.measured_ops_s + s.unmeasured_s) * 1e3:9.1f}{s.prefill_s * 1e3:9.1f}"
              f"{s.ttft_s * 1e3:8.1f}{served_ttft_ms(row):8.1f}{row['measured']['mean_ttft_ms']:8.1f}")


if __name__ == "__main__":
    main()
