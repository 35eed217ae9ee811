"""Specs: the validated vocabulary every other layer speaks."""

from lvlmsim.specs.base import DTYPE_BYTES, DTYPES, Dtype, StrictModel
from lvlmsim.specs.hardware import HardwareSpec, LinkSpec
from lvlmsim.specs.model import (
    LanguageModelSpec,
    ModelSpec,
    ProjectorSpec,
    VisionEncoderSpec,
    WindowAttentionSpec,
)
from lvlmsim.specs.registry import hardware_ids, load_hardware, load_model, model_ids

__all__ = [
    "DTYPES", "DTYPE_BYTES", "Dtype", "StrictModel", "HardwareSpec", "LinkSpec", "LanguageModelSpec", "ModelSpec",
    "ProjectorSpec", "VisionEncoderSpec", "WindowAttentionSpec", "hardware_ids", "load_hardware", "load_model",
    "model_ids",
]
