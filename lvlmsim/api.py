"""The public Python API. The CLI and the Streamlit app are thin faces over these functions."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from lvlmsim.calibrate.profiles import provenance_of, resolve_profile, transfer_note
from lvlmsim.cost.profile import EfficiencyProfile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import InfeasibleError, SpecError
from lvlmsim.estimate import Estimate, estimate_request, parse_image_size, with_host_costs
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.registry import load_hardware, load_model

_COST_MODELS: dict[tuple[int, int], tuple[HardwareSpec, EfficiencyProfile, CostModel]] = {}
_MAX_COST_MODELS, _MAX_CACHED_OPS = 32, 200_000


def _cost_model(hw: HardwareSpec, prof: EfficiencyProfile) -> CostModel:
    """One memoising cost model per (hardware, profile) object across estimate() calls: an op's price depends on
    nothing else, and re-pricing every op of a 94-layer MoE model on each call cost ~6 ms of a ~8 ms call."""
    hit = _COST_MODELS.get((id(hw), id(prof)))
    if hit is not None and hit[0] is hw and hit[1] is prof:
        if hit[2].cached_ops() > _MAX_CACHED_OPS:
            hit[2].clear()
        return hit[2]
    if len(_COST_MODELS) >= _MAX_COST_MODELS:
        _COST_MODELS.clear()
    cm = CostModel(hw, prof)
    _COST_MODELS[(id(hw), id(prof))] = (hw, prof, cm)
    return cm


def with_dtype(model: ModelSpec, dtype: str | None) -> ModelSpec:
    """The model run in `dtype` (None: as released); an unknown dtype names the allowed ones."""
    from lvlmsim.specs.base import DTYPES

    if dtype is None:
        return model
    if not isinstance(dtype, str):  # `dtype == model.dtype` on an array raised numpy's ambiguous-truth ValueError
        raise SpecError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == model.dtype:
        return model
    if dtype not in DTYPES:
        raise SpecError(f"dtype: '{dtype}' is not one of {', '.join(DTYPES)}")
    return model.model_copy(update={"dtype": dtype})


def estimate(
    model: str | ModelSpec = "llava-1.5-7b",
    hardware: str | HardwareSpec = "h100-sxm",
    *,
    images: int = 1,
    image_size: str | tuple[int, int] | Sequence[tuple[int, int]] = (336, 336),
    prompt_tokens: int = 64,
    output_tokens: int = 128,
    batch: int = 1,
    tp: int = 1,
    video_s: float = 0.0,
    profile: str | EfficiencyProfile | None = None,
    techniques: Sequence = (),
    runtime: str | None = None,
    ep: int = 1,
    moe_skew: float = 0.0,
    video_size: str | tuple[int, int] | None = None,
    video_fps: float | None = None,
    allow_overflow: bool = False,
    host: bool | str | None = None,
    api_costs: bool = True,
    dtype: str | None = None,
) -> Estimate:
    """Cost of one request (or `batch` identical ones), stage by stage and op by op, with roofline coordinates.

    `model`/`hardware` are registry ids or YAML paths. `profile`: None/'auto' uses the device's shipped calibrated
    profile when one exists, 'default' forces the flat roofline derate, a path loads a profile JSON.
    `techniques`: technique configs or 'kind:key=value,...' strings (see `lvlmsim list techniques`).
    `runtime`: None (kernels as the profile has them, no host overhead) or vllm | sglang | trtllm | eager, which sets
    the per-kernel floor and adds the runtime's per-step host overhead (see `lvlmsim list runtimes`).
    `ep`: expert-parallel degree of a mixture-of-experts model inside the tp group (divides tp); `moe_skew`: the
    router's power-law exponent (0 = balanced routing). `video_size` ('1920x1080') and `video_fps` describe the
    `video_s` clip as sent; the model's video policy samples frames from it and resizes them within its budget.
    A request longer than the model's context length (prompt + visual + output tokens > max_position_embeddings)
    raises SpecError unless `allow_overflow`, which estimates it anyway with a note.
    `host`: the `preprocess` stage (image decode/resize/normalise on the server's CPU, the pixel hand-off, per-step
    host time; lvlmsim.cost.host). None: on with a serving runtime (its current version), off without; False: off;
    a host profile name (vllm-v0, vllm-v1-piecewise, vllm-v1, vllm-v1-async, sglang, trtllm) picks a runtime
    version (its CUDA-graph mode too). `api_costs` (with
    host costs on): the OpenAI-API layer per request, the prompt's tokenisation and the first token's detokenise +
    server-sent event, measured on a CPU core (lvlmsim.calibrate.apicost); False leaves them out.
    `dtype`: run the model in this dtype instead of its released one (weights, compute, activations, KV), e.g. fp32
    on a CPU whose profile was measured in fp32; the hardware must have a peak for it.
    """
    _check_switches(allow_overflow=allow_overflow, api_costs=api_costs, host=host)
    m = with_dtype(load_model(model), dtype)
    hw = load_hardware(hardware)
    _check_dtype_runs(m, hw)
    image_size = _sizes(image_size, "image_size", many=True)
    video_size = _sizes(video_size, "video_size") if video_size is not None else None
    techniques = _technique_list(techniques)
    if (video_size is not None or video_fps is not None) and isinstance(video_s, int | float) and video_s == 0:
        raise SpecError("video_size/video_fps: describe the request's video, but video_s is 0 (no video); give "
                        "video_s > 0 (--video-s) or leave them out")
    prof = resolve_profile(hw, profile)
    step_overhead_s = 0.0
    if runtime is not None:
        from lvlmsim.cost.runtime import get_runtime

        rt = get_runtime(runtime)
        rt.check_hardware(hw)
        prof = rt.apply(prof)
        step_overhead_s = rt.step_overhead_s
    host_profile = _host_profile(host, runtime, api_costs)
    common = dict(images=images, image_size=image_size, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                  batch=batch, tp=tp, video_s=video_s, profile=prof, step_overhead_s=step_overhead_s, ep=ep,
                  moe_skew=moe_skew, video_size=video_size, video_fps=video_fps, cost_model=_cost_model(hw, prof),
                  piecewise=_piecewise(runtime, host_profile, hw))
    if techniques:  # the same request through the techniques' composition: every argument alike (one pricing path)
        from lvlmsim.techniques import apply_to_estimate

        est = apply_to_estimate(m, hw, techniques, **common)
    else:
        est = estimate_request(m, hw, **common)
    est = with_host_costs(est, m, host_profile, images, runtime)
    _attach_provenance(est, prof, hw)
    return _within_context(est, m, allow_overflow)


def _attach_provenance(est: Estimate, prof: EfficiencyProfile, hw: HardwareSpec) -> None:
    """{profile, profile_kind, expected_error_pct, transfer_note} of the profile that priced `est`, and the transfer
    warning in its notes when the device lies outside every category the general model was fitted on (issue 11)."""
    note = transfer_note(prof, hw)
    est.provenance = {**provenance_of(prof, hw), "transfer_note": note}
    if note and note not in est.notes:
        est.notes.append(note)


def _check_dtype_runs(model: ModelSpec, hw: HardwareSpec) -> None:
    """A model whose dtype the hardware has no peak for is refused before pricing, naming the `dtype` argument that
    fixes it (the cost model's own error named the hardware's dtypes but not what to change: an fp16 model on the
    CPU, which has fp32 and bf16)."""
    if not hw.supports(model.dtype):
        raise InfeasibleError(f"dtype: hardware '{hw.id}' has no {model.dtype} compute ({model.id} runs in "
                              f"{model.dtype}); it supports: {', '.join(hw.peak_tflops)}; run the model in one of "
                              f"them with dtype= (estimate --dtype)")


def _within_context(est: Estimate, model: ModelSpec, allow_overflow: bool) -> Estimate:
    """A request past the model's context length is an error (a server would reject it), or a note when allowed."""
    total = est.context_tokens + est.output_tokens
    limit = model.llm.max_position_embeddings
    if total <= limit:
        return est
    msg = (f"context: {est.context_tokens} prompt+visual tokens + {est.output_tokens} output tokens = {total} exceed "
           f"{model.id}'s context length of {limit} (llm.max_position_embeddings)")
    if not allow_overflow:
        raise SpecError(msg + "; use fewer or smaller images, a shorter prompt or output, or allow_overflow "
                              "(--allow-overflow) to estimate it anyway")
    est.notes.append(msg + "; estimated anyway (allow_overflow)")
    return est


