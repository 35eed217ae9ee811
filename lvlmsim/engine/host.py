"""The host stage: CPU work between a request's send and its admission to the engine (the `preprocess` stage).

Each request with images waits for one of the runtime's preprocessing workers (a SimPy resource: vLLM V1 and
SGLang process images in one API-server / tokenizer process by default), which decodes, resizes and normalises its
images for the measured time (lvlmsim.cost.host), then the processed pixels cross to the engine process (latency +
bytes / pipe bandwidth, not shared). With API costs on (HostProfile.api), every request, text-only too, also
spends the API layer's per-request time, its prompt's tokenisation and the handling of its inline images' bytes
(HTTP, JSON, base64 decode; ApiCosts.image_byte_s) on that worker (the same front-end process); without them a
text-only request skips the stage.

Two turns on the worker: the front ends are asyncio servers (vLLM's FastAPI API server, SGLang's TokenizerManager),
and a request's handler parses its body when it arrives, then awaits its image work (the media loader, the
multimodal processor); every await puts the handler back at the end of the event loop's ready queue. So the API
turn (request, tokenisation, image bytes) and the image turn (decode, resize, normalise, the processor's own
work) queue for the worker separately, first come first served each: under a burst, every waiting request's API
turn runs before the image turn of a request that arrived earlier, which delays the first responses of the burst
(its TTFT) without changing the work done or the throughput. A single request pays both turns back to back, as before.

The runtime's per-step host time is added to every batch step by the pools (lvlmsim.engine.cluster.build_pool).
`Request.preprocess_s` records the whole stage, waiting for a worker included: TTFT counts it, as the benchmark
clients measure from the send. Each output token's detokenisation and server-sent event (`token_out_s`) delays
every token equally; the engine's request table adds it to TTFT and E2E (lvlmsim.engine.api), and `output_busy_s`
counts that work for the front end's utilisation.
"""

from __future__ import annotations

import simpy

from lvlmsim.cost.host import PHOTO, HostProfile, transfer_bytes
from lvlmsim.engine.request import Request
from lvlmsim.specs.model import ModelSpec


class HostStage:
    def __init__(self, env: simpy.Environment, model: ModelSpec, profile: HostProfile, image_content: str = PHOTO):
        self.env = env
        self.model = model
        self.profile = profile
        self.image_content = image_content  # workload.image_content: which measured decode table
        profile.decode_table(image_content)  # an unmeasured content is refused before the run
        self.workers = simpy.Resource(env, capacity=profile.preprocess_workers)
        self.busy_s = 0.0  # worker-seconds spent preprocessing (images, API handling, tokenisation)
        self._patch_px = model.vision.patch_size ** 2 if model.vision is not None else 0  # text-only: no images

    def handles(self, r: Request) -> bool:
        """Whether `r` passes through the stage: any request with API costs on, else only one with images."""
        return self.profile.api is not None or r.images > 0

    def cost_s(self, r: Request) -> tuple[float, float, float]:
        """(API-turn CPU seconds, image-turn CPU seconds, hand-off seconds) of a request on one worker: with API
        costs on, its API handling, prompt tokenisation and inline image bytes; then its images (split evenly over
        them: decode, resize, normalise and the HF processor's own work, lvlmsim.cost.host)."""
        api = self.profile.api
        n = r.images if r.vit_seq_lens else 0
        sent = n * self.profile.encoded_bytes(r.input_pixels / n, self.image_content) if n > 0 else 0.0
        api_s = sum(api.request_in_s(r.prompt_tokens, sent).values()) if api is not None else 0.0
        if n <= 0:
            return api_s, 0.0, 0.0
        processed = sum(r.vit_seq_lens) * self._patch_px
        one = self.profile.image_s(r.input_pixels / n, processed / n, self.image_content)
        return api_s, n * sum(one.values()), self.profile.transfer_s(transfer_bytes(self.model, processed))

    @property
    def token_out_s(self) -> float:
        """Each output token's delay from the engine to the client (0 with API costs off)."""
        return self.profile.api.token_out_s if self.profile.api is not None else 0.0

    def _turn(self, cpu_s: float):
        """One turn on a worker: queue (first come first served), work, release."""
        if cpu_s <= 0:
            return
        with self.workers.request() as req:
            yield req
            yield self.env.timeout(cpu_s)
        self.busy_s += cpu_s

    def run(self, r: Request, then):
        env = self.env
        t0 = env.now
        api_s, image_s, moved_s = self.cost_s(r)
        yield from self._turn(api_s)
        yield from self._turn(image_s)
        if moved_s > 0:
            yield env.timeout(moved_s)
        r.preprocess_s = env.now - t0
        then(r)


__all__ = ["HostStage"]
