"""Runtime overheads: what a serving runtime adds per kernel and per forward step, on top of the kernels themselves.

CUDA-graph engines (vLLM, SGLang, TensorRT-LLM) replay a captured graph: each kernel costs its device time plus a
small inter-kernel gap, and a step costs one graph launch. Eager PyTorch (HF transformers `generate`) issues every op
from Python: when kernels are short the GPU waits on the host, so each kernel costs at least the host's dispatch +
launch time. `RuntimeSpec.apply(profile)` swaps the per-kernel floor of any efficiency profile for the runtime's:
the floor becomes max(profile floor, runtime floor) — a kernel cannot finish before the runtime has issued it, and a
calibrated floor that already includes more (e.g. a KV-cache write kernel) is kept. A calibrated profile whose
`timing_regime` is the runtime's own (the H100 profile was fitted on CUDA-graph tables; `calibrate` measures eager
launches) keeps its fitted floors unchanged.

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

from dataclasses import dataclass, replace

from lvlmsim.cost.collectives import CUSTOM_AR_SUFFIX, CustomAllreducePolicy, custom_allreduce_policy
from lvlmsim.cost.profile import Efficiency, EfficiencyProfile, ProfileWrapper
from lvlmsim.errors import SpecError
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
    "trtllm": RuntimeSpec("trtllm", 2.7e-6, 1.63e-5, f"kernel floor: {_GRAPH_FLOOR}; step: {_GRAPH_STEP}"),
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
                       f"{rt.name} without CUDA graphs (enforce_eager): {eager.source}", cuda_graphs=False)


def get_runtime(name: str | RuntimeSpec) -> RuntimeSpec:
    """A RuntimeSpec by name; an unknown name is a SpecError listing the allowed ones."""
    if isinstance(name, RuntimeSpec):
        return name
    try:
        return RUNTIMES[str(name).strip().lower()]
    except KeyError:
        raise SpecError(f"--runtime: unknown runtime '{name}'; allowed: {', '.join(RUNTIMES)}") from None
