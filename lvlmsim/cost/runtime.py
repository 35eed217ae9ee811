"""Runtime overheads: what a serving runtime adds per kernel and per forward step, on top of the kernels themselves.

CUDA-graph engines (vLLM, SGLang, TensorRT-LLM) replay a captured graph: each kernel costs its device time plus a
small inter-kernel gap, and a step costs one graph launch. Eager PyTorch (HF transformers `generate`) issues every op
from Python: when kernels are short the GPU waits on the host, so each kernel costs at least the host's dispatch +
launch time. `RuntimeSpec.apply(profile)` swaps the per-kernel floor of any efficiency profile for the runtime's:
the floor becomes max(profile floor, runtime floor) — a kernel cannot finish before the runtime has issued it, and a
calibrated floor that already includes more (e.g. a KV-cache write kernel) is kept. A calibrated profile whose
`timing_regime` is the runtime's own (the H100 profile was fitted on CUDA-graph tables; `calibrate` measures eager
launches) keeps its fitted floors unchanged. Priced one op at a time (`CostModel.cost`: body + floor) that is an
upper bound for eager ops, which neither the engine's steps nor the estimate's stages use:

Eager steps (issue 13, wave 5) are priced by the launch queue (`launch_queue_s`). The host issues kernels
asynchronously, one every `kernel_floor_s` (its dispatch), and runs ahead of the GPU until the step's sync (sampling):
host_issue_i = host_issue_{i-1} + dispatch, gpu_start_i = max(gpu_end_{i-1}, host_issue_i), and the step ends at
the last kernel's end. A step of long kernels costs about the GPU's sum (+ one dispatch), one of short kernels the
dispatch sum (+ the last kernel). Measured support: aiconfigurator's paired `vllm_eager` / `vllm_graph` rows of the
same custom all-reduce (a loop of one op, whose steady state under this recurrence is max(graph time, dispatch)) fit
max(graph, h) to a median 2-3% and graph + h (the additive composition) to 11-36% (benchmarks/eager_whatif.py).
The engine's StepCost (lvlmsim.engine.stepcost) and the estimate's stages (lvlmsim.estimate.price_stages, a
`runtime.dispatch_wait` row per stage) price each kernel by the base profile (`launch_queue_profile`) and a step's
ordered ops by this recurrence, with techniques too: the target model's step (its ops as the techniques leave them)
goes through the queue, what a technique adds to a step comes on top at its GPU time.

Piecewise CUDA graphs (issue 13, wave 7; docs/cudagraph-modes.md): vLLM V1 before 0.11 replayed one graph per piece
between attention layers and ran each layer's attention eagerly (0.11+: steps with prefill tokens only). Such a step
is the same recurrence with a host dispatch per item (`piecewise_step_s`): a graph replay per piece (an eager op's
host time beyond its kernel: 38.9 us on the A100 system, 16.3 us on the H100 system), an attention call per layer
(two eager ops: the KV-cache write and the attention kernel), the LM head as one eager op. The runtime version's host
profile (calibration/host/runtimes.yaml `cudagraph_mode`) says which steps run so.

Decode-only CUDA graphs (issue 13, wave 10; docs/cudagraph-modes.md): SGLang (0.4 - 0.5.6, and multimodal models
after piecewise graphs became its default) captures graphs of decode batches only and runs every extend (prefill)
batch eagerly, so a step with prefill tokens is priced as the `eager` runtime prices every step (`EagerPrefill`:
one eager dispatch per op through the launch queue) and a pure-decode step as one graph replay.

Constants (all seconds) and where they come from:
- graph kernel floor 2.7e-6: median latency of the 794 smallest bf16 GEMMs (2*m*n*k <= 2 MFLOP, n*k <= 64K) in
  aiconfigurator's H100 tables measured under CUDA-graph replay (vLLM 0.24: 2.69 us; TRT-LLM 1.3: 2.76 us).
- eager kernel floor 2.06e-5: median of aiconfigurator's H100 vLLM 0.24 custom all-reduce `vllm_eager` rows with
  messages <= 8192 elements on 2 GPUs (20.6 us), where the same kernel under graph replay takes 4.3 us: one eager
  Python-level op on an H100 host. (A100 host, vLLM 0.14: 43.8 us eager vs 4.9 us graph; LLMCompass's A100 eager
  GELU at 1-2K elements: ~48 us per call.) Eager costs in general depend on the host CPU; this is a typical one.
- graph step overhead 1.63e-5: one CUDA-graph launch per step, taken as the eager-minus-graph difference of the
  same H100 rows (20.6 - 4.3 us). Host scheduling, sampling and detokenisation are not in the measured data;
  vLLM (async output processing, V1), SGLang (overlap scheduler) and TRT-LLM (overlap scheduler) overlap them with
  the GPU, so they are left out here; the part a runtime version does not overlap is its host profile's step time
  (lvlmsim.cost.host, calibration/host/runtimes.yaml).
- eager step overhead 6.6e-5: lvlmsim's CPU microbenchmark of HF-style per-step host bookkeeping (argmax over 32000
  logits, appending to input ids and attention mask, a stop check with a host sync), median 66 us on a 2-core AMD
  EPYC (KVM) with torch 2.13; a lower bound for `generate` (logits processors and cache updates add more).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from lvlmsim.cost.collectives import CUSTOM_AR_SUFFIX, CustomAllreducePolicy, custom_allreduce_policy
from lvlmsim.cost.profile import Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.ops.op import ALLREDUCE, Op
from lvlmsim.specs.hardware import HardwareSpec

_GRAPH_FLOOR = ("median of the 794 smallest bf16 GEMMs in aiconfigurator's H100 tables under CUDA-graph replay "
                "(vLLM 0.24: 2.69 us, TRT-LLM 1.3: 2.76 us)")
_GRAPH_STEP = ("one CUDA-graph launch: aiconfigurator H100 custom all-reduce, vllm_eager minus vllm_graph at <= 8192 "
               "elements on 2 GPUs (20.6 - 4.3 us); the host time a runtime version does not overlap is its host "
               "profile's step time (lvlmsim.cost.host)")
_EAGER_FLOOR = ("aiconfigurator H100 vLLM 0.24 custom all-reduce vllm_eager rows, <= 8192 elements, 2 GPUs: median "
                "20.6 us per eager op (A100 host: 43.8 us)")
_EAGER_STEP = ("lvlmsim CPU microbenchmark of HF-style per-step host bookkeeping (argmax over 32000 logits, append "
               "to ids and mask, stop check): 66 us median, 2-core AMD EPYC, torch 2.13; a lower bound")


@dataclass(frozen=True)
class RuntimeSpec:
    """Per-kernel floor and per-step overhead of a serving runtime, with where the numbers come from."""

    name: str
    kernel_floor_s: float
    step_overhead_s: float
    source: str
    cuda_graphs: bool = True
    vendors: tuple[str, ...] = ()  # device vendors (HardwareSpec.vendor, lower case) it runs on; () = any

    def check_hardware(self, hw: HardwareSpec) -> None:
        """Refuse a device this runtime does not run on (TensorRT-LLM: NVIDIA GPUs only), naming the ones that do."""
        if self.vendors and hw.vendor.strip().lower() not in self.vendors:
            fits = [n for n, rt in RUNTIMES.items() if not rt.vendors or hw.vendor.strip().lower() in rt.vendors]
            raise InfeasibleError(f"runtime: {self.name} runs on {', '.join(v.upper() for v in self.vendors)} "
                                  f"devices only; {hw.id} is {hw.vendor}'s ({hw.kind}); allowed on it: "
                                  f"{', '.join(fits)}")

    @property
    def allreduce_policy(self) -> CustomAllreducePolicy | None:
        """When this runtime runs its custom all-reduce kernel instead of NCCL (calibration/collectives.yaml), under
        CUDA graphs only: without them (enforce_eager) every kernel costs the eager floor, which the measured eager
        custom all-reduce rows set (20.6 us on H100), and the all-reduce prices as NCCL under it."""
        return custom_allreduce_policy(self.name) if self.cuda_graphs else None

    def apply(self, profile: EfficiencyProfile) -> RuntimeProfile:
        """`profile` with this runtime's per-kernel floor (max of both floors); everything else unchanged."""
        return RuntimeProfile(profile, self)


