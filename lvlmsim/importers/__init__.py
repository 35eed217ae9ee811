"""Importers: turn other tools' model descriptions into lvlmsim specs (offline)."""

from lvlmsim.importers.hf import SUPPORTED_MODEL_TYPES, import_hf_config, import_hf_to_yaml

__all__ = ["SUPPORTED_MODEL_TYPES", "import_hf_config", "import_hf_to_yaml"]
