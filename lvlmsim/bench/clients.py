"""The two benchmark clients' flag semantics, mirrored exactly: `vllm bench serve` and `python -m sglang.bench_serving`.

Both take `--random-input-len L --random-output-len O --random-range-ratio r` but read r differently (sources: vLLM
`vllm/benchmarks/datasets/random.py` RandomDataset.get_sampling_params; SGLang `python/sglang/bench_serving.py`
sample_random_requests):

* vLLM: r in [0, 1); each request draws an integer length uniformly from [floor(L(1-r)), ceil(L(1+r))] (a range
  centred on L; r = 0 is exactly L). Output lengths likewise, with the low end raised to 1. vLLM first subtracts the
  tokenizer's special tokens from L (`num_special_tokens_to_add`, 0 for the Qwen2 tokenizer, 1 for Llama's BOS);
  give them as `special_tokens`.
* SGLang: r in [0, 1]; lengths uniform on [int(L r), L] (a range BELOW L; r = 1 is exactly L, and SGLang's default
  r = 0 means anywhere from 0 to L, i.e. a mean of about L/2).

lvlmsim raises every low end to 1 token (a request needs a token to be served; SGLang can draw 0). Defaults differ
too: vLLM input 1024, output 128, r 0, seed 0; SGLang input 1024, output 1024, r 0, seed 1; both send 1000 prompts
at an infinite rate with no concurrency cap unless told otherwise.

Image resolution (`--image-resolution`, SGLang's image dataset; for vLLM the same picture is its random-mm dataset
with one bucket {(H, W, 1): 1.0} and `--random-mm-base-items-per-request` = `--image-count`): presets 360p
(640x360), 720p (1280x720), 1080p (1920x1080), 4k (3840x2160), as SGLang's parse_image_resolution, plus 1440p
(2560x1440, lvlmsim's addition); a custom size is HEIGHTxWIDTH, height first, as SGLang parses it and as vLLM's
bucket keys order it. Without the flag each client sends its own default: SGLang 1080p (bench_serving.py,
`--image-resolution` default "1080p"); vLLM's random-mm draws every image from its default buckets, 256x256 or
1280x720 with probability 0.5 each (vllm/benchmarks/datasets.py, RandomMultiModalDataset.DEFAULT_MM_ITEM_BUCKET_CONFIG
{(256, 256, 1): 0.5, (720, 1280, 1): 0.5, (720, 1280, 16): 0.0}, keys (height, width, frames)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lvlmsim.errors import SpecError
from lvlmsim.specs.workload import MAX_REQUEST_TOKENS

CLIENTS = ("vllm", "sglang")
RESOLUTIONS: dict[str, tuple[int, int]] = {  # name -> (width, height)
    "360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080), "1440p": (2560, 1440), "4k": (3840, 2160),
}

# (width, height, probability) of each image a client sends when --image-resolution is not given (module docstring)
DEFAULT_IMAGES: dict[str, tuple[tuple[int, int, float], ...]] = {
    "vllm": ((256, 256, 0.5), (1280, 720, 0.5)),
    "sglang": ((1920, 1080, 1.0),),
}


@dataclass(frozen=True)
class ClientDefaults:
    """What a client uses when a flag is not given."""

    input_len: int
    output_len: int
    range_ratio: float
    seed: int
    num_prompts: int = 1000


DEFAULTS = {
    "vllm": ClientDefaults(input_len=1024, output_len=128, range_ratio=0.0, seed=0),
    "sglang": ClientDefaults(input_len=1024, output_len=1024, range_ratio=0.0, seed=1),
}


def check_client(client: str) -> str:
    name = str(client).strip().lower()
    if name not in CLIENTS:
        raise SpecError(f"--client: unknown client '{client}'; allowed: {', '.join(CLIENTS)}")
    return name


def length_bounds(client: str, length: int, range_ratio: float, *, output: bool = False,
                  special_tokens: int = 0) -> tuple[int, int]:
    """Inclusive [low, high] token counts a client draws uniformly for a mean/target `length` (module docstring)."""
    client = check_client(client)
    flag = "--random-output-len" if output else "--random-input-len"
    if length < 1:
        raise SpecError(f"{flag}: must be >= 1 token, got {length}")
    if length > MAX_REQUEST_TOKENS:  # named here, not as the scenario's prompt_tokens / output_tokens
        raise SpecError(f"{flag}: must be at most {MAX_REQUEST_TOKENS:g} tokens (past any model's context), got "
                        f"{length}")
    if not output and client == "sglang" and special_tokens:
        raise SpecError(f"--special-tokens: vllm only (sglang counts --random-input-len as is); allowed with "
                        f"--client sglang: 0, got {special_tokens}")
    if not output and not 0 <= special_tokens < length:
        raise SpecError(f"--special-tokens: must be in [0, --random-input-len {length}), got {special_tokens}")
    if client == "vllm":
        if not 0.0 <= range_ratio < 1.0:
            raise SpecError(f"--random-range-ratio: vLLM takes a ratio in [0, 1), got {range_ratio}")
        real = length if output else max(0, length - special_tokens)
        low, high = math.floor(real * (1.0 - range_ratio)), math.ceil(real * (1.0 + range_ratio))
    else:
        if not 0.0 <= range_ratio <= 1.0:
            raise SpecError(f"--random-range-ratio: SGLang takes a ratio in [0, 1], got {range_ratio}")
        low, high = int(length * range_ratio), length
    return max(low, 1), max(high, 1)


def uniform_int_dist(low: int, high: int) -> dict:
    """A workload distribution that gives every integer of [low, high] the same chance once rounded (a continuous
    uniform on [low - 0.5, high + 0.5], clipped): the clients' numpy integer draws, in lvlmsim's spec language."""
    if low == high:
        return {"kind": "fixed", "value": low}
    return {"kind": "uniform", "low": low - 0.5, "high": high + 0.5, "min": low, "max": high}


def image_sizes(client: str, resolution: str | None) -> list[dict]:
    """The workload's image-size mix: the one size given, or the client's own default images (DEFAULT_IMAGES)."""
    if resolution is not None:
        w, h = parse_resolution(resolution)
        return [{"width": w, "height": h}]
    return [{"width": w, "height": h, "weight": p} for w, h, p in DEFAULT_IMAGES[check_client(client)]]


def parse_resolution(text: str) -> tuple[int, int]:
    """(width, height) of a preset name or a HEIGHTxWIDTH size (height first, as both clients order it)."""
    key = str(text).strip().lower()
    if key in RESOLUTIONS:
        return RESOLUTIONS[key]
    parts = key.replace("×", "x").split("x")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and all(int(p) > 0 for p in parts):
        height, width = int(parts[0]), int(parts[1])
        return width, height
    raise SpecError(f"--image-resolution: expected {', '.join(RESOLUTIONS)} or HEIGHTxWIDTH such as 720x1280, "
                    f"got '{text}'")


__all__ = ["CLIENTS", "DEFAULTS", "DEFAULT_IMAGES", "RESOLUTIONS", "ClientDefaults", "check_client", "image_sizes",
           "length_bounds", "parse_resolution", "uniform_int_dist"]
