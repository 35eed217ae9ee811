"""What-if (issue 13, wave 11, not shipped): SGLang's scheduler thread handles each request's processed pixels
before it forms the next batch, and lvlmsim does not price that on the engine's critical path.

From SGLang's source (sgl-project/sglang python/sglang/srt/managers/scheduler.py of 2025: `recv_requests` on TP rank
0 takes each TokenizedGenerateReqInput off ZMQ with recv_pyobj (unpickling its mm_inputs, the pixel_values tensors
the TokenizerManager processed and moved to the CPU, keep_mm_feature_on_device False by default), then with tp_size
> 1 `broadcast_pyobj(recv_reqs, ...)` over the gloo CPU group (pickled again on rank 0, unpickled on the others);
`handle_generate_request` calls MultimodalInputs.from_dict, whose set_pad_value hashes every item's feature
(mm_utils.tensor_hash: a CPU tensor is copied with .numpy().tobytes() and hashed with hashlib.sha256). PR #11910
(Oct 2025: "processing mm_inputs takes about 500 ms" for a 2 MB video, "all the Scheduler TP ranks will run this
duplicated computing portion ... the scheduler is single-threaded") and PR #25941 (May 2026: "hashing the same large
pixel_values tensor independently in every scheduler TP rank") describe the same work. It runs in the loop that
launches the GPU batches, so the GPU waits for it once it outlasts the batch in flight.

This script measures, on this machine's CPU (thread time, best of 7), the four per-byte costs of a float32 tensor
the size of one cookbook request's pixels (two 720p images of Qwen3-VL), then replays the SGLang image rows of
workloads/validation/bench-runs.yaml with rank 0's work (unpickle + pickle + tobytes + sha256, the pickle only with
tp > 1; the gloo transfer itself left out) added to the step that first prefills each image request: `overlapped`
as max(step, host), `serial` as step + host. It prints published / lvlmsim / both what-ifs. Nothing here changes
what lvlmsim ships.

    PYTHONPATH=. python benchmarks/sglang_mm_scheduler_whatif.py
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lvlmsim.bench.run import run_bench  # noqa: E402
from lvlmsim.bench.validation import load_rows, row_args  # noqa: E402
from lvlmsim.cost.host import transfer_bytes  # noqa: E402
from lvlmsim.engine.instance import LlmInstance  # noqa: E402

METRICS = ("request_throughput", "mean_ttft_ms", "mean_tpot_ms")
PATCHES = 2 * 3520  # two 1280x720 images for Qwen3-VL (patch 16, 2x2 merge: 40 x 22 tokens each)
PATCH_VALUES = 3 * 2 * 16 * 16  # channels x temporal patch x 16 x 16, float32


def best_thread_s(fn, reps: int = 7) -> float:
    """The calling thread's CPU seconds of `fn`, best of `reps` (the machine is shared)."""
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return min(times)


def rank0_s_per_byte() -> dict[str, float]:
    """Seconds per byte of each step rank 0's scheduler thread does on a request's pixel tensor."""
    pixels = torch.rand(PATCHES, PATCH_VALUES, dtype=torch.float32)
    raw = pixels.numpy().tobytes()
    pickled = pickle.dumps(pixels)
    n = len(raw)
    return {"unpickle (ZMQ recv_pyobj)": best_thread_s(lambda: pickle.loads(pickled)) / n,
            "pickle (broadcast_pyobj)": best_thread_s(lambda: pickle.dumps(pixels)) / n,
            "tobytes (tensor_hash)": best_thread_s(lambda: pixels.numpy().tobytes()) / n,
            "sha256 (data_hash)": best_thread_s(lambda: hashlib.sha256(raw).digest()) / n}


def patch_price(s_per_byte: float, mode: str):
    """LlmInstance.price with each newly prefilled image request's scheduler work added to its step."""
    price = LlmInstance.price

    def priced(self, step):
        out = price(self, step)
        model = self.coster.model
        host_s = sum(transfer_bytes(model, sum(r.vit_seq_lens) * model.vision.patch_size ** 2) * s_per_byte
                     for r, _ in step.chunks if r.computed == 0 and r.images and r.vit_seq_lens)
        if host_s:
            out.seconds = max(out.seconds, host_s) if mode == "overlapped" else out.seconds + host_s
        return out

    LlmInstance.price = priced
    return price


def replay(row: dict, s_per_byte: float | None, mode: str) -> dict:
    original = patch_price(s_per_byte, mode) if s_per_byte is not None else None
    try:
        return run_bench(row_args(row)).result
    finally:
        if original is not None:
            LlmInstance.price = original


def main() -> None:
    costs = rank0_s_per_byte()
    total = sum(costs.values())
    single = total - costs["pickle (broadcast_pyobj)"]
    mb = PATCHES * PATCH_VALUES * 4 / 1e6
    for k, v in costs.items():
        print(f"{k:28s} {v * 1e9:6.2f} ns/byte  ({v * mb * 1e9:6.1f} ms for {mb:.1f} MB)")
    print(f"{'rank 0 in all (tp > 1)':28s} {total * 1e9:6.2f} ns/byte  ({total * mb * 1e9:6.1f} ms a cookbook request; "
          "tp 1 has no broadcast pickle)\n")
    rows = [r for r in load_rows() if r["conditions"]["runtime"] == "sglang" and r.get("args", {}).get("image_count")]
    print(f"{'row':50s} {'metric':20s} {'published':>10s} {'lvlmsim':>10s} {'overlapped':>11s} {'serial':>10s}")
    for row in rows:
        per_byte = total if int(row["conditions"].get("tp", 1)) > 1 else single
        now = replay(row, None, "")
        over, serial = replay(row, per_byte, "overlapped"), replay(row, per_byte, "serial")
        for m in METRICS:
            if m in row["measured"]:
                print(f"{row['id'][:50]:50s} {m:20s} {row['measured'][m]:10.2f} {now[m]:10.2f} {over[m]:11.2f} "
                      f"{serial[m]:10.2f}")


if __name__ == "__main__":
    main()
