"""Host-side microbenchmarks: what a serving process's CPU spends on an image before the GPU sees it, and what moving
the processed pixels to the engine process costs. Written to calibration/host/<name>.json, read by
lvlmsim.cost.host.

Timed the same way as the kernel suite (lvlmsim.calibrate.bench.time_fn: warm-up calls, then repeats until a count
and a time budget are met, median kept, p10/p90 recorded), one thread (one preprocessing worker = one core):

* decode: PIL `Image.open` + `load` + RGB of a JPEG (quality 90) of a smooth gradient with noise (photo-like, not
  worst-case random pixels), per input pixel;
* resize: PIL bicubic resize to the next multiple of 28 pixels a side (the Qwen2-VL image processor's smart_resize
  grid and resample; always a real resize, never the identity), per output pixel;
* normalize: uint8 HWC -> float CHW, /255, per-channel mean/std (CLIP's), cut into 14x14 patches and flattened
  (the processors' patchify copy), per output pixel;
* transfer: bytes through a local pipe from a writer thread (the API server -> engine-core hand-off of vLLM V1 and
  SGLang runs over ZMQ IPC sockets), per byte.

* decode by content (`decode_by_content`): the same decode of the images the benchmark clients send, which are not
  photos: uniform random pixels or a white image (sglang.bench_serving --image-content random|blank), saved as JPEG
  (quality 85, the SGLang client's) or PNG (--image-format jpeg|png). Random pixels are the worst case for the
  entropy coder: a random JPEG decodes about 1.5-1.7x slower than a photo-like one of the same size. Added to an
  existing file by `python -m lvlmsim.calibrate.host OUT.json --decode-contents`.
* processor (`measure_processor`, `--processor`): what Hugging Face's Qwen2-VL image processor costs per image BEYOND
  the normalize stage, at sizes whose sides are multiples of 28 (the processor keeps them as they are: no resize,
  like the 1120x700 images of SGLang PR #9812's runs). The processor is Qwen2VLImageProcessorFast (torchvision), the
  one vLLM uses for Qwen2-VL / Qwen2.5-VL since vllm-project/vllm#19789 (June 2025: `use_fast=kwargs.get("use_fast",
  True)`) and the one transformers loads for them by default since huggingface/transformers#39591 (July 2025); with
  Qwen2.5-VL's preprocessor_config (min_pixels 3136, max_pixels 12845056). Each size times the whole call
  `processor(images=[pil], return_tensors="pt")` (PIL -> uint8 tensor, fused rescale+normalise, the image repeated to
  the temporal patch of 2 and concatenated, the 9-d patch permute copied into pixel_values of (patches, 1176), the
  grid_thw bookkeeping), 60 times in a request-like sequence (each call after base64-decoding and PIL-decoding the
  next client image, as the API server does), minus this module's normalize stage (its p10) on the same pixels.
  Most of the call is first touches of freshly allocated tensors (minor page faults, the thread's system time: a
  median of ~11,000, ~45 MB, per 700x1120 call). How many depends on what the allocator kept resident, which the
  request's other allocations disturb: in a loop of calls alone the allocator settles and a 700x1120 call drops to
  ~16 ms (4,600 faults) from ~33 ms, a state the server does not keep, so the stage is the sequence's MEDIAN call,
  not a p10 (the p10, the rare call that found its memory resident, is kept too). Needs the `host-measure` extra
  (transformers, torchvision); measured with transformers 4.56.1 (Aug 2025, the version of the PR's runs) by
  `python -m lvlmsim.calibrate.host calibration/host/cpu-generic.json --processor`. torchvision must be the build of
  the installed torch: beside a CPU torch take it from PyTorch's CPU index (`pip install torchvision --index-url
  https://download.pytorch.org/whl/cpu`); PyPI's default wheel is a CUDA build whose compiled ops fail to load there.

Each stage is fitted to t = per_image_s + per_pixel_s * pixels by least squares (negative intercepts clipped to 0),
on the p10 of each case rather than the median: the machine this ships from is shared (load average about 5 on 2
cores while it ran), and the fastest tenth is the closer estimate of an uncontended core. Medians are kept too.
The image stages (decode, resize, normalize, decode by content) run on the calling thread alone (torch on one
thread), so they are timed in that thread's CPU time (time.thread_time): in wall time a call longer than a scheduler
slice rarely escaped the other tenants, and even the p10 of a 1080p random JPEG's decode read 62 ms against 17 ms of
CPU. The transfer crosses threads and stays in wall time. `--images` re-measures the image stages alone into an
existing file.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

from lvlmsim.calibrate.bench import FULL, QUICK, TimingPlan, cpu_model, time_fn

SIZES = ((336, 336), (640, 360), (1024, 768), (1280, 720), (1920, 1080), (2560, 1440))
QUICK_SIZES = ((336, 336), (1280, 720), (1920, 1080))
TRANSFER_BYTES = (1 << 20, 8 << 20, 32 << 20)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
GRID = 28
PATCH = 14


def _photo(np, w: int, h: int):
    """A smooth gradient with mild noise: compresses like a photo, unlike i.i.d. random pixels."""
    rng = np.random.default_rng(w * 7919 + h)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 127 // max(w + h, 1))], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _fit(rows: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(per_image_s, per_pixel_s, median abs % error of the fit) of t = a + b * pixels by ordinary least squares (the
    large images, which cost the most, weigh the most); a negative a is clipped to 0 and b refitted through 0."""
    import numpy as np

    x = np.array([r[0] for r in rows], dtype=float)
    t = np.array([r[1] for r in rows], dtype=float)
    b, a = np.polyfit(x, t, 1)
    if a < 0:
        a, b = 0.0, float((x * t).sum() / (x * x).sum())
    err = float(np.median(np.abs((a + b * x) / t - 1.0)) * 100.0)
    return float(a), float(b), err