def _piecewise(runtime: str | None, host_profile, hw):
    """(PiecewiseDispatch, decode too) when the runtime version replays CUDA graphs piecewise, (EagerPrefill, False)
    when it replays graphs of decode steps only (its host profile's cudagraph_mode, docs/cudagraph-modes.md), under
    a CUDA-graph runtime, as the engine prices it; else None."""
    from lvlmsim.cost.runtime import eager_prefill, get_runtime, piecewise_dispatch

    if runtime is None or host_profile is None or host_profile.cudagraph_mode == "full":
        return None
    if not get_runtime(runtime).cuda_graphs:
        return None
    if host_profile.cudagraph_mode == "decode_only":
        return eager_prefill(hw), False
    return piecewise_dispatch(hw), host_profile.cudagraph_mode == "piecewise"


def _check_switches(*, allow_overflow, api_costs, host) -> None:
    """The API's switches and names have a type each; a number or a list passed for one was read as truthy."""
    for name, value in (("allow_overflow", allow_overflow), ("api_costs", api_costs)):
        if not isinstance(value, bool):
            raise SpecError(f"{name}: expected true or false, got {value!r}")
    if host is not None and not isinstance(host, bool | str):
        raise SpecError(f"host: expected None, false (off), true or a host profile name, got {host!r}")