@dataclass(frozen=True)
class RuntimeProfile(ProfileWrapper):
    """An EfficiencyProfile wrapper: the base profile's efficiencies, the runtime's floor (max of the two)."""

    runtime: RuntimeSpec

    @property
    def same_regime(self) -> bool:
        """The base profile was fitted on kernels launched the way this runtime launches them (its `timing_regime`,
        e.g. aiconfigurator's CUDA-graph tables): its floors already are this runtime's, and are kept as fitted."""
        regime = getattr(self.base, "timing_regime", None)
        return regime == ("cuda_graph" if self.runtime.cuda_graphs else "eager")

    @property
    def name(self) -> str:
        return f"{self.base.name}+{self.runtime.name}"

    def efficiency(self, op: Op, hw: HardwareSpec) -> Efficiency:
        eff = self.base.efficiency(self._as_run(op, hw), hw)
        floor = self.runtime.kernel_floor_s
        if eff.floor_s >= floor or self.same_regime:
            return eff
        return Efficiency(eff.compute, eff.memory, floor, eff.source, eff.measured_error_pct)

    def _as_run(self, op: Op, hw: HardwareSpec) -> Op:
        """`op`, marked as the runtime's custom all-reduce when its policy picks that kernel for it (a profile with an
        `allreduce/custom` family prices it so; any other prices it as an all-reduce)."""
        if op.kind != ALLREDUCE or op.name.endswith(CUSTOM_AR_SUFFIX):
            return op
        policy = self.runtime.allreduce_policy
        if policy is None or not policy.picks_custom(hw, op.devices, op.bytes_read):
            return op
        return replace(op, name=op.name + CUSTOM_AR_SUFFIX)


