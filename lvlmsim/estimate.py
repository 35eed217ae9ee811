"""Analytic estimate of one request (or a batch of identical requests), stage by stage and op by op.

This is the static half of lvlmsim: tokenization -> operator graph -> cost model, with no queueing. The SimPy
engine prices its batch steps with the same graph and cost model, so a lone request on an idle instance gets the
same TTFT from both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lvlmsim.cost.memory import MemoryReport, check_ep, check_tp, memory_report
from lvlmsim.cost.profile import EfficiencyProfile
from lvlmsim.cost.roofline import COMPUTE, CostModel, OpCost
from lvlmsim.cost.runtime import EagerPrefill, launch_queue_profile, launch_queue_s, piecewise_step_s
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.ops.graph import MLA_UPPROJ_OP, active_params, encode_ops, llm_ops, lm_head_op_names, param_counts
from lvlmsim.ops.op import ATTN_KINDS, GraphConfig, Op, SeqWork, default_graph_config
from lvlmsim.ops.tokenization import ImageTokenization, tokenize_image, tokenize_video
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.inputs import number
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.workload import MAX_REQUEST_TOKENS, MAX_VIDEO_S

MAX_DECODE_SAMPLES = 32  # decode steps priced exactly up to this many; beyond, a midpoint rule over contexts


@dataclass
class StageResult:
    name: str
    time_s: float
    flops: float
    bytes: float
    bound: str
    visual_flops_share: float
    ops: list[OpCost] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "flops": self.flops, "bytes": self.bytes, "bound": self.bound,
                "visual_flops_share": self.visual_flops_share}


@dataclass
class Estimate:
    model_id: str
    hardware_id: str
    profile: str
    batch: int
    tp: int
    images: list[ImageTokenization]
    visual_tokens: int
    vit_tokens: int
    prompt_tokens: int
    output_tokens: int
    stages: dict[str, StageResult]
    ttft_s: float
    tpot_s: float
    e2e_s: float
    memory: MemoryReport
    graph_config: GraphConfig
    image_tokens_in_cross_attention: bool = False
    notes: list[str] = field(default_factory=list)
    cost_profile: object = field(default=None, repr=False, compare=False)  # for the p10/p90 bands (cost.uncertainty)
    ep: int = 1
    params_total: int = 0
    params_active_per_token: int = 0
    # which efficiency model priced it and how sure it is (lvlmsim.calibrate.profiles.provenance_of), with
    # transfer_note when the device lies outside every category that model was fitted on; set by lvlmsim.estimate
    # (the API layer: calibrate and estimate are peers, so estimate_request cannot ask calibrate)
    provenance: dict = field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        """Tokens in the decoder sequence after prefill (image tokens of cross-attention models live elsewhere)."""
        return self.prompt_tokens + (0 if self.image_tokens_in_cross_attention else self.visual_tokens)

    def to_dict(self) -> dict:
        return {
            "model": self.model_id,
            "hardware": self.hardware_id,
            "profile": self.profile,
            "batch": self.batch,
            "tp": self.tp,
            "ep": self.ep,
            "params": {"total": self.params_total, "active_per_token": self.params_active_per_token},
            "visual_tokens": self.visual_tokens,
            "vit_tokens": self.vit_tokens,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "images": [{"width": t.width, "height": t.height, "llm_tokens": t.llm_tokens,
                        "vit_seq_lens": list(t.vit_seq_lens), "detail": t.detail} for t in self.images],
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "e2e_s": self.e2e_s,
            "memory": self.memory.to_dict(),
            "notes": self.notes,
            "provenance": self.provenance,
            **self.band_keys(),
        }

    def band_keys(self) -> dict:
        """ttft_s/tpot_s/e2e_s and stage times at p10/p90 of the profile's held-out errors (None: no band known)."""
        from lvlmsim.cost.uncertainty import time_bands

        st = self.stages
        # TTFT counts the host's preprocess stage too (as _retime does); its ops have no band, so they add as they are
        first = (st["preprocess"].ops if "preprocess" in st else []) + st["encode"].ops + st["prefill"].ops
        parts = {"ttft_s": first, "decode": st["decode"].ops, "e2e_s": first + st["decode"].ops,
                 **{f"stage:{k}": v.ops for k, v in st.items()}}
        bands = time_bands(self.cost_profile, parts)
        steps = self.output_tokens - 1
        out: dict = {}
        for key, part in (("ttft_s", "ttft_s"), ("tpot_s", "decode"), ("e2e_s", "e2e_s")):
            for q, i in (("p10", 0), ("p90", 1)):
                v = bands[part][i] if bands else None
                if v is not None and key == "tpot_s":
                    v = v / steps if steps else 0.0
                out[f"{key}_{q}"] = v
        out["stage_time_s_bands"] = {k: (list(bands[f"stage:{k}"]) if bands else None) for k in st}
        return out

    def op_rows(self) -> list[dict]:
        """One row per op and stage: what `--ops` prints and the app's roofline plots."""
        rows = []
        for stage in self.stages.values():
            for c in stage.ops:
                op = c.op
                rows.append({
                    "stage": op.stage, "module": op.module, "op": op.name, "kind": op.kind, "count": op.count,
                    "layers": f"{op.layer_range[0]}-{op.layer_range[1]}", "shape": op.shape,
                    "flops": op.total_flops, "bytes": op.total_bytes, "intensity": op.intensity,
                    "time_s": c.total_time_s, "time_per_call_s": c.time_s, "compute_s": c.compute_s,
                    "memory_s": c.memory_s, "floor_s": c.floor_s, "bound": c.bound,
                    "attained_tflops": c.attained_flops / 1e12, "eff_compute": c.eff_compute,
                    "eff_memory": c.eff_memory, "source": c.source, "measured_error_pct": c.measured_error_pct,
                    "visual_flops_share": op.visual_flops_share, "dtype": op.dtype,
                })
        return rows

    def ops_frame(self):
        import pandas as pd

        return pd.DataFrame(self.op_rows())


