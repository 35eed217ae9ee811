"""Pools, routers, transfers and the request flow between them: colocated replicas or disaggregated E/P/D pools.

A request enters the encode pool when the encoder runs in its own pool (and the request has images or video), else
the prefill pool. Between pools it crosses the link: image embeddings E->P (visual tokens x LLM hidden x activation
bytes, pushed as soon as encoding ends) and KV cache P->D (the sequence's KV bytes per GPU, pulled by the decode
instance once it has blocks for it; the prefill instance holds those blocks until the pull completes). Each
instance's outgoing link carries one transfer at a time (FIFO), so transfers queue; `transfer_s` counts that wait.

Every pool is checked up front: tensor parallelism must split the heads and the weights, the activation peak and
one request of the largest size in the workload must fit, or the run stops with the memory verdict.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import simpy

from lvlmsim.cost.memory import (
    GIB,
    check_ep,
    check_tp,
    kv_bytes_per_token,
    kv_slot_bytes,
    local_window_slots,
    memory_report,
    sequence_kv_bytes,
    weight_bytes,
)
from lvlmsim.cost.roofline import CostModel
from lvlmsim.engine.decodeset import kept_visual
from lvlmsim.engine.host import HostStage
from lvlmsim.engine.instance import EncoderInstance, LlmInstance
from lvlmsim.engine.prefix import PrefixCache, merge_prefix_stats
from lvlmsim.engine.request import REJECTED, REJECTED_S, Request
from lvlmsim.engine.reuse import ReuseTracker
from lvlmsim.engine.router import Router, make_router
from lvlmsim.engine.schedulers import make_policy
from lvlmsim.engine.stepcost import StepCost
from lvlmsim.engine.workload import Workload
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.ops.graph import encode_ops, llm_ops
from lvlmsim.ops.op import GraphConfig, SeqWork, default_graph_config
from lvlmsim.specs.base import DTYPE_BYTES
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.serving import LinkConfig, PoolSpec, ServingSpec
from lvlmsim.specs.workload import RequestClass, TextPrefixSpec
from lvlmsim.techniques.compose import Composition
from lvlmsim.techniques.reuse import encoder_entry_bytes, kv_entry_bytes

DEFAULT_LINK_LATENCY_US = 10.0
GOLDEN_RATIO = (1 + 5**0.5) / 2


@dataclass
class Pool:
    spec: PoolSpec
    hardware: HardwareSpec
    cfg: GraphConfig
    cost_model: CostModel
    instances: list = field(default_factory=list)
    router: Router | None = None
    total_blocks: int = 0
    memory_verdict: str = ""

    @property
    def name(self) -> str:
        return self.spec.label

    @property
    def role(self) -> str:
        return self.spec.role


class Cluster:
    """Owns the pools and moves requests between them; the metrics collector reads it after the run."""

    def __init__(
        self, env: simpy.Environment, model: ModelSpec, serving: ServingSpec, pools: list[Pool], workload: Workload,
        *, link: LinkConfig | None = None, progress: Callable[[int, int], None] | None = None,
        classes: Sequence[RequestClass] = (), ttft_slo_s: float | None = None,
        host: HostStage | None = None,
    ):
        self.env = env
        self.model = model
        self.serving = serving
        self.pools = pools
        self.workload = workload
        self.host = host
        # each output token reaches the client this long after the engine emits it (detokenise + SSE, API costs):
        # a client sees its answer end, and a closed-loop slot or a session's next turn frees, only then
        self.delivery_s = host.token_out_s if host is not None else 0.0
        self.progress = progress
        self.enc_pool = next((p for p in pools if p.role == "E"), None)
        self.entry_pool = next(p for p in pools if "P" in p.role)
        self.dec_pool = next(p for p in pools if "D" in p.role)
        self.max_model_len = serving.max_model_len or model.llm.max_position_embeddings
        self.llm_blocks = min(p.total_blocks for p in pools if p.role != "E")
        self.block_size = serving.block_size
        self.link = link
        for p in pools:
            for inst in p.instances:
                inst.cluster = self
        if len(pools) > 1:
            if link is None:
                raise SpecError("serving.link: needed between pools")
            self._bw = link.bw_gbps * 1e9
            self._lat = link.latency_us * 1e-6
            for p in pools:
                for inst in p.instances:
                    inst.link = simpy.Resource(env, capacity=1)
        self._act_bytes = DTYPE_BYTES[self.entry_pool.cfg.act_dtype]
        self.n_completed = 0
        self.n_rejected = 0
        self.n_shed = 0  # rejected because a queue was full: offered load the service could not take
        self.total = workload.planned
        self._report_every = max(1, self.total // 200)
        self._next_report = self._report_every
        self._sessions = {}
        # open arrivals (requests, or first turns of chat sessions) and the ends of what they started (a request, or
        # a session's last or rejected turn): the saturation verdict watches these, since a chat's later turns are
        # closed-loop and cannot pile up by themselves
        self.has_sessions = workload.has_sessions
        # compact float arrays (8 bytes an entry): with streaming summaries these and the drawn numbers are what
        # grows with the count
        self.unit_starts = array("d")
        self.unit_ends = array("d")
        self.sink = None  # streaming summaries: a StreamSummary that ended requests are folded into
        self._live: dict[int, Request] = {}  # streaming: arrived requests not yet ended
        # closed loop / concurrency cap: free client slots (FIFO, as an asyncio semaphore wakes its waiters) and the
        # event the arrival process waits on when none is free
        self.cap = workload.cap
        self._free_clients = deque(range(self.cap)) if self.cap is not None else deque()
        self._slot_freed: simpy.Event | None = None
        self.n_sent = 0
        self.measure_start_s = 0.0  # send time of the first request after the warm-up ones
        self._prepare_setup()
        self._classes = list(classes)
        self._class_bounds = list(itertools.accumulate(c.fraction for c in self._classes))
        self._ttft_slo_s = ttft_slo_s
        self._classify_on = bool(self._classes) or ttft_slo_s is not None
        env.process(self._arrivals())

    # ---------------------------------------------------------------------------------------------------------------
    def _prepare_setup(self) -> None:
        """What preparing a request needs from the model, computed once; speculative decoding's pre-scan."""
        model, cfg = self.model, self.entry_pool.cfg
        self._cross = model.image_tokens_in_kv_of_cross_attention
        per_tok = kv_bytes_per_token(model, cfg)
        per_vis = sequence_kv_bytes(model, cfg, 0, 1)
        self._vis_ratio = per_vis / per_tok if per_tok else 1.0
        self._fracs = self.entry_pool.instances[0].coster.fracs if self.entry_pool.instances else (1.0,)
        self._schedule = any(f < 1.0 for f in self._fracs)
        self._spec_extra = 0
        self._prepare_techniques()

    def _prepare(self, r: Request) -> None:
        """Model-derived fields: tokens in the decoder sequence, cross-attention KV, KV slots of visual tokens."""
        vis = r.visual_tokens
        if self._cross:
            r.vis_in_seq, r.cross_kv = 0, vis
            r.extra_slots = math.ceil(vis * self._vis_ratio) if vis else 0
        else:
            r.vis_in_seq, r.cross_kv = vis, 0
            r.extra_slots = round(vis * self._vis_ratio) - vis if self._vis_ratio != 1.0 else 0
        r.seq_tokens = r.prompt_tokens + r.vis_in_seq
        r.target = r.seq_tokens
        r.extra_slots += local_window_slots(self.model, self.entry_pool.cfg, r.seq_tokens + r.output_tokens)
        if self._schedule:
            r.pruned = kept_visual(r.vis_in_seq, self._fracs)
        r.extra_slots += self._spec_extra

    def _prepare_techniques(self) -> None:
        """Speculative decoding: every sequence reserves KV slots for the gamma drafted tokens a round verifies
        (lookahead - 1 beyond the token a step keeps), and each coster learns the mean past visual tokens of a
        decoding sequence (its draft/verify pricing uses it; a scan of the whole workload)."""
        costers = [p.instances[0].coster for p in self.pools if p.instances and p.role != "E"]
        spec = [c for c in costers if c.speculative]
        if not spec:
            return
        vis = []
        for r in self.workload.scan():
            self._prepare(r)
            if r.vis_in_seq:
                vis.append(r.vis_in_seq)
        self._spec_extra = max(c.comp.lookahead_tokens for c in spec) - 1
        mean_vis = round(sum(vis) / len(vis)) if vis else 0
        for c in spec:
            c.spec_visual = mean_vis

    def _blocks(self, slots: int) -> int:
        return -(-slots // self.block_size) if slots > 0 else 0

    def _arrivals(self):
        """Pull arrival units from the workload stream and send them at their arrival time; under a concurrency cap,
        also wait for a free client slot (latencies then count from the send, as the benchmark clients measure)."""
        env = self.env
        wl = self.workload
        for unit in wl.units():
            first = unit[0]
            for r in unit:
                self._prepare(r)
            for a, b in zip(unit, unit[1:], strict=False):
                self._sessions[a.id] = b
            dt = first.arrival_s - env.now
            if dt > 0:
                yield env.timeout(dt)
            if self.cap is not None:
                if not self._free_clients:
                    self._slot_freed = env.event()
                    yield self._slot_freed
                    self._slot_freed = None
                if wl.duration_s is not None and env.now > wl.duration_s:
                    return
                first.client = self._free_clients.popleft()
            self.unit_starts.append(env.now)
            self.arrive(first)

    def _release_client(self, r: Request) -> None:
        """A capped request has ended (finished or rejected): its client may send the next one."""
        if r.client is None:
            return
        self._free_clients.append(r.client)
        if self._slot_freed is not None and not self._slot_freed.triggered:
            self._slot_freed.succeed()

    def _classify(self, r: Request) -> None:
        """Request class (workload.classes, interleaved by a golden-ratio sequence over ids) and TTFT deadline."""
        slo = self._ttft_slo_s
        if self._classes:
            u = (r.id * GOLDEN_RATIO) % 1.0
            i = min(bisect.bisect_right(self._class_bounds, u), len(self._classes) - 1)
            c = self._classes[i]
            r.rclass, r.priority = i, c.priority
            slo = c.ttft_slo_s or slo
        if slo is not None:
            r.deadline_s = r.arrival_s + slo

    def arrive(self, r: Request) -> None:
        """A request is sent: through the host stage when there is one (images, API handling), then admitted. The
        first workload.warmup_requests sent (any turn of a session counts) are warm-up; measuring starts at the
        next send."""
        now = self.env.now
        r.arrival_s = now
        r.arrived = True
        warmup = self.workload.warmup
        if warmup:
            if self.n_sent == warmup:
                self.measure_start_s = now
                for inst in self.instances:
                    inst.open_window(now)
            r.warmup = self.n_sent < warmup
        self.n_sent += 1
        if self._classify_on:
            self._classify(r)
        if self.sink is not None:
            self._live[r.id] = r
        if self.host is not None and self.host.handles(r):
            self.env.process(self.host.run(r, self._admit))
            return
        self._admit(r)

    def _admit(self, r: Request) -> None:
        if r.seq_tokens <= 0:
            return self._reject(r, "empty prompt: no text and no visual tokens")
        if r.seq_tokens + r.output_tokens > self.max_model_len:
            return self._reject(r, f"longer than max_model_len {self.max_model_len}")
        if self._blocks(r.seq_tokens + r.output_tokens + r.extra_slots) > self.llm_blocks:
            return self._reject(r, "needs more KV blocks than an instance has")
        pool = self.enc_pool if (self.enc_pool is not None and r.vit_seq_lens) else self.entry_pool
        inst = pool.router.pick(r)
        cap = self.serving.max_queue_len
        if cap is not None and len(inst.waiting) >= cap:
            self.n_shed += 1
            return self._reject(r, f"queue of {inst.name} full ({cap})")
        inst.submit(r)

    def _reject(self, r: Request, reason: str) -> None:
        r.state = REJECTED
        r.status = REJECTED_S
        r.reason = reason
        r.finish_s = self.env.now
        self.n_rejected += 1
        self.unit_ends.append(self.env.now)  # a rejected turn ends its session: no later turn is sent
        self._release_client(r)
        self._ended(r)
        self._tick()

    def stream_into(self, sink) -> None:
        """Streaming summaries: fold every measured request into `sink` (StreamSummary) when it ends and drop it;
        the workload stops recording requests and the instances sketch their inter-token gaps."""
        from lvlmsim.engine.sketch import LogHistogram

        self.sink = sink
        self.workload.keep = False
        for inst in self.instances:
            inst.stats.itl_sketch = LogHistogram()

    def _ended(self, r: Request) -> None:
        if self.sink is not None and self._live.pop(r.id, None) is not None and not r.warmup:
            self.sink.fold(r)

    def _tick(self) -> None:
        done = self.n_completed + self.n_rejected
        if self.progress is not None and done >= self._next_report:
            self._next_report = done + self._report_every
            self.progress(done, self.total)

    # hand-offs between pools ------------------------------------------------------------------------------------------
    def on_encoded(self, r: Request, src: EncoderInstance) -> None:
        dst = self.entry_pool.router.pick(r)
        nbytes = r.visual_tokens * self.model.llm.hidden_size * self._act_bytes
        self.env.process(self._transfer(src, nbytes, r, lambda: dst.submit(r)))

    def on_prefilled(self, r: Request, src: LlmInstance) -> None:
        self.dec_pool.router.pick(r).submit_pull(r, src)

    def start_pull(self, r: Request, src: LlmInstance, dst: LlmInstance, src_blocks: int) -> None:
        """Pull the KV the prefill instance keeps (after any KV budget) into `dst`; `src` frees `src_blocks`."""
        kept, kept_vis = src.kv_after_prefill(r)
        nbytes = sequence_kv_bytes(self.model, src.coster.cfg, kept - kept_vis, kept_vis + r.cross_kv)

        def done() -> None:
            src.release(r, src_blocks)
            dst.pulled(r)

        self.env.process(self._transfer(src, nbytes, r, done))

    def _transfer(self, src, nbytes: float, r: Request, then: Callable[[], None]):
        env = self.env
        t0 = env.now
        with src.link.request() as req:
            yield req
            yield env.timeout(self._lat + nbytes / self._bw)
        r.transfer_s += env.now - t0
        then()

    def on_finished(self, r: Request) -> None:
        self.n_completed += 1
        self._ended(r)
        self._tick()
        nxt = self._sessions.pop(r.id, None)
        if nxt is not None:
            self.env.process(self._next_turn(nxt))
        else:
            self.unit_ends.append(self.env.now)
        if self.delivery_s > 0:
            self.env.process(self._delivered(r))
        else:
            self._release_client(r)

    def _delivered(self, r: Request):
        """The last token reaches the client delivery_s after the engine emitted it: the run lasts until then (its
        span covers the table's finish_s) and a benchmark client holds its slot until then."""
        yield self.env.timeout(self.delivery_s)
        self._release_client(r)

    def _next_turn(self, r: Request):
        """A session's next turn: after the previous answer has reached the client (delivery_s after the engine
        emitted it) and the think time, and for a replayed trace not before its own recorded (scaled) arrival, set
        in arrival_s (NaN for generated turns)."""
        delay = self.delivery_s + r.think_s
        if r.arrival_s == r.arrival_s:
            delay = max(delay, r.arrival_s - self.env.now)
        yield self.env.timeout(delay)
        self.arrive(r)

    def finalize(self) -> None:
        """At the end of a run: close the queue-length integrals and charge requests still waiting for their wait so
        far, so that Little's law holds for a run cut off by a horizon too."""
        now = self.env.now
        for inst in self.instances:
            inst.queue_touch()
            for r in inst.waiting:
                r.waited(now)
                r.wait_since = now
        if self.sink is not None:  # what is still in flight at the end, in id order as the table lists it
            for rid in sorted(self._live):
                if not self._live[rid].warmup:
                    self.sink.fold(self._live[rid])
            self._live.clear()

    @property
    def instances(self) -> list:
        return [i for p in self.pools for i in p.instances]

    def prefix_stats(self) -> dict | None:
        """Summed statistics of the instances' text prefix caches (None when none has one)."""
        parts = [i.prefix.stats() for i in self.instances if getattr(i, "prefix", None) is not None]
        return merge_prefix_stats(parts) if parts else None

    def reuse_stats(self) -> dict | None:
        """Summed statistics of every instance's reuse caches (None without the reuse technique)."""
        from lvlmsim.engine.reuse import merge_stats

        parts = [i.reuse.stats() for i in self.instances if getattr(i, "reuse", None) is not None]
        return merge_stats(parts) if parts else None


# -------------------------------------------------------------------------------------------------------------------
# building pools


def _largest_request(model: ModelSpec, workload: Workload, max_model_len: int) -> tuple[int, int, Request | None]:
    """(text tokens, visual tokens) of the admissible request holding the most KV, and the most visual request."""
    cross = model.image_tokens_in_kv_of_cross_attention
    best = (1, 0)
    best_slots = -1
    most_visual = None
    for r in workload.scan():
        seq = r.prompt_tokens + (0 if cross else r.visual_tokens)
        if seq + r.output_tokens > max_model_len:
            continue
        slots = r.prompt_tokens + r.output_tokens + r.visual_tokens
        if slots > best_slots:
            best_slots, best = slots, (r.prompt_tokens + r.output_tokens, r.visual_tokens)
        if r.vit_seq_lens and (most_visual is None or sum(r.vit_seq_lens) > sum(most_visual.vit_seq_lens)):
            most_visual = r
    return best[0], best[1], most_visual


@dataclass
class _PoolBuild:
    """What the phases of build_pool share: the pool's model and graph config, which stages it runs, and which
    reuse caches it holds (and their reserved bytes)."""

    model: ModelSpec
    cfg: GraphConfig
    spec: PoolSpec
    hardware: HardwareSpec
    comp: Composition
    label: str
    has_llm: bool
    has_enc: bool
    reuse_enc: bool = False
    reuse_kv: bool = False
    reuse_bytes: float = 0.0

    @property
    def modules(self) -> list[str]:
        return (["vision", "projector"] if self.has_enc else []) + (["llm"] if self.has_llm else [])

    def tracker(self, block_size: int) -> ReuseTracker | None:
        if not (self.reuse_enc or self.reuse_kv):
            return None
        model, cfg = self.model, self.cfg
        return ReuseTracker(self.comp.admission_cache(), block_size=block_size, kv=self.reuse_kv,
                            encoder=self.reuse_enc, enc_entry_bytes=lambda t: encoder_entry_bytes(model, cfg, t),
                            kv_entry_bytes=lambda t: kv_entry_bytes(model, cfg, t))


def build_pool(
    env: simpy.Environment, model: ModelSpec, spec: PoolSpec, hardware: HardwareSpec, serving: ServingSpec,
    workload: Workload, cost_model: CostModel, *, cfg: GraphConfig | None = None, comp: Composition | None = None,
    host_step_s: float = 0.0, cudagraph_mode: str = "full",
) -> Pool:
    """Check that the pool can run at all (else InfeasibleError with the memory verdict) and size its KV pool.

    `comp`: a techniques Composition for this pool's hardware and tp (its model and cfg are then used): its steps
    are priced through it, and the engine acts on it only through its engine hooks (kv_policy, admission_cache,
    reserved_weight_bytes, extra_kv_bytes_per_token); None is the identity composition over `cfg`.
    `cudagraph_mode` (the runtime version's, calibration/host/runtimes.yaml): piecewise / full_and_piecewise price
    the CUDA-graph steps as vLLM V1 issues them then (StepCost.set_piecewise), decode_only the steps with prefill
    tokens as eager launches (StepCost.set_eager_prefill: SGLang's extend batches; docs/cudagraph-modes.md).
    Phases: check the parallelism and dtypes, reserve reuse caches, check memory, count KV blocks, make instances.
    """
    has_llm = "P" in spec.role or "D" in spec.role
    if comp is None:
        comp = Composition.identity(model, cfg or default_graph_config(model, spec.tp, spec.ep if has_llm else 1))
    b = _PoolBuild(comp.model, comp.cfg, spec, hardware, comp,
                   label=f"pool '{spec.label}' ({hardware.id}, tp={spec.tp})", has_llm=has_llm,
                   has_enc="E" in spec.role)
    _check_parallelism(b)
    _check_dtypes(b)
    _reserve_reuse(b, workload)
    mem = _check_memory(b, serving, workload)
    total_blocks = _kv_blocks(b, serving, mem.kv_budget_bytes)
    verdict = mem.verdict + (f"; reuse caches reserve {b.reuse_bytes / GIB:.2f} GiB per device"
                             if b.reuse_bytes else "")
    pool = Pool(spec, hardware, b.cfg, cost_model, total_blocks=total_blocks, memory_verdict=verdict)
    coster = StepCost(b.model, b.cfg, cost_model, comp)
    if cudagraph_mode != "full" and serving.runtime is not None and not serving.enforce_eager:
        from lvlmsim.cost.runtime import eager_prefill, piecewise_dispatch

        if cudagraph_mode == "decode_only":
            coster.set_eager_prefill(eager_prefill(hardware))
        else:
            coster.set_piecewise(piecewise_dispatch(hardware), decode=cudagraph_mode == "piecewise")
    pool.instances = _instances(env, b, serving, coster, total_blocks,
                                _step_overhead_s(serving, host_step_s), workload.text_prefix)
    pool.router = make_router(serving.router, pool.instances)
    return pool


def _check_parallelism(b: _PoolBuild) -> None:
    model, spec = b.model, b.spec
    if b.has_llm:
        try:
            check_tp(model, spec.tp)
            check_ep(model, spec.tp, spec.ep)
        except InfeasibleError as exc:
            raise InfeasibleError(f"{b.label}: {exc}") from None
    elif model.vision.num_heads % spec.tp:
        raise InfeasibleError(
            f"{b.label}: tp: {spec.tp} does not divide the {model.vision.num_heads} vision-encoder heads of {model.id}"
        )
    if spec.tp > b.hardware.max_devices_per_node:
        raise InfeasibleError(f"{b.label}: tp {spec.tp} exceeds the {b.hardware.max_devices_per_node} devices of a "
                              "node")


def _check_dtypes(b: _PoolBuild) -> None:
    for m in b.modules:
        dt = b.cfg.compute_dtype.get(m, b.model.dtype)
        if not b.hardware.supports(dt):
            raise InfeasibleError(f"{b.label}: hardware has no {dt} compute for the {m} (it supports: "
                                  f"{', '.join(b.hardware.peak_tflops)})")


def _reserve_reuse(b: _PoolBuild, workload: Workload) -> None:
    """Which reuse caches the pool holds (techniques: reuse) and the device bytes they reserve."""
    reuse_cfg = b.comp.admission_cache()
    if reuse_cfg is None:
        return
    model, cfg = b.model, b.cfg
    b.reuse_enc = reuse_cfg.caches_encoder() and b.has_enc
    b.reuse_kv = (reuse_cfg.caches_kv() and "P" in b.spec.role and not model.image_tokens_in_kv_of_cross_attention)
    if b.reuse_enc:
        b.reuse_bytes += reuse_region_bytes(reuse_cfg, workload, lambda t: encoder_entry_bytes(model, cfg, t))
    if b.reuse_kv:
        b.reuse_bytes += reuse_region_bytes(reuse_cfg, workload, lambda t: kv_entry_bytes(model, cfg, t))


def _check_memory(b: _PoolBuild, serving: ServingSpec, workload: Workload):
    """Weights, the activation peak of the largest step and one request of the largest size must fit."""
    model, cfg = b.model, b.cfg
    max_len = serving.max_model_len or model.llm.max_position_embeddings
    text, visual, most_visual = _largest_request(model, workload, max_len)
    act_ops: list = []
    if b.has_llm:
        act_ops.extend(llm_ops(model, (SeqWork(new_tokens=serving.max_num_batched_tokens, emits_token=True),),
                               "prefill", cfg))
    if b.has_enc and most_visual is not None:
        r = most_visual
        act_ops.extend(encode_ops(model, tuple(sorted(r.vit_seq_lens)), r.projector_in_tokens, r.visual_tokens, cfg))
    not_loaded = sum(v for k, v in weight_bytes(model, cfg).items() if k not in b.modules)
    if b.has_llm:
        not_loaded -= b.comp.reserved_weight_bytes()  # draft model / drafting heads held next to the LLM
    held = b.reuse_bytes
    mem = memory_report(
        model, b.hardware, cfg, text_tokens=text if b.has_llm else 0, visual_tokens=visual if b.has_llm else 0,
        batch=1, activation_ops=act_ops, gpu_memory_utilization=serving.gpu_memory_utilization,
        extra_bytes=held - not_loaded,
    )
    if not mem.fits:
        why = (f"reuse caches hold {held / GIB:.2f} GiB per device (counted with the weights); " if held else "")
        raise InfeasibleError(f"{b.label}: {why}{mem.verdict}")
    return mem


def _kv_blocks(b: _PoolBuild, serving: ServingSpec, kv_budget_bytes: float) -> int:
    if not b.has_llm:
        return 0
    per_tok = kv_slot_bytes(b.model, b.cfg)
    per_tok += b.comp.extra_kv_bytes_per_token()  # a draft model's own KV per (text) token, next to the target's
    blocks = int(kv_budget_bytes // (serving.block_size * per_tok))
    if blocks < 1:  # memory 'fits' yet not one block: every request would be rejected (issue 15)
        block_gib = serving.block_size * per_tok / GIB
        raise InfeasibleError(f"{b.label}: the KV budget of {kv_budget_bytes / GIB:.2f} GiB holds no block of "
                              f"serving.block_size {serving.block_size} tokens ({block_gib:.2f} GiB each); use a "
                              "smaller block_size (vLLM: 16)")
    return blocks


def _step_overhead_s(serving: ServingSpec, host_step_s: float) -> float:
    """CPU time added to every step: the configured overhead, the runtime's launch overhead (its kernel floor is
    in the cost model's profile, which simulate wraps), and the runtime version's per-step host time."""
    overhead_s = serving.step_overhead_s
    if serving.runtime is not None:
        from lvlmsim.cost.runtime import serving_runtime

        overhead_s += serving_runtime(serving.runtime, serving.enforce_eager).step_overhead_s
    return overhead_s + host_step_s


def _instances(env, b: _PoolBuild, serving: ServingSpec, coster: StepCost, total_blocks: int,
               overhead_s: float, text_prefix: TextPrefixSpec | None = None) -> list:
    """The pool's instances. With serving.prefix_caching and a workload whose prompts are token streams
    (workload.text_prefix), every prefilling instance gets a prefix cache holding what the spec says the server
    held at the start (a published sweep's earlier runs were sent to one server: each instance gets all of it)."""
    spec, role = b.spec, b.spec.role
    if role == "E":
        return [EncoderInstance(env, f"{spec.label}{i}", spec.label, None, coster, serving.encoder_budget,
                                overhead_s, reuse=b.tracker(serving.block_size)) for i in range(spec.instances)]
    if serving.encoder_policy == "encode_ahead" and (b.reuse_enc or b.reuse_kv):
        raise SpecError(f"{b.label}: serving.encoder_policy: encode_ahead is not modelled with the reuse technique "
                        "(its encoder work depends on cache hits at admission); use co_batch")
    kv_policy = b.comp.kv_policy()
    swap_s = swap_time(b.model, b.cfg, b.hardware, serving, b.label) if serving.preemption == "swap" else None
    return [LlmInstance(
        env, f"{spec.label}{i}", spec.label, None, coster, total_blocks=total_blocks, block_size=serving.block_size,
        policy=make_policy(serving), encoder_budget=serving.encoder_budget, encoder_cache=serving.encoder_cache,
        does_encode=b.has_enc, handoff="D" not in role, overhead_s=overhead_s,
        reuse=b.tracker(serving.block_size) if "P" in role else None, kv_policy=kv_policy, swap_s=swap_s,
        prefix=(PrefixCache.preloaded(serving.block_size, total_blocks, text_prefix)
                if serving.prefix_caching and text_prefix is not None and "P" in role else None),
    ) for i in range(spec.instances)]


def swap_time(model: ModelSpec, cfg: GraphConfig, hardware: HardwareSpec, serving: ServingSpec, label: str):
    """Seconds to move a sequence's KV (per GPU: each GPU of a tensor-parallel group moves its own shard over its
    own host link) between device and host memory, for swap preemption."""
    bw_gbps = serving.swap_bw_gbps or hardware.host_link_gbps
    if bw_gbps is None:
        raise SpecError(f"{label}: serving.preemption: swap needs the host-link bandwidth; hardware "
                        f"'{hardware.id}' gives no host_link_gbps: set serving.swap_bw_gbps or use recompute")
    bw = bw_gbps * 1e9

    def seconds(r: Request, kv_tokens: int) -> float:
        visual = min(r.vis_in_seq, kv_tokens)
        return sequence_kv_bytes(model, cfg, kv_tokens - visual, visual + r.cross_kv) / bw

    return seconds


def reuse_region_bytes(config, workload: Workload, entry_bytes) -> float:
    """Device bytes one reuse cache reserves: its GiB bound, or its entry bound times the largest image entry of
    the workload (whichever is smaller when both are given)."""
    from lvlmsim.engine.reuse import image_units

    caps = []
    if config.capacity_gib is not None:
        caps.append(config.capacity_gib * GIB)
    if config.capacity_entries is not None:
        largest = max((sum(entry_bytes(t) for t in toks) for r in workload.scan() for _, toks in image_units(r)),
                      default=0.0)
        caps.append(config.capacity_entries * largest)
    if not caps:
        raise SpecError("technique 'reuse': capacity_entries/capacity_gib: give a capacity to build the cache")
    return min(caps)


def default_link(pools: list[Pool]) -> LinkConfig:
    """The hardware's inter-node network (the slower end), 10 us latency."""
    bw = min(p.hardware.inter_node_bw_gbps for p in pools)
    if bw <= 0:
        raise SpecError("serving.link: the pools' hardware has no inter-node network; give serving.link.bw_gbps")
    return LinkConfig(bw_gbps=bw, latency_us=DEFAULT_LINK_LATENCY_US, name="inter-node network (hardware default)")


__all__ = ["Cluster", "Pool", "build_pool", "default_link"]
