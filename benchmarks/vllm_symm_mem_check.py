"""Which all-reduce vLLM's custom all-reduce tables timed above the custom kernel's buffer (issue 11, wave 11; a
finding, nothing in the model reads it).

    python benchmarks/vllm_symm_mem_check.py     # about 5 s; needs ../shared/data/measured

vLLM's CudaCommunicator.all_reduce tries the custom kernel, then torch symmetric-memory all-reduce, then NCCL
(vllm/distributed/device_communicators/cuda_communicator.py). With VLLM_ALLREDUCE_USE_SYMM_MEM (default 1 in recent
vLLM, vllm/envs.py) the custom kernel's buffer is min(8 MiB, CUSTOM_ALL_REDUCE_MAX_SIZES[capability][GPUs]) (sm90:
64 / 32 MiB at 2 / 4 GPUs, 512 / 256 KiB at 6 / 8) and messages from there up to SYMM_MEM_ALL_REDUCE_MAX_SIZES (sm90:
64 / 32 / 64 / 64 MiB) run torch symmetric memory (multimem, the switch's reduction, at 4-8 GPUs on sm90); sm80 (A100)
has no entry and keeps the 8 MiB custom buffer then NCCL (vllm/distributed/device_communicators/all_reduce_utils.py).
aiconfigurator's collector times vLLM's own dispatch (collector/collect_all_reduce.py: tensor_model_parallel_all_reduce
under graph_capture), so the tables show it.

Prints (1) per device and GPU count, vLLM's graph-captured all-reduce time over NCCL's (nccl-tests, half) at the same
message from 1 MiB: NCCL's own fallback reads ~1.0, a faster path below 1; (2) the custom all-reduce family held out
per device, as shipped and with H100's 8-GPU rows from 256 KiB (sm90's symmetric-memory buffer at 8 GPUs) left out of
every fit and score. B300 (sm103) is left as it is: its thresholds in the vLLM 0.24 the tables ran were not
established.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from collective_residual_map import signed_errors  # noqa: E402

from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

MiB = 1 << 20
SM90_SYMM_CUSTOM_MAX_BYTES_8_GPUS = 256 * 1024  # vLLM CUSTOM_ALL_REDUCE_MAX_SIZES["9.0"][8]


def ratio_table(data: Path) -> None:
    """vLLM graph-captured all-reduce / NCCL all-reduce time at equal bf16/half messages from 1 MiB."""
    for folder in ("a100_sxm", "h100_sxm", "b300_sxm"):
        vllm = sorted(Path(data, folder).glob("comm/vllm/*/custom_allreduce_perf.csv"))
        nccl = sorted(Path(data, folder).glob("comm/nccl/*/nccl_perf.csv"))
        if not vllm or not nccl:
            continue
        v, n = pd.read_csv(vllm[-1]), pd.read_csv(nccl[-1])
        v = v[v.backend == "vllm_graph"]
        n = n[(n.op_name == "all_reduce") & (n.nccl_dtype == "half")]
        for gpus in (2, 4, 8):
            a = v[v.num_gpus == gpus].set_index("message_size").latency
            b = n[n.num_gpus == gpus].set_index("message_size").latency
            r = (a / b).dropna()
            r = r[r.index * 2 >= MiB]  # element counts of 2-byte values
            print(f"{folder:<10}{gpus} GPUs  " + "  ".join(f"{int(s * 2 / MiB)}M {x:.2f}" for s, x in r.items()))


def cells(devices: dict, label: str) -> None:
    for held in devices:
        err, _ = signed_errors(devices, "custom_allreduce", held)
        if len(err):
            a = np.abs(err)
            print(f"{label:<38}{held:<22}n {len(a):>3}  median {np.median(a):5.1f}  p90 {np.percentile(a, 90):5.1f}"
                  f"  signed {np.median(err):+5.1f}")


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args:
        print(f"unknown arguments {' '.join(args)!r}; this script takes none")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to check")
        return 1
    data = measured / "aiconfigurator" / "data"
    print("vLLM graph-captured all-reduce time / NCCL's, by message bytes (M = MiB)")
    ratio_table(data)
    devices = load_devices(data)
    print("\ncustom all-reduce family held out (median / p90 |error| %, signed median %)")
    cells(devices, "as shipped")
    hw, rows = devices["h100_sxm"]
    devices["h100_sxm"] = (hw, [r for r in rows if not (r.family == "custom_allreduce" and r.op.devices == 8
                                                       and r.op.bytes_read >= SM90_SYMM_CUSTOM_MAX_BYTES_8_GPUS)])
    cells(devices, "H100 8-GPU rows >= 256 KiB left out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
