"""The `moe` family: one fused mixture-of-experts layer, measured (aiconfigurator `moe_perf` tables) vs predicted.

Each table row times one GPU's share of a MoE layer (top-k dispatch, grouped gate/up GEMM, activation, grouped down
GEMM, weighted combine; no router GEMM, no all-to-all) for `num_tokens` tokens, `num_experts` experts of width
`inter_size` split `moe_tp_size` x `moe_ep_size` ways, under `balanced` or `power_law_<a>` routing. The prediction
prices the ops `lvlmsim.ops.graph.moe_ops` builds for that shape (router and collectives dropped), so measured and
simulated layers are the same objects; a power law becomes the graph's `moe_skew` (fewer distinct experts touched).

The model is device-general: efficiencies are fractions of each device's datasheet peak and bandwidth, shared by all
devices and fitted on some devices to be reported on another:

    t = sum over the two grouped GEMMs of max(F / (ec * peak[dtype]), B / (em * bw)) + elementwise bytes / (em * bw)
        + floor[kernel family],
    ec = ec_max[dtype] * x / (x + x0)   with x the token-expert rows per touched expert (the GEMM's m),
    em = em_max * B / (B + b0)           small transfers do not reach full bandwidth.

`fit_moe` minimises the mean |log(pred/measured)| by Nelder-Mead; `benchmarks/moe_fit.py` fits leave-one-device-out
and writes `calibration/profiles/general/moe.json`, which `moe_report` (and `lvlmsim validate`) reads. Where
several kernels were timed for one configuration (Triton, FlashInfer CUTLASS, ...), the fastest is kept: it is the
kernel a tuned deployment runs, and its family (`kernel_family`) is recorded per row. Each of ec_max, em_max and
floor can be fitted per kernel family (`fit_moe(per_family=...)`); a family no fitting device ran takes its nearest
relative's values. The shipped fit shares them all (see PER_FAMILY for the measured comparison).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.fit import error_stats
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
KERNEL_FAMILIES = ("triton", "cutlass", "trtllm")
# A family the fitting devices never ran borrows its nearest relative's parameters: TRT-LLM-gen and FlashInfer's
# CUTLASS MoE are both NVIDIA CUTLASS-lineage grouped GEMMs; Triton's nearest is CUTLASS.
FAMILY_FALLBACK = {"triton": ("cutlass", "trtllm"), "cutlass": ("trtllm", "triton"), "trtllm": ("cutlass", "triton")}
# per kernel family (libraries differ more than datasheets: launch/fixed costs of 12-35 us, different streaming
# rates): the compute and memory efficiency ceilings and the fixed cost per layer; shared by all: the
# rows-per-expert half point of the compute efficiency and the bytes half point of the memory efficiency
PARAM_NAMES = (*(f"ec_{f}" for f in KERNEL_FAMILIES), *(f"em_{f}" for f in KERNEL_FAMILIES),
               *(f"floor_s_{f}" for f in KERNEL_FAMILIES), "x0", "b0")
N_FAM = len(KERNEL_FAMILIES)
FIT_FILE = "general/moe.json"  # beside the device-general GPU model (general/gpu.json) in calibration/profiles
FIT_FORMAT = "lvlmsim-moe-fit/2"


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
    kernel: np.ndarray  # kernel family of the fastest kernel per row (see `kernel_family`)
    files: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.measured_s)

    def take(self, idx: np.ndarray) -> MoEData:
        """The rows at `idx` (a fitting sample)."""
        cols = ("dtype", "table_dtype", "flops_up", "bytes_up", "flops_down", "bytes_down", "ew_bytes",
                "rows_per_expert", "measured_s", "tokens", "experts", "ep", "kernel")
        return MoEData(**{k: getattr(self, k)[idx] for k in cols})


def kernel_family(kernel_source: str) -> str:
    """The kernel library behind a table's `kernel_source`: vLLM's Triton fused MoE, FlashInfer's CUTLASS grouped
    GEMM, or FlashInfer's TRT-LLM-gen kernels (A100's `vllm_fused_moe` is the Triton kernel of vLLM 0.14)."""
    src = kernel_source.lower()
    if "trtllm" in src:
        return "trtllm"
    if "cutlass" in src:
        return "cutlass"
    if "triton" in src or src == "vllm_fused_moe":
        return "triton"
    return "other"


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
        if "kernel_source" not in df.columns:
            df["kernel_source"] = "unknown"
        frames.append(df[[*keys, "kernel_source", "latency"]])
    df = pd.concat(frames, ignore_index=True)
    df = df.loc[df.groupby(keys)["latency"].idxmin()]  # the fastest kernel per configuration, and which it was
    out: dict[str, list] = {k: [] for k in ("dtype", "tdt", "fu", "bu", "fd", "bd", "ew", "x", "meas", "t", "e", "ep",
                                            "kern")}
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
        out["kern"].append(kernel_family(str(r.kernel_source)))
    a = {k: np.array(v) for k, v in out.items()}
    return MoEData(a["dtype"], a["tdt"], a["fu"], a["bu"], a["fd"], a["bd"], a["ew"], a["x"], a["meas"], a["t"], a["e"],
                   a["ep"], a["kern"], [str(p.relative_to(root)) for p in paths], skipped)


def _priced_as(kernel: np.ndarray) -> np.ndarray:
    """Rows of an unknown kernel are priced as vLLM's default fused MoE (Triton)."""
    return np.where(np.isin(kernel, KERNEL_FAMILIES), kernel, "triton")


