"""Turning a WorkloadSpec into requests: arrival times, request mixes, sessions, video, trace replay.

Everything is drawn up front with numpy from independent streams of one seed (arrivals, prompt lengths, output
lengths, images, sizes, video, sessions), so changing the rate does not change what the requests contain, and the
same seed gives the same requests bit for bit. Later turns of a chat session get their arrival time during the
simulation (previous answer + think time).

Only numbers are drawn up front; the Request objects are made lazily, one arrival unit at a time, as the engine's
arrival process pulls them (`stream`), so a long run does not hold requests it has not sent yet. Closed-loop and
capped runs (`arrival: {kind: concurrency}`, `max_concurrency`) draw the same requests as an open-loop run with the
same seed; only when they are sent differs (the engine paces them, see lvlmsim.engine.cluster).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvlmsim.engine.request import Request
from lvlmsim.engine.trace import load_trace, read_column
from lvlmsim.errors import SpecError
from lvlmsim.ops.tokenization import ImageTokenization, tokenize_image, tokenize_video
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.workload import (
    MAX_ARRIVAL_S,
    ConcurrencyArrival,
    ConstantArrival,
    EmpiricalDist,
    FixedDist,
    GammaArrival,
    LogNormalDist,
    NormalDist,
    PoissonArrival,
    TextPrefixSpec,
    TraceArrival,
    UniformDist,
    WorkloadSpec,
)

DEFAULT_REQUESTS = 1000
TokTransform = Callable[[ImageTokenization], ImageTokenization]
_STREAMS = ("arrival", "prompt", "output", "images", "sizes", "video", "turns", "think", "new_images", "video_dur")


Unit = list[Request]  # what one arrival sends: a request, or a chat session's turns (the first carries the arrival)


class Workload:
    """The requests of one run, made lazily: the engine's arrival process pulls one unit at a time (`units()`), and
    `requests` / `sessions` record what has been pulled so far, in id order (all of it after a run that sent
    everything). `scan()` walks an independent copy of the whole stream (new objects, same contents) for the checks
    that must see every request before the run (memory fit, largest image); it keeps nothing.

    `cap` is the most requests in flight (closed loop or `max_concurrency`), `warmup` the requests left out of the
    metrics, `duration_s` when sending stops, `planned` how many requests the stream holds, `text_prefix` the
    workload's TextPrefixSpec (requests then carry `prefix_key`).
    """

    def __init__(self, make: Callable[[], Iterator[Unit]], planned: int, *, has_sessions: bool = False,
                 cap: int | None = None, warmup: int = 0, duration_s: float | None = None,
                 text_prefix: TextPrefixSpec | None = None):
        self._make = make
        self.text_prefix = text_prefix  # the prompts' token streams and what a prefix cache holds at the start
        self._live: Iterator[Unit] | None = None
        self.planned = planned
        self.has_sessions = has_sessions
        self.cap = cap
        self.warmup = warmup
        self.duration_s = duration_s
        self.requests: list[Request] = []
        self.sessions: list[list[Request]] = []
        self.keep = True  # False (streaming summaries): pulled units are not recorded, so ended requests can go

    def units(self) -> Iterator[Unit]:
        """The live stream (one per workload): each unit is recorded in `requests`/`sessions` as it is pulled."""
        if self._live is None:
            self._live = self._make()
        for unit in self._live:
            if not self.keep:
                yield unit
                continue
            self.requests.extend(unit)
            if self.has_sessions:
                self.sessions.append(unit)
            yield unit

    def scan(self) -> Iterator[Request]:
        """Every request of the run, as fresh objects not shared with the live stream."""
        for unit in self._make():
            yield from unit

    def pull_all(self) -> Workload:
        """Make every request now (callers that want the whole list up front)."""
        for _ in self.units():
            pass
        return self


def sample(dist, rng: np.random.Generator, n: int, resolve: Callable[[str], Path] | None = None) -> np.ndarray:
    """`n` draws of a distribution spec as floats, clipped to its min/max."""
    if isinstance(dist, FixedDist):
        x = np.full(n, float(dist.value))
    elif isinstance(dist, UniformDist):
        x = rng.uniform(dist.low, dist.high, n)
    elif isinstance(dist, NormalDist):
        x = rng.normal(dist.mean, dist.std, n)
    elif isinstance(dist, LogNormalDist):
        sigma2 = math.log1p((dist.std / dist.mean) ** 2)
        x = rng.lognormal(math.log(dist.mean) - sigma2 / 2.0, math.sqrt(sigma2), n)
    elif isinstance(dist, EmpiricalDist):
        if dist.values is not None:
            vals = np.asarray(dist.values, dtype=float)
            p = None
            if dist.weights is not None:
                w = np.asarray(dist.weights, dtype=float)
                p = w / w.sum()
        else:
            if resolve is None:
                raise SpecError(f"empirical distribution from trace '{dist.trace}' needs a scenario to resolve it")
            vals = np.asarray(read_column(resolve(dist.trace), dist.column), dtype=float)
            p = None
        x = vals[rng.choice(len(vals), size=n, p=p)] if n else np.zeros(0)
    else:  # pragma: no cover - the spec union is closed
        raise SpecError(f"unknown distribution {dist!r}")
    if dist.min is not None or dist.max is not None:
        x = np.clip(x, dist.min if dist.min is not None else -np.inf, dist.max if dist.max is not None else np.inf)
    return x


def counts(x: np.ndarray, minimum: int) -> list[int]:
    """Round to integers and clip to `minimum` (token counts >= 1, image counts >= 0)."""
    return count_array(x, minimum).tolist()


def count_array(x: np.ndarray, minimum: int) -> np.ndarray:
    """counts() as an int64 array (no Python object per number)."""
    return np.maximum(np.rint(x), minimum).astype(np.int64)


def arrival_times(arrival, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` arrival times (s) of a synthetic process, starting after one gap from t = 0."""
    if isinstance(arrival, PoissonArrival):
        gaps = rng.exponential(1.0 / arrival.rate_rps, n)
    elif isinstance(arrival, GammaArrival):
        shape = 1.0 / arrival.cv**2
        gaps = rng.gamma(shape, 1.0 / (arrival.rate_rps * shape), n)
    elif isinstance(arrival, ConstantArrival):
        gaps = np.full(n, 1.0 / arrival.rate_rps)
    elif isinstance(arrival, ConcurrencyArrival):
        return np.zeros(n)  # closed loop: every request is ready at once; the clients' cap paces them
    else:
        raise SpecError(f"arrival: '{arrival.kind}' is not a synthetic process")
    return np.cumsum(gaps)


