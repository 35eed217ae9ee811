"""Image and video tokenization: how a picture of W x H pixels becomes ViT sequences and LLM tokens.

Pure functions of (ModelSpec, size), no hardware knowledge. Each policy re-implements the preprocessing code of its
model family, so that the counts match what the serving engine allocates:

* fixed (LLaVA-1.5): one square view, CLS dropped before the projector.
* anyres (LLaVA-NeXT): transformers ``select_best_resolution`` + ``LlavaNextProcessor._get_unpadded_features``.
* dynamic (Qwen2-VL / Qwen2.5-VL): ``smart_resize`` of ``image_processing_qwen2_vl.py`` / qwen-vl-utils.
* tiles (InternVL): ``find_closest_aspect_ratio`` + ``dynamic_preprocess`` of the InternVL chat code.
* mllama_tiles (Llama-3.2-Vision): ``get_optimal_tiled_canvas`` of ``image_processing_mllama.py``.
* hd_crops (Phi-3.5-vision): ``calc_hd_transform_size`` + ``calc_num_image_tokens`` of ``image_processing_phi3_v.py``.
* slices (MiniCPM-V 2.6): ``get_sliced_grid`` / ``find_best_resize`` / ``get_refine_size`` of its image processor.

Worked examples with their derivations are in ``tests/test_tokenization.py`` (sources: the project's research
notes, configs_verified.md). Qwen's smart_resize follows qwen-vl-utils (sides at least one 28 px factor) where older
transformers releases refuse images under 28 px.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

from lvlmsim.errors import SpecError
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.tokenization_policy import (
    AnyResPolicy,
    DynamicResolutionPolicy,
    FixedResizePolicy,
    GlobalLocalTilesPolicy,
    HdCropsPolicy,
    Llama4TilesPolicy,
    MllamaTilesPolicy,
    NativePatchLimitPolicy,
    SlicesPolicy,
    TilesPolicy,
)
from lvlmsim.specs.workload import MAX_VIDEO_S

MAX_ASPECT_RATIO = 200  # Qwen smart_resize refuses images more elongated than this
MLLAMA_PAD_MULTIPLE = 8  # MllamaVisionModel pads each tile's 1601 tokens to a multiple of 8 (1608) inside the ViT


@dataclass(frozen=True)
class ImageTokenization:
    """What one image (or one video) costs in tokens.

    `vit_seq_lens`: tokens entering the vision encoder per independent ViT sequence (one per crop/tile/slice, incl.
    CLS where the encoder has one; a Qwen2-VL image is ONE sequence of all its patches; a Qwen2-VL video has one
    sequence per temporal patch group; a Llama-3.2-Vision image is ONE sequence over all its tiles).
    `llm_tokens`: visual tokens the LLM sees (incl. newline / separator / special tokens); for Llama-3.2-Vision the
    image tokens held in the cross-attention KV instead.
    `projector_in_tokens`: ViT output tokens entering the projector, after dropping CLS where the model drops it and
    before any merge (a 2x2 merger turns them into projector_in_tokens / merge_factor MLP rows).
    """

    width: int
    height: int
    vit_seq_lens: tuple[int, ...]
    llm_tokens: int
    projector_in_tokens: int
    detail: str

    @property
    def vit_tokens(self) -> int:
        return sum(self.vit_seq_lens)

    @property
    def num_vit_sequences(self) -> int:
        return len(self.vit_seq_lens)


# ----------------------------------------------------------------------------------------------------------------
# validation


def _check_size(width: object, height: object) -> tuple[int, int]:
    def ok(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0

    if not (ok(width) and ok(height)):
        raise SpecError(f"image_size: width and height must be positive integers, got {width}x{height}")
    return int(width), int(height)  # type: ignore[arg-type]


def _patches_per_side(size: int, patch: int, what: str) -> int:
    if size % patch:
        raise SpecError(f"{what}: {size} px is not a multiple of the ViT patch size {patch}")
    return size // patch


def _merge_side(model: ModelSpec) -> int:
    m = model.projector.merge_factor
    side = math.isqrt(m)
    if side * side != m:
        raise SpecError(f"projector.merge_factor: {m} is not a square (a k x k spatial merge), needed by this policy")
    return side


# ----------------------------------------------------------------------------------------------------------------
# the reference algorithms, on plain numbers (cached: sizes repeat a lot in traces)


@functools.lru_cache(maxsize=16384)
def select_best_resolution(height: int, width: int, pinpoints: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """LLaVA-NeXT: the [height, width] pinpoint that keeps the most image pixels, then wastes the fewest."""
    best: tuple[int, int] = pinpoints[0]
    max_eff, min_waste = 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / width, ph / height)
        dw, dh = int(width * scale), int(height * scale)
        eff = min(dw * dh, width * height)
        waste = ph * pw - eff
        if eff > max_eff or (eff == max_eff and waste < min_waste):
            max_eff, min_waste, best = eff, waste, (ph, pw)
    return best


@functools.lru_cache(maxsize=16384)
def smart_resize(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Qwen2-VL: (height, width) rounded to multiples of `factor` with the pixel count in [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise SpecError(
            f"image_size: aspect ratio of {width}x{height} exceeds {MAX_ASPECT_RATIO}:1, which Qwen smart_resize "
            "refuses"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@functools.lru_cache(maxsize=16384)
def internvl_grid(width: int, height: int, min_num: int, max_num: int, tile: int) -> tuple[int, int]:
    """InternVL dynamic_preprocess: the (columns, rows) tile grid whose aspect ratio is closest to the image's.

    On a tie the later (larger) grid wins while the image area exceeds half the grid's area. The candidate order is
    the reference's: a set sorted by tile count (stable sort keeps CPython's set order among equal counts).
    """
    aspect = width / height
    area = width * height
    targets = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    best_diff, best = float("inf"), (1, 1)
    for r in sorted(targets, key=lambda x: x[0] * x[1]):
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best_diff, best = diff, r
        elif diff == best_diff and area > 0.5 * tile * tile * r[0] * r[1]:
            best = r
    return best


@functools.lru_cache(maxsize=16384)
def mllama_canvas(height: int, width: int, max_tiles: int, tile: int) -> tuple[int, int]:
    """Llama-3.2-Vision get_optimal_tiled_canvas: the (canvas_height, canvas_width) in px.

    The smallest upscale that fits, else the mildest downscale; among canvases with that scale, the smallest area.
    """
    arrangements = [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]
    canvases = [(a * tile, b * tile) for a, b in arrangements]  # the reference reads each pair as (height, width)
    scales = [min(ch / height, cw / width) for ch, cw in canvases]
    ups = [s for s in scales if s >= 1]
    chosen_scale = min(ups) if ups else max(s for s in scales if s < 1)
    chosen = [c for c, s in zip(canvases, scales, strict=True) if s == chosen_scale]
    return min(chosen, key=lambda c: c[0] * c[1])  # min() keeps the first of equal areas, like np.argmin


@functools.lru_cache(maxsize=16384)
def phi3v_hd_size(width: int, height: int, hd_num: int, crop: int) -> tuple[int, int]:
    """Phi-3(.5)-vision calc_hd_transform_size: the padded (width, height) in px, both multiples of `crop`."""
    transposed = width < height
    if transposed:
        width, height = height, width
    ratio = width / height
    scale = 1
    while scale * math.ceil(scale / ratio) <= hd_num:
        scale += 1
    scale -= 1
    new_w = int(scale * crop)
    new_h = max(1, int(new_w / ratio))  # the reference would fail on a 0 px height; one crop row is the sane floor
    padded_h = int(math.ceil(new_h / crop) * crop)
    return (padded_h, new_w) if transposed else (new_w, padded_h)


def _ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)


def _find_best_resize(width: float, height: float, scale: int, patch: int, allow_upscale: bool) -> tuple[int, int]:
    if width * height > scale * scale or allow_upscale:
        r = width / height
        height = int(scale / math.sqrt(r))
        width = int(height * r)
    return _ensure_divide(width, patch), _ensure_divide(height, patch)


@functools.lru_cache(maxsize=16384)
def minicpm_grid(width: int, height: int, max_slice_nums: int, scale: int) -> tuple[int, int] | None:
    """MiniCPM-V get_sliced_grid: (columns, rows) of slices, or None when the image is not sliced."""
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale * scale)), max_slice_nums)
    if multiple <= 1:
        return None
    candidates = []
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > max_slice_nums:
            continue
        candidates.extend((m, n // m) for m in range(1, n + 1) if n % m == 0)
    best, min_err = (1, 1), float("inf")
    for grid in candidates:
        err = abs(log_ratio - math.log(grid[0] / grid[1]))
        if err < min_err:
            best, min_err = grid, err
    return best


@functools.lru_cache(maxsize=16384)
def minicpm_views(
    width: int, height: int, max_slice_nums: int, scale: int, patch: int
) -> tuple[tuple[int, int], tuple[int, int] | None, tuple[int, int] | None]:
    """MiniCPM-V slice_image: ((source_w, source_h), grid or None, (slice_w, slice_h) or None), sizes in px."""
    grid = minicpm_grid(width, height, max_slice_nums, scale)
    if grid is None:
        return _find_best_resize(width, height, scale, patch, allow_upscale=True), None, None
    source = _find_best_resize(width, height, scale, patch, allow_upscale=False)
    gx, gy = grid
    refine_w, refine_h = _ensure_divide(width, gx), _ensure_divide(height, gy)
    slice_wh = _find_best_resize(refine_w / gx, refine_h / gy, scale, patch, allow_upscale=True)
    return source, grid, slice_wh


# ----------------------------------------------------------------------------------------------------------------
# one function per policy kind


def pan_and_scan_crops(w: int, h: int, max_crops: int, min_crop: int, min_ratio: float) -> int:
    """Gemma3ImageProcessor.pan_and_scan: how many crops an elongated image adds (0: not applied). Crops follow the
    long side, about one per aspect-ratio unit (half rounded up), at least 2, at most `max_crops` and none smaller
    than `min_crop` px."""
    if max_crops == 0:
        return 0
    long, short = (w, h) if w >= h else (h, w)
    if long / short < min_ratio:
        return 0
    n = min(math.floor(long / short + 0.5), math.floor(long / min_crop))
    n = min(max_crops, max(2, n))
    if min(math.ceil(long / n), short) < min_crop:
        return 0
    return n


def _fixed(model: ModelSpec, pol: FixedResizePolicy, w: int, h: int) -> ImageTokenization:
    v = model.vision
    side = _patches_per_side(pol.image_size, v.patch_size, "tokenization.image_size")
    n = side * side
    views = 1 + pan_and_scan_crops(w, h, pol.pan_and_scan_max_crops, pol.pan_and_scan_min_crop_size,
                                   pol.pan_and_scan_min_ratio)
    llm = views * (n // model.projector.merge_factor + pol.special_tokens)
    return ImageTokenization(
        w, h, (n + int(v.cls_token),) * views, llm, n * views,
        f"fixed {pol.image_size}x{pol.image_size} view ({side}x{side} patches)"
        + (f" + {views - 1} pan-and-scan crops" if views > 1 else "")
        + (f" + {pol.special_tokens} special each" if pol.special_tokens else ""),
    )


def _anyres(model: ModelSpec, pol: AnyResPolicy, w: int, h: int, max_views: int | None) -> ImageTokenization:
    v = model.vision
    side = _patches_per_side(pol.crop_size, v.patch_size, "tokenization.crop_size")
    per_crop = side * side
    vit_len = per_crop + int(v.cls_token)
    if max_views == 1:  # video frames limited to the base view
        return ImageTokenization(w, h, (vit_len,), per_crop, per_crop, "anyres base view only (1 crop)")
    bh, bw = select_best_resolution(h, w, tuple((int(a), int(b)) for a, b in pol.grid_pinpoints))
    rows, cols = bh // pol.crop_size, bw // pol.crop_size
    ch, cw = side * rows, side * cols
    if w / h > cw / ch:
        new_h = int(round(h * (cw / w), 7))
        ch -= 2 * ((ch - new_h) // 2)
    else:
        new_w = int(round(w * (ch / h), 7))
        cw -= 2 * ((cw - new_w) // 2)
    crops = 1 + rows * cols
    newlines = ch if pol.newline_token else 0
    llm = ch * cw + newlines + per_crop
    return ImageTokenization(
        w, h, (vit_len,) * crops, llm, per_crop * crops,
        f"anyres grid {rows}x{cols} ({bw}x{bh} px) + base ({crops} crops); unpadded {ch}x{cw} + {newlines} newlines "
        f"+ {per_crop} base",
    )


def _global_local(model: ModelSpec, pol: GlobalLocalTilesPolicy, w: int, h: int,
                  max_views: int | None) -> ImageTokenization:
    """DeepSeek-VL2 (DeepseekVLV2Processor.tokenize_with_images): q = ceil((tile // patch) / k) tokens a side per
    view; global q x (q + 1), separator 1, local (rows x q) x (cols x q + 1). The ViT sees each view's
    (tile // patch)^2 patches; the projector pads them to (q k)^2 before the k x k unshuffle."""
    v = model.vision
    side = pol.tile_size // v.patch_size
    k = _merge_side(model)
    q = math.ceil(side / k)
    if max_views == 1:  # cropping off (the processor's rule for more than 2 images): one local tile
        rows = cols = 1
    else:
        bh, bw = select_best_resolution(h, w, tuple((int(ch), int(cw)) for cw, ch in pol.candidate_resolutions))
        rows, cols = bh // pol.tile_size, bw // pol.tile_size
    views = 1 + rows * cols
    llm = q * (q + 1) + 1 + rows * q * (cols * q + 1)
    return ImageTokenization(
        w, h, (side * side,) * views, llm, (q * k) ** 2 * views,
        f"global {pol.tile_size} px view + {rows}x{cols} local tiles; {q}x{q} tokens per view, a newline per row"
        " + 1 separator",
    )


def _llama4(model: ModelSpec, pol: Llama4TilesPolicy, w: int, h: int, max_views: int | None) -> ImageTokenization:
    """Llama4Processor._prompt_split_image: per tile (tile / patch)^2 / merge tokens; more than one tile adds every
    tile's tokens and one separator per tile (x between columns, y ending each row) before the global view's; always
    <|image_start|>, <|image|>, the global tokens and <|image_end|>."""
    v = model.vision
    side = _patches_per_side(pol.tile_size, v.patch_size, "tokenization.tile_size")
    per_view = side * side // model.projector.merge_factor
    if max_views == 1:
        rows = cols = 1
    else:
        canvas_h, canvas_w = mllama_canvas(h, w, pol.max_patches, pol.tile_size)
        rows, cols = canvas_h // pol.tile_size, canvas_w // pol.tile_size
    tiles = rows * cols
    views = tiles + 1 if tiles > 1 else 1
    llm = per_view + 3 + (tiles * (per_view + 1) if tiles > 1 else 0)
    return ImageTokenization(
        w, h, (side * side + int(v.cls_token),) * views, llm, side * side * views,
        f"llama4 canvas {cols}x{rows} tiles of {pol.tile_size} px" + (" + global view" if tiles > 1 else "")
        + f"; {per_view} tokens per view, {tiles if tiles > 1 else 0} separators + 3 image tags",
    )


def _native_patch_limit(model: ModelSpec, pol: NativePatchLimitPolicy, w: int, h: int) -> ImageTokenization:
    """KimiVLImageProcessor.rescale: if (w // p)(h // p) > limit, scale by sqrt(limit / that) (int() truncation),
    then pad each side up to a multiple of p x k; one ViT sequence of the padded patches, k x k of them per token."""
    p = model.vision.patch_size
    k = _merge_side(model)
    patches = (w // p) * (h // p)
    if patches > pol.in_token_limit:
        scale = math.sqrt(pol.in_token_limit / patches)
        w2, h2 = int(w * scale), int(h * scale)
    else:
        w2, h2 = w, h
    gw, gh = math.ceil(w2 / (p * k)) * k, math.ceil(h2 / (p * k)) * k
    n = gw * gh
    return ImageTokenization(
        w, h, (n,), n // (k * k) + pol.special_tokens, n,
        f"native {w}x{h}" + (f" -> {w2}x{h2} (patch limit {pol.in_token_limit})" if (w2, h2) != (w, h) else "")
        + f", padded to {gw * p}x{gh * p} ({gw}x{gh} patches, {gw // k}x{gh // k} tokens + {pol.special_tokens} "
        "special)",
    )


def _dynamic(model: ModelSpec, pol: DynamicResolutionPolicy, w: int, h: int) -> ImageTokenization:
    v = model.vision
    ms = _merge_side(model)
    factor = v.patch_size * ms
    rh, rw = smart_resize(h, w, factor, pol.min_pixels, pol.max_pixels)
    gh, gw = rh // v.patch_size, rw // v.patch_size
    n = gh * gw
    merged = n // (ms * ms)
    return ImageTokenization(
        w, h, (n,), merged + pol.special_tokens, n,
        f"dynamic resize {w}x{h} -> {rw}x{rh} ({gw}x{gh} patches, {gw // ms}x{gh // ms} merged tokens"
        f" + {pol.special_tokens} special)",
    )


def _tiles(model: ModelSpec, pol: TilesPolicy, w: int, h: int, max_views: int | None) -> ImageTokenization:
    v = model.vision
    side = _patches_per_side(pol.tile_size, v.patch_size, "tokenization.tile_size")
    per_tile = side * side
    per_tile_llm = per_tile // model.projector.merge_factor
    max_num = min(pol.max_num, max_views) if max_views else pol.max_num
    min_num = min(pol.min_num, max_num)
    cols, rows = internvl_grid(w, h, min_num, max_num, pol.tile_size)
    blocks = cols * rows
    thumb = 1 if pol.use_thumbnail and blocks != 1 else 0
    n = blocks + thumb
    return ImageTokenization(
        w, h, (per_tile + int(v.cls_token),) * n, per_tile_llm * n + pol.special_tokens, per_tile * n,
        f"tiles {cols}x{rows} of {pol.tile_size} px" + (" + thumbnail" if thumb else "")
        + f" ({n} tiles x {per_tile_llm} + {pol.special_tokens} special)",
    )


def _mllama(model: ModelSpec, pol: MllamaTilesPolicy, w: int, h: int) -> ImageTokenization:
    v = model.vision
    side = _patches_per_side(pol.tile_size, v.patch_size, "tokenization.tile_size")
    per_tile = side * side + int(v.cls_token)  # 1601
    padded = -(-per_tile // MLLAMA_PAD_MULTIPLE) * MLLAMA_PAD_MULTIPLE  # 1608
    canvas_h, canvas_w = mllama_canvas(h, w, pol.max_num_tiles, pol.tile_size)
    rows, cols = canvas_h // pol.tile_size, canvas_w // pol.tile_size
    need = rows * cols
    tiles = pol.max_num_tiles if pol.pad_to_max_tiles else need
    pad_note = f", padded to {tiles} tiles" if tiles != need else ""
    return ImageTokenization(
        w, h, (tiles * padded,), tiles * per_tile, tiles * per_tile,
        f"mllama canvas {canvas_w}x{canvas_h} px = {cols}x{rows} tiles{pad_note}; {per_tile} tokens/tile in "
        "cross-attention KV (1 <|image|> token in the text)",
    )


def _hd_crops(model: ModelSpec, pol: HdCropsPolicy, w: int, h: int, max_views: int | None) -> ImageTokenization:
    v = model.vision
    side = _patches_per_side(pol.crop_size, v.patch_size, "tokenization.crop_size")
    per_crop = side * side
    ms = _merge_side(model)
    s = side // ms  # 12 tokens per row of one crop after the 2x2 merge
    hd_num = min(pol.num_crops, max_views) if max_views else pol.num_crops
    pw, ph = phi3v_hd_size(w, h, hd_num, pol.crop_size)
    rows, cols = ph // pol.crop_size, pw // pol.crop_size
    crops = rows * cols + 1
    llm = crops * s * s + 1 + (rows + 1) * s
    return ImageTokenization(
        w, h, (per_crop + int(v.cls_token),) * crops, llm, per_crop * crops,
        f"hd grid {rows}x{cols} of {pol.crop_size} px + global view ({crops} crops x {s * s} + 1 separator + "
        f"{(rows + 1) * s} newlines)",
    )


def _slices(model: ModelSpec, pol: SlicesPolicy, w: int, h: int, max_views: int | None,
            video: bool) -> ImageTokenization:
    v = model.vision
    max_slices = min(pol.max_slice_nums, max_views) if max_views else pol.max_slice_nums
    (sw, sh), grid, slice_wh = minicpm_views(w, h, max_slices, pol.slice_size, v.patch_size)
    seqs = [(sw // v.patch_size) * (sh // v.patch_size)]
    n_slices, newlines = 0, 0
    if grid is not None and slice_wh is not None:
        n_slices = grid[0] * grid[1]
        seqs += [(slice_wh[0] // v.patch_size) * (slice_wh[1] // v.patch_size)] * n_slices
        newlines = grid[1] - 1 if pol.newline_between_rows else 0
    image_id = 0 if video else pol.image_id_tokens  # the MiniCPM-V 2.6 video recipe sets use_image_id=False
    views = 1 + n_slices
    llm = image_id + views * (pol.tokens_per_slice + pol.special_tokens_per_slice) + newlines
    seqs_t = tuple(s + int(v.cls_token) for s in seqs)
    grid_s = f"{grid[0]}x{grid[1]} slices of {slice_wh[0]}x{slice_wh[1]} px" if grid and slice_wh else "no slicing"
    return ImageTokenization(
        w, h, seqs_t, llm, sum(seqs),
        f"source {sw}x{sh} px + {grid_s} ({views} views x {pol.tokens_per_slice} queries + wrappers)",
    )


# The tokenizer of each policy (the policies are specs, one layer down, so the table lives here, not on them):
# those that depend on the image size only, those that also honour a cap on views (video frames, multi-image).
_BY_SIZE = {
    FixedResizePolicy: _fixed, NativePatchLimitPolicy: _native_patch_limit, DynamicResolutionPolicy: _dynamic,
    MllamaTilesPolicy: _mllama,
}
_BY_VIEWS = {
    AnyResPolicy: _anyres, GlobalLocalTilesPolicy: _global_local, Llama4TilesPolicy: _llama4, TilesPolicy: _tiles,
    HdCropsPolicy: _hd_crops,
}


def _tokenize_image(model: ModelSpec, w: int, h: int, max_views: int | None = None,
                    video: bool = False) -> ImageTokenization:
    pol = model.tokenization
    kind = type(pol)
    if kind in _BY_SIZE:
        return _BY_SIZE[kind](model, pol, w, h)
    if kind in _BY_VIEWS:
        return _BY_VIEWS[kind](model, pol, w, h, max_views)
    if kind is SlicesPolicy:
        return _slices(model, pol, w, h, max_views, video)
    raise SpecError(f"tokenization.kind: no tokenizer for policy {kind.__name__}")  # pragma: no cover


@functools.lru_cache(maxsize=16384)
def _tokenize_image_cached(model: ModelSpec, w: int, h: int, max_views: int | None,
                           video: bool) -> ImageTokenization:
    return _tokenize_image(model, w, h, max_views, video)


def _image(model: ModelSpec, w: int, h: int, max_views: int | None = None, video: bool = False) -> ImageTokenization:
    return _tokenize_image_cached(model, w, h, max_views, video)  # specs hash by value (StrictModel.__hash__)


# ----------------------------------------------------------------------------------------------------------------
# public API


def tokenize_image(model: ModelSpec, width: int, height: int) -> ImageTokenization:
    """Tokens one `width` x `height` image costs this model: ViT sequences, projector input, LLM tokens."""
    if model.vision is None:
        raise SpecError(f"images: model '{model.id}' is text-only (no vision encoder); allowed: 0 images")
    w, h = _check_size(width, height)
    return _image(model, w, h)


def _floor_by(x: float, k: int) -> int:
    return math.floor(x / k) * k


def _ceil_by(x: float, k: int) -> int:
    return math.ceil(x / k) * k


def video_frame_count(
    duration_s: float, fps: float, max_frames: int, min_frames: int = 1, temporal_patch_size: int = 1
) -> int:
    """Frames sampled from a `duration_s` clip at `fps`, clamped to [min_frames, max_frames].

    temporal_patch_size 1: one frame at t = 0, 1/fps, 2/fps, ... < duration (ceil(duration * fps)).
    temporal_patch_size k > 1 (qwen-vl-utils smart_nframes): duration*fps clamped to [ceil_k(min), floor_k(max)],
    then rounded down to a multiple of k, and at least k.
    """
    k = temporal_patch_size
    raw = duration_s * fps
    if k <= 1:
        return max(1, min(max_frames, max(min_frames, math.ceil(min(raw, max_frames) - 1e-9))))  # raw may be inf
    lo, hi = _ceil_by(min_frames, k), max(k, _floor_by(max_frames, k))
    return max(k, _floor_by(min(max(raw, lo), hi), k))


@functools.lru_cache(maxsize=4096)
def _video_dynamic(model: ModelSpec, w: int, h: int, n: int, desc: str) -> ImageTokenization:
    pol, vp, v = model.tokenization, model.video, model.vision
    assert isinstance(pol, DynamicResolutionPolicy) and vp is not None
    k = vp.temporal_patch_size
    ms = _merge_side(model)
    factor = v.patch_size * ms
    min_px: float = vp.min_pixels or pol.min_pixels
    max_px: float = vp.max_pixels or pol.max_pixels
    if vp.total_pixels:
        max_px = max(min(max_px, vp.total_pixels / n * k), min_px * 1.05)
    rh, rw = smart_resize(h, w, factor, min_px, max_px)
    gh, gw = rh // v.patch_size, rw // v.patch_size
    groups = -(-n // k)  # the processor repeats the last frame to fill a temporal patch
    per_group = gh * gw
    llm = groups * per_group // (ms * ms) + pol.special_tokens
    return ImageTokenization(
        w, h, (per_group,) * groups, llm, groups * per_group,
        f"{desc} -> {n} frames resized to {rw}x{rh}, {groups} temporal groups of {k} frames x "
        f"{gw // ms}x{gh // ms} merged tokens + {pol.special_tokens} special",
    )


def smart_resize_video(
    num_frames: int, height: int, width: int, temporal: int, factor: int, min_pixels: float, max_pixels: float
) -> tuple[int, int]:
    """Qwen3-VL video smart_resize: the pixel bounds apply to the whole clip (frames padded to `temporal`).

    t = ceil(n / temporal) * temporal; if t*h'*w' > max: beta = sqrt(n*h*w / max), sides floored to the factor;
    if below min: beta = sqrt(min / (n*h*w)), sides ceiled.
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise SpecError(f"video_size: aspect ratio of {width}x{height} exceeds {MAX_ASPECT_RATIO}:1")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    t_bar = -(-num_frames // temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width * num_frames))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def timestamp_tokens(seconds: float) -> int:
    """Tokens of Qwen3-VL's '<12.5 seconds>' text: '<', one per digit (Qwen2 tokenizer), '.', the tenth,
    ' seconds', '>'."""
    return 5 + len(str(int(round(seconds, 1))))


@functools.lru_cache(maxsize=4096)
def _video_qwen3(model: ModelSpec, w: int, h: int, n: int, duration_s: float, desc: str) -> ImageTokenization:
    pol, vp, v = model.tokenization, model.video, model.vision
    assert isinstance(pol, DynamicResolutionPolicy) and vp is not None
    k = vp.temporal_patch_size
    ms = _merge_side(model)
    rh, rw = smart_resize_video(n, h, w, k, v.patch_size * ms, vp.min_pixels or pol.min_pixels,
                                vp.total_pixels or pol.max_pixels)
    per_group = (rh // v.patch_size) * (rw // v.patch_size)
    groups = -(-n // k)
    # each group's timestamp is the mean time of its frames, frames spread evenly over the clip
    times = [i * duration_s / n for i in range(n)] + [(n - 1) * duration_s / n] * (groups * k - n)
    stamps = sum(timestamp_tokens(sum(times[g * k:(g + 1) * k]) / k) for g in range(groups))
    llm = groups * (per_group // (ms * ms) + pol.special_tokens) + stamps
    return ImageTokenization(
        w, h, (per_group,) * groups, llm, groups * per_group,
        f"{desc} -> {n} frames resized to {rw}x{rh}, {groups} temporal groups x ({per_group // (ms * ms)} merged "
        f"tokens + {pol.special_tokens} special) + {stamps} timestamp tokens",
    )


def tokenize_video(
    model: ModelSpec,
    duration_s: float,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    source_fps: float | None = None,
) -> ImageTokenization:
    """Tokens a `duration_s` clip costs: frames sampled at `fps` (default: the model's video policy), capped at
    `max_frames` and at the clip's own frames (`source_fps` x duration, when given), each `width` x `height` px
    (default: the policy's frame size).

    Qwen2-VL/2.5-VL merge `temporal_patch_size` consecutive frames into one ViT patch: one ViT sequence per frame
    group. Qwen3-VL (sampling qwen3_vl) budgets pixels over the whole clip and adds timestamp tokens. Other models
    tokenize every frame as an image (at most `max_tiles_per_frame` tiles/slices each).
    """
    vp = model.video
    if vp is None:
        raise SpecError(f"video: model '{model.id}' has no video policy (it does not take video input)")
    if (isinstance(duration_s, bool) or not isinstance(duration_s, numbers.Real) or not math.isfinite(duration_s)
            or not 0 < duration_s <= MAX_VIDEO_S):
        raise SpecError(f"duration_s: must be a number of seconds in (0, {MAX_VIDEO_S:g}], got {duration_s!r}")
    w, h = _check_size(vp.frame_width if width is None else width, vp.frame_height if height is None else height)
    fps_v = vp.fps if fps is None else fps
    if isinstance(fps_v, bool) or not isinstance(fps_v, numbers.Real) or not math.isfinite(fps_v) or fps_v <= 0:
        raise SpecError(f"fps: must be a positive number, got {fps!r}")
    cap = vp.max_frames if max_frames is None else max_frames
    if isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or cap < 1:
        raise SpecError(f"max_frames: must be a positive integer, got {max_frames!r}")
    if source_fps is not None:
        if (isinstance(source_fps, bool) or not isinstance(source_fps, numbers.Real)
                or not math.isfinite(source_fps) or source_fps <= 0):
            raise SpecError(f"video_fps: must be a positive number of frames per second, got {source_fps!r}")
        # min() before floor(): duration x fps overflows to inf for a huge clip or frame rate
        cap = max(1, math.floor(min(float(cap), float(duration_s) * float(source_fps)) + 1e-9))
    k = vp.temporal_patch_size
    desc = f"video {duration_s:g} s at {fps_v:g} fps"
    if vp.sampling == "qwen3_vl":
        if not isinstance(model.tokenization, DynamicResolutionPolicy):
            raise SpecError(f"video.sampling: qwen3_vl needs a dynamic-resolution policy, got "
                            f"'{model.tokenization.kind}'")
        n = min(max(int(min(float(duration_s) * float(fps_v), vp.max_frames) + 1e-9), vp.min_frames), vp.max_frames,
                int(cap))
        return _video_qwen3(model, w, h, n, float(duration_s), desc)
    if vp.sampling == "segments":  # InternVL load_video(num_segments): a fixed count, one frame per segment
        n = int(cap)
        desc = f"video {duration_s:g} s in {n} segments"
    else:
        n = video_frame_count(float(duration_s), float(fps_v), int(cap), vp.min_frames, k)
    if k > 1:
        if not isinstance(model.tokenization, DynamicResolutionPolicy):
            raise SpecError(
                f"video.temporal_patch_size: {k} needs a dynamic-resolution tokenization policy, got "
                f"'{model.tokenization.kind}'"
            )
        return _video_dynamic(model, w, h, n, desc)
    frame = _image(model, w, h, vp.max_tiles_per_frame, video=True)
    return ImageTokenization(
        w, h, frame.vit_seq_lens * n, frame.llm_tokens * n, frame.projector_in_tokens * n,
        f"{desc} -> {n} frames, each {frame.detail}",
    )
