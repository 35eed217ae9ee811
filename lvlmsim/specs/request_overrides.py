"""One request's description laid over a scenario: the CLI's `--model --hardware --tp --image-size --images
--prompt-tokens --output-tokens` flags and the explorer's "use the sidebar's request" both come through here, so a
scenario set from flags and one set in the app are the same object. `describe()` names what a result was run on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lvlmsim.errors import SpecError
from lvlmsim.specs.lists import split_items
from lvlmsim.specs.scenario import Scenario, scenario_from_dict


def parse_image_sizes(text: str | Sequence[str] | Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """'1024x768' or '1024x768:3,640x480:1' (size:weight) or [(w, h), ...] -> the workload's image_size list."""
    items: list = split_items(text, "image_size") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if isinstance(item, tuple | list):
            w, h = item
            out.append({"width": int(w), "height": int(h), "weight": 1.0})
            continue
        size, _, weight = str(item).strip().partition(":")
        try:
            w, h = (int(x) for x in size.lower().replace("×", "x").split("x"))
            wt = float(weight) if weight else 1.0
        except ValueError:
            raise SpecError(f"image_size: expected WIDTHxHEIGHT[:weight],... such as 1024x768:3,640x480:1, "
                            f"got '{item}'") from None
        if w < 1 or h < 1 or not wt > 0:
            raise SpecError(f"image_size: sides must be >= 1 px and weights > 0, got '{item}'")
        out.append({"width": w, "height": h, "weight": wt})
    if not out:
        raise SpecError("image_size: give at least one WIDTHxHEIGHT")
    return out


def _fixed(value: float) -> dict:
    return {"kind": "fixed", "value": value}


def with_request(
    sc: Scenario,
    *,
    model: str | None = None,
    hardware: str | None = None,
    tp: int | None = None,
    image_size: str | Sequence | None = None,
    images: int | None = None,
    prompt_tokens: int | None = None,
    output_tokens: int | None = None,
    video_s: float | None = None,
    techniques: Sequence | None = None,
    scenario_id: str | None = None,
) -> Scenario:
    """`sc` with the given request fields replaced (None leaves a field as the scenario has it). Token counts and
    image counts become fixed distributions; `video_s` 0 removes the scenario's video. Validated as a whole."""
    for name, v, lo in (("tp", tp, 1), ("images", images, 0), ("prompt_tokens", prompt_tokens, 0),
                        ("output_tokens", output_tokens, 1)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise SpecError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if video_s is not None and (isinstance(video_s, bool) or not isinstance(video_s, int | float)
                                or not math.isfinite(video_s) or video_s < 0):
        raise SpecError(f"video_s: must be a finite number of seconds >= 0, got {video_s!r}")
    if prompt_tokens == 0 and images == 0 and not video_s:
        raise SpecError("prompt_tokens: a request needs at least one prompt or visual token; got prompt_tokens 0 "
                        "and images 0")
    data = sc.model_dump(mode="json")
    wl = data["workload"]
    changed = []
    if model is not None:
        data["model"] = model
        changed.append(f"model={model}")
    if hardware is not None:
        data["hardware"] = hardware
        changed.append(f"hardware={hardware}")
    if tp is not None:
        if data["serving"].get("pools"):
            raise SpecError(f"tp: scenario '{sc.id}' has explicit pools; set each pool's tp in its YAML instead")
        data["serving"]["tp"] = tp
        changed.append(f"tp={tp}")
    if image_size is not None:
        wl["image_size"] = parse_image_sizes(image_size)
        changed.append("image_size=" + ",".join(f"{s['width']}x{s['height']}" + (f":{s['weight']:g}" if s["weight"] != 1
                                                                                  else "") for s in wl["image_size"]))
    for key, value in (("images", images), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if value is not None:
            wl[key] = _fixed(value)
            changed.append(f"{key}={value}")
    if video_s is not None:
        wl["video"] = {"fraction": 1.0, "duration_s": _fixed(float(video_s))} if video_s > 0 else None
        changed.append(f"video_s={video_s:g}")
    if techniques is not None:
        data["techniques"] = list(techniques)
        changed.append(f"techniques={'; '.join(map(str, techniques)) or 'none'}")
    if scenario_id is not None:
        data["id"] = scenario_id
    elif changed:
        data["id"] = f"{sc.id}+request"
    if changed:  # the base's description names its own model and request, which no longer hold
        data["description"] = (f"scenario '{sc.id}' (its arrivals, serving policy and SLOs) with the request changed: "
                               f"{', '.join(changed)}")
    out = scenario_from_dict(data, f"scenario '{sc.id}' with {', '.join(changed) or 'no changes'}")
    out._source_dir = sc.source_dir
    return out


def _dist_text(d: Any) -> str:
    kind = getattr(d, "kind", "")
    if kind == "fixed":
        return f"{d.value:g}"
    if kind in ("normal", "lognormal"):
        return f"~{d.mean:g} ({kind})"
    if kind == "uniform":
        return f"{d.low:g}-{d.high:g}"
    if kind == "empirical" and d.values:
        return f"{min(d.values):g}-{max(d.values):g}"
    return kind or str(d)


def describe_workload(sc: Scenario, rate: float | None = None) -> str:
    """One line naming a scenario's workload: images and their sizes, video, text lengths, arrivals (at `rate`
    req/s when given: the rate a run or a plan actually used)."""
    wl = sc.workload
    sizes = ", ".join(f"{c.width}x{c.height}" + (f" (w{c.weight:g})" if len(wl.image_size) > 1 else "")
                      for c in wl.image_size)
    parts = [f"{_dist_text(wl.images)} image(s) of {sizes}"]
    if wl.video is not None:
        parts.append(f"video {_dist_text(wl.video.duration_s)} s")
    parts.append(f"prompt {_dist_text(wl.prompt_tokens)} tokens, output {_dist_text(wl.output_tokens)} tokens")
    arr = wl.arrival
    rate = rate if rate is not None else getattr(arr, "rate_rps", None)
    parts.append(f"{arr.kind} arrivals" + (f" at {rate:g} req/s" if rate is not None else ""))
    if wl.session is not None:
        parts.append(f"multi-turn sessions of {_dist_text(wl.session.turns)} turns")
    return "; ".join(parts)


def describe(sc: Scenario, rate: float | None = None) -> dict[str, str]:
    """What a result was run on, for banners, CSV headers and JSON: scenario, model, hardware, workload."""
    return {"scenario": sc.id, "model": sc.model, "hardware": sc.hardware, "workload": describe_workload(sc, rate)}


__all__ = ["describe", "describe_workload", "parse_image_sizes", "with_request"]
