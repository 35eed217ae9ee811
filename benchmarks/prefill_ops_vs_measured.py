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

`--decode` does the same for one decode step (the served TPOT): each row is priced at its mid-decode context
(prompt + half the output) with output 2, so the estimate's decode stage is exactly one step. Per op it lists the
calls per step, the price per call, its compute term (`compute`: FLOPs over the priced compute efficiency times the
datasheet peak; the price is the larger of it and the memory term, each carrying the other's overlap share, plus the
floor, so a compute term near the memory term slows a memory-bound op), bytes, FLOPs, bound, which model priced it
(`general:` the device-general model, `calibrated:` a measured profile, `runtime`/`host` the overhead tables), the
implied share of the datasheet bandwidth (bytes / time / mem_bw) and, where the device has tables, the measured GEMM
and decode-attention kernel (vLLM generation-attention table, batch 1, interpolated in log2(step) on the log of the
time). Per row: the step split into GEMMs, attention, other kernels (all-reduce and MoE among them) and the
non-kernel parts (runtime step, host step), the bytes a step must read and their floor at the datasheet bandwidth,
lvlmsim's served TPOT, the published TPOT, and the bandwidth share the GEMMs would need for the published TPOT if
every other part is as priced. `--on HW` prices the same rows' model on another device (a measured one, to set its
priced decode beside its measured kernels; no served/published columns then).

    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-521      # ~10 s
    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-143 --ops 4096
    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-394 --decode --ops 128
    PYTHONPATH=. python benchmarks/prefill_ops_vs_measured.py --sweep tt-394 --decode --on rtx-pro-6000-server --ops 128
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
from lvlmsim.ops.op import ALLREDUCE, ATTN_DECODE, ATTN_PREFILL, GEMM, Op  # noqa: E402
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
    decode_attn: pd.DataFrame  # generation (decode) attention rows, batch 1
    custom_s: dict[int, Grid]  # vLLM custom all-reduce (CUDA-graph rows), seconds by bf16 elements, per GPU count
    nccl_by_gpus: dict[int, Grid]  # NCCL all_reduce (half), the same
    sources: list[str]


def _comm_grids(folder: Path, sub: str, name: str, keep) -> tuple[dict[int, Grid], list[Path]]:
    """Seconds by bf16 elements per GPU count of one communication table; empty when the device has none (RTX PRO
    6000 has no NCCL table)."""
    found = sorted((folder / "comm" / sub).rglob(name))
    if not found:
        return {}, []
    df = keep(pd.read_csv(found[0]))
    return {int(d): Grid.of(x, ["message_size"], x.latency * 1e-3) for d, x in df.groupby("num_gpus")}, found[:1]


def _decode_attention_rows(folder: Path) -> tuple[pd.DataFrame, Path]:
    """Batch-1 bf16 decode rows of the vLLM generation-attention table, of the kernel vLLM runs there (FA2 where the
    table also has FlashInfer rows, as on RTX PRO 6000, whose sm120 vLLM runs vllm_flash_attn_fa2)."""
    path = _one(folder / "attention" / "vllm", "generation_attention_perf.csv")
    d = pd.read_csv(path)
    d = d[(d.batch_size == 1) & (d.attn_dtype == "bfloat16") & (d.kv_cache_dtype == "bfloat16") & (d.beam_width == 1)]
    if "kernel_source" in d and d.kernel_source.nunique() > 1 and "vllm_flash_attn_fa2" in set(d.kernel_source):
        d = d[d.kernel_source == "vllm_flash_attn_fa2"]
    return d, path


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
    d, d_path = _decode_attention_rows(folder)
    nccl, n_path = _comm_grids(folder, "nccl", "nccl_perf.csv",
                               lambda n: n[(n.op_name == "all_reduce") & (n.nccl_dtype == "half")])
    custom, c_path = _comm_grids(folder, "vllm", "custom_allreduce_perf.csv", lambda c: c[c.backend == "vllm_graph"])
    rel = [str(p.relative_to(folder.parent)) for p in (g_path, a_path, d_path, *n_path, *c_path)]
    return Tables(gemm, a, d, custom, nccl, rel)


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


