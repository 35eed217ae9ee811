"""The request entity: what a request asks for, where it is in its lifecycle, and what happened to it.

Plain attributes with __slots__ (no per-step dict or DataFrame work): the metrics collector turns the finished
objects into a DataFrame once, at the end.
"""

from __future__ import annotations

import math

NAN = math.nan

# lifecycle states
WAITING, PREFILL, DECODE, PARKED, PULLING, ENCODING, DONE, REJECTED = range(8)
COMPLETED, REJECTED_S, IN_FLIGHT = "completed", "rejected", "in_flight"


class Request:
    __slots__ = (
        # what is asked
        "id", "session", "turn", "arrival_s", "think_s", "prompt_tokens", "output_tokens", "images", "image_ids",
        "video_s", "visual_tokens", "vit_seq_lens", "projector_in_tokens", "toks",
        # model-derived (set by the cluster when the request arrives)
        "seq_tokens", "vis_in_seq", "cross_kv", "extra_slots", "pruned",
        # techniques: blocks of a shared (reused) image-KV prefix, images left to encode, pinned reuse entries,
        # and whether a rolling KV budget has stopped this sequence's KV from growing
        "shared_blocks", "enc_toks", "enc_tokens", "reuse_keys", "capped",
        # progress
        "state", "computed", "target", "generated", "encoded", "enc_cached", "epoch", "t0", "past0", "gen0",
        "cls", "blocks", "pull_src", "swapped", "wait_since", "arrived",
        # records
        "queue_s", "encode_start_s", "encode_end_s", "first_token_s", "finish_s", "preemptions", "transfer_s",
        "preempted_wait_s", "last_encode_end_s", "encodes",
        "path", "pools", "status", "reason",
        # request class (workload.classes): its index, priority and first-token deadline (absolute, seconds)
        "rclass", "priority", "deadline_s",
        # benchmark clients: the client slot that sent it under a concurrency cap, and whether it is a warm-up request
        "client", "warmup",
        # host stage: uploaded pixels of its images, and the time from send to admission (decode, resize, hand-off)
        "input_pixels", "preprocess_s",
        # the token stream its text prompt is a prefix of (workload.text_prefix; None: a prompt of its own)
        "prefix_key",
    )

    def __init__(
        self, rid: int, *, arrival_s: float, prompt_tokens: int, output_tokens: int, images: int = 0,
        visual_tokens: int = 0, vit_seq_lens: tuple[int, ...] = (), projector_in_tokens: int = 0,
        image_ids: tuple[str, ...] = (), video_s: float = 0.0, session: int | None = None, turn: int = 1,
        think_s: float = 0.0, input_pixels: int = 0,
    ):
        self.id = rid
        self.session = session
        self.turn = turn
        self.arrival_s = arrival_s
        self.think_s = think_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.images = images
        self.image_ids = image_ids
        self.video_s = video_s
        self.visual_tokens = visual_tokens
        self.vit_seq_lens = vit_seq_lens
        self.projector_in_tokens = projector_in_tokens
        self.toks: tuple = ()  # technique-transformed tokenizations of its images/video (set only with techniques)
        self.seq_tokens = prompt_tokens
        self.vis_in_seq = 0
        self.cross_kv = 0
        self.extra_slots = 0
        self.pruned: tuple[int, ...] = ()
        self.shared_blocks = 0
        self.enc_toks: tuple | None = None  # None: encode all of `toks`
        self.enc_tokens = visual_tokens
        self.reuse_keys: tuple = ()
        self.capped = False
        self.state = WAITING
        self.computed = 0
        self.target = 0
        self.generated = 0
        self.encoded = not vit_seq_lens
        self.enc_cached = False
        self.epoch = 0
        self.t0 = 0
        self.past0 = 0
        self.gen0 = 0
        self.cls = 0
        self.blocks = 0
        self.pull_src = None
        self.swapped = 0  # KV tokens held in host memory after a swap preemption
        self.wait_since = 0.0
        self.arrived = False
        self.queue_s = 0.0
        self.encode_start_s = NAN  # the first encode (a re-encode after preemption does not move it)
        self.encode_end_s = NAN
        self.last_encode_end_s = NAN  # the last encode's end: later than encode_end_s after a re-encode
        self.encodes = 0
        self.preempted_wait_s = 0.0  # the part of queue_s spent waiting again after a preemption
        self.first_token_s = NAN
        self.finish_s = NAN
        self.preemptions = 0
        self.transfer_s = 0.0
        self.path: list[str] = []
        self.pools: list[str] = []
        self.status = IN_FLIGHT
        self.reason = ""
        self.rclass = 0
        self.priority = 0
        self.deadline_s = math.inf
        self.client: int | None = None
        self.warmup = False
        self.input_pixels = input_pixels
        self.preprocess_s = 0.0
        self.prefix_key: int | None = None

    @property
    def toks_to_encode(self) -> tuple:
        """The tokenizations the encoder must still run: all of `toks`, or what a reuse cache left (`enc_toks`)."""
        return self.toks if self.enc_toks is None else self.enc_toks

    def __repr__(self) -> str:
        return (f"Request({self.id}, t={self.arrival_s:.3f}, prompt={self.prompt_tokens}, visual={self.visual_tokens}, "
                f"out={self.output_tokens}, state={self.state})")

    # records: every queue wait and encode goes through these, so the per-request table stays truthful after
    # preemption (issue 15)
    def waited(self, until: float) -> None:
        """Charge the wait since `wait_since` to queue_s, and to preempted_wait_s when it follows a preemption."""
        dt = until - self.wait_since
        self.queue_s += dt
        if self.preemptions:
            self.preempted_wait_s += dt

    def encode_started(self, t: float) -> None:
        if not self.encodes:
            self.encode_start_s = t
        self.encodes += 1

    def encode_ended(self, t: float) -> None:
        if self.encode_end_s != self.encode_end_s:  # NaN: the first encode
            self.encode_end_s = t
        self.last_encode_end_s = t


__all__ = ["COMPLETED", "DECODE", "DONE", "ENCODING", "IN_FLIGHT", "PARKED", "PREFILL", "PULLING", "REJECTED",
           "REJECTED_S", "WAITING", "Request"]
