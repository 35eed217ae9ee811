"""Qwen3-VL image tokens and videos as users send them (size, duration, frame rate), per family.

Qwen3-VL image (Qwen2VLImageProcessorFast with patch 16, merge 2; preprocessor_config size shortest_edge 65536,
longest_edge 16777216): factor 32; h' = round(h/32)*32, w' = round(w/32)*32; above max_pixels
beta = sqrt(h*w/max), sides floored to 32; below min_pixels beta = sqrt(min/(h*w)), sides ceiled;
tokens = (h'/32)*(w'/32) + 2 (<|vision_start|>, <|vision_end|>).
"""

from __future__ import annotations

import pytest

from lvlmsim.api import estimate
from lvlmsim.errors import LvlmsimError
from lvlmsim.ops.tokenization import smart_resize_video, timestamp_tokens, tokenize_image, tokenize_video
from lvlmsim.specs import load_model


@pytest.mark.parametrize("w, h, tokens", [
    (448, 448, 14 * 14 + 2),  # 448/32 = 14 per side: 198 (a public Core AI port states 448x448 -> 196 tokens)
    (1920, 1080, 60 * 34 + 2),  # 1080/32 = 33.75 -> 34 -> 1088 px; 1920x1088: 2042
    # 200x100 -> 192x96 = 18432 px < 65536: beta = sqrt(65536/20000) = 1.8102; ceil(181.0/32) = 6 rows
    # (192 px), ceil(362.0/32) = 12 columns (384 px): 74
    (200, 100, 6 * 12 + 2),
    # 8000x6000 -> 8000x6016 = 48.1 M px > 16.78 M: beta = sqrt(48e6/16777216) = 1.69146; floor(6000/1.69146/32)
    # = 110 rows, floor(8000/1.69146/32) = 147 columns: 16172
    (8000, 6000, 110 * 147 + 2),
])
def test_qwen3_vl_image_tokens_match_the_processor(w, h, tokens):
    for mid in ("qwen3-vl-2b", "qwen3-vl-8b", "qwen3-vl-30b-a3b"):
        assert tokenize_image(load_model(mid), w, h).llm_tokens == tokens


def test_qwen3_vl_video_worked_example_10s_1080p():
    # Qwen3VLVideoProcessor: int(10 s * 2 fps) = 20 frames (within 4..768 and the clip's 300 frames).
    # smart_resize over the clip: t = 20, 20 x 1088 x 1920 = 41.8 M > 25165824 -> beta = sqrt(20*1080*1920/25165824)
    # = 1.28373; rows floor(1080/1.28373/32) = 26 (832 px), columns floor(1920/1.28373/32) = 46 (1472 px).
    # 10 temporal groups of 2 frames, each 52 x 92 = 4784 patches -> 1196 tokens + 2 special; timestamps
    # '<0.2 seconds>' ... '<9.2 seconds>': 6 tokens each ('<', digit, '.', digit, ' seconds', '>') -> 60.
    t = tokenize_video(load_model("qwen3-vl-8b"), 10, 1920, 1080, source_fps=30)
    assert t.vit_seq_lens == (4784,) * 10
    assert t.llm_tokens == 10 * (1196 + 2) + 60
    assert smart_resize_video(20, 1080, 1920, 2, 32, 4096, 25165824) == (832, 1472)
    assert timestamp_tokens(0.25) == 6 and timestamp_tokens(12.5) == 7


def test_source_frame_rate_caps_the_sampled_frames():
    m = load_model("qwen3-vl-8b")
    # a 10 s clip at 1 fps has 10 frames: the processor cannot sample 20 of them
    assert len(tokenize_video(m, 10, 640, 480, source_fps=1).vit_seq_lens) == 5
    assert len(tokenize_video(m, 10, 640, 480).vit_seq_lens) == 10


def test_qwen2_vl_video_takes_the_clip_resolution():
    # the example: 10 s of 1080p on Qwen2-VL. qwen-vl-utils: 20 frames; per-frame cap
    # max(min(602112, 19267584/20*2), 100352*1.05) = 602112 px; 1080x1920 -> beta = sqrt(2073600/602112) = 1.8558;
    # floor(1080/1.8558/28) = 20 rows (560 px), floor(1920/1.8558/28) = 36 columns (1008 px); 10 groups x 720 tokens
    # + one <|vision_start|>/<|vision_end|> pair around the whole video
    m = load_model("qwen2-vl-7b")
    assert tokenize_video(m, 10, 1920, 1080).llm_tokens == 10 * 36 * 20 + 2  # 7202
    assert tokenize_video(m, 10).llm_tokens == 10 * 16 * 16 + 2  # the policy's 448x448 default frame: 2562


def test_internvl_video_is_a_fixed_number_of_segments():
    m = load_model("internvl2.5-8b")
    for seconds in (5, 60, 600):
        assert tokenize_video(m, seconds, 1920, 1080).llm_tokens == 8 * (256 + 2)
    # a 2-frame clip gives only its 2 frames
    assert tokenize_video(m, 1, 640, 480, source_fps=2).llm_tokens == 2 * (256 + 2)


def test_estimate_takes_video_size_and_fps():
    est = estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=10, video_size="1920x1080", video_fps=30,
                   output_tokens=2)
    assert est.visual_tokens == 7202
    with pytest.raises(LvlmsimError, match="video_size"):
        estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=10, video_size="1920", output_tokens=2)
    with pytest.raises(LvlmsimError, match="video_fps"):
        estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=10, video_fps=-1.0, output_tokens=2)


def test_estimate_with_a_technique_keeps_the_video_size():
    est = estimate("qwen2-vl-7b", "h100-sxm", images=0, video_s=10, video_size="1920x1080", output_tokens=2,
                   techniques=("fastv:layer=2,keep=0.5",))
    assert est.visual_tokens == 7202