RUNTIMES: dict[str, RuntimeSpec] = {
    "vllm": RuntimeSpec("vllm", 2.7e-6, 1.63e-5, f"kernel floor: {_GRAPH_FLOOR}; step: {_GRAPH_STEP}"),
    "sglang": RuntimeSpec("sglang", 2.7e-6, 1.63e-5,
                          f"kernel floor: {_GRAPH_FLOOR} (same CUDA-graph replay as vLLM); step: {_GRAPH_STEP}"),
    # TensorRT-LLM runs on NVIDIA GPUs only (nvidia.github.io/TensorRT-LLM/supported-hardware.html: "supports the
    # full spectrum of NVIDIA GPU architectures"; the support matrix lists only NVIDIA architectures)
    "trtllm": RuntimeSpec("trtllm", 2.7e-6, 1.63e-5, f"kernel floor: {_GRAPH_FLOOR}; step: {_GRAPH_STEP}",
                          vendors=("nvidia",)),
    "eager": RuntimeSpec("eager", 2.06e-5, 6.6e-5, f"kernel floor: {_EAGER_FLOOR}; step: {_EAGER_STEP}",
                         cuda_graphs=False),
}


def serving_runtime(name: str | RuntimeSpec, enforce_eager: bool = False) -> RuntimeSpec:
    """The runtime a server runs: `name`'s, or with `enforce_eager` (vLLM --enforce-eager or -O0, SGLang
    --disable-cuda-graph) the same engine launching every kernel from Python: the eager floor and step overhead
    replace the CUDA-graph ones; the runtime's host profile (lvlmsim.cost.host) is unaffected."""
    rt = get_runtime(name)
    if not enforce_eager or not rt.cuda_graphs:
        return rt
    eager = RUNTIMES["eager"]
    return RuntimeSpec(f"{rt.name}-eager", eager.kernel_floor_s, eager.step_overhead_s,
                       f"{rt.name} without CUDA graphs (enforce_eager): {eager.source}", cuda_graphs=False,
                       vendors=rt.vendors)


def get_runtime(name: str | RuntimeSpec) -> RuntimeSpec:
    """A RuntimeSpec by name; an unknown name is a SpecError listing the allowed ones."""
    if isinstance(name, RuntimeSpec):
        return name
    try:
        return RUNTIMES[str(name).strip().lower()]
    except KeyError:
        raise SpecError(f"--runtime: unknown runtime '{name}'; allowed: {', '.join(RUNTIMES)}") from None


CUDAGRAPH_MODES = ("full", "piecewise", "full_and_piecewise", "decode_only")

