"""The HF config.json importer: every fixture family imports, validates and matches the zoo's shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lvlmsim.errors import SpecError
from lvlmsim.importers import SUPPORTED_MODEL_TYPES, import_hf_config, import_hf_to_yaml
from lvlmsim.ops.tokenization import tokenize_image
from lvlmsim.specs.model import ModelSpec
from lvlmsim.specs.registry import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
# fixture folder -> the zoo model it must match
MATCHES = {
    "llava-1.5-7b-hf": "llava-1.5-7b",
    "llava-v1.6-vicuna-7b-hf": "llava-next-7b",
    "qwen2-vl-7b-instruct": "qwen2-vl-7b",
    "qwen2.5-vl-7b-instruct": "qwen2.5-vl-7b",
    "internvl2_5-8b": "internvl2.5-8b",
    "gemma-3-27b-it": "gemma-3-27b",
    "deepseek-vl2": "deepseek-vl2",
    "kimi-vl-a3b-instruct": "kimi-vl-a3b",
    "llama-4-scout-17b-16e": "llama-4-scout",
    "llama-4-maverick-17b-128e": "llama-4-maverick",
    "glm-4.5v": "glm-4.5v",
    "internvl3_5-8b": "internvl3.5-8b",
    # written from the verified values recorded in each zoo YAML's `source` (Qwen3-VL: config.json,
    # preprocessor_config.json and video_preprocessor_config.json)
    "qwen3-vl-2b-instruct": "qwen3-vl-2b",
    "qwen3-vl-8b-instruct": "qwen3-vl-8b",
    "qwen3-vl-32b-instruct": "qwen3-vl-32b",
    "qwen3-vl-30b-a3b-instruct": "qwen3-vl-30b-a3b",
    "qwen3-vl-235b-a22b-instruct": "qwen3-vl-235b-a22b",
    "qwen2.5-vl-72b-instruct": "qwen2.5-vl-72b",
    "llama-3.2-11b-vision-instruct": "llama-3.2-11b-vision",
}
LLM_SHAPE = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "mlp_kind",
             "max_position_embeddings", "tie_word_embeddings", "moe", "cross_attention_layers", "norms_per_layer",
             "qk_norm")
VISION_SHAPE = ("num_layers", "hidden_size", "num_heads", "intermediate_size", "mlp_kind", "patch_size",
                "temporal_patch_size", "image_size", "cls_token", "layers_used", "window")


def test_fixtures_present():
    assert sorted(p.parent.name for p in FIXTURES.glob("*/config.json")) == sorted(MATCHES)


@pytest.mark.parametrize("folder", sorted(MATCHES))
def test_fixture_imports_and_validates(folder):
    spec = import_hf_config(FIXTURES / folder / "config.json")
    m = ModelSpec.model_validate(spec)
    assert m.source and m.notes.startswith("Imported from")
    # a folder works as well as the file
    assert import_hf_config(FIXTURES / folder) == spec


@pytest.mark.parametrize("folder,zoo_id", sorted(MATCHES.items()))
def test_import_matches_zoo_shapes(folder, zoo_id):
    imported = ModelSpec.model_validate(import_hf_config(FIXTURES / folder))
    zoo = load_model(zoo_id)
    for f in LLM_SHAPE:
        assert getattr(imported.llm, f) == getattr(zoo.llm, f), f"llm.{f}"
    for f in VISION_SHAPE:
        assert getattr(imported.vision, f) == getattr(zoo.vision, f), f"vision.{f}"
    assert imported.projector == zoo.projector
    assert imported.tokenization == zoo.tokenization
    assert imported.dtype == zoo.dtype
    for size in [(336, 336), (640, 480), (1920, 1080)]:
        assert tokenize_image(imported, *size).llm_tokens == tokenize_image(zoo, *size).llm_tokens


@pytest.mark.parametrize("folder,zoo_id", [("gemma-3-27b-it", "gemma-3-27b"), ("deepseek-vl2", "deepseek-vl2"),
                                           ("kimi-vl-a3b-instruct", "kimi-vl-a3b"),
                                           ("llama-4-scout-17b-16e", "llama-4-scout"),
                                           ("llama-4-maverick-17b-128e", "llama-4-maverick"),
                                           ("glm-4.5v", "glm-4.5v"), ("internvl3_5-8b", "internvl3.5-8b")])
def test_issue16_imports_reproduce_the_zoo_entries_layer_patterns_mla_and_moe(folder, zoo_id):
    """Everything but names and prose: the sliding-window pattern, the MLA dims and the MoE layout too."""
    imported = ModelSpec.model_validate(import_hf_config(FIXTURES / folder))
    zoo = load_model(zoo_id)
    assert imported.llm.model_dump(exclude={"name"}) == zoo.llm.model_dump(exclude={"name"})
    assert imported.vision.model_dump(exclude={"name"}) == zoo.vision.model_dump(exclude={"name"})
    assert imported.family == zoo.family


def test_llava15_import_details():
    spec = import_hf_config(FIXTURES / "llava-1.5-7b-hf" / "config.json")
    # the llava-hf text_config is partial: LlamaConfig defaults fill it, and the notes say so
    assert "text_config.hidden_size=4096" in spec["notes"]
    assert "text_config.intermediate_size=11008" in spec["notes"]
    assert spec["llm"]["vocab_size"] == 32064  # llava-hf pads vicuna's 32000 (zoo keeps the original 32000)
    assert spec["vision"]["layers_used"] == 23  # vision_feature_layer -2 of 24
    assert spec["projector"]["layer_dims"] == [1024, 4096, 4096]
    assert spec["tokenization"] == {"kind": "fixed", "image_size": 336}


def test_qwen_import_reads_preprocessor_and_vision_widths():
    q2 = import_hf_config(FIXTURES / "qwen2-vl-7b-instruct")
    # Qwen2-VL's vision_config.hidden_size (3584) is the LLM width; the ViT width is embed_dim (1280)
    assert q2["vision"]["hidden_size"] == 1280 and q2["vision"]["intermediate_size"] == 5120
    assert "min_pixels" not in q2["notes"]  # read from the preprocessor_config.json beside it
    q25 = import_hf_config(FIXTURES / "qwen2.5-vl-7b-instruct")
    assert "tokenization.max_pixels=12845056" in q25["notes"]  # no preprocessor_config.json there: defaulted
    assert q25["vision"]["window"] == {"window_size_px": 112, "full_attention_layers": [7, 15, 23, 31]}


def test_newer_qwen_layout_with_text_config():
    cfg = json.loads((FIXTURES / "qwen2.5-vl-7b-instruct" / "config.json").read_text())
    text_keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings", "vocab_size", "tie_word_embeddings")
    nested = {k: v for k, v in cfg.items() if k not in text_keys}
    nested["text_config"] = {k: cfg[k] for k in text_keys}
    assert import_hf_config(nested)["llm"] == import_hf_config(cfg)["llm"]


def test_model_type_inferred_from_architectures():
    cfg = json.loads((FIXTURES / "llava-1.5-7b-hf" / "config.json").read_text())
    del cfg["model_type"]
    assert import_hf_config(cfg)["family"] == "llava"


def test_unsupported_model_type_errors_clearly():
    # mllama is supported since issue 12; a model type nobody imports stands in for it
    cfg = {"model_type": "paligemma", "architectures": ["PaliGemmaForConditionalGeneration"], "text_config": {},
           "vision_config": {}}
    with pytest.raises(SpecError) as err:
        import_hf_config(cfg)
    msg = str(err.value)
    assert "model_type" in msg and "paligemma" in msg
    for mt in SUPPORTED_MODEL_TYPES:
        assert mt in msg


def test_missing_section_and_bad_files(tmp_path):
    cfg = json.loads((FIXTURES / "llava-1.5-7b-hf" / "config.json").read_text())
    del cfg["vision_config"]
    with pytest.raises(SpecError, match="vision_config"):
        import_hf_config(cfg)
    with pytest.raises(SpecError, match="not found"):
        import_hf_config(tmp_path / "nope.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        import_hf_config(bad)


def test_yaml_round_trip(tmp_path):
    text = import_hf_to_yaml(FIXTURES / "internvl2_5-8b", model_id="my-internvl")
    data = yaml.safe_load(text)
    assert data["id"] == "my-internvl"
    path = tmp_path / "my-internvl.yaml"
    path.write_text(text)
    m = load_model(str(path))
    assert m.id == "my-internvl"
    assert tokenize_image(m, 1920, 1080).llm_tokens == 2306


def test_deepseek_v3_text_config_reads_mla_and_moe():
    """The deepseek_v3 reader (Kimi-VL's text_config, DeepSeek-V3 itself): DeepSeek-V3's config.json fields give its
    MLA (q_lora 1536, kv_lora 512) and MoE (256 routed experts of 2048, top-8, 1 shared, first 3 layers dense)."""
    from lvlmsim.importers.hf_families import deepseek_llm
    from lvlmsim.ops.graph import mla_layer_params
    from lvlmsim.specs.model import LanguageModelSpec

    v3 = {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
          "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
          "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "q_lora_rank": 1536,
          "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
          "vocab_size": 129280, "max_position_embeddings": 163840}
    defaulted: list[str] = []
    lm = LanguageModelSpec.model_validate(deepseek_llm(v3, "text_config", defaulted))
    assert mla_layer_params(lm) == 187_107_328
    assert lm.moe.dense_layers == [0, 1, 2] and lm.moe.num_experts == 256 and lm.moe_layers == 58
    with pytest.raises(SpecError, match="model_type"):
        deepseek_llm({**v3, "model_type": "llama"}, "text_config", [])


@pytest.mark.parametrize("folder", ["qwen3-vl-30b-a3b-instruct", "qwen3-vl-235b-a22b-instruct",
                                    "qwen2.5-vl-72b-instruct", "qwen3-vl-8b-instruct"])
def test_import_reproduces_the_zoo_entry_params_and_video(folder):
    from lvlmsim.ops.graph import active_params, param_counts
    from lvlmsim.ops.tokenization import tokenize_video

    imported = ModelSpec.model_validate(import_hf_config(FIXTURES / folder))
    zoo = load_model(MATCHES[folder])
    assert param_counts(imported) == param_counts(zoo)
    assert active_params(imported) == active_params(zoo)
    if not folder.startswith("qwen3"):
        return  # Qwen2.5-VL video budgets are lvlmsim defaults (qwen-vl-utils versions differ), not config fields
    assert imported.video == zoo.video
    assert tokenize_video(imported, 10, 1920, 1080).llm_tokens == tokenize_video(zoo, 10, 1920, 1080).llm_tokens


def test_mllama_import_keeps_cross_attention():
    m = ModelSpec.model_validate(import_hf_config(FIXTURES / "llama-3.2-11b-vision-instruct"))
    assert m.image_tokens_in_kv_of_cross_attention
    assert m.vision.num_layers == 40  # 32 local + 8 global


def test_moe_config_without_top_k_is_a_clear_error():
    cfg = json.loads((FIXTURES / "qwen3-vl-30b-a3b-instruct" / "config.json").read_text())
    del cfg["text_config"]["num_experts_per_tok"]
    with pytest.raises(SpecError, match="num_experts_per_tok"):
        import_hf_config(cfg)


def test_cli_id_names_the_imported_model(tmp_path):
    from typer.testing import CliRunner

    from lvlmsim.cli import app

    out = tmp_path / "m.yaml"
    res = CliRunner().invoke(app, ["import-hf", str(FIXTURES / "qwen3-vl-8b-instruct"), "--id", "my-qwen3",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text())["id"] == "my-qwen3"


TEXT = Path(__file__).parent / "fixtures" / "hf_text"


@pytest.mark.parametrize("folder, zoo_vlm", [("qwen3-30b-a3b", "qwen3-vl-30b-a3b"), ("qwen3-8b", "qwen3-vl-8b"),
                                              ("qwen2.5-72b-instruct", "qwen2.5-vl-72b")])
def test_text_only_backbone_matches_its_vlm_decoder(folder, zoo_vlm):
    """A VLM next to its text-only backbone: the imported LLM is the zoo VLM's decoder, with no vision parts."""
    from lvlmsim.ops.graph import llm_params, param_counts

    m = ModelSpec.model_validate(import_hf_config(TEXT / folder))
    zoo = load_model(zoo_vlm)
    assert m.text_only and m.vision is None and m.projector is None and m.tokenization is None
    for f in LLM_SHAPE:
        if f != "max_position_embeddings":  # Qwen2.5-VL extends its backbone's 32768 context to 128000
            assert getattr(m.llm, f) == getattr(zoo.llm, f), f"llm.{f}"
    assert param_counts(m) == {"vision": 0, "projector": 0, "llm": llm_params(zoo.llm)}


@pytest.mark.parametrize("folder, published_b", [("llama-3-8b", 8.03), ("mistral-7b-v0.1", 7.24),
                                                 ("qwen3-30b-a3b", 30.5), ("qwen2.5-72b-instruct", 72.7)])
def test_text_only_params_match_published(folder, published_b):
    from lvlmsim.ops.graph import param_counts

    m = ModelSpec.model_validate(import_hf_config(TEXT / folder))
    assert abs(sum(param_counts(m).values()) / (published_b * 1e9) - 1) < 0.01


def test_text_only_model_estimates_without_images_and_refuses_them(tmp_path):
    from lvlmsim.api import estimate

    path = tmp_path / "q.yaml"
    path.write_text(import_hf_to_yaml(TEXT / "qwen3-30b-a3b", model_id="qwen3-30b-a3b"))
    est = estimate(str(path), "h100-sxm", images=0, output_tokens=4).to_dict()
    assert est["visual_tokens"] == 0 and est["stages"]["encode"]["time_s"] == 0.0
    assert est["params"]["active_per_token"] < est["params"]["total"] / 5
    with pytest.raises(SpecError, match="text-only"):
        estimate(str(path), "h100-sxm", images=1, output_tokens=4)


def test_mistral_import_slides_every_layer():
    m = ModelSpec.model_validate(import_hf_config(TEXT / "mistral-7b-v0.1"))
    assert m.llm.local_attention.kind == "sliding" and m.llm.local_attention.window_tokens == 4096
    assert m.llm.local_attention.global_layers == []


def test_half_a_vision_side_is_an_error():
    spec = import_hf_config(FIXTURES / "qwen3-vl-8b-instruct")
    del spec["projector"]
    with pytest.raises(ValueError, match="projector"):
        ModelSpec.model_validate(spec)


def test_text_only_model_serves_text_requests_in_the_engine(tmp_path):
    from lvlmsim.engine.api import simulate

    path = tmp_path / "q8.yaml"
    path.write_text(import_hf_to_yaml(TEXT / "qwen3-8b", model_id="qwen3-8b"))
    sc = {"id": "text-only", "model": str(path), "hardware": "h100-sxm", "seed": 0,
          "workload": {"requests": 30, "images": {"kind": "fixed", "value": 0},
                       "arrival": {"kind": "poisson", "rate_rps": 2.0}}}
    assert simulate(sc).summary["completed"] == 30


@pytest.mark.parametrize("raw, dtype", [("bfloat16", "bf16"), ("torch.float16", "fp16"), ("float8_e4m3fn", "fp8")])
def test_torch_dtype_is_read(raw, dtype):
    cfg = json.loads((FIXTURES / "llava-1.5-7b-hf" / "config.json").read_text())
    cfg["torch_dtype"] = raw
    assert import_hf_config(cfg)["dtype"] == dtype


def test_unknown_torch_dtype_is_refused_and_a_missing_one_defaults():
    """A typo ('float99') used to size every weight as bf16 with only a note; a missing dtype still defaults."""
    cfg = json.loads((FIXTURES / "llava-1.5-7b-hf" / "config.json").read_text())
    cfg["torch_dtype"] = "float99"
    with pytest.raises(SpecError, match=r"torch_dtype: 'float99' .* allowed: float16, bfloat16"):
        import_hf_config(cfg)
    cfg.pop("torch_dtype")
    cfg.get("text_config", {}).pop("torch_dtype", None)
    spec = import_hf_config(cfg)
    assert spec["dtype"] == "bf16" and "torch_dtype not given" in spec["notes"]