class _Tokens:
    """Memoised visual-token arithmetic per model: sizes repeat a lot."""

    def __init__(self, model: ModelSpec, transform: TokTransform | None = None):
        self.model = model
        self.transform = transform  # techniques' tokenization rewrite (pre-LLM reduction, ToMe), None = none
        self.toks: dict[tuple, tuple[ImageTokenization, ...]] = {}  # sizes -> transformed tokenizations
        self._combo: dict[tuple, tuple[int, tuple[int, ...], int]] = {}
        self._video: dict[tuple, ImageTokenization] = {}
        self._ref: ImageTokenization | None = None

    def combine(self, toks: list[ImageTokenization]) -> tuple[int, tuple[int, ...], int]:
        return (sum(t.llm_tokens for t in toks), tuple(L for t in toks for L in t.vit_seq_lens),
                sum(t.projector_in_tokens for t in toks))

    def images(self, sizes: tuple[tuple[int, int], ...]) -> tuple[int, tuple[int, ...], int]:
        hit = self._combo.get(sizes)
        if hit is None:
            toks = [tokenize_image(self.model, w, h) for w, h in sizes]
            if self.transform is not None:
                toks = [self.transform(t) for t in toks]
                self.toks[sizes] = tuple(toks)
            hit = self.combine(toks)
            self._combo[sizes] = hit
        return hit

    def video(self, duration_s: float, width=None, height=None, fps=None, max_frames=None,
              source_fps=None) -> ImageTokenization:
        key = (duration_s, width, height, fps, max_frames, source_fps)
        hit = self._video.get(key)
        if hit is None:
            hit = tokenize_video(self.model, duration_s, width=width, height=height, fps=fps, max_frames=max_frames,
                                 source_fps=source_fps)
            if self.transform is not None:
                hit = self.transform(hit)
            self._video[key] = hit
        return hit

    def from_count(self, llm_tokens: int) -> ImageTokenization:
        """A trace gives only visual tokens: ViT work scaled from the model's native-size image (an estimate)."""
        if self._ref is None:
            side = self.model.vision.image_size
            self._ref = tokenize_image(self.model, side, side)
        ref = self._ref
        vit_total = max(1, round(llm_tokens * ref.vit_tokens / ref.llm_tokens))
        seq = max(ref.vit_seq_lens)
        lens = [seq] * (vit_total // seq) + ([vit_total % seq] if vit_total % seq else [])
        proj = max(1, round(llm_tokens * ref.projector_in_tokens / ref.llm_tokens))
        t = ImageTokenization(0, 0, tuple(lens), llm_tokens, proj, f"{llm_tokens} tokens from a trace")
        return self.transform(t) if self.transform is not None else t


def generate(
    spec: WorkloadSpec, model: ModelSpec, seed: int, resolve: Callable[[str], Path] | None = None,
    transform: TokTransform | None = None,
) -> Workload:
    """All requests of a run, made now (`stream(...)` with every unit pulled): for callers that want the list."""
    return stream(spec, model, seed, resolve, transform).pull_all()


@dataclass(frozen=True)
class _Draws:
    """Everything random about a synthetic run, drawn up front (numbers only; the Request objects come lazily),
    held as numpy arrays (8 bytes a number, not a Python object each) and read back as Python numbers."""

    turns: np.ndarray
    starts: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    n_img: np.ndarray
    extra_imgs: np.ndarray
    think: np.ndarray
    sizes: list[tuple[int, int]]
    size_idx: np.ndarray
    vid_on: np.ndarray
    vid_dur: np.ndarray


def stream(
    spec: WorkloadSpec, model: ModelSpec, seed: int, resolve: Callable[[str], Path] | None = None,
    transform: TokTransform | None = None,
) -> Workload:
    """The requests of a run as a lazy Workload (see the module docstring): numbers are drawn now, Request objects
    are made as the arrival process pulls them.

    `transform`: a techniques Composition's `transform_tokenization` (pass the composition's model as `model`): the
    requests then carry the transformed visual tokens, and `Request.toks` the tokenizations the encoder prices.
    """
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(
        len(_STREAMS))), strict=True))
    tok = _Tokens(model, transform)
    opts = {"has_sessions": spec.session is not None, "cap": spec.concurrency_cap, "warmup": spec.warmup_requests,
            "duration_s": spec.duration_s, "text_prefix": spec.text_prefix}
    if isinstance(spec.arrival, TraceArrival):
        if resolve is None:
            raise SpecError("arrival: a trace needs a scenario to resolve its path")
        path, scale = resolve(spec.arrival.path), spec.arrival.time_scale
        units = list(_from_trace(spec, tok, path, scale))
        opts["has_sessions"] = any(len(u) > 1 for u in units)
        return Workload(lambda: _from_trace(spec, tok, path, scale), sum(len(u) for u in units), **opts)
    d = _draw(spec, streams, resolve)
    return Workload(lambda: _units(spec, tok, d), int(d.turns.sum()), **opts)