# One Python-level op that launches one kernel (aiconfigurator's custom all-reduce, <= 8192 elements, 2 GPUs): its
# eager host time and its time under graph replay, seconds, by the system it was measured on (docs/cudagraph-modes.md)
_EAGER_OP_BY_SYSTEM = {
    "a100": (4.38e-5, 4.9e-6, "aiconfigurator A100 vLLM 0.14 custom all-reduce rows: 43.8 us eager, 4.9 us graph"),
    "h100": (2.06e-5, 4.3e-6, "aiconfigurator H100 vLLM 0.24 custom all-reduce rows: 20.6 us eager, 4.3 us graph"),
}


@dataclass(frozen=True)
class PiecewiseDispatch:
    """Host seconds a piecewise CUDA-graph step spends issuing each item (docs/cudagraph-modes.md): one graph replay
    per piece (an eager op's host time beyond its kernel), one eager attention call per layer (two kernel-launching
    ops: the KV-cache write and the attention kernel), one eager op for the LM head."""

    graph_replay_s: float
    attention_call_s: float
    eager_op_s: float
    source: str


def piecewise_dispatch(hw: HardwareSpec) -> PiecewiseDispatch:
    """The piecewise host figures of `hw`'s system: the A100 system's where the device is an A100 (measured there),
    else the H100 system's (the host the `eager` runtime takes as typical)."""
    system = "a100" if "a100" in f"{hw.id} {hw.name}".lower() else "h100"
    eager_s, graph_s, source = _EAGER_OP_BY_SYSTEM[system]
    return PiecewiseDispatch(eager_s - graph_s, 2.0 * eager_s, eager_s, source)


@dataclass(frozen=True)
class EagerPrefill:
    """Host seconds per kernel-launching op of a step with prefill tokens where only pure-decode steps replay a CUDA
    graph (cudagraph_mode decode_only: SGLang's CudaGraphRunner captures decode batches only and runs extend batches
    eagerly, docs/cudagraph-modes.md): such a step goes through the launch queue (`launch_queue_s`), one dispatch per
    op, as the `eager` runtime prices every step."""

    dispatch_s: float
    source: str


def eager_prefill(hw: HardwareSpec) -> EagerPrefill:
    """The eager dispatch of `hw`'s system (one Python-level op that launches one kernel): the A100 system's where
    the device is an A100, else the H100 system's, as `piecewise_dispatch` picks them."""
    system = "a100" if "a100" in f"{hw.id} {hw.name}".lower() else "h100"
    eager_s, _, source = _EAGER_OP_BY_SYSTEM[system]
    return EagerPrefill(eager_s, source)


def _item(gpu_s: float, dispatch_s: float) -> tuple[float, float]:
    """Summary of one issued item: (GPU minus host seconds, latest-binding suffix from it = its GPU seconds)."""
    return gpu_s - dispatch_s, gpu_s


def piecewise_step_s(pieces_s: float, attention_s: float, head_s: float, layers: int,
                     pw: PiecewiseDispatch) -> float:
    """Seconds of a step run with piecewise CUDA graphs: per layer a graph replay (the layer's share of `pieces_s`,
    the non-attention kernels' GPU seconds) and an eager attention call (its share of `attention_s`), the last
    piece's replay, then the LM head (`head_s`) as one eager op, through the launch queue with a host dispatch per
    item (`launch_queue_s`'s recurrence: host_issue_i = host_issue_{i-1} + dispatch_i, gpu_start_i =
    max(gpu_end_{i-1}, host_issue_i)), which solves to sum(dispatch) + max over i of (dispatch_i + sum from i on of
    (GPU_j - dispatch_j)). A GPU-bound step costs its GPU sum + one replay, a host-bound one its dispatch sum + the
    last item's GPU time."""
    n = max(int(layers), 1)
    layer = _then(_item(pieces_s / n, pw.graph_replay_s), _item(attention_s / n, pw.attention_call_s))
    total = (n * layer[0], layer[1] + (n - 1.0) * max(layer[0], 0.0))
    total = _then(total, _item(0.0, pw.graph_replay_s))
    total = _then(total, _item(head_s, pw.eager_op_s))
    host_s = n * (pw.graph_replay_s + pw.attention_call_s) + pw.graph_replay_s + pw.eager_op_s
    return host_s + total[1]


