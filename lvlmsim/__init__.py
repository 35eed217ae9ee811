"""lvlmsim: what it costs to serve a vision-language model, on this hardware, under this traffic, and why.

Public API: :func:`estimate` (analytic, one request), :func:`simulate` (discrete-event serving), spec loaders.
"""

from lvlmsim.api import estimate
from lvlmsim.engine.api import SimulationResult, simulate
from lvlmsim.errors import InfeasibleError, LvlmsimError, SpecError, UnknownIdError
from lvlmsim.planner import plan, sweep
from lvlmsim.specs import HardwareSpec, ModelSpec, hardware_ids, load_hardware, load_model, model_ids

__version__ = "0.1.0"

__all__ = [
    "HardwareSpec", "InfeasibleError", "LvlmsimError", "ModelSpec", "SimulationResult", "SpecError", "UnknownIdError",
    "__version__", "estimate", "plan", "simulate", "sweep", "hardware_ids", "load_hardware", "load_model", "model_ids",
]