def _draw(spec: WorkloadSpec, streams: dict, resolve: Callable[[str], Path] | None) -> _Draws:
    n = spec.requests or DEFAULT_REQUESTS
    prompt = count_array(sample(spec.prompt_tokens, streams["prompt"], n, resolve), 1)
    output = count_array(sample(spec.output_tokens, streams["output"], n, resolve), 1)
    n_img = count_array(sample(spec.images, streams["images"], n, resolve), 0)
    sizes = [(c.width, c.height) for c in spec.image_size]
    w = np.asarray([c.weight for c in spec.image_size], dtype=float)
    # sessions: how many turns each, which request indices are later turns
    sess = spec.session
    turns = np.ones(n, dtype=np.int64)
    extra_imgs = np.zeros(0, dtype=np.int64)
    think = np.zeros(0)
    if sess is not None:
        t = counts(sample(sess.turns, streams["turns"], n, resolve), 1)
        kept: list[int] = []
        total = 0
        for k in t:
            k = min(k, n - total)
            kept.append(k)
            total += k
            if total >= n:
                break
        turns = np.asarray(kept, dtype=np.int64)
        extra_imgs = count_array(sample(sess.new_images_per_turn, streams["new_images"], n, resolve), 0)
        think = np.maximum(sample(sess.think_time_s, streams["think"], n, resolve), 0.0)
    n_sizes = int(n_img.sum()) + (int(extra_imgs.sum()) if sess else 0)
    size_idx = streams["sizes"].choice(len(sizes), size=n_sizes, p=w / w.sum())
    vid_on = np.zeros(0, dtype=bool)  # read only when the workload has video
    vid_dur = np.zeros(0)
    if spec.video is not None:
        vid_on = streams["video"].random(n) < spec.video.fraction
        d = np.maximum(sample(spec.video.duration_s, streams["video_dur"], n, resolve), 0.1)
        vid_dur = np.round(d * 10.0) / 10.0
    starts = arrival_times(spec.arrival, streams["arrival"], len(turns))
    if spec.duration_s is not None:
        keep = int(np.searchsorted(starts, spec.duration_s, side="right"))
        turns, starts = turns[:keep], starts[:keep]
    c = _compact
    return _Draws(c(turns), starts, c(prompt), c(output), c(n_img), c(extra_imgs), think, sizes, c(size_idx), vid_on,
                  vid_dur)


