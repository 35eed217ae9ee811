"""Cached calls to the public API. Keys are the plain inputs, so a redraw with unchanged inputs costs a cache hit."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import lvlmsim
from explorer.state import USER_ERRORS, Setup
from lvlmsim.estimate import Estimate


@st.cache_data(show_spinner=False, max_entries=2048)
def _estimate(model: str, hardware: str, images: int, width: int, height: int, video_s: float, prompt_tokens: int,
              output_tokens: int, batch: int, tp: int, profile: str, techniques: tuple[str, ...],
              video: tuple = (), ep: int = 1, moe_skew: float = 0.0) -> Estimate:
    return lvlmsim.estimate(model, hardware, images=images, image_size=(width, height), prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, batch=batch, tp=tp, video_s=video_s, profile=profile,
                            techniques=list(techniques), ep=ep, moe_skew=moe_skew, **dict(video))


def estimate(setup: Setup) -> Estimate:
    """`lvlmsim.estimate(setup.model, setup.hardware, **setup.kwargs())`, cached; raises the API's errors."""
    return _estimate(setup.model, setup.hardware, setup.images, setup.width, setup.height, setup.video_s,
                     setup.prompt_tokens, setup.output_tokens, setup.batch, setup.tp, setup.profile,
                     tuple(setup.techniques), tuple(sorted(setup.video_kwargs().items())), setup.ep, setup.moe_skew)


def try_estimate(setup: Setup) -> tuple[Estimate | None, str | None]:
    try:
        return estimate(setup), None
    except USER_ERRORS as exc:
        return None, str(exc)


def estimate_or_stop(setup: Setup) -> Estimate:
    """The page's estimate; a user error is shown inline and ends the page (never a traceback)."""
    est, err = try_estimate(setup)
    if err is not None:
        st.error(err)
        st.stop()
    return est


def hardware(ref: str) -> lvlmsim.HardwareSpec:
    return lvlmsim.load_hardware(ref)


@st.cache_data(show_spinner=False, max_entries=256)
def provenance(hardware_ref: str, profile: str) -> dict:
    """Which efficiency model prices this device and its expected error (issue 11's provenance): the API's
    `lvlmsim.calibrate.profiles.profile_provenance`, as `plan` reports it per device."""
    from lvlmsim.calibrate.profiles import profile_provenance

    return profile_provenance(lvlmsim.load_hardware(hardware_ref), profile)


def resolution_sweep(setup: Setup, scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)) -> pd.DataFrame:
    """One estimate per image size (the setup's aspect ratio, scaled); at least one image so there is something to
    scale. Sizes the model rejects are left out rather than failing the whole chart."""
    rows = []
    base = setup.with_(images=max(setup.images, 1))
    for s in scales:
        w, h = max(1, round(setup.width * s)), max(1, round(setup.height * s))
        est, err = try_estimate(base.with_(width=w, height=h))
        if est is None:
            continue
        rows.append({"width": w, "height": h, "size": f"{w}x{h}", "megapixels": w * h / 1e6,
                     "visual_tokens": est.visual_tokens, "ttft_s": est.ttft_s, "tpot_s": est.tpot_s,
                     "e2e_s": est.e2e_s, "encode_s": est.stages["encode"].time_s,
                     "prefill_s": est.stages["prefill"].time_s, "kv_bytes": est.memory.request_kv_bytes})
    return pd.DataFrame(rows)


def count_sweep(setup: Setup, counts: tuple[int, ...] = (0, 1, 2, 4, 6, 8)) -> pd.DataFrame:
    """One estimate per image count at the setup's image size."""
    rows = []
    for n in counts:
        est, err = try_estimate(setup.with_(images=n))
        if est is None:
            continue
        rows.append({"images": n, "visual_tokens": est.visual_tokens, "ttft_s": est.ttft_s, "tpot_s": est.tpot_s,
                     "e2e_s": est.e2e_s, "encode_s": est.stages["encode"].time_s,
                     "prefill_s": est.stages["prefill"].time_s, "kv_bytes": est.memory.request_kv_bytes})
    return pd.DataFrame(rows)


MOE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def moe_batch_sweep(setup: Setup, batches: tuple[int, ...] = MOE_BATCHES) -> pd.DataFrame:
    """The MoE decode lesson's data: per batch size (the sweep's and the setup's own), TPOT from the API and the
    distinct experts per MoE layer that one decode step's tokens touch (`lvlmsim.ops.graph.experts_touched` at the
    setup's router skew, the formula the operator graph prices the expert weight reads with; `experts_balanced`:
    the same at skew 0, for comparison). Empty for a dense model."""
    from lvlmsim.ops.graph import experts_touched
    from lvlmsim.specs import registry

    moe = registry.load_model(setup.model).llm.moe
    rows = []
    if moe is None:
        return pd.DataFrame(rows)
    for b in sorted({*batches, setup.batch}):
        est, err = try_estimate(setup.with_(batch=b))
        if est is None:
            continue
        touched = experts_touched(moe.num_experts, moe.experts_per_token, b, setup.moe_skew)
        rows.append({"batch": b, "tpot_ms": est.tpot_s * 1e3, "experts_touched": touched,
                     "experts_balanced": experts_touched(moe.num_experts, moe.experts_per_token, b),
                     "experts_share": touched / moe.num_experts, "fits": est.memory.fits,
                     "this_request": b == setup.batch})
    return pd.DataFrame(rows)