def decode_attention_measured_s(t: Tables, op: Op) -> tuple[float | None, str]:
    """The decode kernel at the op's keys per sequence (a sliding window's op already reads the window's keys):
    the table's `step` cached tokens read step+1 keys, so step = keys - 1; log-time interpolation in log2(step)."""
    batch, _, keys, heads, kv_heads, hd = op.shape
    if batch != 1:
        return None, "batch > 1"
    d = t.decode_attn[(t.decode_attn.num_heads == heads) & (t.decode_attn.num_key_value_heads == kv_heads)
                      & (t.decode_attn.head_dim == hd)]
    if d.empty:
        return None, "no heads row"
    mean_s = d.groupby("step", as_index=False).latency.mean()
    return Grid.of(mean_s, ["step"], mean_s.latency * 1e-3).at(max(keys - 1.0, 1.0)), "interp"


def measured_s(t: Tables, op: Op, hw_id: str) -> tuple[float | None, str]:
    if op.kind == ATTN_DECODE:
        return decode_attention_measured_s(t, op)
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


# ------------------------------------------------------------------------------------------------------------------
# decode: one step of the served TPOT


NON_KERNEL = ("overhead", "host")  # op kinds that are no GPU kernel: the runtime's step overhead, the host step


@dataclass
class StepSums:
    """One decode step, in seconds (bytes for `*_bytes`), split the way the TPOT gap is looked for."""

    gemm_s: float
    gemm_bytes: float
    attention_s: float
    other_kernels_s: float  # every other kernel: norms, rotary, activation, embedding gather, all-reduce, MoE
    non_kernel_s: float  # runtime step overhead + host step
    step_bytes: float  # everything the step reads and writes (weights, KV, activations)
    measured_gemm_s: float | None  # the tables' time of the same GEMMs (None: no table for one of them)

    @property
    def step_s(self) -> float:
        return self.gemm_s + self.attention_s + self.other_kernels_s + self.non_kernel_s


def _add_op(acc: dict[str, float], oc, measured: float | None) -> None:
    total = oc.total_time_s
    acc["bytes"] += oc.op.bytes * oc.op.count
    if oc.op.kind == GEMM:
        acc["gemm"] += total
        acc["gemm_bytes"] += oc.op.bytes * oc.op.count
        acc["measured_gemm"] += measured * oc.op.count if measured else math.nan
    elif oc.op.kind == ATTN_DECODE:
        acc["attention"] += total
    elif oc.op.kind in NON_KERNEL:
        acc["non_kernel"] += total
    else:
        acc["other"] += total


def decode_op_table(est, t: Tables | None, hw_id: str, show: bool) -> StepSums:
    """Sum (and, with `show`, print) one decode step's ops; `t` None: the device has no measured tables."""
    bw = load_hardware(hw_id).mem_bw_bytes_per_s
    acc = dict.fromkeys(("gemm", "gemm_bytes", "attention", "other", "non_kernel", "bytes", "measured_gemm"), 0.0)
    if show:
        print(f"    {'op':<22}{'kind':<12}{'shape':<30}{'calls':>6}{'priced us':>10}{'compute':>8}{'MB':>8}"
              f"{'MFLOP':>9}{'bw share':>9}{'meas. us':>9}{'share':>6}  bound / priced by")
    for oc in est.stages["decode"].ops:
        m = measured_s(t, oc.op, hw_id)[0] if t is not None and oc.op.kind in (GEMM, ATTN_DECODE) else None
        _add_op(acc, oc, m)
        if show:
            o = oc.op
            share = o.bytes / oc.time_s / bw if o.bytes else 0.0
            ms = f"{m * 1e6:9.1f}{o.bytes / m / bw:6.2f}" if m else f"{'-':>9}{'':>6}"
            print(f"    {o.name:<22}{o.kind:<12}{','.join(f'{x:g}' for x in o.shape):<30}{o.count:>6}"
                  f"{oc.time_s * 1e6:10.1f}{oc.compute_s * 1e6:8.1f}{o.bytes / 1e6:8.2f}{o.flops / 1e6:9.1f}"
                  f"{share:9.2f}{ms}"
                  f"  {oc.bound} / {oc.source}")
    mg = acc["measured_gemm"]
    return StepSums(acc["gemm"], acc["gemm_bytes"], acc["attention"], acc["other"], acc["non_kernel"], acc["bytes"],
                    None if math.isnan(mg) or t is None else mg)


def served_tpot_ms(row: dict) -> float:
    """lvlmsim's mean TPOT of the row's run as bench_validation simulates it (the row's server and session)."""
    from lvlmsim.bench.run import run_bench
    from lvlmsim.bench.validation import row_args

    return run_bench(row_args(row)).result["mean_tpot_ms"]