def _compact(a: np.ndarray) -> np.ndarray:
    """An int64 array as int32 when every value fits (half the memory; read back as the same Python ints)."""
    if a.size and (int(a.max()) >= 2**31 or int(a.min()) < -(2**31)):
        return a
    return a.astype(np.int32)


def _units(spec: WorkloadSpec, tok: _Tokens, d: _Draws) -> Iterator[Unit]:
    """The requests of the drawn run, one unit (a request, or a session's turns) at a time, in id order."""
    sess = spec.session
    rid = 0  # request id == request index
    si = 0  # next size index
    for s in range(len(d.turns)):
        k, t0 = int(d.turns[s]), float(d.starts[s])
        history_tokens = 0
        held: list[tuple[tuple[int, int], str]] = []
        chat: list[Request] = []
        for turn in range(1, k + 1):
            i = rid
            new_imgs = int(d.n_img[i]) if turn == 1 else (int(d.extra_imgs[i]) if sess else 0)
            fresh = [(d.sizes[int(d.size_idx[si + j])], f"s{s}i{len(held) + j}") for j in range(new_imgs)]
            si += new_imgs
            carried = (held if (sess is None or sess.resend_images) else []) + fresh
            held = held + fresh
            p_tokens = int(d.prompt[i]) + (history_tokens if (sess is not None and sess.keep_history) else 0)
            chat.append(_turn_request(spec, tok, d, i, s, turn, t0, carried, p_tokens))
            history_tokens += int(d.prompt[i]) + int(d.output[i])
            rid += 1
        yield chat


def _turn_request(spec: WorkloadSpec, tok: _Tokens, d: _Draws, i: int, s: int, turn: int, t0: float,
                  carried: list[tuple[tuple[int, int], str]], prompt_tokens: int) -> Request:
    """Request `i` (turn `turn` of session `s`) with the images it carries and, on a first turn, its video."""
    sess = spec.session
    img_sizes = tuple(sz for sz, _ in carried)
    vis, lens, proj = tok.images(img_sizes) if img_sizes else (0, (), 0)
    video_s = 0.0
    toks = tok.toks.get(img_sizes, ()) if tok.transform is not None else ()
    if spec.video is not None and d.vid_on[i] and turn == 1:
        v = spec.video
        vt = tok.video(float(d.vid_dur[i]), v.width, v.height, v.fps, v.max_frames, v.source_fps)
        vis, lens, proj = vis + vt.llm_tokens, lens + vt.vit_seq_lens, proj + vt.projector_in_tokens
        video_s = float(d.vid_dur[i])
        toks = toks + (vt,)
    r = Request(
        i, arrival_s=t0 if turn == 1 else math.nan, prompt_tokens=prompt_tokens,
        output_tokens=int(d.output[i]), images=len(carried), visual_tokens=vis, vit_seq_lens=lens,
        projector_in_tokens=proj, image_ids=tuple(iid for _, iid in carried) if sess else (),
        video_s=video_s, session=s if sess else None, turn=turn, think_s=float(d.think[i]) if sess else 0.0,
        input_pixels=sum(w * h for w, h in img_sizes),
    )
    if toks:
        r.toks = toks
    if spec.text_prefix is not None:  # request i's prompt is a prefix of token stream i (text-only, no sessions)
        r.prefix_key = i
    return r


