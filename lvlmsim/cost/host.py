"""Host-side costs: what the serving process's CPU does to a request that the GPU kernels do not show.

Two data files (lvlmsim.specs.registry.host_dir), each figure with its source:

* calibration/host/<cpu>.json: image decode, resize and normalise+patchify times, measured on a CPU core at several
  image sizes by lvlmsim.calibrate.host, the Hugging Face Qwen2-VL image processor's own work beyond them
  (`processor`: to-tensor, the temporal repeat, the copy into pixel_values; mostly first touches of fresh tensors),
  and the pipe bandwidth of a process hand-off (the processor stage is measured on Qwen2-VL's processor, the one of
  every image row of the validation set, and priced for every model's images). An image's time per stage is
  read off the measured points by linear interpolation in pixels (through the origin below the smallest point, the
  last segment's slope beyond the largest): the stages are not linear in pixels on a real cache hierarchy (the
  least-squares fits and their errors are in the file), so the table itself is the model. Decode depends on what
  the image is: photo-like JPEGs (`measurements.decode`, the default) or the benchmark clients' synthetic images
  (`decode_by_content`: random or blank pixels as JPEG or PNG; workload.image_content picks one).
  The same file holds the front end's text and API costs, measured by lvlmsim.calibrate.apicost: a fast BPE
  tokenizer's encode time by prompt length (a table, read the same way) and its incremental detokenisation per
  token, and an OpenAI-style streamed chat completion's round trip over 127.0.0.1 (per request, per streamed token).
* calibration/host/runtimes.yaml: per runtime and version, the per-step CPU time on the critical path, the
  preprocessing workers, and whether processed pixels cross a process boundary.

API costs (`ApiCosts`, switchable: serving.api_costs, estimate(api_costs=...)): every request, text-only too, spends
the API layer's per-request time and its prompt's tokenisation on the front-end worker that also preprocesses images
(vLLM V1's API server and SGLang's TokenizerManager run both on one asyncio loop). Each output token is detokenised
and sent as one server-sent event: that work runs beside the GPU (another process, or V0's engine loop, see
runtimes.yaml), so it delays every token by the same `token_out_s` - TTFT and E2E grow by it once, TPOT and ITL not.

Which pixels: decode works on the uploaded image (width x height), resize and normalise on the processed one, which
is what the vision encoder sees: its patches x patch_size^2 (sum of the tokenization's ViT sequence lengths). The
hand-off carries the processed pixels as float32 RGB, times the temporal patch (Qwen2-VL's processor repeats an image
to fill its temporal patch of 2).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import numpy as np

from lvlmsim.errors import SpecError
from lvlmsim.specs.base import read_yaml
from lvlmsim.specs.registry import host_dir

DEFAULT_CPU = "cpu-generic"
PHOTO = "photo-jpeg"  # the decode table of `measurements.decode`: photo-like JPEGs
# what a request's images are, as sent: photos, or the benchmark clients' synthetic images (content-format)
IMAGE_CONTENTS = (PHOTO, "random-jpeg", "random-png", "blank-jpeg", "blank-png")
STAGES = ("decode", "resize", "normalize", "processor")
PIXEL_BYTES = 3 * 4  # float32 RGB, as the HF image processors return pixel_values


@dataclass(frozen=True)
class StageTable:
    """Measured (pixels, seconds) points of one image stage; seconds(pixels) interpolates them."""

    pixels: tuple[float, ...]
    seconds: tuple[float, ...]

    def __call__(self, pixels: float) -> float:
        if pixels <= 0:
            return 0.0
        x, t = self.pixels, self.seconds
        if pixels <= x[0]:
            return t[0] * pixels / x[0]
        if pixels >= x[-1]:
            slope = (t[-1] - t[-2]) / (x[-1] - x[-2]) if len(x) > 1 else t[-1] / x[-1]
            return t[-1] + slope * (pixels - x[-1])
        return float(np.interp(pixels, x, t))


@dataclass(frozen=True)
class ApiCosts:
    """The front end's text and API costs on one measured CPU (lvlmsim.calibrate.apicost)."""

    request_s: float  # one streamed chat completion's API cost besides its tokens (connect, HTTP, validation, [DONE])
    stream_token_s: float  # one token as one server-sent event: chunk JSON, write, the client's parse
    encode: StageTable  # prompt tokens -> seconds of the tokenizer's encode
    detokenize_token_s: float  # incremental detokenisation of one output token
    image_byte_s: float = 0.0  # one encoded byte of an image sent inline (base64 data URL): HTTP, JSON, base64 decode

    def request_in_s(self, prompt_tokens: int, image_bytes: float = 0.0) -> dict[str, float]:
        """Seconds of a request's API handling and prompt tokenisation, on the front-end worker; `image_bytes`:
        the encoded bytes of the images it sends inline (their API handling is `image_body`)."""
        out = {"api_request": self.request_s, "tokenize": self.encode(prompt_tokens)}
        if image_bytes > 0 and self.image_byte_s > 0:
            out["image_body"] = image_bytes * self.image_byte_s
        return out

    @property
    def token_out_s(self) -> float:
        """Seconds between a token leaving the engine and reaching the client: detokenise + one SSE event."""
        return self.detokenize_token_s + self.stream_token_s