def predict(params: Sequence[float], data: MoEData, hw: HardwareSpec) -> np.ndarray:
    """Seconds per row under the device-general efficiency model (see the module docstring)."""
    p = dict(zip(PARAM_NAMES, params, strict=True))
    bw = hw.mem_bw_bytes_per_s
    fam = _priced_as(data.kernel)
    conds = [fam == f for f in KERNEL_FAMILIES]
    ec_max, em_max, floor = (np.select(conds, [p[f"{n}_{f}"] for f in KERNEL_FAMILIES], 1.0)
                             for n in ("ec", "em", "floor_s"))
    peak = np.array([hw.peak_flops(d) for d in data.dtype]) if len(data) else np.zeros(0)
    ec = ec_max * data.rows_per_expert / (data.rows_per_expert + p["x0"])
    total = np.zeros(len(data))
    for f, b in ((data.flops_up, data.bytes_up), (data.flops_down, data.bytes_down)):
        em = em_max * b / (b + p["b0"])
        total += np.maximum(f / (ec * peak), b / (em * bw))
    total += data.ew_bytes / (em_max * bw)
    return total + floor


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
    eff = 1.0 / (1.0 + np.exp(-z[:2 * N_FAM]))
    return [float(v) for v in eff] + [float(math.exp(v)) for v in z[2 * N_FAM:]]


def _z(natural: Sequence[float]) -> np.ndarray:
    eff = np.array(natural[:2 * N_FAM])
    return np.concatenate([np.log(eff / (1.0 - eff)), np.log(np.array(natural[2 * N_FAM:]))])


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


START = (*([0.6] * N_FAM), *([0.8] * N_FAM), *([2e-5] * N_FAM), 8.0, 2e6)


def _family_source(present: set[str]) -> list[int]:
    """Per family, the index of the family whose parameters it uses: itself when the fitting rows ran it, else its
    nearest present relative (FAMILY_FALLBACK)."""
    out = []
    for f in KERNEL_FAMILIES:
        src = f if f in present else next((g for g in FAMILY_FALLBACK[f] if g in present), KERNEL_FAMILIES[0])
        out.append(KERNEL_FAMILIES.index(src))
    return out


GROUPS = ("ec", "em", "floor_s")
# The shipped form shares every group across kernels. Fitting the fixed cost per family (`benchmarks/moe_fit.py
# --per-family floor_s`) moved the held-out medians A100 27.9 -> 25.8 %, B300 31.1 -> 27.9 %, RTX PRO 6000 39.0 ->
# 28.4 % but H100 32.9 -> 42.9 % (its Triton fixed cost is then learned from A100 alone), so it is not the default;
# per-family efficiency ceilings are worse everywhere (H100's per-tensor fp8 CUTLASS kernel poisons the family).
PER_FAMILY: tuple[str, ...] = ()


def _expand(t: np.ndarray, free: list[int], source: list[int], per_family: Sequence[str]) -> np.ndarray:
    """Free parameters (one value per fitted family for the `per_family` groups, one shared value for the other
    groups, then x0 and b0) -> the full natural-order vector."""
    out, i = [], 0
    for g in GROUPS:
        if g in per_family:
            vals = dict(zip(free, t[i:i + len(free)], strict=True))
            out.append(np.array([vals[source[f]] for f in range(N_FAM)]))
            i += len(free)
        else:
            out.append(np.full(N_FAM, t[i]))
            i += 1
    return np.concatenate([*out, t[i:]])


def fit_moe(datasets: Sequence[tuple[MoEData, HardwareSpec]], per_family: Sequence[str] = PER_FAMILY) -> list[float]:
    """Device-general parameters minimising the mean over devices of each device's mean |log error|.

    Each device weighs the same whatever its row count. Only the kernel families the fitting devices ran are
    fitted; the others take their nearest relative's values (FAMILY_FALLBACK), so a held-out device's own
    library is never learned from its own rows. `per_family` names the parameter groups (ec, em, floor_s) fitted
    per kernel family; the others are shared by all kernels.
    """
    present = {f for d, _ in datasets for f in np.unique(_priced_as(d.kernel))}
    source = _family_source(present)
    free = sorted(set(source))
    z0 = _z(START)

    def loss(t: np.ndarray) -> float:
        p = _natural(_expand(t, free, source, per_family))
        errs = [np.mean(np.abs(np.log(predict(p, d, hw) / d.measured_s))) for d, hw in datasets if len(d)]
        return float(np.mean(errs))

    start = [z0[j * N_FAM:(j + 1) * N_FAM][free] if g in per_family else z0[j * N_FAM:j * N_FAM + 1]
             for j, g in enumerate(GROUPS)]
    t = np.concatenate([*start, z0[3 * N_FAM:]])
    t = nelder_mead(loss, t, iters=3000)
    for step in (0.3, 0.1):  # restarts: Nelder-Mead stalls on a collapsed simplex
        t = nelder_mead(loss, t, step=step, iters=3000)
    return _natural(_expand(t, free, source, per_family))


# --------------------------------------------------------------------------------------------------------------
# report



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
    entry = error_stats(err, base)
    entry["profile_sources"] = [source]
    entry["regimes"] = {}
    for labels in regimes(data).values():
        for lab in dict.fromkeys(labels):
            entry["regimes"][lab] = error_stats(err[labels == lab], base[labels == lab])
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
