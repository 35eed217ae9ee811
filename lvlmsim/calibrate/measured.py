"""Measurement sources turned into (Op, measured seconds) rows, every Op built by the graph's own builders.

Two public layouts are read (see shared/data/measured/README.md for the column semantics):
- NVIDIA aiconfigurator tables under `<gpu>/<op>/<framework>/<version>/`: gemm_perf.csv, context_attention_perf.csv,
  generation_attention_perf.csv, encoder_attention_perf.csv, nccl_perf.csv (latency = mean ms per call);
- Vidur's per-layer `mlp.csv` (fp16 Llama-style layers; GEMMs and elementwise ops; times in ms).

Conventions that are easy to get wrong, kept here in one place:
- attention `num_heads`/`num_key_value_heads` are already per GPU (divided by TP);
- generation `step` is the KV length *before* the new token, so the kernel reads step+1 entries per sequence;
- context attention is causal from an empty cache (`step` past tokens, normally 0) and includes the KV write;
- fp8 GEMM rows are priced against the fp8 peak (the Op's dtype is fp8);
- the NCCL `message_size` is an element count: bytes = count x 2 for half, x 1 for int8;
- attention `window_size` w > 0 is a sliding window (a query sees itself and the w-1 keys before it): those rows are
  their own families (`*_attention_sliding`), priced with the graph's local-attention pairs and keys.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lvlmsim.errors import SpecError
from lvlmsim.ops.graph import allreduce as allreduce_builder
from lvlmsim.ops.graph import attention, collective, elementwise, gemm, local_keys_read, local_pairs
from lvlmsim.ops.op import (
    ALLREDUCE,
    ALLTOALL,
    ATTN_DECODE,
    ATTN_ENCODER,
    ATTN_PREFILL,
    CONV,
    ELEMENTWISE,
    GEMM,
    GraphConfig,
    Op,
)
from lvlmsim.specs.hardware import HardwareSpec

# Table families of the aiconfigurator layout -> the Op kind they measure (filled by register_family below; a new
# family - moe, mla, ... - joins with one register_family call in its own module). The report uses these names.
TABLES: dict[str, str] = {}
TABLE_FILES: dict[str, str] = {}

_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "half": "fp16", "fp16": "fp16", "fp8": "fp8",
           "float8_e4m3fn": "fp8", "float32": "fp32", "fp32": "fp32", "int8": "int8", "nvfp4": "fp4"}

# Row cap per table while load_aiconfigurator runs (None: every row); _read_csv applies it, so a registered loader
# gets it without knowing. The subsample is deterministic (seeded), so every run reads the same rows.
_MAX_ROWS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("max_rows", default=None)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured kernel: the Op the simulator would build for it and the time it took (seconds per call)."""

    op: Op
    measured_s: float
    family: str  # table family (gemm, context_attention, ...) or a benchmark family (elementwise, conv, copy, ...)
    source: str  # file it came from (relative to the data dir) or the benchmark that produced it
    tag: str = ""  # kernel source / variant, e.g. "torch.nn.functional.linear" or "rms_norm"


@dataclass
class LoadResult:
    """Rows read from a data folder, and what was skipped (and why) so a report can say so."""

    rows: list[Measurement] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def extend(self, other: LoadResult) -> None:
        self.rows.extend(other.rows)
        self.files.extend(other.files)
        self.skipped.update(other.skipped)


def _dtype(name: str) -> str:
    try:
        return _DTYPES[str(name).strip()]
    except KeyError:
        raise SpecError(f"unknown dtype '{name}' in measured data; known: {', '.join(sorted(_DTYPES))}") from None


def _cfg(dtype: str, act_dtype: str | None = None) -> GraphConfig:
    """A graph config where weights, compute and activations are all `dtype` (what a microbenchmark runs)."""
    d = {"vision": dtype, "projector": dtype, "llm": dtype}
    return GraphConfig(weight_dtype=d, compute_dtype=dict(d), act_dtype=act_dtype or dtype, kv_dtype=act_dtype or dtype)


# ------------------------------------------------------------------------------------------------------------------
# Op constructors for measured shapes: thin wrappers over lvlmsim.ops.graph builders (no FLOP formula here).