def _pair(value, field: str) -> tuple[int, int]:
    if (isinstance(value, tuple | list) and len(value) == 2
            and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in value)):
        return int(value[0]), int(value[1])
    raise SpecError(f"{field}: expected 'WIDTHxHEIGHT' such as '336x336' or (width, height) in pixels, got {value!r}")


def _sizes(value, field: str, many: bool = False):
    """'WxH' or (w, h); with `many` also a list of (w, h), one per image. Bad shapes are SpecErrors naming `field`."""
    if isinstance(value, str):
        return parse_image_size(value, field)
    if many and isinstance(value, list | tuple) and value and all(isinstance(v, list | tuple) for v in value):
        return [_pair(v, field) for v in value]
    return _pair(value, field)


def _technique_list(techniques) -> tuple:
    """Techniques as a tuple: one 'kind:k=v' string is one technique (not its characters)."""
    if isinstance(techniques, str):
        return (techniques,) if techniques.strip() else ()
    if techniques is None:
        return ()
    if not isinstance(techniques, list | tuple):
        raise SpecError(f"techniques: expected a list of technique configs or 'kind:key=value,...' strings, got "
                        f"{techniques!r}")
    return tuple(techniques)


def _host_profile(host: bool | str | None, runtime: str | None, api_costs: bool = True):
    """The HostProfile `estimate(host=...)` asks for (see its docstring), or None for host costs off."""
    if host is False:
        return None
    from lvlmsim.cost.host import load_host_profile

    if isinstance(host, str):
        from lvlmsim.specs.serving import host_runtime_mismatch

        wrong = host_runtime_mismatch(host, runtime)
        if wrong:
            raise SpecError(f"host: {wrong}")
        return load_host_profile(host, api=api_costs)
    if runtime is None or runtime == "eager":
        if host is True:
            raise SpecError("host: host costs need a serving runtime (vllm | sglang | trtllm) or a host profile name")
        return None
    return load_host_profile(runtime, api=api_costs)