def stage_result(name: str, costs: list[OpCost]) -> StageResult:
    """One stage's totals from its op costs; its bound is the bound that holds the most of its time."""
    time = sum(c.total_time_s for c in costs)
    flops = sum(c.op.total_flops for c in costs)
    nbytes = sum(c.op.total_bytes for c in costs)
    by_bound: dict[str, float] = {}
    for c in costs:
        by_bound[c.bound] = by_bound.get(c.bound, 0.0) + c.total_time_s
    bound = max(by_bound, key=by_bound.get) if by_bound else "none"
    vis = sum(c.op.total_flops * c.op.visual_flops_share for c in costs)
    return StageResult(name, time, flops, nbytes, bound, vis / flops if flops else 0.0, costs)


def merge_repeated_ops(costs: list[tuple[OpCost, float]]) -> list[OpCost]:
    """Fold repeated ops (decode steps) into one OpCost per op name with summed counts/flops/bytes/time."""
    groups: dict[tuple[str, tuple[int, int]], list[tuple[OpCost, float]]] = {}
    for c, w in costs:
        groups.setdefault((c.op.name, c.op.layer_range), []).append((c, w))
    out = []
    for items in groups.values():
        first = items[0][0]
        if len(items) == 1 and items[0][1] == 1.0:
            out.append(first)
            continue
        # one pass, each sum in the same order and association as a generator sum (results are bit-identical)
        calls = flops = br = bw = t = cs = ms = fs = ps = 0
        for c, w in items:
            o = c.op
            calls += o.count * w
            flops += o.flops * o.count * w
            br += o.bytes_read * o.count * w
            bw += o.bytes_written * o.count * w
            t += c.total_time_s * w
            cs += c.compute_s * o.count * w
            ms += c.memory_s * o.count * w
            fs += c.floor_s * o.count * w
            ps += c.peak_s * o.count * w
        n = max(1, round(calls))  # fractional weights (sampled steps) must never round to zero calls
        op = Op(name=first.op.name, kind=first.op.kind, stage=first.op.stage, module=first.op.module,
                flops=flops / n, bytes_read=br / n, bytes_written=bw / n, dtype=first.op.dtype, shape=first.op.shape,
                count=n, layer_range=first.op.layer_range, visual_flops_share=first.op.visual_flops_share,
                weight_bytes=first.op.weight_bytes, act_bytes=first.op.act_bytes, devices=first.op.devices)
        out.append(OpCost(op, t / n, cs / n, ms / n, fs / n, first.bound if len({c.bound for c, _ in items}) == 1
                          else max(items, key=lambda x: x[0].total_time_s * x[1])[0].bound,
                          first.eff_compute, first.eff_memory, first.source, first.measured_error_pct, ps / n))
    return out