def _image_cases(plan: TimingPlan, sizes) -> dict[str, list[dict]]:
    import numpy as np
    import torch
    from PIL import Image

    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    out: dict[str, list[dict]] = {"decode": [], "resize": [], "normalize": []}
    for w, h in sizes:
        buf = io.BytesIO()
        Image.fromarray(_photo(np, w, h)).save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        ow, oh = (w // GRID + 1) * GRID, (h // GRID + 1) * GRID  # the next grid multiple up: always a real resize

        def decode(data=data):
            im = Image.open(io.BytesIO(data))
            im.load()
            return im.convert("RGB")

        img = decode()

        def resize(img=img, ow=ow, oh=oh):
            return img.resize((ow, oh), Image.BICUBIC)

        arr = np.array(resize())

        def normalize(arr=arr, ow=ow, oh=oh):
            x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).sub_(mean).div_(std)
            x = x.reshape(3, oh // PATCH, PATCH, ow // PATCH, PATCH).permute(1, 3, 0, 2, 4)
            return x.reshape(-1, 3 * PATCH * PATCH).contiguous()

        for stage, fn, pixels in (("decode", decode, w * h), ("resize", resize, ow * oh),
                                  ("normalize", normalize, ow * oh)):
            med, p10, p90, reps = time_fn(torch, fn, "cpu", plan, clock=time.thread_time)
            out[stage].append({"width": w, "height": h, "pixels": pixels, "jpeg_bytes": len(data),
                               "measured_s": med, "p10_s": p10, "p90_s": p90, "reps": reps})
    return out


CONTENTS = ("random-jpeg", "random-png", "blank-jpeg", "blank-png")
CONTENT_SIZES = ((336, 336), (1280, 720), (1920, 1080), (2560, 1440))


def _client_image(np, content: str, w: int, h: int) -> bytes:
    """The bytes a benchmark client sends for one synthetic image of this content and format."""
    from PIL import Image

    kind, fmt = content.split("-")
    rng = np.random.default_rng(w * 31 + h)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8) if kind == "random" else np.full((h, w, 3), 255, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt.upper(), quality=85)
    return buf.getvalue()


def measure_decode_contents(quick: bool = False) -> dict:
    """The `decode_by_content` section: decode time per input pixel of each synthetic client image kind."""
    import numpy as np
    import torch
    from PIL import Image

    plan = QUICK if quick else FULL
    torch.set_num_threads(1)
    out = {}
    for content in CONTENTS:
        rows = []
        for w, h in (QUICK_SIZES if quick else CONTENT_SIZES):
            data = _client_image(np, content, w, h)

            def decode(data=data):
                im = Image.open(io.BytesIO(data))
                im.load()
                return im.convert("RGB")

            med, p10, p90, reps = time_fn(torch, decode, "cpu", plan, clock=time.thread_time)
            rows.append({"width": w, "height": h, "pixels": w * h, "encoded_bytes": len(data), "measured_s": med,
                         "p10_s": p10, "p90_s": p90, "reps": reps})
        a, b, err = _fit([(r["pixels"], r["p10_s"]) for r in rows])
        out[content] = {"per_image_s": a, "per_pixel_s": b, "fit_median_abs_error_pct": err, "measurements": rows}
    return {"decode_by_content": out}


