"""The `moe` family: one fused mixture-of-experts layer, measured (aiconfigurator `moe_perf` tables) vs predicted.

Each table row times one GPU's share of a MoE layer (top-k dispatch, grouped gate/up GEMM, activation, grouped down
GEMM, weighted combine; no router GEMM, no all-to-all) for `num_tokens` tokens, `num_experts` experts of width
`inter_size` split `moe_tp_size` x `moe_ep_size` ways, under `balanced` or `power_law_<a>` routing. The prediction
prices the ops `lvlmsim.ops.graph.moe_ops` builds for that shape (router and collectives dropped), so measured and
simulated layers are the same objects; a power law becomes the graph's `moe_skew` (fewer distinct experts touched).

The model is device-general: efficiencies are fractions of each device's datasheet peak and bandwidth, shared by all
devices and fitted on some devices to be reported on another:

    t = sum over the two grouped GEMMs of max(F / (ec * peak[dtype]), B / (em * bw)) + elementwise bytes / (em * bw)
        + floor,
    ec = ec_max[dtype] * x / (x + x0)   with x the token-expert rows per touched expert (the GEMM's m),
    em = em_max * B / (B + b0)           small transfers do not reach full bandwidth.

`fit_moe` minimises the mean |log(pred/measured)| by Nelder-Mead; `benchmarks/moe_fit.py` fits leave-one-device-out
and writes `calibration/profiles/general/moe.json`, which `moe_report` (and `lvlmsim validate`) reads. Where
several kernels were timed for one configuration (Triton, FlashInfer CUTLASS, ...), the fastest is kept: it is the
kernel a tuned deployment runs.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import moe_ops
from lvlmsim.ops.op import ELEMENTWISE, MOE_GEMM, GraphConfig
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import LanguageModelSpec, MoESpec

# table dtype -> (compute dtype, weight bytes per parameter incl. block scales)
MOE_DTYPES: dict[str, tuple[str, float]] = {
    "bfloat16": ("bf16", 2.0),
    "fp8": ("fp8", 1.0),
    "fp8_block": ("fp8", 1.0 + 4.0 / (128 * 128)),  # one fp32 scale per 128x128 block
    "nvfp4": ("fp4", 0.5 + 1.0 / 16),  # 4-bit values + one fp8 scale per 16
}
TABLE_DTYPES = tuple(MOE_DTYPES)
# per table dtype (its kernels differ: H100's per-tensor fp8 CUTLASS MoE streams weights at half bf16's rate): the
# compute and memory efficiency ceilings; shared by all: the rows-per-expert half point, the bytes half point, floor
PARAM_NAMES = (*(f"ec_{d}" for d in TABLE_DTYPES), *(f"em_{d}" for d in TABLE_DTYPES), "x0", "b0", "floor_s")
N_DT = len(TABLE_DTYPES)
FIT_FILE = "general/moe.json"  # beside the device-general GPU model (general/gpu.json) in calibration/profiles
FIT_FORMAT = "lvlmsim-moe-fit/1"


@dataclass
class MoEData:
    """One row per measured configuration: the graph's flops/bytes for it, and its measured seconds."""

    dtype: np.ndarray  # compute dtype per row
    table_dtype: np.ndarray  # the table's moe_dtype per row (bfloat16, fp8, fp8_block, nvfp4)
    flops_up: np.ndarray
    bytes_up: np.ndarray
    flops_down: np.ndarray
    bytes_down: np.ndarray
    ew_bytes: np.ndarray
    rows_per_expert: np.ndarray
    measured_s: np.ndarray
    tokens: np.ndarray
    experts: np.ndarray
    ep: np.ndarray
    files: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.measured_s)


def _skew(distribution: str) -> float | None:
    if distribution == "balanced":
        return 0.0
    if distribution.startswith("power_law_"):
        try:
            return float(distribution.removeprefix("power_law_"))
        except ValueError:
            return None
    return None