def launch_queue_profile(profile: EfficiencyProfile) -> tuple[EfficiencyProfile, float] | None:
    """(the profile that prices each kernel's GPU time, the host's dispatch seconds per kernel) when `profile` is an
    eager runtime over a profile fitted on another launch regime, so that steps are priced by `launch_queue_s`;
    None for CUDA-graph runtimes (unchanged) and for profiles fitted on eager launches (their floors hold the
    dispatch already)."""
    if isinstance(profile, RuntimeProfile) and not profile.runtime.cuda_graphs and not profile.same_regime:
        return profile.base, profile.runtime.kernel_floor_s
    return None


def _launches(excess_s: float, k: float) -> tuple[float, float]:
    """(excess sum, max suffix excess) of `k` consecutive launches of one kernel, each `excess_s` = GPU time minus
    dispatch; a fractional k (a per-layer average, e.g. 5 local layers in 6) counts as one weighted launch below 1."""
    return k * excess_s, excess_s * min(k, 1.0) + max(k - 1.0, 0.0) * max(excess_s, 0.0)


def _then(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Summary of `a` followed by `b`: sums add; the latest-binding suffix is b's or all of b after a's."""
    return a[0] + b[0], max(b[1], b[0] + a[1])


def _layer_count(counts: Sequence[float]) -> float:
    """Layers a run of per-layer ops repeats: the most common count (ties: the smallest), e.g. 80 for a run whose
    GEMMs count 80 and norms 160 (two a layer)."""
    return min(set(counts), key=lambda c: (-counts.count(c), c))


def _same_run(first: tuple, launch: tuple) -> bool:
    """Whether `launch` belongs to the run of per-layer ops `first` opened: without layer ranges (a third field),
    always; with them, when the two ranges overlap (one segment of a visual-token schedule; an op of a few of its
    layers, such as Qwen3-VL's DeepStack adds, stays in the run of the layers it is issued among)."""
    if len(first) < 3 or len(launch) < 3:
        return True
    (a0, a1), (b0, b1) = first[2], launch[2]
    return a0 <= b1 and b0 <= a1


def launch_queue_s(launches: Sequence[tuple[float, float] | tuple[float, float, object]], dispatch_s: float) -> float:
    """Seconds from the step's first dispatch to its last kernel's end, `launches` ((GPU seconds of one launch,
    launches[, layer group]) in issue order, as lvlmsim.ops lists a step: once per op, the layers' ops in layer order
    with count = layers x launches per layer) issued one every `dispatch_s` by a host that runs ahead until the step's
    sync. The optional third field is the op's layer range (first, last): a run of per-layer ops ends at an op whose
    range does not overlap the run's first, so a step whose layers come in segments (a visual-token schedule:
    FastV's layers 0-1 and 2-27) is summarised segment by segment, each its own repeated layer, rather than as one
    layer of the most common count.

    The recurrence gpu_end_i = max(gpu_end_{i-1}, host_issue_i) + g_i with host_issue_i = i x dispatch solves to
    T = (N + 1) x dispatch + max over suffixes of sum(g_i - dispatch) (N launches): computed per op from (excess
    sum, max suffix) summaries, a run of per-layer ops (counts > 1) as one layer repeated, so the cost does not grow
    with the layer count. The order inside a layer is the op list's (each op's launches of a layer adjacent), which
    moves T by at most one layer's run-ahead, never more, since the layers repeat."""
    total = (0.0, float("-inf"))
    n = 0.0
    i = 0
    while i < len(launches):
        j = i
        while j < len(launches) and launches[j][1] > 1 and _same_run(launches[i], launches[j]):
            j += 1
        if j == i:  # a single launch (embedding, LM head)
            g, k = launches[i][0], launches[i][1]
            total = _then(total, _launches(g - dispatch_s, k))
            n += k
            i += 1
            continue
        run = launches[i:j]
        layers = _layer_count([item[1] for item in run])
        layer = (0.0, float("-inf"))
        for g, k, *_ in run:
            layer = _then(layer, _launches(g - dispatch_s, k / layers))
        total = _then(total, (layers * layer[0], layer[1] + (layers - 1.0) * max(layer[0], 0.0)))
        n += sum(item[1] for item in run)
        i = j
    return (n + 1.0) * dispatch_s + total[1] if n else 0.0