@dataclass(frozen=True)
class HostProfile:
    """One runtime version's host costs on one measured CPU."""

    name: str
    runtime: str
    versions: str
    step_host_s: float
    preprocess_workers: int
    transfer: str
    sources: dict
    cpu: str
    stages: dict
    transfer_latency_s: float
    transfer_bytes_per_s: float
    api: ApiCosts | None = None  # None: API/tokenise/detokenise costs off
    decode_by_content: dict = field(default_factory=dict)  # content -> StageTable of decode by input pixels
    sent_bytes: dict = field(default_factory=dict)  # content -> StageTable of encoded bytes by input pixels
    cudagraph_mode: str = "full"  # how the version replays CUDA graphs (lvlmsim.cost.runtime.CUDAGRAPH_MODES)

    def image_s(self, input_pixels: float, processed_pixels: float, content: str = PHOTO) -> dict[str, float]:
        """Seconds of each stage for ONE image on one worker; `content` picks the decode table (IMAGE_CONTENTS). An
        image the processor keeps at its size (as many processed as input pixels) is not resized: PIL's
        Image.resize returns a copy and torchvision's resize the input itself when the size does not change."""
        resized = processed_pixels != input_pixels
        return {"decode": self.decode_table(content)(input_pixels),
                "resize": self.stages["resize"](processed_pixels) if resized else 0.0,
                "normalize": self.stages["normalize"](processed_pixels),
                "processor": self.stages["processor"](processed_pixels)}

    def decode_table(self, content: str = PHOTO) -> StageTable:
        if content == PHOTO:
            return self.stages["decode"]
        if content not in self.decode_by_content:
            allowed = ", ".join([PHOTO, *self.decode_by_content])
            raise SpecError(f"image_content: no decode measurement for '{content}' on {self.cpu}; allowed: {allowed}")
        return self.decode_by_content[content]

    def encoded_bytes(self, input_pixels: float, content: str = PHOTO) -> float:
        """Bytes of one image as the client sends it (its JPEG or PNG file), read off the sizes of the images whose
        decode was measured (photo-like JPEGs, or the benchmark clients' synthetic images); 0 when not recorded."""
        table = self.sent_bytes.get(content)
        return table(input_pixels) if table is not None else 0.0

    def transfer_s(self, nbytes: float) -> float:
        if self.transfer != "ipc" or nbytes <= 0:
            return 0.0
        return self.transfer_latency_s + nbytes / self.transfer_bytes_per_s

    def describe(self) -> str:
        api = (f", API {self.api.request_s * 1e3:.2f} ms/request + {self.api.image_byte_s * 1e9:.1f} "
               f"ms/MB of inline image + {self.api.token_out_s * 1e6:.0f} us/output token"
               if self.api is not None else ", API costs off")
        return (f"{self.name} ({self.versions}) on {self.cpu}: {self.preprocess_workers} preprocessing worker(s), "
                f"step host {self.step_host_s * 1e3:.2f} ms, pixels by {self.transfer}{api}")


def processed_pixels(model, tok) -> int:
    """Pixels the vision encoder sees for one tokenization: its ViT tokens x patch area."""
    return sum(tok.vit_seq_lens) * model.vision.patch_size ** 2


def transfer_bytes(model, pixels: float) -> float:
    return pixels * PIXEL_BYTES * model.vision.temporal_patch_size


def _api_costs(doc: dict) -> ApiCosts | None:
    """The API section of a CPU's host file, or None when it was not measured there."""
    if "api" not in doc or "tokenizer" not in doc:
        return None
    body = doc.get("api_image_body", {})
    return ApiCosts(request_s=float(doc["api"]["per_request_s"]),
                    stream_token_s=float(doc["api"]["per_stream_token_s"]),
                    encode=_table(doc["tokenizer"]["encode"]["measurements"], "tokens"),
                    detokenize_token_s=float(doc["tokenizer"]["detokenize"]["per_token_s"]),
                    image_byte_s=float(body.get("per_image_byte_s", 0.0)))


def _table(rows: list[dict], key: str = "pixels", value: str = "p10_s") -> StageTable:
    rows = sorted(rows, key=lambda r: r[key])
    return StageTable(tuple(float(r[key]) for r in rows), tuple(float(r[value]) for r in rows))


def _sent_bytes(doc: dict) -> dict:
    """content -> StageTable of the encoded file size by input pixels, from the decode measurements' images."""
    out = {}
    if all("jpeg_bytes" in r for r in doc["measurements"]["decode"]):
        out[PHOTO] = _table(doc["measurements"]["decode"], value="jpeg_bytes")
    for content, v in doc.get("decode_by_content", {}).items():
        if all("encoded_bytes" in r for r in v["measurements"]):
            out[content] = _table(v["measurements"], value="encoded_bytes")
    return out