def _trace_units(rows: list) -> list[list]:
    """The trace's rows as units in order of their first arrival: a row alone, or every turn of one session in turn
    order. A session's later turns are then sent by the engine after the previous answer (never before it, however
    the trace is rescaled) and not before their own recorded, scaled arrival."""
    units: list[list] = []
    by_session: dict[str, list] = {}
    for row in rows:
        if row.session_id is None:
            units.append([row])
        elif row.session_id in by_session:
            by_session[row.session_id].append(row)
        else:
            by_session[row.session_id] = [row]
            units.append(by_session[row.session_id])
    for chat in by_session.values():
        chat.sort(key=lambda r: (r.turn if r.turn is not None else 0, r.arrival_s))
    return units


def _from_trace(spec: WorkloadSpec, tok: _Tokens, path: Path, time_scale: float) -> Iterator[Unit]:
    """The trace's requests by unit (see _trace_units), numbered in the order they are made."""
    rows = sorted(load_trace(path), key=lambda r: r.arrival_s)
    if not rows[-1].arrival_s * time_scale <= MAX_ARRIVAL_S:
        raise SpecError(f"workload.arrival.time_scale: {time_scale:g} puts the last arrival of {path} at "
                        f"{rows[-1].arrival_s * time_scale:g} s; allowed: arrivals up to {MAX_ARRIVAL_S:g} s")
    if spec.requests is not None:
        rows = rows[: spec.requests]
    if spec.duration_s is not None:
        rows = [r for r in rows if r.arrival_s * time_scale <= spec.duration_s]
    sessions: dict[str, int] = {}
    rid = 0
    for unit in _trace_units(rows):
        out = []
        for row in unit:
            out.append(_trace_request(tok, path, row, rid, sessions, time_scale))
            rid += 1
        yield out


def _trace_request(tok: _Tokens, path: Path, row, rid: int, sessions: dict[str, int], time_scale: float) -> Request:
    """One trace row as a request (a later turn's arrival_s is the earliest it may be sent)."""
    toks: tuple = ()
    try:
        if row.images and row.image_tokens is None:
            sizes = ((row.image_width, row.image_height),) * row.images
            vis, lens, proj = tok.images(sizes)
            toks = tok.toks.get(sizes, ())
        elif row.image_tokens:
            t = tok.from_count(row.image_tokens)
            vis, lens, proj = t.llm_tokens, t.vit_seq_lens, t.projector_in_tokens
            toks = (t,)
        else:
            vis, lens, proj = 0, (), 0
        if row.video_s > 0:
            vt = tok.video(row.video_s, fps=row.video_fps)
            vis, lens, proj = vis + vt.llm_tokens, lens + vt.vit_seq_lens, proj + vt.projector_in_tokens
            toks = toks + (vt,)
    except SpecError as exc:
        raise SpecError(f"{path}:{row.line}: {exc}") from None
    sid = None
    if row.session_id is not None:
        sid = sessions.setdefault(row.session_id, len(sessions))
    req = Request(
        rid, arrival_s=row.arrival_s * time_scale, prompt_tokens=row.prompt_tokens,
        output_tokens=row.output_tokens, images=row.images, visual_tokens=vis, vit_seq_lens=lens,
        projector_in_tokens=proj, image_ids=row.image_ids, video_s=row.video_s, session=sid,
        turn=row.turn or 1, input_pixels=row.images * (row.image_width or 0) * (row.image_height or 0),
    )
    if tok.transform is not None:
        req.toks = toks
    return req


__all__ = ["DEFAULT_REQUESTS", "Unit", "Workload", "arrival_times", "count_array", "counts", "generate", "sample",
           "stream"]