def needed_gemm_share(s: StepSums, published_s: float, bw_bytes_s: float) -> float:
    """Share of the datasheet bandwidth the GEMMs need for the step to take `published_s`, every other part as
    priced: GEMM bytes / (published - attention - other kernels - non-kernel parts) / bandwidth."""
    left_s = published_s - (s.step_s - s.gemm_s)
    return s.gemm_bytes / left_s / bw_bytes_s if left_s > 0 else math.inf  # NaN published: NaN


def decode_rows(rows: list[dict], on: str, show: set[int], tables_for) -> None:
    """Print one decode step per row (at prompt + output/2 tokens of context), op table for the prompts in `show`."""
    print(f"  {'row':<44}{'ctx':>6}{'GEMM':>7}{'meas.':>7}{'attn':>6}{'other':>6}{'host':>6}{'step':>7}"
          f"{'floor':>7}{'served':>7}{'publ.':>7}{'GEMM share':>11}{'needed':>7}")
    for row in rows:
        c = row["conditions"]
        hw = on or c["hardware"]
        isl, osl = int(row["args"]["random_input_len"]), int(row["args"]["random_output_len"])
        ctx = isl + osl // 2
        est = lvlmsim.estimate(c["model"], hw, images=0, prompt_tokens=ctx, output_tokens=2,
                               tp=int(c.get("tp", 1)), runtime=c["runtime"])
        if isl in show:
            print(f"  one decode step of {row['id']} ({c['model']} on {hw}, tp {c.get('tp', 1)}, {ctx} tokens of "
                  f"context; per call):")
        s = decode_op_table(est, tables_for(hw), hw, isl in show)
        bw = load_hardware(hw).mem_bw_bytes_per_s
        meas = f"{s.measured_gemm_s * 1e3:7.2f}" if s.measured_gemm_s else f"{'-':>7}"
        own = not on or on == c["hardware"]
        publ_s = row["measured"].get("mean_tpot_ms", math.nan) * 1e-3 if own else math.nan
        served = served_tpot_ms(row) if own else math.nan
        print(f"  {row['id']:<44}{ctx:>6}{s.gemm_s * 1e3:7.2f}{meas}{s.attention_s * 1e3:6.2f}"
              f"{s.other_kernels_s * 1e3:6.2f}{s.non_kernel_s * 1e3:6.2f}{s.step_s * 1e3:7.2f}"
              f"{s.step_bytes / bw * 1e3:7.2f}{_fmt_ms(served * 1e-3, 7)}{_fmt_ms(publ_s, 7)}"
              f"{s.gemm_bytes / s.gemm_s / bw:11.2f}{_fmt_share(needed_gemm_share(s, publ_s, bw))}")


def _fmt_ms(v: float, width: int) -> str:
    return f"{v * 1e3:{width}.2f}" if math.isfinite(v) else f"{'-':>{width}}"


def _fmt_share(v: float) -> str:
    return f"{v:7.2f}" if math.isfinite(v) else f"{'-':>7}"


def main() -> None:
    from lvlmsim.bench.validation import load_rows, source_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="tt-521", help="published sweep id (tt-521, tt-143, ...)")
    ap.add_argument("--ops", default="", help="comma-separated prompt lengths whose op table is printed")
    ap.add_argument("--decode", action="store_true", help="one decode step (TPOT) per row instead of the prefill")
    ap.add_argument("--on", default="", help="with --decode: price the rows' model on this hardware id instead")
    opts = ap.parse_args()
    metric = "mean_tpot_ms" if opts.decode else "mean_ttft_ms"
    rows = [r for r in load_rows() if source_of(r["id"]) == opts.sweep and metric in r["measured"]]
    if not rows:
        raise SystemExit(f"--sweep: no published rows of '{opts.sweep}' with a {metric}")
    if opts.on and not opts.decode:
        raise SystemExit("--on: only with --decode")
    show = {int(x) for x in opts.ops.split(",") if x}
    folders = {hw: f for f, hw in DEVICE_FOLDERS.items()}
    tables: dict[str, Tables] = {}
    if opts.decode:
        def tables_for(hw: str) -> Tables | None:
            if hw in folders and hw not in tables:
                tables[hw] = load_tables(MEASURED / folders[hw])
                print(f"  tables of {hw}: {', '.join(tables[hw].sources)}")
            return tables.get(hw)

        print(f"{opts.sweep} decode step (ms; GEMM 'meas.': the tables' time of the same GEMMs; 'floor': the step's "
              "bytes at the datasheet bandwidth; 'needed': the GEMMs' bandwidth share the published TPOT needs)")
        decode_rows(rows, opts.on, show, tables_for)
        return
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
