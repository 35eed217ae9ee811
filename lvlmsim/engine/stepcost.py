"""Fast pricing of one batch step: the same seconds as `CostModel.time_s(llm_ops(...))`, without building the graph.

Building `llm_ops` for every batch the scheduler forms is too slow (a per-sequence loop per step) and never hits a
cache (the batch tuple changes every step). The op list splits into three parts:

* token-count ops (embedding, norms, GEMMs, rotary, activations, residual adds, all-reduces) depend only on the
  new-token count of each layer segment (one count without a visual-token schedule) -> memoised on that count,
  priced from `llm_ops` of a canonical batch with the same counts;
* LM-head ops (final norm, LM head, logits gather) depend only on the number of sequences that emit a token ->
  memoised on that number;
* attention depends on the batch's aggregate query-key pairs, KV tokens read, query tokens and batch size -> built
  from those aggregates with the graph's own :func:`lvlmsim.ops.graph.attention` builder and priced by the cost
  model, so every formula stays in the graph.

Error bound: steps with any prefill tokens are exact (up to float summation order, ~1e-12 relative). Decode-only
steps round the attention op's pairs and KV tokens (equal for decode) to a geometric grid of ratio 1.01, so its
FLOPs and bytes are off by at most 0.5%; the roofline time max(flops/F, bytes/B) + floor is then off by at most
0.5% of the attention op's time, hence at most 0.5% of the step (plus, under a calibrated profile, the profile's
own change over a 1% change of kv_per_seq).

Eager runtimes (lvlmsim.cost.runtime.launch_queue_profile: no CUDA graphs) price the same parts by their kernels' GPU
time alone and put them in issue order through the launch queue (`launch_queue_s`): the token ops' and LM head's
(GPU seconds, launches) memoised per shape as their sums are, the step's attention in its op's place; the encoder's
ops likewise. With techniques composed the same holds for the target's step (its ops transformed); what the
techniques add to a step (selection passes, drafting, scoring) comes on top at its GPU time, as the analytic estimate
prices it (lvlmsim.estimate.price_stages).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from lvlmsim.cost.roofline import CostModel
from lvlmsim.cost.runtime import (
    EagerPrefill,
    PiecewiseDispatch,
    launch_queue_profile,
    launch_queue_s,
    piecewise_step_s,
)
from lvlmsim.ops.graph import (
    MLA_UPPROJ_OP,
    attention,
    encode_ops,
    gemm,
    layer_segments,
    llm_ops,
    lm_head_op_names,
    local_keys_read,
    local_pairs,
    self_attention_op,
    visual_tokens_kept,
)
from lvlmsim.ops.op import ATTN_DECODE, ATTN_ENCODER, ATTN_KINDS, ATTN_PREFILL, GraphConfig, SeqWork
from lvlmsim.specs.model import ModelSpec
from lvlmsim.techniques.compose import Composition

QUANT_RATIO = 1.01
_LOG_Q = math.log(QUANT_RATIO)
INV_LOG_Q = 1.0 / _LOG_Q
DECODE_KEY_STRIDE = 8192  # decode memo key = batch * stride + KV bucket (buckets stay < 2000 below 1e8 KV tokens)
DECODE_REL_TOL = math.sqrt(QUANT_RATIO) - 1.0  # 0.499%: the stated bound for decode-only steps
_ATTN_KINDS = ATTN_KINDS
_EXACT_CACHE_MAX = 100_000
_INV_LOG_SPEC = 1.0 / math.log(1.05)  # speculative-decoding factor memo: mean past on a 5% grid


class _NoMemo(dict):
    """A CostModel cache that never stores: pricing a one-off op then costs no hash and no memory."""

    def get(self, key, default=None):
        return default

    def __setitem__(self, key, value) -> None:
        pass


_MLA_UPPROJ = MLA_UPPROJ_OP  # priced with the attention: its m is every key the step attends to

# A prefill chunk of one sequence in one step:
# (new_tokens, past_tokens, visual_new, past_visual, cross_kv_tokens, emits_token)
Chunk = tuple[int, int, int, int, int, bool]


class StepCost:
    """Seconds of one engine step on one instance (its hardware, profile and GraphConfig).

    `comp` (a techniques Composition, optional): every op built here goes through `comp.transform_ops` (dequant
    FLOPs, quantized-weight attention dtypes), prefill steps add `comp.prefill_extra_ops` (selection passes, draft
    prefill), encoder batches are priced by `comp.encode_ops` (ToMe layers, selection ops), and decode work is scaled
    by `spec_factor` under speculative decoding (see `spec_factor`). Without `comp` (or with the identity
    composition) nothing changes: steps are priced by the plain fast paths.
    """

    def __init__(self, model: ModelSpec, cfg: GraphConfig, cost_model: CostModel,
                 comp: Composition | None = None):
        self.model, self.cfg, self.cm = model, cfg, cost_model
        comp = comp if comp is not None else Composition.identity(model, cfg)
        self.comp = comp
        active = bool(comp.techniques)  # the identity composition is priced by the plain fast paths
        self.transform = comp.transform_ops if active else None
        self.prefill_extra = active and comp.adds_prefill_ops()
        self.decode_extra = active and comp.adds_decode_ops()  # e.g. H2O's per-step scoring pass
        self._dec_extra: dict[tuple[int, int], float] = {}
        self.speculative = comp.lookahead_tokens > 1
        self._spec: dict[int, float] = {}
        self.spec_visual = 0  # mean past visual tokens of a decoding sequence (set by the cluster)
        if active:
            from lvlmsim.techniques.speculative import DecodeStepPolicy

            self._plain_policy = DecodeStepPolicy(comp.model, comp.cfg, comp.transform_ops)
            self.step_s = self.tech_step_s  # the instances call step_s
        self._enc_toks: dict[tuple, float] = {}
        queue = launch_queue_profile(cost_model.profile)
        self.dispatch_s = queue[1] if queue else None  # eager: steps by the launch queue, kernels at GPU time
        if queue:
            cost_model = CostModel(cost_model.hardware, queue[0])
            self.cm = cost_model
        self._tok_items: dict[tuple, tuple[tuple, ...]] = {}
        self._head_items: dict[tuple[str, int], tuple[tuple[float, float], ...]] = {}
        lm = model.llm
        t = cfg.tp
        self.heads = max(1, lm.num_heads // t)
        self.kv_heads = max(1, lm.num_kv_heads // t)
        self.head_dim = lm.head_dim
        cross = set(lm.cross_attention_layers)
        # (first, last, kept fraction, self-attention layers, cross-attention layers)
        self.segments: list[tuple[int, int, float, int, int]] = []
        # local (sliding/chunked) self-attention layers per segment, priced apart from the global ones
        self.local = lm.local_attention
        self.mla = lm.mla
        self.local_counts: list[int] = []
        for first, last, frac in layer_segments(lm.num_layers, cfg.visual_keep):
            n_self = sum(1 for i in range(first, last + 1) if i not in cross)
            n_loc = sum(1 for i in range(first, last + 1) if lm.is_local_layer(i))
            self.local_counts.append(n_loc)
            self.segments.append((first, last, frac, n_self - n_loc, last - first + 1 - n_self))
        self.fracs = tuple(s[2] for s in self.segments)
        # Qwen3-VL DeepStack adds each tapped ViT level into the first LLM layers: a token op that scales with the
        # step's new visual tokens (llm.deepstack_add), so they join its memo key
        self.deepstack = model.projector is not None and model.projector.deepstack_mergers > 0
        self.has_schedule = any(f < 1.0 for f in self.fracs)
        self.has_cross = bool(cross)
        # decode steps of a plain model need only (batch, quantised KV): the engine's fast path
        self.simple_decode = not self.has_schedule and not self.has_cross
        self._tok: dict[tuple, float] = {}
        self._head: dict[tuple[str, int], float] = {}
        self._attn_q: dict[tuple, float] = {}
        self._attn_x: dict[tuple, float] = {}
        self._dec: dict[int, float] = {}
        self._enc: dict[tuple, float] = {}
        self._exact_cm = CostModel(cost_model.hardware, cost_model.profile)
        self._exact_cm._cache = _NoMemo()  # exact attention ops never repeat: skip hashing and storing them
        self._head_names: frozenset[str] | None = None
        self.piecewise: PiecewiseDispatch | None = None  # set_piecewise: steps issued as graph pieces + eager attention
        self.piecewise_decode = False
        self.prefill_dispatch_s: float | None = None  # set_eager_prefill: steps with prefill tokens issued eagerly

    def set_eager_prefill(self, eager: EagerPrefill) -> None:
        """Price steps with prefill tokens and encoder batches as an eager runtime issues them (cudagraph_mode
        decode_only: SGLang's extend batches and its vision encoder): their kernels at this profile's GPU time
        through the launch queue, one `eager.dispatch_s` per op; pure-decode steps keep one graph replay. Only for
        CUDA-graph steps: eager runtimes keep their own launch queue for every step."""
        if self.dispatch_s is not None:
            return
        self.prefill_dispatch_s = eager.dispatch_s
        for memo in (self._tok, self._head, self._enc, self._enc_toks):
            memo.clear()

    @property
    def _queues(self) -> bool:
        """Whether some steps go through the launch queue (an eager runtime, or eager prefill steps)."""
        return self.dispatch_s is not None or self.prefill_dispatch_s is not None

    @property
    def _encoder_dispatch_s(self) -> float | None:
        """The host's dispatch per op of an encoder batch issued eagerly (an eager runtime, or eager prefill and
        encoder under decode-only graphs); None under CUDA-graph replay."""
        return self.dispatch_s if self.dispatch_s is not None else self.prefill_dispatch_s

    def set_piecewise(self, dispatch: PiecewiseDispatch, decode: bool) -> None:
        """Price steps as a piecewise CUDA-graph runtime issues them (lvlmsim.cost.runtime.piecewise_step_s): every
        step when `decode` (cudagraph_mode piecewise), else only steps with prefill tokens (full_and_piecewise: pure
        decode batches replay one full graph). Only for CUDA-graph steps: eager runtimes keep their launch queue. With
        techniques the target's step is issued so (its ops transformed); their extra ops come on top."""
        if self.dispatch_s is not None:
            return
        self.piecewise, self.piecewise_decode = dispatch, decode
        self._dec.clear()

    def _graph_step_s(self, tok: float, attn: float, head: float, decode: bool) -> float:
        """A CUDA-graph step's seconds from its parts: their sum, or the piecewise launch queue's time."""
        if self.piecewise is None or (decode and not self.piecewise_decode):
            return tok + head + attn
        return piecewise_step_s(tok, attn, head, self.model.llm.num_layers, self.piecewise)

    # ------------------------------------------------------------------------------------------------------------
    # parts

    def _sum_ops(self, ops, keep) -> float:
        cache = self.cm
        total = 0.0
        if self.transform is not None:
            ops = self.transform(ops)
        for op in ops:
            if keep(op):
                total += cache.cost(op).time_s * op.count
        return total

    def _token_ops_s(self, stage: str, total_new: int, m_key: tuple[int, ...], vis_chunks: tuple,
                     cross: bool = False, deep: int = 0) -> float:
        """Seconds of the step's token-count ops. `deep`: the step's new visual tokens for a DeepStack model (its
        llm.deepstack_add scales with them; 0 otherwise), part of the memo key."""
        key = (stage, total_new, m_key, cross, deep)
        hit = self._tok.get(key)
        if hit is not None:
            return hit
        # canonical batch: the visual chunks as they are (their kept fractions floor per sequence), the text tokens
        # in one sequence, nothing emitting, no past: same per-segment token counts, so the same non-attention ops
        if deep and not vis_chunks:  # DeepStack without a schedule: the visual tokens in one sequence
            vis_chunks = ((deep, deep),)
        seqs = [SeqWork(new_tokens=n, past_tokens=0, visual_new=v, emits_token=False) for n, v in vis_chunks]
        rest = total_new - sum(n for n, _ in vis_chunks)
        if rest > 0 or not seqs:
            seqs.append(SeqWork(new_tokens=rest, past_tokens=0, emits_token=False))
        if cross:  # a batch with cross-attention KV runs the cross layers (the graph skips them only without any)
            seqs[0] = dataclasses.replace(seqs[0], cross_kv_tokens=1)
        ops = llm_ops(self.model, tuple(seqs), stage, self.cfg)
        val = self._sum_ops(ops, lambda op: op.kind not in _ATTN_KINDS and op.name != _MLA_UPPROJ)
        self._tok[key] = val
        if self._queues:
            self._tok_items[key] = self._launch_items(self.transform(ops) if self.transform is not None else ops)
        return val

    def _launch_items(self, ops) -> tuple[tuple, ...]:
        """(GPU seconds of one launch, launches, layer range) of `ops` in order, each layer segment's attention ops
        merged into one slot at its first one's place whose GPU seconds are NaN (that segment's attention of the step
        goes there: `_queued_s`); MLA's up-projection, priced with the attention but issued before the output
        projection, keeps a slot of its own in its place (slots carry a fourth field: whether they are that one)."""
        items: list[tuple] = []
        slots: dict[tuple[tuple[int, int], bool], int] = {}
        for op in ops:
            if op.kind in _ATTN_KINDS or op.name == _MLA_UPPROJ:
                up = op.name == _MLA_UPPROJ
                i = slots.setdefault((op.layer_range, up), len(items))
                if i == len(items):
                    items.append((math.nan, 0.0, op.layer_range, up))
                items[i] = (math.nan, items[i][1] + op.count, op.layer_range, up)
            else:
                items.append((self.cm.cost(op).time_s, float(op.count), op.layer_range))
        return tuple(items)

    def _queued_s(self, tok_key: tuple, stage: str, n_emit: int, attn_s: float | dict,
                  dispatch_s: float | None = None, upproj_s: dict | None = None) -> float:
        """An eager step: the token ops with the step's attention (`attn_s` GPU seconds over the attention ops'
        launches; per layer segment's range when a dict; of which `upproj_s[range]` are MLA's up-projection, in its
        own slot) in its place, then the LM head, through the launch queue (one `dispatch_s` per launch: the eager
        runtime's by default)."""
        items = list(self._tok_items[tok_key])
        for i, item in enumerate(items):
            if math.isnan(item[0]):
                k, rng, up = item[1], item[2], item[3]
                a = attn_s.get(rng, 0.0) if isinstance(attn_s, dict) else attn_s
                u = upproj_s.get(rng, 0.0) if upproj_s else 0.0
                a = u if up else a - u
                items[i] = (a / k if k else 0.0, k, rng)
        if n_emit:
            self._head_s(stage, n_emit)
            items.extend(self._head_items[(stage, n_emit)])
        return launch_queue_s(items, self.dispatch_s if dispatch_s is None else dispatch_s)

    def _head_s(self, stage: str, n_emit: int) -> float:
        if n_emit == 0:
            return 0.0
        key = (stage, n_emit)
        hit = self._head.get(key)
        if hit is not None:
            return hit
        if self._head_names is None:
            self._head_names = lm_head_op_names(self.model, stage, self.cfg)
        names = self._head_names
        seqs = (SeqWork(new_tokens=1, past_tokens=0, emits_token=True),) * n_emit
        ops = llm_ops(self.model, seqs, stage, self.cfg)
        val = self._sum_ops(ops, lambda op: op.name in names)
        self._head[key] = val
        if self._queues:
            heads = [op for op in ops if op.name in names]
            self._head_items[key] = self._launch_items(self.transform(heads) if self.transform is not None else heads)
        return val

    def _attn_s(self, seg: int, stage: str, batch: int, q_tokens: float, pairs: float, kv_read: float,
                cm: CostModel, local: bool = False, upproj: dict | None = None) -> float:
        """Seconds of segment `seg`'s self-attention op (global or `local`) and, for an MLA prefill, its latent
        up-projection; `upproj` (eager steps) collects the up-projection's seconds per layer range."""
        first, last, _, n_self, _ = self.segments[seg]
        count = self.local_counts[seg] if local else n_self
        if count == 0:
            return 0.0
        ops = [self_attention_op(
            f"llm.attention.{self.local.kind}" if local else "llm.attention",
            ATTN_DECODE if stage == "decode" else ATTN_PREFILL, stage, batch=batch, pairs=pairs,
            q_tokens=q_tokens, kv_tokens_read=kv_read, heads=self.heads, kv_heads=self.kv_heads,
            head_dim=self.head_dim, cfg=self.cfg, count=count, layer_range=(first, last), mla=self.mla,
            window_tokens=self.local.window_tokens if local and self.local.kind == "sliding" else 0,
        )]
        if self.mla is not None and stage != "decode":  # MHA-form prefill up-projects the latent of every key
            mla = self.mla
            ops.append(gemm(_MLA_UPPROJ, stage, "llm", int(kv_read), self.heads * (mla.qk_nope_head_dim
                            + mla.v_head_dim), mla.kv_lora_rank, self.cfg, count, (first, last)))
        if self.transform is not None:
            ops = self.transform(tuple(ops))
        if upproj is not None:
            for o in ops:
                if o.name == _MLA_UPPROJ:
                    upproj[(first, last)] = upproj.get((first, last), 0.0) + cm.cost(o).time_s * o.count
        return sum(cm.cost(o).time_s * o.count for o in ops)

    def _cross_s(self, seg: int, stage: str, batch: int, q_tokens: float, pairs: float, kv_read: float) -> float:
        key = (seg, stage, batch, q_tokens, pairs, kv_read)
        hit = self._attn_x.get(key)
        if hit is not None:
            return hit
        first, last, _, _, n_cross = self.segments[seg]
        op = attention(
            "llm.cross_attention", ATTN_DECODE if stage == "decode" else ATTN_ENCODER, stage, "llm", batch=batch,
            pairs=pairs, q_tokens=q_tokens, kv_tokens_read=kv_read, heads=self.heads, kv_heads=self.kv_heads,
            head_dim=self.head_dim, cfg=self.cfg, q_per_seq=q_tokens / batch, kv_per_seq=kv_read / batch,
            count=n_cross, layer_range=(first, last),
        )
        val = sum(self._exact(o) for o in self.transform((op,))) if self.transform is not None else self._exact(op)
        self._attn_x[key] = val
        return val

    def _exact(self, op) -> float:
        cm = self._exact_cm
        if len(cm._cache) > _EXACT_CACHE_MAX:  # bounded memory over 100k-request runs
            cm.clear()
        return cm.cost(op).time_s * op.count

    def _decode_attn_s(self, seg: int, n: int, kv: float) -> float:
        b = int(math.log(kv) * INV_LOG_Q + 0.5)
        key = (seg, n, b)
        hit = self._attn_q.get(key)
        if hit is not None:
            return hit
        rep = math.exp(b * _LOG_Q)
        val = self._attn_s(seg, "decode", n, float(n), rep, rep, self.cm)
        if self.local_counts[seg]:
            loc = self._local_decode_kv(n, rep)
            val += self._attn_s(seg, "decode", n, float(n), loc, loc, self.cm, local=True)
        self._attn_q[key] = val
        return val

    def _local_decode_kv(self, n: int, kv: float) -> float:
        """Keys the local layers read for `n` decoding sequences holding `kv` KV tokens in all (incl. the new ones).

        The engine tracks only the batch's sum, so every sequence is priced at the mean length: exact when all are
        inside the window, an upper bound (min is concave) when lengths straddle it."""
        w, kind = self.local.window_tokens, self.local.kind
        return n * local_keys_read(kv / n - 1.0, 1.0, w, kind)

    def _local_chunks_s(self, seg: int, stage: str, n_dec: int, dec_kv: float, qp: list[tuple[float, float]],
                        cm: CostModel) -> float:
        """Local layers of a step with prefill chunks: decode sequences at the mean length, chunks exactly."""
        w, kind = self.local.window_tokens, self.local.kind
        kv = self._local_decode_kv(n_dec, dec_kv) if n_dec else 0.0
        pairs = kv
        q_tok = float(n_dec)
        for q, p in qp:
            pairs += local_pairs(p, q, w, kind)
            kv += local_keys_read(p, q, w, kind)
            q_tok += q
        return self._attn_s(seg, stage, n_dec + len(qp), q_tok, pairs, kv, cm, local=True)

    # ------------------------------------------------------------------------------------------------------------
    # public

    def decode_s(self, n: int, past_sum: int) -> float:
        """A decode-only step of `n` sequences whose past tokens sum to `past_sum` (plain models: no visual-token
        schedule, no cross-attention). The engine's hot path: one dict lookup when warm."""
        kv = past_sum + n
        key = n * DECODE_KEY_STRIDE + int(math.log(kv) * INV_LOG_Q + 0.5)
        hit = self._dec.get(key)
        if hit is not None:
            return hit
        tok, head = self._token_ops_s("decode", n, (n,), ()), self._head_s("decode", n)
        attn = self._decode_attn_s(0, n, kv)
        if self.dispatch_s is None:
            val = self._graph_step_s(tok, attn, head, True)
        else:
            val = self._queued_s(("decode", n, (n,), False, 0), "decode", n, attn)
        if self.decode_extra:
            val += self.decode_extra_s(n, past_sum)
        if self.speculative:
            val *= self.spec_factor(n, past_sum)
        self._dec[key] = val
        return val

    def batch_s(self, chunks: Sequence[tuple], decodes, decode: bool) -> float:
        """The LLM pass of a scheduled step: prefill `chunks` ((request, new tokens), ...) plus, when `decode`,
        every sequence of the DecodeSet `decodes` (by its aggregates)."""
        rows = []
        for r, n in chunks:
            c = r.computed
            vis = r.vis_in_seq
            rows.append((n, c, max(0, min(c + n, vis) - c), min(c, vis), r.cross_kv, c + n >= r.target))
        kw = {"dec_pruned": decodes.pruned} if decodes.schedule else {}
        if not decode:
            return self.step_s(0, 0, rows, **kw)
        return self.step_s(decodes.n, decodes.past, rows, dec_cross_n=decodes.cross_n,
                           dec_cross_sum=decodes.cross_sum, **kw)

    def step_s(
        self, n_dec: int, dec_past_sum: int, chunks: Sequence[Chunk] = (), *, dec_pruned: Sequence[int] = (),
        dec_cross_n: int = 0, dec_cross_sum: int = 0,
    ) -> float:
        """A step of `n_dec` decoding sequences (aggregated) plus prefill `chunks`.

        `dec_pruned[s]`: for a visual-token schedule, sum over decoding sequences of the past visual tokens layer
        segment s drops (past_visual - kept). `dec_cross_n`/`dec_cross_sum`: decoding sequences with
        cross-attention KV and their cross-KV tokens.
        """
        if not chunks:
            if n_dec == 0:
                return 0.0
            if self.simple_decode:
                return self.decode_s(n_dec, dec_past_sum)
        if self.simple_decode:
            return self._plain_step_s(n_dec, dec_past_sum, chunks)
        stage = "prefill" if chunks else "decode"
        batch = n_dec + len(chunks)
        total_new, m_key, vis_chunks = self._token_counts(n_dec, chunks)
        n_emit = n_dec + sum(1 for c in chunks if c[5])
        any_cross = self.has_cross and (dec_cross_n > 0 or any(c[4] for c in chunks))
        deep = sum(c[2] for c in chunks) if self.deepstack else 0
        tok, head = self._token_ops_s(stage, total_new, m_key, vis_chunks, any_cross, deep), self._head_s(stage, n_emit)
        total = tok + head
        attn = 0.0
        seg_attn: dict[tuple[int, int], float] = {}  # each layer segment's attention, for the eager launch queue
        upproj = {} if self.mla is not None and self._queues else None  # eager: its own launch slot
        for s, (first, last, frac, n_self, n_cross) in enumerate(self.segments):
            a = attn
            if (n_self or self.local_counts[s]) and m_key[s if self.has_schedule else 0]:
                dec_kv = dec_past_sum - (dec_pruned[s] if dec_pruned else 0) + n_dec  # decode: q = 1, kv = past + 1
                for t in self._segment_attn_s(s, frac, stage, batch, n_dec, dec_kv, chunks, upproj):
                    total += t
                    attn += t
            if n_cross:
                t = self._segment_cross_s(s, frac, stage, dec_cross_n, dec_cross_sum, chunks)
                total += t
                attn += t
            seg_attn[(first, last)] = attn - a
        if self.dispatch_s is not None:
            return self._queued_s((stage, total_new, m_key, any_cross, deep), stage, n_emit, seg_attn,
                                  upproj_s=upproj)
        if chunks and self.prefill_dispatch_s is not None:
            return self._queued_s((stage, total_new, m_key, any_cross, deep), stage, n_emit, seg_attn,
                                  self.prefill_dispatch_s, upproj)
        if self.piecewise is not None:
            return self._graph_step_s(tok, attn, head, not chunks)
        return total

    def _token_counts(self, n_dec: int, chunks: Sequence[Chunk]) -> tuple[int, tuple[int, ...], tuple]:
        """(new tokens of the step, new tokens per layer segment after a visual-token schedule, the visual chunks
        the schedule's memo key needs)."""
        total_new = n_dec + sum(c[0] for c in chunks)
        if not self.has_schedule:
            return total_new, (total_new,), ()
        vis_chunks = tuple(sorted((c[0], c[2]) for c in chunks if c[2]))
        m_key = tuple(n_dec + sum(c[0] - c[2] + visual_tokens_kept(c[2], f) for c in chunks) for f in self.fracs)
        return total_new, m_key, vis_chunks

    def _segment_attn_s(self, s: int, frac: float, stage: str, batch: int, n_dec: int, dec_kv: int,
                        chunks: Sequence[Chunk], upproj: dict | None = None) -> tuple[float, ...]:
        """Self-attention seconds of layer segment `s` (and its local-window layers), in the order they add up."""
        if not chunks:
            return (self._decode_attn_s(s, n_dec, dec_kv),)
        pairs = float(dec_kv)
        kv = float(dec_kv)
        q_tok = float(n_dec)
        qp = []
        for new, past, vis, pvis, _, _ in chunks:
            q = new - vis + visual_tokens_kept(vis, frac)
            p = past - pvis + visual_tokens_kept(pvis, frac)
            pairs += q * p + q * (q + 1) / 2.0
            kv += p + q
            q_tok += q
            qp.append((q, p))
        cm = self._exact_cm
        if len(cm._cache) > _EXACT_CACHE_MAX:  # bounded memory over 100k-request runs
            cm.clear()
        out = (self._attn_s(s, stage, batch, q_tok, pairs, kv, cm, upproj=upproj),)
        if self.local_counts[s]:
            out += (self._local_chunks_s(s, stage, n_dec, float(dec_kv), qp, cm),)
        return out

    def _segment_cross_s(self, s: int, frac: float, stage: str, dec_cross_n: int, dec_cross_sum: int,
                         chunks: Sequence[Chunk]) -> float:
        """Cross-attention seconds of layer segment `s`: decoding sequences plus chunks with cross KV."""
        xb = dec_cross_n
        xq = float(dec_cross_n)
        xpairs = float(dec_cross_sum)
        xkv = float(dec_cross_sum)
        for new, _, vis, _, cross, _ in chunks:
            if cross:
                q = new - vis + visual_tokens_kept(vis, frac)
                xb += 1
                xq += q
                xpairs += q * cross
                xkv += cross
        return self._cross_s(s, stage, xb, xq, xpairs, xkv) if xb else 0.0

    def _plain_step_s(self, n_dec: int, dec_past_sum: int, chunks: Sequence[Chunk]) -> float:
        """step_s for a model without visual-token schedule or cross-attention and at least one prefill chunk.

        Pairs and KV tokens are sums of integers and half-integers far below 2**53, so summing them in another order
        than the graph does gives the identical float.
        """
        total_new = n_dec
        n_emit = n_dec
        pairs = float(dec_past_sum + n_dec)
        kv = pairs
        deep = 0
        for new, past, vis, _, _, emits in chunks:
            total_new += new
            deep += vis
            if emits:
                n_emit += 1
            pairs += new * past + new * (new + 1) / 2.0
            kv += past + new
        if not self.deepstack:
            deep = 0
        tok_key = ("prefill", total_new, (total_new,), False, deep)
        tok = self._tok.get(tok_key)
        if tok is None:
            tok = self._token_ops_s("prefill", total_new, (total_new,), (), deep=deep)
        head = self._head.get(("prefill", n_emit)) if n_emit else 0.0
        if head is None:
            head = self._head_s("prefill", n_emit)
        cm = self._exact_cm
        if len(cm._cache) > _EXACT_CACHE_MAX:
            cm.clear()
        upproj = {} if self.mla is not None and self._queues else None  # eager: its own launch slot
        attn = self._attn_s(0, "prefill", n_dec + len(chunks), float(total_new), pairs, kv, cm, upproj=upproj)
        if self.local_counts[0]:
            qp = [(float(c[0]), float(c[1])) for c in chunks]
            attn += self._local_chunks_s(0, "prefill", n_dec, float(dec_past_sum + n_dec), qp, cm)
        if self.dispatch_s is not None:
            return self._queued_s(tok_key, "prefill", n_emit, attn, upproj_s=upproj)
        if self.prefill_dispatch_s is not None:
            return self._queued_s(tok_key, "prefill", n_emit, attn, self.prefill_dispatch_s, upproj)
        return self._graph_step_s(tok, attn, head, False)

    # ------------------------------------------------------------------------------------------------------------
    # techniques (only with a composition)

    def tech_step_s(
        self, n_dec: int, dec_past_sum: int, chunks: Sequence[Chunk] = (), *, dec_pruned: Sequence[int] = (),
        dec_cross_n: int = 0, dec_cross_sum: int = 0,
    ) -> float:
        """step_s under a composition: the plain step (ops transformed), plus the techniques' prefill ops for the
        chunks, plus, under speculative decoding, the decode part scaled by `spec_factor`."""
        kw = {"dec_pruned": dec_pruned, "dec_cross_n": dec_cross_n, "dec_cross_sum": dec_cross_sum}
        if not chunks:
            if n_dec == 0:
                return 0.0
            if self.simple_decode:
                return self.decode_s(n_dec, dec_past_sum)  # spec_factor and decode extras are in decode_s's memo
            base = StepCost.step_s(self, n_dec, dec_past_sum, (), **kw)
            if self.decode_extra:
                base += self.decode_extra_s(n_dec, dec_past_sum)
            return base * self.spec_factor(n_dec, dec_past_sum) if self.speculative else base
        total = StepCost.step_s(self, n_dec, dec_past_sum, chunks, **kw)
        if self.decode_extra and n_dec:
            total += self.decode_extra_s(n_dec, dec_past_sum)
        if self.speculative and n_dec:
            if self.simple_decode:
                spec = self.decode_s(n_dec, dec_past_sum)
                total += spec - spec / self.spec_factor(n_dec, dec_past_sum)
            else:
                dec = StepCost.step_s(self, n_dec, dec_past_sum, (), **kw)
                total += (self.spec_factor(n_dec, dec_past_sum) - 1.0) * dec
        if self.prefill_extra:
            seqs = tuple(SeqWork(new_tokens=new, past_tokens=past, visual_new=vis, cross_kv_tokens=cross,
                                 emits_token=emits) for new, past, vis, _, cross, emits in chunks)
            cm = self._exact_cm
            if len(cm._cache) > _EXACT_CACHE_MAX:
                cm.clear()
            total += cm.time_s(self.comp.prefill_extra_ops(seqs, tuple(c[3] for c in chunks)))
        return total

    def decode_extra_s(self, n: int, past_sum: int) -> float:
        """Seconds of the techniques' per-decode-step ops (H2O's scoring pass) for `n` sequences whose past tokens
        sum to `past_sum`: those ops depend on the batch's summed context only, priced on the same 1% KV grid as
        decode attention."""
        b = int(math.log(past_sum + n) * INV_LOG_Q + 0.5)
        key = (n, b)
        hit = self._dec_extra.get(key)
        if hit is not None:
            return hit
        kv = max(n, int(round(math.exp(b * _LOG_Q))))
        seqs = (SeqWork(new_tokens=1, past_tokens=kv - n, emits_token=True),) + (
            SeqWork(new_tokens=1, past_tokens=0, emits_token=True),) * (n - 1)
        ops = []
        for t in self.comp.techniques:
            ops.extend(t.decode_extra_ops(self.comp.model, self.comp.cfg, seqs))
        val = self.cm.time_s(self.comp.transform_ops(ops))
        self._dec_extra[key] = val
        return val

    def spec_factor(self, n: int, past_sum: int) -> float:
        """Speculative decoding: (seconds of one draft + verify round / expected tokens per round) over the seconds
        of one plain decode step, for a canonical batch of `n` sequences with the mean past (and `spec_visual`
        past visual tokens each). Memoised on n and the mean past on a 5% geometric grid (the ratio is smooth)."""
        mean = past_sum / n
        b = int(math.log(mean + 1.0) * _INV_LOG_SPEC + 0.5)
        key = n * DECODE_KEY_STRIDE + b
        hit = self._spec.get(key)
        if hit is not None:
            return hit
        comp = self.comp
        past = max(1, int(round(math.exp(b / _INV_LOG_SPEC) - 1.0)))
        pv = min(self.spec_visual, past)
        seqs = (SeqWork(new_tokens=1, past_tokens=past, emits_token=True),) * n
        pvs = (pv,) * n
        cm = self.cm
        plain = sum(cm.cost(op).total_time_s * w for op, w in self._plain_policy.step_ops(seqs, pvs))

        spec = comp.decode_step_time_s(cm, seqs, pvs) / comp.tokens_per_step
        val = spec / plain if plain > 0 else 1.0
        self._spec[key] = val
        return val

    def encode_requests_s(self, requests: Sequence, tokens: int) -> float:
        """One encoder batch of these requests' images (`tokens` visual tokens in all): their technique-transformed
        tokenizations when techniques apply, else their ViT sequences and projector inputs."""
        if not requests:
            return 0.0
        if self.transform is not None:  # techniques transformed the requests' tokenizations
            return self.encode_toks_s([t for r in requests for t in r.toks_to_encode])
        lens = [n for r in requests for n in r.vit_seq_lens]
        return self.encode_s(lens, sum(r.projector_in_tokens for r in requests), tokens)

    def encode_toks_s(self, toks: Sequence) -> float:
        """An encoder batch of these (technique-transformed) tokenizations, priced by `comp.encode_ops`."""
        if not toks:
            return 0.0
        key = tuple(toks)
        hit = self._enc_toks.get(key)
        if hit is not None:
            return hit
        if len(self._enc_toks) > _EXACT_CACHE_MAX:
            self._enc_toks.clear()
        ops = self.comp.encode_ops(key, 1)
        if self._encoder_dispatch_s is not None:
            val = launch_queue_s([(self.cm.cost(op).time_s, float(op.count), op.layer_range) for op in ops],
                                 self._encoder_dispatch_s)
        else:
            val = self.cm.time_s(ops)
        self._enc_toks[key] = val
        return val

    def encode_s(self, vit_seq_lens: Sequence[int], projector_in_tokens: int, llm_tokens: int) -> float:
        """Seconds to encode these ViT sequences (any number of images of any requests) as one encoder batch."""
        if not vit_seq_lens:
            return 0.0
        lens = tuple(sorted(vit_seq_lens))
        key = (lens, projector_in_tokens, llm_tokens)
        hit = self._enc.get(key)
        if hit is not None:
            return hit
        if len(self._enc) > _EXACT_CACHE_MAX:
            self._enc.clear()
        ops = encode_ops(self.model, lens, projector_in_tokens, llm_tokens, self.cfg)
        if self._encoder_dispatch_s is not None:
            val = launch_queue_s([(self.cm.cost(op).time_s, float(op.count), op.layer_range) for op in ops],
                                 self._encoder_dispatch_s)
        else:
            val = self.cm.time_s(ops)
        self._enc[key] = val
        return val