def _add_step_overhead(stage: StageResult, per_step_s: float, steps: int, name: str = "runtime.step_overhead",
                       module: str = "runtime") -> None:
    if steps <= 0:
        return
    op = Op(name=name, kind="overhead", stage=stage.name, module=module, flops=0.0,
            bytes_read=0.0, bytes_written=0.0, dtype="none", count=steps)
    stage.ops.append(OpCost(op, per_step_s, 0.0, 0.0, per_step_s, "overhead", 0.0, 0.0, module, None))
    stage.time_s += per_step_s * steps


def _retime(est: Estimate) -> None:
    """TTFT, TPOT and E2E from the stage totals (a `preprocess` stage, when there is one, comes before encode)."""
    steps = est.output_tokens - 1
    pre = est.stages["preprocess"].time_s if "preprocess" in est.stages else 0.0
    est.ttft_s = pre + est.stages["encode"].time_s + est.stages["prefill"].time_s
    est.tpot_s = est.stages["decode"].time_s / steps if steps else 0.0
    est.e2e_s = est.ttft_s + est.stages["decode"].time_s


def _host_op(name: str, seconds: float, count: int) -> OpCost:
    op = Op(name=name, kind="host", stage="preprocess", module="host", flops=0.0, bytes_read=0.0, bytes_written=0.0,
            dtype="none", count=count)
    return OpCost(op, seconds, 0.0, 0.0, seconds, "host", 0.0, 0.0, "host", None)


def with_host_costs(est: Estimate, model: ModelSpec, host, images: int, runtime: str | None = None) -> Estimate:
    """Put the `preprocess` stage first: the host's image decode/resize/normalise of the request's first `images`
    tokenizations on the runtime's worker pool (the batch's requests in rounds of `preprocess_workers`), the hand-off
    of the processed pixels, and the runtime's per-step host time in prefill and decode (lvlmsim.cost.host). With
    the profile's API costs: the API layer's per-request time, the prompt's tokenisation and the inline images'
    bytes (`host.image_body`; same workers, same rounds), and one token's detokenise + server-sent event
    (`host.token_delivery`: every token is delayed by it, so TTFT and E2E count it once, TPOT not).
    `host` None: the stage is there and empty (host costs off), and a note says why: no `runtime`, or host costs
    turned off under it."""
    import math

    from lvlmsim.cost.host import STAGES, processed_pixels, transfer_bytes

    ops: list[OpCost] = []
    if host is None:
        why, fix = (("no runtime", "give a runtime") if runtime is None
                    else (f"turned off under runtime {runtime}", "leave them on (the default with a runtime)"))
        est.notes.append(f"host costs off ({why}): preprocess is empty; {fix} to price image decoding, resizing, "
                         "normalising, the pixel hand-off and per-step host time")
    else:
        toks = est.images[:images]
        per = [host.image_s(t.width * t.height, processed_pixels(model, t)) for t in toks]
        rounds = math.ceil(est.batch / host.preprocess_workers)
        for stage in STAGES:
            seconds = sum(p[stage] for p in per)
            if seconds > 0:
                ops.append(_host_op(f"host.image_{stage}", seconds, rounds))
        moved = host.transfer_s(sum(transfer_bytes(model, processed_pixels(model, t)) for t in toks))
        if moved > 0:
            ops.append(_host_op("host.pixel_transfer", moved, est.batch))
        if host.api is not None:  # API layer + tokenisation on the same workers; the first token's delivery
            sent = sum(host.encoded_bytes(t.width * t.height) for t in toks)  # the images as sent (photo JPEGs)
            ops += [_host_op(f"host.{k}", v, rounds) for k, v in host.api.request_in_s(est.prompt_tokens, sent).items()]
            ops.append(_host_op("host.token_delivery", host.api.token_out_s, 1))
        _add_step_overhead(est.stages["prefill"], host.step_host_s, 1, "host.step", "host")
        _add_step_overhead(est.stages["decode"], host.step_host_s, est.output_tokens - 1, "host.step", "host")
        est.notes.append(f"host costs: {host.describe()}")
    est.stages = {"preprocess": stage_result("preprocess", ops), **{k: v for k, v in est.stages.items()
                                                               if k != "preprocess"}}
    _retime(est)
    return est