def _row_ops(h: int, inter: int, k: int, experts: int, tp: int, ep: int, skew: float, tokens: int, dtype: str,
             wbytes: float):
    lm = LanguageModelSpec(name="moe", num_layers=1, hidden_size=h, num_heads=1, num_kv_heads=1, head_dim=h,
                           intermediate_size=inter, vocab_size=1,
                           moe=MoESpec(num_experts=experts, experts_per_token=k, expert_intermediate_size=inter))
    mods = {"vision": dtype, "projector": dtype, "llm": dtype}
    cfg = GraphConfig(weight_dtype=mods, compute_dtype=dict(mods), act_dtype="bf16", kv_dtype="bf16", tp=tp * ep,
                      ep=ep, moe_skew=skew, moe_routing="spread")
    ops = [op for op in moe_ops(lm, tokens, "decode", cfg, 1, (0, 0), 0.0)
           if op.kind in (MOE_GEMM, ELEMENTWISE)]
    # weights stored in this table's format (fp8 block scales, nvfp4 scales) rather than the dtype's nominal bytes
    scale = wbytes / DTYPE_BYTES[dtype]
    return ops, scale


def load_moe_table(data_dir: str | Path, hw: HardwareSpec) -> MoEData:
    """Every moe_perf.csv under `data_dir`, rows this device can run, fastest kernel per configuration."""
    import pandas as pd

    root = Path(data_dir)
    paths = sorted(root.rglob("moe_perf.csv")) if root.is_dir() else []
    if not paths:
        raise SpecError(f"--data: no moe_perf.csv under '{data_dir}' (expected <gpu>/moe/<framework>/<version>/)")
    keys = ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
            "moe_ep_size", "distribution"]
    frames = []
    for p in paths:
        df = pd.read_csv(p)
        missing = [c for c in [*keys, "latency"] if c not in df.columns]
        if missing:
            raise SpecError(f"--data: {p} lacks column(s) {', '.join(missing)}")
        frames.append(df[[*keys, "latency"]])
    df = pd.concat(frames).groupby(keys, as_index=False)["latency"].min()
    out: dict[str, list] = {k: [] for k in ("dtype", "tdt", "fu", "bu", "fd", "bd", "ew", "x", "meas", "t", "e", "ep")}
    skipped: Counter = Counter()
    for r in df.itertuples(index=False):
        if r.moe_dtype not in MOE_DTYPES:
            skipped[f"moe dtype {r.moe_dtype} (weight-only / mxfp4 kernels are not modelled)"] += 1
            continue
        dtype, wbytes = MOE_DTYPES[r.moe_dtype]
        skew = _skew(r.distribution)
        if skew is None or not hw.supports(dtype) or r.num_experts % r.moe_ep_size or r.topk > r.num_experts:
            skipped[f"moe {r.moe_dtype} rows not runnable here (dtype, distribution or split)"] += 1
            continue
        ops, wscale = _row_ops(int(r.hidden_size), int(r.inter_size), int(r.topk), int(r.num_experts),
                               int(r.moe_tp_size), int(r.moe_ep_size), skew, int(r.num_tokens), dtype, wbytes)
        up, down = (op for op in ops if op.kind == MOE_GEMM)
        out["dtype"].append(dtype)
        out["tdt"].append(r.moe_dtype)
        out["fu"].append(up.flops)
        out["bu"].append(up.bytes + up.weight_bytes * (wscale - 1))
        out["fd"].append(down.flops)
        out["bd"].append(down.bytes + down.weight_bytes * (wscale - 1))
        out["ew"].append(sum(op.bytes * op.count for op in ops if op.kind == ELEMENTWISE))
        touched = max(up.shape[3], 1e-9)
        out["x"].append(up.shape[0] / touched)
        out["meas"].append(float(r.latency) * 1e-3)
        out["t"].append(int(r.num_tokens))
        out["e"].append(int(r.num_experts))
        out["ep"].append(int(r.moe_ep_size))
    a = {k: np.array(v) for k, v in out.items()}
    return MoEData(a["dtype"], a["tdt"], a["fu"], a["bu"], a["fd"], a["bd"], a["ew"], a["x"], a["meas"], a["t"], a["e"],
                   a["ep"], [str(p.relative_to(root)) for p in paths], skipped)