def reference_step_s(
    model: ModelSpec, cfg: GraphConfig, cm: CostModel, decodes: Sequence[tuple[int, int, int]],
    chunks: Sequence[Chunk] = (),
) -> float:
    """The slow, obviously right answer: build `llm_ops` for the whole batch and price it (under an eager runtime, its
    kernels at GPU time through the launch queue).

    `decodes`: (past_tokens, past_visual, cross_kv_tokens) of each decoding sequence (one new token each).
    """
    seqs = [SeqWork(new_tokens=1, past_tokens=p, visual_new=0, cross_kv_tokens=x, emits_token=True)
            for p, _, x in decodes]
    pv = [v for _, v, _ in decodes]
    for new, past, vis, pvis, cross, emits in chunks:
        seqs.append(SeqWork(new_tokens=new, past_tokens=past, visual_new=vis, cross_kv_tokens=cross,
                            emits_token=emits))
        pv.append(pvis)
    if not seqs:
        return 0.0
    stage = "prefill" if chunks else "decode"
    ops = llm_ops(model, tuple(seqs), stage, cfg, tuple(pv))
    queue = launch_queue_profile(cm.profile)
    if queue is None:
        return cm.time_s(ops)
    gpu = CostModel(cm.hardware, queue[0])
    return launch_queue_s([(gpu.cost(op).time_s, float(op.count), op.layer_range) for op in ops], queue[1])


__all__ = ["DECODE_REL_TOL", "QUANT_RATIO", "Chunk", "StepCost", "reference_step_s"]
