"""Where the MoE fit still misses, measured: the residual tables docs/moe.md quotes ("Where it still fails").

    python benchmarks/moe_residuals.py [--data ../shared/data/measured/aiconfigurator/data] [--section NAME ...]

Every table scores each device with the fold of calibration/profiles/general/moe.json that held it out (as
`lvlmsim validate` does), as the median of log(measured / predicted) per token range: 0 is on target, +0.4 is 1.5x
slower than priced. Sections:

- alignment: Triton rows whose expert width per GPU (inter / moe_tp) is not a multiple of 16 against the rest
  (lvlmsim.calibrate.moe.TRITON_ALIGN: Triton's divisibility-16 specialisation of the strides).
- triton-configs: each device's Triton rows by whether vLLM ships a tuned fused_moe config for their (local experts E,
  expert width per GPU N, GPU, dtype) (calibration/vllm_fused_moe_configs.yaml, lvlmsim.calibrate.moe.triton_config);
  without one the kernel runs vLLM's default tile config.
- fp8-per-tensor: each quantized kernel_source against the same device's bf16 kernel on the configurations both ran
  (median time ratio per token range), and the weight bandwidth each kernel_source reaches while memory-bound (1 to 8
  tokens, one GPU, balanced load: the extra weight bytes of the extra experts touched over the extra time).
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
from lvlmsim.calibrate.moe import (  # noqa: E402
    MOE_DTYPES,
    TABLE_KEYS,
    _read_tables,
    expert_gated,
    fit_file,
    load_fit,
    load_moe_table,
    params_for,
    predict,
    regimes,
    table_routing,
)
from lvlmsim.specs.registry import load_hardware, profiles_dir  # noqa: E402

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo
TOKEN_BINS = [0, 16, 256, 1024, 4096, 10**9]
TOKEN_LABELS = ["1-16", "17-256", "257-1024", "1025-4096", ">4096"]


def token_bin(tokens) -> pd.Categorical:
    return pd.cut(np.asarray(tokens), TOKEN_BINS, labels=TOKEN_LABELS)


def held_out_residuals(data_root: Path, gpu: str, hw) -> tuple[pd.DataFrame, object]:
    """The device's fastest rows with log(measured / predicted) under the fold that held it out."""
    params, _ = params_for(load_fit(fit_file(profiles_dir())), hw.id)
    data = load_moe_table(data_root / gpu, hw)
    frame = pd.DataFrame({"tokens": data.tokens, "ep": data.ep, "experts": data.experts, "kernel": data.kernel,
                          "inter_local": data.inter_local, "alignment": regimes(data)["alignment"],
                          "log_ratio": np.log(data.measured_s / predict(params, data, hw))})
    frame["token_range"] = token_bin(frame.tokens)
    return frame, data


def show(frame: pd.DataFrame, index: list[str], title: str) -> None:
    """Median log ratio and row count per index group and token range."""
    print(f"\n{title}")
    med = frame.pivot_table(index=index, columns="token_range", values="log_ratio", aggfunc="median", observed=True)
    rows = frame.groupby(index, observed=True).size().rename("rows")
    print(med.round(2).join(rows).to_string())


def alignment(data_root: Path, devices: dict) -> None:
    for gpu, hw in devices.items():
        frame, _ = held_out_residuals(data_root, gpu, hw)
        frame = frame[frame.kernel == "triton"]
        if len(frame):
            show(frame, ["alignment"], f"{hw.id}: Triton rows by expert width per GPU, median log(measured/predicted)")


def triton_configs(data_root: Path, devices: dict) -> None:
    for gpu, hw in devices.items():
        frame, data = held_out_residuals(data_root, gpu, hw)
        frame["vllm_config"] = np.where(data.triton_default, "default", "tuned")
        frame = frame[frame.kernel == "triton"]
        if not len(frame):
            continue
        frame["ep_range"] = np.where(frame.ep == 1, "ep 1", "ep > 1")
        show(frame, ["vllm_config", "ep_range"], f"{hw.id}: Triton rows by vLLM tuned config for (E, N, dtype)")