# sides in multiples of 28 (kept as they are by the processor): 336x336, the #9812 runs' 700x1120, 728p and 1092p
PROCESSOR_SIZES = ((336, 336), (700, 1120), (1288, 728), (1932, 1092))
QUICK_PROCESSOR_SIZES = ((336, 336), (700, 1120))
QWEN25_VL_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}  # Qwen/Qwen2.5-VL-7B-Instruct preprocessor_config
PROCESSOR_CALLS, PROCESSOR_CALLS_QUICK = 60, 6  # calls per size in the request-like sequence


def _hf_qwen2vl_processor():
    """Hugging Face's fast (torchvision) Qwen2-VL image processor, or a clear error naming the missing extra."""
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
    except ImportError as exc:  # transformers or torchvision absent
        raise SystemExit("--processor needs the host-measure extra (pip install 'lvlmsim[host-measure]'; beside a "
                         "CPU torch, torchvision from --index-url https://download.pytorch.org/whl/cpu): "
                         f"{exc}") from exc
    return Qwen2VLImageProcessorFast(**QWEN25_VL_PIXELS)


def _processor_row(np, torch, proc, calls: int, w: int, h: int) -> dict:
    """One size: the processor call timed in CPU time inside a request-like sequence (each call after decoding the
    next of four client images from base64 JPEG bytes, as an API server does), and this module's normalize stage on
    the same pixels. The call's time is mostly first touches of freshly allocated tensors (minor page faults, the
    thread's system time); how many depends on what the allocator kept resident from the request before, so the
    sequence's median is kept (its p10 is the rare call that found its memory resident, kept too)."""
    import base64
    import resource

    from PIL import Image

    rng = np.random.default_rng(w * 31 + h)
    sent = []
    for _ in range(4):  # the SGLang client's images: uniform random pixels, JPEG quality 85, inline as base64
        buf = io.BytesIO()
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
        sent.append(base64.b64encode(buf.getvalue()))
    times, faults = [], []
    for i in range(calls + 2):  # the first two warm up
        img = Image.open(io.BytesIO(base64.b64decode(sent[i % 4])))
        img = img.convert("RGB")
        f0, t0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.thread_time()
        out = proc(images=[img], return_tensors="pt")
        t1, f1 = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        times.append(t1 - t0)
        faults.append(f1 - f0)
        grid = [int(v) for v in out["image_grid_thw"][0]]
        del out, img
    if grid[1] * grid[2] * PATCH * PATCH != w * h:
        raise ValueError(f"processor sizes: {w}x{h} was resized to grid {grid}; use sides in multiples of {GRID}")
    times, faults = times[2:], faults[2:]
    arr = np.array(Image.open(io.BytesIO(base64.b64decode(sent[0]))).convert("RGB"))
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def normalize():
        x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).sub_(mean).div_(std)
        x = x.reshape(3, h // PATCH, PATCH, w // PATCH, PATCH).permute(1, 3, 0, 2, 4)
        return x.reshape(-1, 3 * PATCH * PATCH).contiguous()

    norm = time_fn(torch, normalize, "cpu", FULL, clock=time.thread_time)
    call_s = float(np.median(times))
    return {"width": w, "height": h, "pixels": w * h, "grid_thw": grid, "calls": calls,
            "call_median_s": call_s, "call_p10_s": float(np.percentile(times, 10)),
            "call_p90_s": float(np.percentile(times, 90)), "minor_page_faults_median": float(np.median(faults)),
            "normalize_p10_s": norm[1], "measured_s": call_s - norm[1]}


def measure_processor(quick: bool = False) -> dict:
    """The `processor` stage: the HF Qwen2-VL image processor's CPU time per image beyond the normalize stage as
    priced (its p10): per size, the median call of a request-like sequence minus it (see the module docstring),
    with its fit and the raw timings; merged into an existing host profile."""
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(1)
    proc = _hf_qwen2vl_processor()
    calls = PROCESSOR_CALLS_QUICK if quick else PROCESSOR_CALLS
    rows = [_processor_row(np, torch, proc, calls, w, h)
            for w, h in (QUICK_PROCESSOR_SIZES if quick else PROCESSOR_SIZES)]
    a, b, err = _fit([(r["pixels"], r["measured_s"]) for r in rows])
    return {"processor": {"per_image_s": a, "per_pixel_s": b, "fit_median_abs_error_pct": err,
                          "pixels": "processed", "class": type(proc).__name__,
                          "transformers_version": transformers.__version__, "quick": quick,
                          "statistic": "median call of a request-like sequence minus the normalize stage's p10",
                          "value": "measured_s",
                          "measurements": rows}}


def merge_processor(path: str | Path, quick: bool = False) -> Path:
    """Add (or replace) the processor stage of an existing host profile: its fit under `image`, its rows under
    `measurements` (where lvlmsim.cost.host reads every stage's table)."""
    import json

    p = Path(path)
    doc = json.loads(p.read_text())
    stage = measure_processor(quick)["processor"]
    rows = stage.pop("measurements")
    doc["image"]["processor"] = stage
    doc["measurements"]["processor"] = rows
    return write_host_profile(doc, p)


def merge_into(path: str | Path, sections: dict) -> Path:
    """Replace the given sections of an existing host profile, leaving its other measurements."""
    import json

    p = Path(path)
    doc = json.loads(p.read_text())
    doc.update(sections)
    return write_host_profile(doc, p)


def _transfer_cases(plan: TimingPlan) -> list[dict]:
    import torch

    rows = []
    for nbytes in TRANSFER_BYTES:
        payload = os.urandom(nbytes)

        def send(payload=payload, nbytes=nbytes):
            r, w = os.pipe()
            t = threading.Thread(target=_write_all, args=(w, payload))
            t.start()
            got = 0
            while got < nbytes:
                got += len(os.read(r, 1 << 20))
            t.join()
            os.close(r)

        med, p10, p90, reps = time_fn(torch, send, "cpu", plan)
        rows.append({"bytes": nbytes, "measured_s": med, "p10_s": p10, "p90_s": p90, "reps": reps})
    return rows


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.close(fd)


def _image_stages(cases: dict[str, list[dict]]) -> dict:
    stages = {}
    for stage, rows in cases.items():
        a, b, err = _fit([(r["pixels"], r["p10_s"]) for r in rows])
        stages[stage] = {"per_image_s": a, "per_pixel_s": b, "fit_median_abs_error_pct": err,
                         "pixels": "input" if stage == "decode" else "processed"}
    return stages


def _timing(plan: TimingPlan) -> dict:
    return {"method": "time.thread_time around each image call (the calling thread's CPU time), "
                      "time.perf_counter around each transfer", "warmup": plan.warmup,
            "min_reps": plan.min_reps, "max_reps": plan.max_reps, "budget_s_per_case": plan.budget_s,
            "statistic": "fits use the p10 of each case (median, p10, p90 kept)"}


def remeasure_images(path: str | Path, quick: bool = False) -> Path:
    """Re-measure the image stages (decode, resize, normalize) of an existing host profile, keeping its transfer and
    every other section."""
    import json

    import torch

    plan = QUICK if quick else FULL
    torch.set_num_threads(1)
    p = Path(path)
    doc = json.loads(p.read_text())
    cases = _image_cases(plan, QUICK_SIZES if quick else SIZES)
    doc["image"] = _image_stages(cases)
    doc["measurements"] = {**doc["measurements"], **cases}
    doc["environment"] = {**doc["environment"], "timing": _timing(plan), "quick": quick}
    return write_host_profile(doc, p)


def measure_host(quick: bool = False, name: str = "cpu-generic") -> dict:
    """Run the host suite and fit it; returns the JSON document lvlmsim.cost.host reads."""
    import torch

    plan = QUICK if quick else FULL
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cases = _image_cases(plan, QUICK_SIZES if quick else SIZES)
    transfer = _transfer_cases(plan)
    stages = _image_stages(cases)
    lat, per_byte, terr = _fit([(r["bytes"], r["p10_s"]) for r in transfer])
    import PIL

    return {
        "format": "lvlmsim-host/1", "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": "image preprocessing and process hand-off on one CPU core, measured by "
                       "lvlmsim.calibrate.host (see its docstring for the method)",
        "environment": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": 1,
                        "torch_version": torch.__version__, "pillow_version": PIL.__version__, "quick": quick,
                        "timing": _timing(plan)},
        "image": stages,
        "transfer": {"latency_s": lat, "bytes_per_s": 1.0 / per_byte if per_byte > 0 else None,
                     "fit_median_abs_error_pct": terr},
        "measurements": {**cases, "transfer": transfer},
        "wall_s": time.perf_counter() - t0,
    }


def write_host_profile(doc: dict, out: str | Path) -> Path:
    import json

    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, p)
    return p


# python -m lvlmsim.calibrate.host [OUT.json] [--quick] [--decode-contents | --images | --processor]
if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    target = args[0] if args else "calibration/host/cpu-generic.json"
    quick = "--quick" in sys.argv
    if "--processor" in sys.argv:
        print(merge_processor(target, quick))
    elif "--decode-contents" in sys.argv:
        print(merge_into(target, measure_decode_contents(quick)))
    elif "--images" in sys.argv:
        print(remeasure_images(target, quick))
    else:
        print(write_host_profile(measure_host(quick=quick), target))