@functools.lru_cache(maxsize=8)
def _cpu_tables(cpu: str) -> tuple[dict, float, float, str, ApiCosts | None, dict, dict]:
    path = host_dir() / f"{cpu}.json"
    if not path.is_file():
        known = sorted(p.stem for p in host_dir().glob("*.json"))
        raise SpecError(f"host cpu: no measured host profile '{cpu}' in {host_dir()}; known: {', '.join(known)}")
    doc = json.loads(path.read_text())
    # each stage's table reads the statistic its fit names (`value`; the p10 unless it says otherwise)
    tables = {stage: _table(doc["measurements"][stage], value=doc["image"][stage].get("value", "p10_s"))
              for stage in STAGES}
    by_content = {c: _table(v["measurements"]) for c, v in doc.get("decode_by_content", {}).items()}
    tr = doc["transfer"]
    return (tables, float(tr["latency_s"]), float(tr["bytes_per_s"]), doc["environment"].get("cpu", cpu),
            _api_costs(doc), by_content, _sent_bytes(doc))


@functools.lru_cache(maxsize=1)
def _runtimes() -> dict:
    return read_yaml(host_dir() / "runtimes.yaml")


def host_profile_names() -> list[str]:
    doc = _runtimes()
    return sorted(set(doc["runtimes"]) | set(doc["defaults"]))


def load_host_profile(name: str, cpu: str = DEFAULT_CPU, api: bool = True) -> HostProfile:
    """A runtime's host profile by profile name (vllm-v0, vllm-v1-piecewise, vllm-v1, vllm-v1-async, sglang, trtllm)
    or plain runtime name (vllm -> its default version); an unknown name is a SpecError listing the allowed ones.
    `api` False leaves the API/tokenise/detokenise costs out; True needs them measured for `cpu`."""
    doc = _runtimes()
    key = str(name).strip().lower()
    key = doc["defaults"].get(key, key)
    if key not in doc["runtimes"]:
        raise SpecError(f"host profile: unknown runtime '{name}'; allowed: {', '.join(host_profile_names())}")
    r = doc["runtimes"][key]
    tables, lat, bw, cpu_name, api_costs, by_content, sent = _cpu_tables(cpu)
    if api and api_costs is None:
        raise SpecError(f"api_costs: host profile '{cpu}' has no API/tokenizer measurements (python -m "
                        f"lvlmsim.calibrate.apicost); allowed: api_costs false")
    return HostProfile(name=key, runtime=r["runtime"], versions=str(r["versions"]), step_host_s=float(r["step_host_s"]),
                       preprocess_workers=int(r["preprocess_workers"]), transfer=str(r["transfer"]),
                       sources=dict(r.get("sources", {})), cpu=cpu_name, stages=tables, transfer_latency_s=lat,
                       transfer_bytes_per_s=bw, api=api_costs if api else None, decode_by_content=by_content,
                       sent_bytes=sent, cudagraph_mode=_cudagraph_mode(key, r))


def _cudagraph_mode(key: str, r: dict) -> str:
    """A profile's `cudagraph_mode` (default full), checked against the modes lvlmsim prices."""
    from lvlmsim.cost.runtime import CUDAGRAPH_MODES

    mode = str(r.get("cudagraph_mode", "full")).strip().lower()
    if mode not in CUDAGRAPH_MODES:
        raise SpecError(f"runtimes.yaml {key}.cudagraph_mode: unknown mode '{mode}'; allowed: "
                        f"{', '.join(CUDAGRAPH_MODES)}")
    return mode


def server_defaults(name: str, hardware) -> dict:
    """The server knobs a runtime version picks by itself on this device when the user sets none (runtimes.yaml
    `server_defaults`: its `always` knobs, e.g. prefix caching on, then vLLM V1's max_num_batched_tokens /
    max_num_seqs by device memory and name, SGLang's chunked prefill by memory). Empty for a profile that lists
    none; an unknown name is a SpecError as in load_host_profile."""
    doc = _runtimes()
    key = str(name).strip().lower()
    key = doc["defaults"].get(key, key)
    if key not in doc["runtimes"]:
        raise SpecError(f"host profile: unknown runtime '{name}'; allowed: {', '.join(host_profile_names())}")
    rule = doc["runtimes"][key].get("server_defaults")
    if not rule:
        return {}
    return {**(rule.get("always") or {}), **_device_knobs(rule, hardware)}


def _device_knobs(rule: dict, hardware) -> dict:
    """The knobs of server_defaults' `names` entry the device matches, else of its memory tier."""
    device = f"{hardware.id} {hardware.name}".lower()
    for name, knobs in (rule.get("names") or {}).items():
        if str(name).lower() in device:
            return dict(knobs)
    for tier in rule.get("tiers") or []:
        if tier.get("below_gib") is None or hardware.mem_capacity_gib < float(tier["below_gib"]):
            return dict(tier["knobs"])
    return {}


__all__ = ["IMAGE_CONTENTS", "PHOTO", "ApiCosts", "HostProfile", "StageTable", "host_profile_names",
           "load_host_profile", "processed_pixels", "server_defaults", "transfer_bytes"]