def _every_kernel(data_root: Path, gpu: str) -> pd.DataFrame:
    every, _ = _read_tables(data_root / gpu)
    return every


def quantized_vs_bf16(data_root: Path, devices: dict) -> None:
    for gpu, hw in devices.items():
        every = _every_kernel(data_root, gpu)
        bf16 = every[every.moe_dtype == "bfloat16"].groupby(TABLE_KEYS[1:])["latency"].min().rename("bf16")
        other = every[every.moe_dtype.isin(["fp8", "fp8_block", "nvfp4"])].join(bf16, on=TABLE_KEYS[1:], how="inner")
        if other.empty:
            continue
        other = other.assign(ratio=other.latency / other.bf16, token_range=token_bin(other.num_tokens))
        print(f"\n{hw.id}: time / fastest bf16 time on the same configuration, median per kernel_source")
        table = other.pivot_table(index="kernel_source", columns="token_range", values="ratio", aggfunc="median",
                                  observed=True)
        print(table.round(2).join(other.groupby("kernel_source").size().rename("rows")).to_string())
        memory_bound_bandwidth(data_root, gpu, hw)


def memory_bound_bandwidth(data_root: Path, gpu: str, hw) -> None:
    """Per kernel_source: median over shapes of (weight bytes at 8 tokens - at 1 token) / (time at 8 - at 1), one GPU,
    balanced load, as a share of the datasheet bandwidth (activations are noise at these sizes)."""
    every = _every_kernel(data_root, gpu)
    every = every[every.moe_dtype.isin(list(MOE_DTYPES)) & (every.distribution == "balanced")
                  & (every.moe_tp_size == 1) & (every.moe_ep_size == 1) & every.num_tokens.isin([1, 8])]
    if every.empty:
        return
    touched = [table_routing(int(r.num_tokens), int(r.num_experts), int(r.topk), 1, "balanced")[1]
               for r in every.itertuples(index=False)]
    matrices = [3 if expert_gated(int(r.hidden_size), int(r.inter_size), int(r.topk), int(r.num_experts),
                                  str(r.kernel_source)) else 2 for r in every.itertuples(index=False)]
    every = every.assign(weight_bytes=np.array(touched) * np.array(matrices) * every.hidden_size * every.inter_size
                         * every.moe_dtype.map(lambda d: MOE_DTYPES[d][1]))
    keys = ["kernel_source", "hidden_size", "inter_size", "num_experts", "topk"]
    pair = every[every.num_tokens == 1].merge(every[every.num_tokens == 8], on=keys, suffixes=("_1", "_8"))
    pair = pair[pair.weight_bytes_8 > 1.5 * pair.weight_bytes_1]  # 8 tokens touch more experts than 1
    if pair.empty:
        return
    seconds = (pair.latency_8 - pair.latency_1) * 1e-3
    share = (pair.weight_bytes_8 - pair.weight_bytes_1) / seconds / hw.mem_bw_bytes_per_s
    print(f"{hw.id}: memory-bound weight bandwidth, 1 -> 8 tokens, share of {hw.mem_bw_bytes_per_s / 1e12:.2f} TB/s")
    print(share.groupby(pair.kernel_source).agg(["median", "size"]).round(2).to_string())


SECTIONS = {"alignment": alignment, "triton-configs": triton_configs, "fp8-per-tensor": quantized_vs_bf16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--section", action="append", choices=sorted(SECTIONS), help="default: all")
    args = ap.parse_args()
    root = Path(args.data)
    devices = {gpu: load_hardware(ref) for gpu, ref in DEVICES.items() if (root / gpu).is_dir()}
    for name in args.section or list(SECTIONS):
        SECTIONS[name](root, devices)


if __name__ == "__main__":
    main()