def predict(params: Sequence[float], data: MoEData, hw: HardwareSpec) -> np.ndarray:
    """Seconds per row under the device-general efficiency model (see the module docstring)."""
    p = dict(zip(PARAM_NAMES, params, strict=True))
    bw = hw.mem_bw_bytes_per_s
    conds = [data.table_dtype == d for d in TABLE_DTYPES]
    ec_max = np.select(conds, [p[f"ec_{d}"] for d in TABLE_DTYPES], 1.0)
    em_max = np.select(conds, [p[f"em_{d}"] for d in TABLE_DTYPES], 1.0)
    peak = np.array([hw.peak_flops(d) for d in data.dtype]) if len(data) else np.zeros(0)
    ec = ec_max * data.rows_per_expert / (data.rows_per_expert + p["x0"])
    total = np.zeros(len(data))
    for f, b in ((data.flops_up, data.bytes_up), (data.flops_down, data.bytes_down)):
        em = em_max * b / (b + p["b0"])
        total += np.maximum(f / (ec * peak), b / (em * bw))
    total += data.ew_bytes / (em_max * bw)
    return total + p["floor_s"]


def roofline_default(data: MoEData, hw: HardwareSpec) -> np.ndarray:
    """The flat roofline default (0.75 of peak, 0.8 of bandwidth, 3 us per kernel) on the same ops."""
    peak = np.array([hw.peak_flops(d) for d in data.dtype]) if len(data) else np.zeros(0)
    bw = 0.8 * hw.mem_bw_bytes_per_s
    t = (np.maximum(data.flops_up / (0.75 * peak), data.bytes_up / bw)
         + np.maximum(data.flops_down / (0.75 * peak), data.bytes_down / bw) + data.ew_bytes / bw)
    return t + 5 * 3e-6  # dispatch, up, act, down, combine


# --------------------------------------------------------------------------------------------------------------
# fit


def _natural(z: np.ndarray) -> list[float]:
    """Unconstrained -> natural: efficiencies through a logistic (0, 1), the rest through exp (> 0)."""
    eff = 1.0 / (1.0 + np.exp(-z[:2 * N_DT]))
    return [float(v) for v in eff] + [float(math.exp(v)) for v in z[2 * N_DT:]]


def _z(natural: Sequence[float]) -> np.ndarray:
    eff = np.array(natural[:2 * N_DT])
    return np.concatenate([np.log(eff / (1.0 - eff)), np.log(np.array(natural[2 * N_DT:]))])