def gemm_op(m: int, n: int, k: int, dtype: str = "bf16") -> Op:
    """y[m,n] = x[m,k] W[k,n] with weights and compute in `dtype`; activations too, except for 8- and 4-bit GEMMs
    whose activations stay bf16 (vLLM's fp8 and NVFP4 linears read bf16 x, quantise it, and write a bf16 y)."""
    act = "bf16" if dtype in ("fp8", "int8", "fp4") else dtype
    return gemm("measured.gemm", "prefill", "llm", int(m), int(n), int(k), _cfg(dtype, act))


def conv_op(pixels_tokens: int, hidden: int, in_channels: int, patch: int, dtype: str = "bf16") -> Op:
    """Patch embedding as the graph prices it: a GEMM (tokens x hidden x C*p*p) carried under the `conv` kind."""
    op = gemm_op(pixels_tokens, hidden, in_channels * patch * patch, dtype)
    return dataclasses.replace(op, name="measured.patch_embed", kind=CONV, stage="encode", module="vision")


def decode_attention_op(batch: int, step: int, heads: int, kv_heads: int, head_dim: int, dtype: str = "bf16") -> Op:
    """One new query per sequence after `step` cached tokens: reads step+1 KV entries, writes the new token's KV."""
    kv = step + 1
    return attention("measured.attention", ATTN_DECODE, "decode", "llm", batch=batch, pairs=float(batch * kv),
                     q_tokens=float(batch), kv_tokens_read=float(batch * kv), heads=heads, kv_heads=kv_heads,
                     head_dim=head_dim, cfg=_cfg(dtype), kv_written_tokens=float(batch), q_per_seq=1.0,
                     kv_per_seq=float(kv))


def prefill_attention_op(batch: int, isl: int, heads: int, kv_heads: int, head_dim: int, dtype: str = "bf16",
                         past: int = 0) -> Op:
    """Causal attention of `isl` new tokens after `past` cached ones (0: from an empty cache), incl. the KV write."""
    q, p = float(isl), float(past)
    pairs = batch * (q * p + q * (q + 1) / 2.0)
    return attention("measured.attention", ATTN_PREFILL, "prefill", "llm", batch=batch, pairs=pairs,
                     q_tokens=batch * q, kv_tokens_read=batch * (p + q), heads=heads, kv_heads=kv_heads,
                     head_dim=head_dim, cfg=_cfg(dtype), kv_written_tokens=batch * q, q_per_seq=q,
                     kv_per_seq=p + q)


def sliding_prefill_attention_op(batch: int, isl: int, heads: int, kv_heads: int, head_dim: int, window: int,
                                 dtype: str = "bf16", past: int = 0) -> Op:
    """Causal attention of `isl` new tokens after `past` cached ones under a sliding window of `window` keys."""
    q, p = float(isl), float(past)
    keys = local_keys_read(p, q, window, "sliding")
    return attention("measured.attention.sliding", ATTN_PREFILL, "prefill", "llm", batch=batch,
                     pairs=batch * local_pairs(p, q, window, "sliding"), q_tokens=batch * q,
                     kv_tokens_read=batch * keys, heads=heads, kv_heads=kv_heads, head_dim=head_dim, cfg=_cfg(dtype),
                     kv_written_tokens=batch * q, q_per_seq=q, kv_per_seq=keys, window_tokens=window)


def sliding_decode_attention_op(batch: int, step: int, heads: int, kv_heads: int, head_dim: int, window: int,
                                dtype: str = "bf16") -> Op:
    """One new query per sequence after `step` cached tokens; it reads only the last min(step+1, window) entries."""
    kv = local_keys_read(float(step), 1.0, window, "sliding")
    return attention("measured.attention.sliding", ATTN_DECODE, "decode", "llm", batch=batch,
                     pairs=float(batch * kv), q_tokens=float(batch), kv_tokens_read=float(batch * kv), heads=heads,
                     kv_heads=kv_heads, head_dim=head_dim, cfg=_cfg(dtype), kv_written_tokens=float(batch),
                     q_per_seq=1.0, kv_per_seq=float(kv), window_tokens=window)


