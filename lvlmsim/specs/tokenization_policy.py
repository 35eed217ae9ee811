"""Image and video tokenization policies: how a picture of W x H pixels becomes ViT sequences and LLM tokens.

Each policy is a schema only; the arithmetic lives in :mod:`lvlmsim.ops.tokenization`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from lvlmsim.specs.base import StrictModel


class FixedResizePolicy(StrictModel):
    """LLaVA-1.5 style: every image is resized (or padded) to one square of `image_size` px."""

    kind: Literal["fixed"] = "fixed"
    image_size: PositiveInt
    special_tokens: int = Field(0, ge=0, description="tokens around each image (Gemma 3: 4, boi/eoi and newlines)")
    pan_and_scan_max_crops: int = Field(
        0, ge=0, description="Gemma 3 pan-and-scan (do_pan_and_scan): up to this many extra crops of an elongated "
                             "image, each resized to image_size; 0 = off (the processors' default)")
    pan_and_scan_min_crop_size: PositiveInt = Field(256, description="px; smaller crops turn pan-and-scan off")
    pan_and_scan_min_ratio: float = Field(1.2, gt=1.0, description="aspect ratio from which pan-and-scan acts")


class AnyResPolicy(StrictModel):
    """LLaVA-NeXT AnyRes: a base view plus a grid of crops chosen from `grid_pinpoints`, unpadded, one newline/row."""

    kind: Literal["anyres"] = "anyres"
    crop_size: PositiveInt = 336
    grid_pinpoints: list[tuple[PositiveInt, PositiveInt]] = Field(
        min_length=1, description="[height, width] pairs in px"
    )
    newline_token: bool = True


class DynamicResolutionPolicy(StrictModel):
    """Qwen2-VL style native resolution: resize to multiples of patch*merge within [min_pixels, max_pixels]."""

    kind: Literal["dynamic"] = "dynamic"
    min_pixels: PositiveInt
    max_pixels: PositiveInt
    special_tokens: int = Field(2, ge=0, description="<|vision_start|> and <|vision_end|>")


class TilesPolicy(StrictModel):
    """InternVL dynamic tiling: up to `max_num` tiles of `tile_size` matching the aspect ratio, plus a thumbnail."""

    kind: Literal["tiles"] = "tiles"
    tile_size: PositiveInt = 448
    min_num: PositiveInt = 1
    max_num: PositiveInt = 12
    use_thumbnail: bool = True
    special_tokens: int = Field(2, ge=0, description="<img> and </img>")


class MllamaTilesPolicy(StrictModel):
    """Llama-3.2-Vision: up to `max_num_tiles` tiles of `tile_size`; tokens go to cross-attention KV."""

    kind: Literal["mllama_tiles"] = "mllama_tiles"
    tile_size: PositiveInt = 560
    max_num_tiles: PositiveInt = 4
    pad_to_max_tiles: bool = Field(
        False,
        description="True: every image carries max_num_tiles tiles through the ViT and into the cross-attention KV "
        "(HF transformers pads and masks the empty tiles). False: only the tiles the image needs (vLLM sizes the "
        "encoder KV as n_tiles x tokens per tile).",
    )


class HdCropsPolicy(StrictModel):
    """Phi-3.5-vision HD transform: up to `num_crops` 336 px crops plus a global view, with separator tokens."""

    kind: Literal["hd_crops"] = "hd_crops"
    crop_size: PositiveInt = 336
    num_crops: PositiveInt = 4


class SlicesPolicy(StrictModel):
    """MiniCPM-V: an overview plus up to `max_slice_nums` slices, each resampled to `tokens_per_slice` queries."""

    kind: Literal["slices"] = "slices"
    slice_size: PositiveInt = 448
    max_slice_nums: PositiveInt = 9
    tokens_per_slice: PositiveInt = 64
    special_tokens_per_slice: int = Field(2, ge=0, description="<image>/</image> or <slice>/</slice> per view")
    image_id_tokens: int = Field(
        3, ge=0, description="<image_id>k</image_id> before each image when use_image_id (MiniCPM-V 2.6); 0 = off"
    )
    newline_between_rows: bool = Field(True, description="one '\\n' token between rows of slices")


class GlobalLocalTilesPolicy(StrictModel):
    """DeepSeek-VL2: a global view plus a grid of local tiles chosen among `candidate_resolutions` (LLaVA-NeXT's
    select_best_resolution); each view's patches are pixel-unshuffled k x k (the projector's merge_factor), with one
    newline token per row of tokens and one separator between the global and local views."""

    kind: Literal["global_local_tiles"] = "global_local_tiles"
    tile_size: PositiveInt = 384
    candidate_resolutions: list[tuple[PositiveInt, PositiveInt]] = Field(
        min_length=1, description="[width, height] pairs in px, multiples of tile_size (config.json order)"
    )


class Llama4TilesPolicy(StrictModel):
    """Llama 4 (early fusion): the canvas of at most `max_patches` tiles of `tile_size` px chosen as Mllama does; each
    tile, plus a global view when there is more than one, becomes (tile / patch)^2 / merge_factor tokens in the text,
    with a separator after every tile and <|image_start|> <|image|> <|image_end|>."""

    kind: Literal["llama4_tiles"] = "llama4_tiles"
    tile_size: PositiveInt = 336
    max_patches: PositiveInt = Field(16, description="most tiles per image (Llama4ImageProcessor max_patches)")


class NativePatchLimitPolicy(StrictModel):
    """Kimi-VL MoonViT: native resolution; an image with more than `in_token_limit` patches is scaled down to about
    that many (the limit counts patches, before the k x k merge), then padded to multiples of patch x k."""

    kind: Literal["native_patch_limit"] = "native_patch_limit"
    in_token_limit: PositiveInt = Field(4096, description="most ViT patches per image (preprocessor_config)")
    special_tokens: int = Field(4, ge=0, description="<|media_start|> image <|media_content|> ... <|media_end|>")


TokenizationPolicy = Annotated[
    FixedResizePolicy
    | GlobalLocalTilesPolicy
    | Llama4TilesPolicy
    | NativePatchLimitPolicy
    | AnyResPolicy
    | DynamicResolutionPolicy
    | TilesPolicy
    | MllamaTilesPolicy
    | HdCropsPolicy
    | SlicesPolicy,
    Field(discriminator="kind"),
]


class VideoPolicy(StrictModel):
    """How a video becomes frames: sampled at `fps`, capped at `max_frames`, each frame tokenized at `frame_*` px.

    With `temporal_patch_size` > 1 (Qwen2-VL) the frame count is rounded down to a multiple of it, as qwen-vl-utils
    does, and consecutive frames share one ViT patch; `min_pixels`/`max_pixels`/`total_pixels` are then the
    per-frame and per-video pixel budgets of qwen-vl-utils. Other models tokenize each frame as an image, with at
    most `max_tiles_per_frame` tiles/crops/slices per frame where set.
    """

    fps: PositiveFloat = 2.0
    max_frames: PositiveInt = 32
    min_frames: PositiveInt = Field(1, description="floor on the sampled frames (qwen-vl-utils FPS_MIN_FRAMES: 4)")
    frame_width: PositiveInt = 448
    frame_height: PositiveInt = 448
    temporal_patch_size: PositiveInt = Field(1, description="frames merged into one ViT patch (Qwen2-VL: 2)")
    min_pixels: PositiveInt | None = Field(None, description="per-frame pixel floor (dynamic resolution only)")
    max_pixels: PositiveInt | None = Field(None, description="per-frame pixel cap (dynamic resolution only)")
    total_pixels: PositiveInt | None = Field(
        None, description="pixel budget of the whole video; lowers the per-frame cap (dynamic resolution only)"
    )
    max_tiles_per_frame: PositiveInt | None = Field(
        None, description="cap on tiles/slices per frame for tiled policies (InternVL video: 1; MiniCPM-V: 2)"
    )
    sampling: Literal["default", "qwen3_vl", "segments"] = Field(
        "default",
        description="default: qwen-vl-utils (temporal_patch_size > 1) or one frame per 1/fps; segments (InternVL "
        "load_video): max_frames frames spread evenly over the clip whatever its length; qwen3_vl: "
        "Qwen3VLVideoProcessor (int(duration*fps) frames in [min_frames, max_frames], min_pixels/total_pixels bound "
        "the whole clip, each temporal group gets its own <|vision_start|>/<|vision_end|> and a '<t seconds>' text)",
    )