def nelder_mead(f, x0: np.ndarray, step: float = 0.5, iters: int = 1500, tol: float = 1e-7) -> np.ndarray:
    """Plain Nelder-Mead (reflection 1, expansion 2, contraction 0.5, shrink 0.5) for a handful of parameters."""
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    vals = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(vals)
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        refl = centroid + (centroid - simplex[-1])
        fr = f(refl)
        if fr < vals[0]:
            exp = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(exp)
            simplex[-1], vals[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = refl, fr
        else:
            con = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(con)
            if fc < vals[-1]:
                simplex[-1], vals[-1] = con, fc
            else:
                simplex = [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex]
                vals = [f(s) for s in simplex]
    return simplex[int(np.argmin(vals))]


START = (*([0.6] * N_DT), *([0.8] * N_DT), 8.0, 2e6, 1e-5)


def _untie(t: np.ndarray) -> np.ndarray:
    """Tied parameters (one ec, one em for every dtype) -> the full unconstrained vector."""
    return np.concatenate([np.full(N_DT, t[0]), np.full(N_DT, t[1]), t[2:]])


def fit_moe(datasets: Sequence[tuple[MoEData, HardwareSpec]], per_dtype: bool = False) -> list[float]:
    """Device-general parameters minimising the mean |log error| over every row of every (data, device) pair.

    `per_dtype` False (the shipped fit) ties the efficiency ceilings across dtypes: a ceiling learned from one
    device's kernel for a dtype (H100's slow per-tensor fp8 CUTLASS MoE) does not transfer to another's.
    """
    def loss_full(z: np.ndarray) -> float:
        p = _natural(z)
        errs = [np.abs(np.log(predict(p, d, hw) / d.measured_s)) for d, hw in datasets if len(d)]
        return float(np.mean(np.concatenate(errs)))

    z0 = _z(START)
    if per_dtype:
        loss, start = loss_full, z0
    else:
        def loss(t: np.ndarray) -> float:
            return loss_full(_untie(t))
        start = np.concatenate([[z0[0], z0[N_DT]], z0[2 * N_DT:]])
    z = nelder_mead(loss, start, iters=3000)
    for step in (0.3, 0.1):  # restarts: Nelder-Mead stalls on a collapsed simplex
        z = nelder_mead(loss, z, step=step, iters=3000)
    return _natural(z if per_dtype else _untie(z))


# --------------------------------------------------------------------------------------------------------------
# report


def _stats(err: np.ndarray, base: np.ndarray) -> dict:
    if len(err) == 0:
        return {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0, "roofline_median_abs_pct_err": None,
                "roofline_p90_abs_pct_err": None}
    return {"median_abs_pct_err": round(float(np.median(err)), 2),
            "p90_abs_pct_err": round(float(np.percentile(err, 90)), 2), "n": int(len(err)),
            "roofline_median_abs_pct_err": round(float(np.median(base)), 2),
            "roofline_p90_abs_pct_err": round(float(np.percentile(base, 90)), 2)}


def _bin(v: float, edges: Sequence[float], labels: Sequence[str]) -> str:
    for e, lab in zip(edges, labels, strict=False):
        if v <= e:
            return lab
    return labels[-1]


def regimes(data: MoEData) -> dict[str, np.ndarray]:
    """Row labels per regime axis: tokens, experts, EP degree, dtype."""
    return {
        "tokens": np.array([_bin(t, (16, 256, 4096), ("tokens 1-16", "tokens 17-256", "tokens 257-4096",
                                                        "tokens >4096")) for t in data.tokens]),
        "experts": np.array([_bin(e, (32, 256), ("experts <=32", "experts 33-256", "experts >256"))
                             for e in data.experts]),
        "ep": np.array([_bin(e, (1, 8), ("ep 1", "ep 2-8", "ep >8")) for e in data.ep]),
        "dtype": np.array([f"dtype {d}" for d in data.dtype]),
    }


def compare_moe(data: MoEData, hw: HardwareSpec, params: Sequence[float], source: str) -> dict:
    """The `moe` family entry of a validate report: overall and per-regime errors next to the flat roofline."""
    pred = predict(params, data, hw)
    err = np.abs(pred / data.measured_s - 1.0) * 100.0
    base = np.abs(roofline_default(data, hw) / data.measured_s - 1.0) * 100.0
    entry = _stats(err, base)
    entry["profile_sources"] = [source]
    entry["regimes"] = {}
    for labels in regimes(data).values():
        for lab in dict.fromkeys(labels):
            entry["regimes"][lab] = _stats(err[labels == lab], base[labels == lab])
    return entry


def fit_file(directory: Path) -> Path:
    return directory / FIT_FILE


def load_fit(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"moe fit: cannot read {path}: {exc}") from exc
    if doc.get("format") != FIT_FORMAT:
        raise SpecError(f"moe fit: {path} is not a {FIT_FORMAT} file")
    return doc


def params_for(doc: dict, hardware_id: str) -> tuple[list[float], str]:
    """The fold that held `hardware_id` out (so its report is out-of-sample), else the all-devices fit."""
    for fold in doc.get("folds", []):
        if fold["held_out"] == hardware_id:
            p = fold["params"]
            return [p[k] for k in PARAM_NAMES], f"general: moe fit on {', '.join(fold['fit_on'])}"
    p = doc["all"]["params"]
    return [p[k] for k in PARAM_NAMES], f"general: moe fit on {', '.join(doc['all']['fit_on'])}"


def moe_report(hw: HardwareSpec, data_dir: str | Path, fit_dir: Path) -> dict | None:
    """The `moe` family for `lvlmsim validate`, or None when `data_dir` holds no moe_perf table."""
    root = Path(data_dir)
    if not root.is_dir() or not any(root.rglob("moe_perf.csv")):
        return None
    path = fit_file(fit_dir)
    if not path.exists():
        return None
    params, source = params_for(load_fit(path), hw.id)
    data = load_moe_table(root, hw)
    entry = compare_moe(data, hw, params, source)
    entry["skipped"] = dict(data.skipped)
    return entry
