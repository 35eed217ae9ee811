"""One request laid over a scenario (CLI --model/--hardware/... flags, the explorer's "use the sidebar's request"):
the fields given replace the scenario's, the rest stay; bad values are one-line errors naming the field."""

from __future__ import annotations

import pytest

from lvlmsim.errors import SpecError
from lvlmsim.specs.request_overrides import describe, describe_workload, parse_image_sizes, with_request
from lvlmsim.specs.scenario import load_scenario


def test_given_fields_replace_the_scenario_and_the_rest_stay():
    base = load_scenario("llava-chat-h100")
    sc = with_request(base, model="qwen2-vl-7b", hardware="l40s", tp=2, image_size="1024x768:3,640x480",
                      images=2, prompt_tokens=100, output_tokens=50)
    assert (sc.model, sc.hardware, sc.serving.tp) == ("qwen2-vl-7b", "l40s", 2)
    assert [(c.width, c.height, c.weight) for c in sc.workload.image_size] == [(1024, 768, 3.0), (640, 480, 1.0)]
    assert (sc.workload.images.value, sc.workload.prompt_tokens.value, sc.workload.output_tokens.value) == (2, 100, 50)
    assert sc.workload.arrival == base.workload.arrival and sc.serving.max_num_seqs == base.serving.max_num_seqs
    assert sc.id == "llava-chat-h100+request"
    assert with_request(base).model_dump() == base.model_dump()  # nothing given: the same scenario


def test_video_seconds_add_and_remove_a_video():
    base = load_scenario("llava-chat-h100")
    sc = with_request(base, model="qwen2-vl-7b", video_s=4)
    assert sc.workload.video.duration_s.value == 4.0 and sc.workload.video.fraction == 1.0
    assert with_request(sc, video_s=0).workload.video is None


@pytest.mark.parametrize("kwargs, field", [
    ({"tp": 0}, "tp"), ({"images": -1}, "images"), ({"output_tokens": 0}, "output_tokens"),
    ({"prompt_tokens": 1.5}, "prompt_tokens"), ({"video_s": -2}, "video_s"), ({"image_size": "big"}, "image_size"),
    ({"image_size": "0x10"}, "image_size"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(SpecError, match=field):
        with_request(load_scenario("llava-chat-h100"), **kwargs)


def test_image_sizes_accept_tuples_and_weights():
    assert parse_image_sizes([(336, 336)]) == [{"width": 336, "height": 336, "weight": 1.0}]
    assert parse_image_sizes("1280x720:0.5") == [{"width": 1280, "height": 720, "weight": 0.5}]


def test_describe_names_scenario_model_hardware_and_workload():
    sc = with_request(load_scenario("llava-chat-h100"), images=2, image_size="800x600", prompt_tokens=90,
                      output_tokens=40)
    d = describe(sc, rate=20)
    assert d["scenario"] == sc.id and d["model"] == "llava-1.5-7b" and d["hardware"] == "h100-sxm"
    assert d["workload"] == ("2 image(s) of 800x600; prompt 90 tokens, output 40 tokens; poisson arrivals at "
                             "20 req/s")
    assert "at 12 req/s" in describe_workload(load_scenario("llava-chat-h100"))  # the scenario's own rate