def encoder_attention_op(batch: int, isl: int, heads: int, head_dim: int, dtype: str = "bf16",
                         kv_len: int | None = None) -> Op:
    """Non-causal attention (ViT): every one of `isl` queries sees all `kv_len` (default isl) keys; no KV cache."""
    q = float(isl)
    kv = float(kv_len if kv_len is not None else isl)
    return attention("measured.attention", ATTN_ENCODER, "encode", "vision", batch=batch, pairs=batch * q * kv,
                     q_tokens=batch * q, kv_tokens_read=batch * kv, heads=heads, kv_heads=heads, head_dim=head_dim,
                     cfg=_cfg(dtype), kv_dtype=dtype, q_per_seq=q, kv_per_seq=kv)


def elementwise_op(elems: float, dtype: str = "bf16", reads: float = 1.0, writes: float = 1.0,
                   flops_per_elem: float = 1.0, extra_read_bytes: float = 0.0,
                   name: str = "measured.elementwise") -> Op:
    """An elementwise op; its `name` carries the role (measured.rms_norm, vidur.mlp_act) profiles are keyed on."""
    return elementwise(name, "prefill", "llm", elems, _cfg(dtype), flops_per_elem, reads, writes, extra_read_bytes)


def allreduce_op(message_bytes: float, devices: int, dtype: str = "bf16") -> Op:
    cfg = dataclasses.replace(_cfg(dtype if dtype in ("bf16", "fp16", "fp32") else "bf16"), tp=int(devices))
    return allreduce_builder("measured.allreduce", "decode", "llm", float(message_bytes), cfg)


def alltoall_op(message_bytes: float, devices: int, dtype: str = "bf16") -> Op:
    """An all-to-all of `message_bytes` per device over `devices` GPUs, as the graph builds expert-parallel dispatch
    and combine (lvlmsim.ops.graph.collective, kind ALLTOALL)."""
    cfg = _cfg(dtype if dtype in ("bf16", "fp16", "fp32") else "bf16")
    return collective("measured.alltoall", ALLTOALL, "decode", float(message_bytes), int(devices), cfg, 1, (0, 1), 0.0)


# ------------------------------------------------------------------------------------------------------------------
# aiconfigurator layout


def find_tables(data_dir: Path) -> dict[str, list[Path]]:
    """The measured tables under `data_dir` (a `<gpu>/` folder of the aiconfigurator layout), by family."""
    found: dict[str, list[Path]] = {}
    for fname, family in TABLE_FILES.items():
        paths = sorted(Path(data_dir).rglob(fname))
        if paths:
            found[family] = paths
    return found


def _read_csv(path: Path):
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad data file, reported with its path
        raise SpecError(f"--data: cannot read measured table {path}: {exc}") from exc
    cap = _MAX_ROWS.get()
    if cap is not None and len(df) > cap[0]:
        df = df.sample(n=cap[0], random_state=cap[1]).sort_index()
    return df