def decode_contexts(start: int, steps: int, max_samples: int = MAX_DECODE_SAMPLES) -> list[tuple[int, float]]:
    """Contexts at which decode steps are priced, each with the number of steps it stands for (sums to `steps`)."""
    if steps <= 0:
        return []
    if steps <= max_samples:
        return [(start + i, 1.0) for i in range(steps)]
    width = steps / max_samples
    return [(start + int((i + 0.5) * width), width) for i in range(max_samples)]


def video_kwargs(video_size: tuple[int, int] | None, video_fps: float | None) -> dict:
    """tokenize_video keywords for a clip of `video_size` px at `video_fps` (None: the model's defaults)."""
    kw: dict = {}
    if video_size is not None:
        kw["width"], kw["height"] = int(video_size[0]), int(video_size[1])
    if video_fps is not None:
        kw["source_fps"] = video_fps
    return kw


def parse_image_size(text: str, field: str = "image_size") -> tuple[int, int]:
    """'1344x1008' -> (1344, 1008); names the field on bad input."""
    try:
        w, h = (int(x) for x in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise SpecError(f"{field}: expected WIDTHxHEIGHT in pixels such as 336x336, got '{text}'") from None
    if w <= 0 or h <= 0:
        raise SpecError(f"{field}: width and height must be positive, got {w}x{h}")
    return w, h


class Pipeline(Protocol):
    """What the three stages of a request are built through. Two implementations: PlainPipeline here (the identity:
    the operator graph as it is) and lvlmsim.techniques.Composition (the graph as the techniques leave it), so the
    analytic estimate has one pricing path with or without techniques."""

    model: ModelSpec
    cfg: GraphConfig
    tokens_per_step: float

    def encode_ops(self, toks: Sequence[ImageTokenization], batch: int = 1) -> list[Op]: ...

    def prefill_parts(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> tuple[list[Op], list[Op]]:
        ...

    def decode_graph_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]: ...

    def decode_view(self, seq: SeqWork, prompt_tokens: int, visual_tokens: int) -> tuple[SeqWork, int]: ...

    def decode_step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        ...

    def encode_miss_rate(self) -> float: ...

    def visual_kv_hit_rate(self) -> float: ...

    def held_kv_tokens(self, prompt_tokens: int, output_tokens: int, in_seq_visual: int, visual: int,
                       cross: bool) -> tuple[int, int]: ...

    def extra_memory_bytes(self, toks: list[ImageTokenization], text_tokens: float, visual_tokens: float,
                           batch: int) -> float: ...


class PlainPipeline:
    """The identity pipeline: the model's operator graph under `cfg`, every image encoded, one token per step."""

    tokens_per_step = 1.0

    def __init__(self, model: ModelSpec, cfg: GraphConfig):
        self.model, self.cfg = model, cfg

    def encode_ops(self, toks: Sequence[ImageTokenization], batch: int = 1) -> list[Op]:
        vit = tuple(L for t in toks for L in t.vit_seq_lens) * batch
        if not vit:
            return []
        proj_in = sum(t.projector_in_tokens for t in toks) * batch
        return list(encode_ops(self.model, vit, proj_in, sum(t.llm_tokens for t in toks) * batch, self.cfg))

    def prefill_parts(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> tuple[list[Op], list[Op]]:
        return list(llm_ops(self.model, tuple(seqs), "prefill", self.cfg, tuple(past_visual))), []

    def decode_graph_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[Op]:
        return list(llm_ops(self.model, tuple(seqs), "decode", self.cfg, tuple(past_visual)))

    def decode_view(self, seq: SeqWork, prompt_tokens: int, visual_tokens: int) -> tuple[SeqWork, int]:
        return seq, visual_tokens

    def decode_step_ops(self, seqs: Sequence[SeqWork], past_visual: Sequence[int] = ()) -> list[tuple[Op, float]]:
        return [(op, 1.0) for op in self.decode_graph_ops(seqs, past_visual)]

    def encode_miss_rate(self) -> float:
        return 1.0

    def visual_kv_hit_rate(self) -> float:
        return 0.0

    def held_kv_tokens(self, prompt_tokens: int, output_tokens: int, in_seq_visual: int, visual: int,
                       cross: bool) -> tuple[int, int]:
        return prompt_tokens + output_tokens, visual

    def extra_memory_bytes(self, toks: list[ImageTokenization], text_tokens: float, visual_tokens: float,
                           batch: int) -> float:
        return 0.0


def _weighted(cm: CostModel, items) -> list[tuple[OpCost, float]]:
    return [(cm.cost(op), w) for op, w in items if w]


def price_stages(pipe: Pipeline, cm: CostModel, toks: list[ImageTokenization], prompt_tokens: int,
                 output_tokens: int, batch: int, cross: bool, piecewise=None) -> dict[str, StageResult]:
    """Encode, prefill and decode of `batch` identical requests through `pipe`: the one implementation of the stages.

    Encode is skipped on an encoder-cache hit (weight = miss rate); on an image-KV hit prefill computes only the
    text on top of the cached image KV; decode prices `output_tokens - 1` steps at sampled contexts (after any KV
    budget), in rounds of `tokens_per_step` tokens.

    Under an eager runtime each op is its kernel's GPU time and each stage adds a `runtime.dispatch_wait` row: what
    the launch queue adds to the GPU sum (lvlmsim.cost.runtime.launch_queue_s), per encode batch, prefill and decode
    step as the engine prices them. `piecewise` ((PiecewiseDispatch, decode too), from the runtime version's
    cudagraph_mode) adds a `runtime.piecewise_wait` row the same way under a CUDA-graph runtime
    (lvlmsim.engine.stepcost.StepCost.set_piecewise); (EagerPrefill, False), a version that replays graphs of decode
    steps only, adds the launch queue's `runtime.dispatch_wait` row to encode and prefill (StepCost.set_eager_prefill).
    Both with or without techniques: a step's wait is its target graph's (the encoder batch; the target's prefill
    pass; the target's plain decode step, pipe.decode_graph_ops); what techniques add to a step (selection passes,
    drafting, scoring) comes on top at its GPU time, as StepCost prices it."""
    queue = launch_queue_profile(cm.profile)
    waits: dict[str, list[tuple[tuple[Op, ...], float]]] = {"encode": [], "prefill": [], "decode": []}
    if queue is not None:
        cm = CostModel(cm.hardware, queue[0])
    visual = sum(t.llm_tokens for t in toks)
    in_seq_visual = 0 if cross else visual
    cross_kv = visual if cross else 0
    S = prompt_tokens + in_seq_visual
    if S <= 0:
        raise SpecError("prompt_tokens: a request needs at least one prompt or visual token")
    enc_w = pipe.encode_miss_rate()
    enc_ops = tuple(pipe.encode_ops(toks, batch))
    waits["encode"].append((enc_ops, enc_w))
    encode = stage_result("encode", merge_repeated_ops(_weighted(cm, ((op, enc_w) for op in enc_ops))))
    prefill = stage_result("prefill", merge_repeated_ops(_weighted(cm, _prefill_items(
        pipe, waits["prefill"], prompt_tokens, in_seq_visual, cross_kv, batch))))
    per_round = pipe.tokens_per_step
    dec_items: list[tuple[Op, float]] = []
    for ctx, weight in decode_contexts(S, output_tokens - 1):  # the first output token comes out of prefill
        seq = SeqWork(new_tokens=1, past_tokens=ctx, visual_new=0, cross_kv_tokens=cross_kv, emits_token=True)
        seq, pv = pipe.decode_view(seq, S, in_seq_visual)
        step = tuple(pipe.decode_step_ops((seq,) * batch, (pv,) * batch))
        graph = (tuple(op for op, _ in step) if isinstance(pipe, PlainPipeline)
                 else tuple(pipe.decode_graph_ops((seq,) * batch, (pv,) * batch)))
        waits["decode"].append((graph, weight / per_round))
        for op, w in step:
            dec_items.append((op, weight * w / per_round))
    decode = stage_result("decode", merge_repeated_ops(_weighted(cm, dec_items)))
    stages = {"encode": encode, "prefill": prefill, "decode": decode}
    if queue is None and piecewise is not None:
        _piecewise_waits(stages, waits, cm, pipe, piecewise)
    if queue is not None:
        for name, runs in waits.items():
            steps = max(1, round(sum(w for _, w in runs)))
            wait_s = sum(w * _dispatch_wait_s(cm, ops, queue[1]) for ops, w in runs if w and ops)
            if wait_s:
                _add_step_overhead(stages[name], wait_s / steps, steps, "runtime.dispatch_wait")
    return stages


def _prefill_items(pipe: Pipeline, waits: list, prompt_tokens: int, in_seq_visual: int, cross_kv: int,
                   batch: int) -> list[tuple[Op, float]]:
    """(op, weight) of the prefill pass (weight: the image-KV miss rate) and, on an image-KV hit, of the text-only
    pass over the cached image KV; each pass's target graph ops go to `waits` with its weight."""
    S = prompt_tokens + in_seq_visual
    pre = SeqWork(new_tokens=S, past_tokens=0, visual_new=in_seq_visual, cross_kv_tokens=cross_kv, emits_token=True)
    h = pipe.visual_kv_hit_rate() if in_seq_visual > 0 else 0.0
    miss_w = 1.0 - h if h > 0 else 1.0
    graph, extra = pipe.prefill_parts((pre,) * batch)
    waits.append((tuple(graph), miss_w))
    items = [(op, miss_w) for op in (*graph, *extra)]
    if h > 0 and prompt_tokens > 0:
        hit = SeqWork(new_tokens=prompt_tokens, past_tokens=in_seq_visual, visual_new=0, cross_kv_tokens=cross_kv,
                      emits_token=True)
        graph, extra = pipe.prefill_parts((hit,) * batch, (in_seq_visual,) * batch)
        waits.append((tuple(graph), h))
        items += [(op, h) for op in (*graph, *extra)]
    return items


def _piecewise_waits(stages: dict[str, StageResult], waits: dict, cm: CostModel, pipe: Pipeline, piecewise) -> None:
    """Add each step's `runtime.piecewise_wait` row (lvlmsim.cost.runtime.piecewise_step_s minus the GPU sum of the
    step's ops) to prefill, and to decode when the version runs decode piecewise too, as StepCost prices them."""
    dispatch, decode = piecewise
    if isinstance(dispatch, EagerPrefill):  # decode_only: encoder and prefill issued eagerly, decode one graph
        for name in ("encode", "prefill"):
            runs = waits[name]
            steps = max(1, round(sum(w for _, w in runs)))
            wait_s = sum(w * _dispatch_wait_s(cm, ops, dispatch.dispatch_s) for ops, w in runs if w and ops)
            if wait_s:
                _add_step_overhead(stages[name], wait_s / steps, steps, "runtime.dispatch_wait")
        return
    for name in ("prefill", "decode") if decode else ("prefill",):
        runs = waits[name]
        steps = max(1, round(sum(w for _, w in runs)))
        wait_s = sum(w * _piecewise_step_wait_s(cm, ops, pipe, dispatch) for ops, w in runs if w and ops)
        if wait_s:
            _add_step_overhead(stages[name], wait_s / steps, steps, "runtime.piecewise_wait")


def _piecewise_step_wait_s(cm: CostModel, ops: Sequence[Op], pipe: Pipeline, dispatch) -> float:
    """What issuing one step's `ops` piecewise adds to their GPU sum: non-attention ops as graph pieces, attention as
    eager calls, the LM-head ops last."""
    heads = lm_head_op_names(pipe.model, ops[0].stage, pipe.cfg)
    parts = {"piece": 0.0, "attention": 0.0, "head": 0.0}
    for op in ops:
        part = ("attention" if op.kind in ATTN_KINDS or op.name == MLA_UPPROJ_OP else
                "head" if op.name in heads else "piece")
        parts[part] += cm.cost(op).time_s * op.count
    total = parts["piece"] + parts["attention"] + parts["head"]
    return piecewise_step_s(parts["piece"], parts["attention"], parts["head"], pipe.model.llm.num_layers,
                            dispatch) - total


def _dispatch_wait_s(gpu: CostModel, ops: Sequence[Op], dispatch_s: float) -> float:
    """Seconds the launch queue adds to the GPU sum of one step's `ops` (kernels priced by `gpu`): the GPU's waits
    on the host's dispatch."""
    launches = [(gpu.cost(op).time_s, float(op.count), op.layer_range) for op in ops]
    return launch_queue_s(launches, dispatch_s) - sum(g * k for g, k, _ in launches)


def request_memory(pipe: Pipeline, hardware: HardwareSpec, stages: dict[str, StageResult],
                   toks: list[ImageTokenization], prompt_tokens: int, output_tokens: int, batch: int,
                   cross: bool) -> MemoryReport:
    """Device memory of the batch: weights, the KV each sequence holds at its peak (fewer tokens under a KV budget),
    the encode and prefill activations, and what the pipeline holds besides (drafts, reuse caches)."""
    visual = sum(t.llm_tokens for t in toks)
    in_seq_visual = 0 if cross else visual
    text_t, vis_t = pipe.held_kv_tokens(prompt_tokens, output_tokens, in_seq_visual, visual, cross)
    extra = pipe.extra_memory_bytes(toks, prompt_tokens + output_tokens, in_seq_visual, batch)
    act_ops = tuple(c.op for c in stages["encode"].ops) + tuple(c.op for c in stages["prefill"].ops)
    return memory_report(pipe.model, hardware, pipe.cfg, text_tokens=text_t, visual_tokens=vis_t, batch=batch,
                         activation_ops=act_ops, extra_bytes=extra)


MAX_BATCH = 1 << 16  # sequences priced together; serving engines batch at most a few thousand (vLLM max_num_seqs)


def _check_request_numbers(model: ModelSpec, hardware: HardwareSpec, *, images, prompt_tokens, output_tokens, batch,
                           tp, ep, video_s, moe_skew, video_fps) -> None:
    """Every count an integer in range and every quantity finite, before anything is tokenised or allocated; TP
    within a node, as `simulate` requires. (The context-length rule is lvlmsim.api.estimate's, with its
    allow_overflow.)"""
    number(images, "images", lo=0, hi=model.llm.max_position_embeddings, integer=True)  # each is >= 1 token
    number(prompt_tokens, "prompt_tokens", lo=0, hi=MAX_REQUEST_TOKENS, integer=True)
    number(output_tokens, "output_tokens", lo=1, hi=MAX_REQUEST_TOKENS, integer=True)
    number(batch, "batch", lo=1, hi=MAX_BATCH, integer=True)
    number(tp, "tp", lo=1, integer=True)
    number(ep, "ep", lo=1, integer=True)
    number(video_s, "video_s", lo=0, hi=MAX_VIDEO_S)
    number(moe_skew, "moe_skew (router power-law exponent)", lo=0, hi=4)
    if moe_skew and model.llm.moe is None:  # a skew on a dense model was taken and changed nothing, unsaid
        raise SpecError(f"moe_skew: {model.id} has no mixture-of-experts layers to route; allowed: 0")
    if video_fps is not None:
        number(video_fps, "video_fps", lo=0, lo_open=True)
    if tp > hardware.max_devices_per_node:
        raise InfeasibleError(f"tp {tp} exceeds the {hardware.max_devices_per_node} devices of a {hardware.id} node "
                              "(simulate refuses it too)")


def estimate_request(
    model: ModelSpec, hardware: HardwareSpec, *, images: int = 1, image_size: tuple[int, int] | Sequence = (336, 336),
    prompt_tokens: int = 64, output_tokens: int = 128, batch: int = 1, tp: int = 1,
    profile: EfficiencyProfile | None = None, video_s: float = 0.0, cfg: GraphConfig | None = None,
    cost_model: CostModel | None = None, tokenizations: list[ImageTokenization] | None = None,
    step_overhead_s: float = 0.0, ep: int = 1, moe_skew: float = 0.0,
    video_size: tuple[int, int] | None = None, video_fps: float | None = None, pipeline: Pipeline | None = None,
    piecewise=None,
) -> Estimate:
    """Cost of `batch` identical requests: encode their images, prefill them together, decode them together.

    `pipeline` is what the stages are built through: None is the identity (PlainPipeline over `cfg`); a techniques
    Composition (built with `cfg` and `tokenizations` of its own) is the same three stages with its ops, weights
    and memory (lvlmsim.techniques.apply_to_estimate).

    `ep` splits a MoE model's experts inside the tp group; `moe_skew` is the router's power-law exponent
    (0 = balanced; see ops.graph.experts_touched). A `video_s` clip is `video_size` (W, H) px at `video_fps` frames
    per second as the user sends it (defaults: the model's video policy frame size, no frame-count cap); the model's
    own sampling and pixel budget then decide its frames and tokens.
    """
    _check_request_numbers(model, hardware, images=images, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                           batch=batch, tp=tp, ep=ep, video_s=video_s, moe_skew=moe_skew, video_fps=video_fps)
    check_tp(model, tp)
    check_ep(model, tp, ep if cfg is None else cfg.ep)
    cfg = cfg or default_graph_config(model, tp, ep, moe_skew)
    cm = cost_model or CostModel(hardware, profile)
    notes: list[str] = []

    if tokenizations is None:
        sizes = [tuple(image_size)] * images if image_size and isinstance(image_size[0], int) else list(image_size)
        if len(sizes) != images:
            raise SpecError(f"image_size: got {len(sizes)} sizes for {images} images")
        tokenizations = [tokenize_image(model, int(w), int(h)) for w, h in sizes]
        if video_s > 0:
            tokenizations.append(tokenize_video(model, video_s, **video_kwargs(video_size, video_fps)))
    per_req_visual = sum(t.llm_tokens for t in tokenizations)
    vit_seqs = tuple(L for t in tokenizations for L in t.vit_seq_lens)
    pipe = pipeline if pipeline is not None else PlainPipeline(model, cfg)
    cross = model.image_tokens_in_kv_of_cross_attention
    if cross:
        notes.append("cross-attention model: image tokens live in cross-attention KV, not in the decoder sequence")
    stages = price_stages(pipe, cm, tokenizations, prompt_tokens, output_tokens, batch, cross, piecewise)
    if step_overhead_s > 0:
        # the serving runtime's host work per forward pass (scheduling, sampling, graph launch): one prefill step,
        # one per decode step; kept as its own row so the stage totals stay traceable
        _add_step_overhead(stages["prefill"], step_overhead_s, 1)
        _add_step_overhead(stages["decode"], step_overhead_s, output_tokens - 1)
    mem = request_memory(pipe, hardware, stages, tokenizations, prompt_tokens, output_tokens, batch, cross)
    if not mem.fits:
        notes.append(mem.verdict)
    prof_name = getattr(cm.profile, "name", "custom")
    est = Estimate(
        model_id=model.id, hardware_id=hardware.id, profile=prof_name, batch=batch, tp=tp, images=tokenizations,
        visual_tokens=per_req_visual, vit_tokens=sum(vit_seqs), prompt_tokens=prompt_tokens,
        output_tokens=output_tokens, stages=stages, ttft_s=0.0, tpot_s=0.0, e2e_s=0.0, memory=mem, graph_config=cfg,
        image_tokens_in_cross_attention=cross,
        notes=notes, ep=cfg.ep, params_total=sum(param_counts(model).values()),
        params_active_per_token=active_params(model), cost_profile=cm.profile,
    )
    _retime(est)
    return est


__all__ = [
    "COMPUTE", "Estimate", "StageResult", "decode_contexts", "default_graph_config", "estimate_request",
    "merge_repeated_ops", "parse_image_size", "Pipeline", "PlainPipeline", "price_stages", "request_memory",
    "stage_result", "with_host_costs",
]
