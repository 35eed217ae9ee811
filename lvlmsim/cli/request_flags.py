"""The request flags `simulate` and `plan` share (`--model --hardware --tp --image-size --images --prompt-tokens
--output-tokens --video-s`): one request laid over the scenario (or over the default one) by
lvlmsim.specs.request_overrides.with_request, exactly as the explorer's "Use the sidebar's request" does."""

from __future__ import annotations

from typing import Annotated

import typer

from lvlmsim.errors import SpecError

ModelOpt = Annotated[str | None, typer.Option("--model", help="model id or YAML path; replaces the scenario's")]
ImageSizeOpt = Annotated[str | None, typer.Option(
    "--image-size", help="WxH, or a mix WxH:weight,... (e.g. 1024x768:3,640x480:1); replaces the scenario's")]
ImagesOpt = Annotated[int | None, typer.Option("--images", help="images per request (fixed)")]
PromptOpt = Annotated[int | None, typer.Option("--prompt-tokens", help="text tokens per prompt (fixed)")]
OutputOpt = Annotated[int | None, typer.Option("--output-tokens", help="tokens generated per request (fixed)")]
VideoOpt = Annotated[float | None, typer.Option("--video-s", help="seconds of video per request (0: none)")]
# the names lvlmsim.calibrate.profiles.load_profile_for takes (--help of simulate and bench listed only three)
PROFILE_CHOICES = ("auto | general | default | peak | path to a profile JSON; a suffix @p90 or @p10 prices at that end "
                   "of the uncertainty band (auto@p90)")


def scenario_with_flags(scenario: str | None, **flags):
    """`scenario` unchanged when no flag is given (an id or a path, as before); else the loaded scenario with them."""
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return scenario
    if given.get("images") == 0 and "image_size" in given:  # the size of no image: taken, and it changed nothing
        raise SpecError(f"--image-size: describes the request's images, but --images is 0 (text only); give "
                        f"--images 1 or more, or leave --image-size out (got {given['image_size']!r})")
    from lvlmsim.specs.request_overrides import with_request
    from lvlmsim.specs.scenario import load_scenario

    return with_request(load_scenario(scenario), **given)


def describe_line(sc, rate: float | None = None) -> str:
    """'scenario X: model on hardware; workload' for a report's first line."""
    from lvlmsim.specs.request_overrides import describe

    d = describe(sc, rate)
    return f"{d['scenario']}: {d['model']} on {d['hardware']}; {d['workload']}"


__all__ = ["ImageSizeOpt", "ImagesOpt", "ModelOpt", "OutputOpt", "PromptOpt", "VideoOpt", "describe_line",
           "scenario_with_flags"]