def _need(df, path: Path, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SpecError(f"--data: {path} lacks column(s) {', '.join(missing)}; columns: {', '.join(df.columns)}")


def load_gemm(path: Path, rel: str) -> LoadResult:
    df = _read_csv(path)
    _need(df, path, ("m", "n", "k", "latency"))
    out = LoadResult(files=[rel])
    dts = df["gemm_dtype"] if "gemm_dtype" in df.columns else ["bfloat16"] * len(df)
    srcs = df["kernel_source"] if "kernel_source" in df.columns else [""] * len(df)
    cache: dict[tuple, Op] = {}
    for m, n, k, lat, dt, src in zip(df["m"], df["n"], df["k"], df["latency"], dts, srcs, strict=True):
        if str(dt) not in _DTYPES or not lat > 0:
            out.skipped[f"gemm: dtype {dt} or non-positive latency"] += 1
            continue
        key = (int(m), int(n), int(k), _dtype(dt))
        op = cache.get(key) or cache.setdefault(key, gemm_op(*key))
        out.rows.append(Measurement(op, float(lat) * 1e-3, "gemm", rel, str(src)))
    return out


def _attention_common(df, path: Path) -> None:
    _need(df, path, ("batch_size", "isl", "num_heads", "head_dim", "latency"))


def load_context_attention(path: Path, rel: str) -> LoadResult:
    df = _read_csv(path)
    _attention_common(df, path)
    _need(df, path, ("num_key_value_heads",))
    out = LoadResult(files=[rel])
    n = len(df)
    win = df["window_size"] if "window_size" in df.columns else [0] * n
    step = df["step"] if "step" in df.columns else [0] * n
    dts = df["attn_dtype"] if "attn_dtype" in df.columns else ["bfloat16"] * n
    kvd = df["kv_cache_dtype"] if "kv_cache_dtype" in df.columns else dts
    src = df["kernel_source"] if "kernel_source" in df.columns else [""] * n
    for b, isl, h, kvh, d, st, w, dt, kd, lat, s in zip(df["batch_size"], df["isl"], df["num_heads"],
                                                        df["num_key_value_heads"], df["head_dim"], step, win, dts,
                                                        kvd, df["latency"], src, strict=True):
        if str(kd) != str(dt) or not lat > 0:
            out.skipped["context_attention: KV dtype differs from attention dtype, or bad latency"] += 1
            continue
        if int(w) != 0:
            op = sliding_prefill_attention_op(int(b), int(isl), int(h), int(kvh), int(d), int(w), _dtype(dt),
                                              past=int(st))
            out.rows.append(Measurement(op, float(lat) * 1e-3, "context_attention_sliding", rel, str(s)))
            continue
        op = prefill_attention_op(int(b), int(isl), int(h), int(kvh), int(d), _dtype(dt), past=int(st))
        out.rows.append(Measurement(op, float(lat) * 1e-3, "context_attention", rel, str(s)))
    return out


def load_generation_attention(path: Path, rel: str) -> LoadResult:
    df = _read_csv(path)
    _attention_common(df, path)
    _need(df, path, ("num_key_value_heads", "step"))
    out = LoadResult(files=[rel])
    n = len(df)
    win = df["window_size"] if "window_size" in df.columns else [0] * n
    beam = df["beam_width"] if "beam_width" in df.columns else [1] * n
    dts = df["attn_dtype"] if "attn_dtype" in df.columns else ["bfloat16"] * n
    kvd = df["kv_cache_dtype"] if "kv_cache_dtype" in df.columns else dts
    src = df["kernel_source"] if "kernel_source" in df.columns else [""] * n
    for b, isl, h, kvh, d, st, w, bw, dt, kd, lat, s in zip(df["batch_size"], df["isl"], df["num_heads"],
                                                            df["num_key_value_heads"], df["head_dim"], df["step"],
                                                            win, beam, dts, kvd, df["latency"], src, strict=True):
        if int(isl) != 1 or int(bw) != 1 or str(kd) != str(dt) or not lat > 0:
            out.skipped["generation_attention: isl != 1, beam search, KV dtype != attention dtype or bad latency"] += 1
            continue
        if int(w) != 0:
            op = sliding_decode_attention_op(int(b), int(st), int(h), int(kvh), int(d), int(w), _dtype(dt))
            out.rows.append(Measurement(op, float(lat) * 1e-3, "generation_attention_sliding", rel, str(s)))
            continue
        op = decode_attention_op(int(b), int(st), int(h), int(kvh), int(d), _dtype(dt))
        out.rows.append(Measurement(op, float(lat) * 1e-3, "generation_attention", rel, str(s)))
    return out


def load_encoder_attention(path: Path, rel: str) -> LoadResult:
    df = _read_csv(path)
    _attention_common(df, path)
    out = LoadResult(files=[rel])
    n = len(df)
    dts = df["attn_dtype"] if "attn_dtype" in df.columns else ["bfloat16"] * n
    src = df["kernel_source"] if "kernel_source" in df.columns else [""] * n
    for b, isl, h, d, dt, lat, s in zip(df["batch_size"], df["isl"], df["num_heads"], df["head_dim"], dts,
                                        df["latency"], src, strict=True):
        if not lat > 0:
            out.skipped["encoder_attention: bad latency"] += 1
            continue
        op = encoder_attention_op(int(b), int(isl), int(h), int(d), _dtype(dt))
        out.rows.append(Measurement(op, float(lat) * 1e-3, "encoder_attention", rel, str(s)))
    return out


_NCCL_BYTES = {"half": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "float16": 2, "int8": 1, "float32": 4, "fp32": 4}


# NCCL ops of the tables that are not fitted or validated here, and why (the skip reason validate prints)
_NCCL_UNPRICED = {
    "all_gather": "the graph's all-gather (expert-parallel, priced as an all-to-all) is priced by the all-to-all "
                  "family, which is not fitted on or validated against all-gather rows",
}
# NCCL op name -> (table family of its rows, Op builder): all-reduce rows are the `nccl` family, all-to-all rows
# (expert-parallel dispatch / combine) the `alltoall` family
_NCCL_FAMILIES: dict[str, tuple[str, Callable[[float, int, str], Op]]] = {}


def load_nccl(path: Path, rel: str) -> LoadResult:
    """All-reduce rows (family `nccl`) and all-to-all rows (family `alltoall`); all-gather rows are skipped (the graph
    prices an all-gather as an all-to-all, but no family is fitted on them) and the graph has no reduce-scatter op.
    `message_size` is the element count per device of both ops."""
    df = _read_csv(path)
    _need(df, path, ("num_gpus", "message_size", "latency"))
    out = LoadResult(files=[rel])
    n = len(df)
    names = df["op_name"] if "op_name" in df.columns else ["all_reduce"] * n
    dts = df["nccl_dtype"] if "nccl_dtype" in df.columns else ["half"] * n
    for name, dt, g, size, lat in zip(names, dts, df["num_gpus"], df["message_size"], df["latency"], strict=True):
        family = _NCCL_FAMILIES.get(str(name))
        if family is None:
            out.skipped[f"nccl: {name} ({_NCCL_UNPRICED.get(str(name), 'no such op in the cost model')})"] += 1
            continue
        if str(dt) not in _NCCL_BYTES or not lat > 0:
            out.skipped[f"nccl: dtype {dt} or bad latency"] += 1
            continue
        nbytes = float(size) * _NCCL_BYTES[str(dt)]
        op = family[1](nbytes, int(g), "fp16")
        out.rows.append(Measurement(op, float(lat) * 1e-3, family[0], rel, str(dt)))
    return out


def load_custom_allreduce(path: Path, rel: str) -> LoadResult:
    """vLLM's tensor-parallel all-reduce under CUDA-graph replay (`vllm_graph` rows), below the custom kernel's buffer
    (the vLLM policy's max_bytes, calibration/collectives.yaml): whether the custom kernel or NCCL ran there depends on
    the GPUs' fabric, which assign_allreduce_algorithm settles once the device is known. Eager rows are left out:
    their ~20-45 us is the host's launch path (the eager runtime's kernel floor, lvlmsim.cost.runtime), and rows at or
    above the buffer ran NCCL or symmetric-memory all-reduce, not the custom kernel."""
    from lvlmsim.cost.collectives import custom_allreduce_policy

    max_bytes = custom_allreduce_policy("vllm").max_bytes
    df = _read_csv(path)
    _need(df, path, ("num_gpus", "message_size", "latency", "backend"))
    out = LoadResult(files=[rel])
    dts = df["allreduce_dtype"] if "allreduce_dtype" in df.columns else ["bfloat16"] * len(df)
    for backend, dt, g, size, lat in zip(df["backend"], dts, df["num_gpus"], df["message_size"], df["latency"],
                                         strict=True):
        if str(backend) != "vllm_graph":
            out.skipped[f"custom_allreduce: {backend} rows (eager launches: the eager runtime floor)"] += 1
            continue
        if str(dt) not in _NCCL_BYTES or not lat > 0:
            out.skipped[f"custom_allreduce: dtype {dt} or bad latency"] += 1
            continue
        nbytes = float(size) * _NCCL_BYTES[str(dt)]  # message_size is an element count
        if not nbytes < max_bytes:
            out.skipped["custom_allreduce: at or above the custom kernel's buffer (NCCL / symmetric memory)"] += 1
            continue
        op = allreduce_op(nbytes, int(g), "bf16")
        out.rows.append(Measurement(op, float(lat) * 1e-3, "custom_allreduce", rel, "vllm_graph"))
    return out


def assign_allreduce_algorithm(rows: list[Measurement], hw: HardwareSpec) -> list[Measurement]:
    """`rows` with each custom_allreduce row settled by vLLM's policy on `hw`: the custom kernel's rows are marked
    (their op prices with the `allreduce/custom` family), the others (a group of more than two PCIe GPUs) become
    `custom_allreduce_nccl` rows, NCCL's, priced as NCCL all-reduces and kept out of the custom fit."""
    from lvlmsim.cost.collectives import CUSTOM_AR_SUFFIX, custom_allreduce_policy

    policy = custom_allreduce_policy("vllm")
    out = []
    for r in rows:
        if r.family == "custom_allreduce" and not r.op.name.endswith(CUSTOM_AR_SUFFIX):
            if policy.picks_custom(hw, r.op.devices, r.op.bytes_read):
                r = dataclasses.replace(r, op=dataclasses.replace(r.op, name=r.op.name + CUSTOM_AR_SUFFIX))
            else:
                r = dataclasses.replace(r, family="custom_allreduce_nccl")
        out.append(r)
    return out


@dataclass(frozen=True)
class TableFamily:
    """A measured table family: its report name, the Op kind it measures, its file name, its loader, and how
    `validate` splits it into size regimes (a labelling function and the labels' order)."""

    name: str
    kind: str
    file_name: str | None  # None: its rows come out of another family's table (e.g. sliding-window attention)
    loader: Callable[[Path, str], LoadResult] | None
    regime: Callable[[Measurement], str] | None = None
    regime_order: tuple[str, ...] = ()


FAMILIES: dict[str, TableFamily] = {}


def register_family(fam: TableFamily) -> TableFamily:
    """Add a table family (validate, the fits and leave-one-out pick it up); one call per new family."""
    FAMILIES[fam.name] = fam
    TABLES[fam.name] = fam.kind
    if fam.file_name:
        TABLE_FILES[fam.file_name] = fam.name
    return fam


def _bins(value: float, edges: tuple[float, ...], labels: tuple[str, ...]) -> str:
    for edge, label in zip(edges, labels, strict=False):
        if value <= edge:
            return label
    return labels[-1]


MiB = 2**20
GEMM_REGIMES = ("m 1-16", "m 17-256", "m 257-4096", "m >4096")
TOKEN_REGIMES = ("tokens 1-128", "tokens 129-1024", "tokens 1025-4096", "tokens >4096")
KV_REGIMES = ("KV <16 MiB", "KV 16-256 MiB", "KV 256 MiB-1 GiB", "KV >1 GiB")
MSG_REGIMES = ("msg <=64 KiB", "msg 64 KiB-4 MiB", "msg 4-64 MiB", "msg >64 MiB")


def gemm_regime(m: Measurement) -> str:
    return _bins(m.op.shape[0], (16, 256, 4096), GEMM_REGIMES)


def tokens_regime(m: Measurement) -> str:
    return _bins(m.op.shape[1], (128, 1024, 4096), TOKEN_REGIMES)


def kv_bytes(m: Measurement) -> float:
    from lvlmsim.specs.base import DTYPE_BYTES

    b, _q, kv, _h, kvh, d = m.op.shape[:6]
    return 2.0 * b * kv * kvh * d * DTYPE_BYTES.get(m.op.dtype, 2.0)


def kv_regime(m: Measurement) -> str:
    return _bins(kv_bytes(m), (16 * MiB, 256 * MiB, 1024 * MiB), KV_REGIMES)


def msg_regime(m: Measurement) -> str:
    return _bins(m.op.bytes_read, (64 * 1024, 4 * MiB, 64 * MiB), MSG_REGIMES)


register_family(TableFamily("gemm", GEMM, "gemm_perf.csv", load_gemm, gemm_regime, GEMM_REGIMES))
register_family(TableFamily("context_attention", ATTN_PREFILL, "context_attention_perf.csv", load_context_attention,
                            tokens_regime, TOKEN_REGIMES))
register_family(TableFamily("generation_attention", ATTN_DECODE, "generation_attention_perf.csv",
                            load_generation_attention, kv_regime, KV_REGIMES))
register_family(TableFamily("encoder_attention", ATTN_ENCODER, "encoder_attention_perf.csv", load_encoder_attention,
                            tokens_regime, TOKEN_REGIMES))
register_family(TableFamily("nccl", ALLREDUCE, "nccl_perf.csv", load_nccl, msg_regime, MSG_REGIMES))
register_family(TableFamily("custom_allreduce", ALLREDUCE, "custom_allreduce_perf.csv", load_custom_allreduce,
                            msg_regime, MSG_REGIMES))
register_family(TableFamily("custom_allreduce_nccl", ALLREDUCE, None, None, msg_regime, MSG_REGIMES))
register_family(TableFamily("alltoall", ALLTOALL, None, None, msg_regime, MSG_REGIMES))  # out of nccl_perf.csv
_NCCL_FAMILIES.update({"all_reduce": ("nccl", allreduce_op), "alltoall": ("alltoall", alltoall_op)})
register_family(TableFamily("context_attention_sliding", ATTN_PREFILL, None, None, tokens_regime, TOKEN_REGIMES))
register_family(TableFamily("generation_attention_sliding", ATTN_DECODE, None, None, kv_regime, KV_REGIMES))


def load_aiconfigurator(data_dir: str | Path, families: Iterable[str] | None = None, *,
                        max_rows_per_table: int | None = None, seed: int = 0) -> LoadResult:
    """Every measured table under `data_dir` (a `<gpu>/` folder), converted to (Op, seconds) rows.

    `max_rows_per_table` reads a seeded random subsample of each table (leave-one-out and the general fit use it to
    stay fast); None reads every row."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SpecError(f"--data: '{data_dir}' is not a folder; expected the layout <gpu>/<op>/<framework>/<version>/ "
                        f"of aiconfigurator's systems/data (tables: {', '.join(TABLE_FILES)})")
    tables = find_tables(root)
    if not tables:
        raise SpecError(f"--data: no measured tables under '{data_dir}'; expected any of {', '.join(TABLE_FILES)} "
                        f"in <gpu>/<op>/<framework>/<version>/ folders")
    wanted = set(families) if families is not None else set(TABLES)
    out = LoadResult()
    token = _MAX_ROWS.set((int(max_rows_per_table), int(seed)) if max_rows_per_table else None)
    try:
        for family, paths in tables.items():
            if family not in wanted:
                continue
            for p in paths:
                out.extend(FAMILIES[family].loader(p, str(p.relative_to(root))))
    finally:
        _MAX_ROWS.reset(token)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Vidur mlp.csv


_VIDUR_ELEMENTWISE = ("emb", "input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add")
_VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


def load_vidur_mlp(path: str | Path, rel: str | None = None, stat: str = "median") -> LoadResult:
    """Vidur's per-layer op times (fp16, one GPU shard) as GEMM and elementwise rows, built like the graph builds them.

    Byte conventions follow lvlmsim.ops.graph: norms read and write the hidden state once, `add` reads two, the
    gated activation reads gate and up, RoPE touches (heads + kv_heads) * head_dim per token, the embedding
    gathers one hidden row per token.
    """
    path = Path(path)
    rel = rel or str(path)
    df = _read_csv(path)
    _need(df, path, ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tokens", "num_tensor_parallel_workers"))
    out = LoadResult(files=[rel])
    dt = "fp16"
    for row in df.to_dict("records"):
        m, tp = int(row["num_tokens"]), int(row["num_tensor_parallel_workers"])
        h, heads = int(row["n_embd"]), int(row["n_head"])
        kvh, inter = int(row["n_kv_head"]), int(row["n_expanded_embd"])
        gated = bool(row.get("use_gated_mlp", True))
        hd = h // heads
        heads_t, kv_t, inter_t = max(1, heads // tp), max(1, kvh // tp), -(-inter // tp)
        shapes = {
            "attn_pre_proj": (m, (heads_t + 2 * kv_t) * hd, h),
            "attn_post_proj": (m, h, heads_t * hd),
            "mlp_up_proj": (m, (2 if gated else 1) * inter_t, h),
            "mlp_down_proj": (m, h, inter_t),
        }
        for name in _VIDUR_GEMMS:
            t = row.get(f"time_stats.{name}.{stat}")
            if t is None or not t > 0:
                out.skipped[f"vidur: missing {name}"] += 1
                continue
            op = gemm_op(*shapes[name], dtype=dt)
            out.rows.append(Measurement(op, float(t) * 1e-3, "gemm", rel, f"vidur.{name}"))
        elem = {
            "emb": (m * h, 1.0, 1.0, 0.0),
            "input_layernorm": (m * h, 1.0, 1.0, 5.0),
            "post_attention_layernorm": (m * h, 1.0, 1.0, 5.0),
            "attn_rope": (m * (heads_t + kv_t) * hd, 1.0, 1.0, 3.0),
            "mlp_act": (m * inter_t, 2.0 if gated else 1.0, 1.0, 8.0),
            "add": (m * h, 2.0, 1.0, 1.0),
        }
        for name in _VIDUR_ELEMENTWISE:
            t = row.get(f"time_stats.{name}.{stat}")
            if t is None or not t > 0:
                out.skipped[f"vidur: missing {name}"] += 1
                continue
            n_el, reads, writes, fpe = elem[name]
            op = elementwise_op(n_el, dt, reads, writes, fpe, name=f"vidur.{name}")
            out.rows.append(Measurement(op, float(t) * 1e-3, "elementwise", rel, f"vidur.{name}"))
    return out


def load_vidur_dir(root: str | Path, gpu: str) -> LoadResult:
    """All `compute/<gpu>/**/mlp.csv` under a Vidur profiling folder (e.g. gpu='h100')."""
    base = Path(root)
    out = LoadResult()
    for p in sorted((base / "compute" / gpu).rglob("mlp.csv")):
        out.extend(load_vidur_mlp(p, str(p.relative_to(base))))
    return out


# ------------------------------------------------------------------------------------------------------------------
# rebuilding an Op from a CSV row (kind, shape, dtype, tag): the raw measurements file is self-contained

# elementwise microbenchmarks: tag -> (reads, writes, flops per element), as lvlmsim.ops.graph counts them
ELEMENTWISE_TAGS: dict[str, tuple[float, float, float]] = {
    "add": (2.0, 1.0, 1.0), "rms_norm": (1.0, 1.0, 5.0), "gelu": (1.0, 1.0, 8.0), "copy": (1.0, 1.0, 0.0),
}


def op_from_row(kind: str, shape: tuple, dtype: str, tag: str = "") -> Op:
    """The Op of a measurement row, rebuilt with the graph builders from its kind, shape, dtype and tag."""
    if kind == GEMM:
        return gemm_op(int(shape[0]), int(shape[1]), int(shape[2]), dtype)
    if kind == CONV:
        op = gemm_op(int(shape[0]), int(shape[1]), int(shape[2]), dtype)
        return dataclasses.replace(op, name="measured.patch_embed", kind=CONV, stage="encode", module="vision")
    if kind in (ATTN_PREFILL, ATTN_DECODE, ATTN_ENCODER):
        b, q, kv, h, kvh, d = (float(x) for x in shape[:6])
        if kind == ATTN_DECODE:
            return decode_attention_op(int(b), int(round(kv)) - 1, int(h), int(kvh), int(d), dtype)
        if kind == ATTN_PREFILL:
            return prefill_attention_op(int(b), int(round(q)), int(h), int(kvh), int(d), dtype,
                                        past=int(round(kv - q)))
        return encoder_attention_op(int(b), int(round(q)), int(h), int(d), dtype, kv_len=int(round(kv)))
    if kind == ELEMENTWISE:
        if tag not in ELEMENTWISE_TAGS:
            raise SpecError(f"elementwise row with unknown tag '{tag}'; known: {', '.join(ELEMENTWISE_TAGS)}")
        reads, writes, fpe = ELEMENTWISE_TAGS[tag]
        return elementwise_op(float(shape[0]), dtype, reads, writes, fpe, name=f"measured.{tag}")
    if kind == ALLREDUCE:
        return allreduce_op(float(shape[0]), int(shape[1]), dtype)
    if kind == ALLTOALL:
        return alltoall_op(float(shape[0]), int(shape[1]), dtype)
    raise SpecError(f"unknown op kind '{kind}'")
