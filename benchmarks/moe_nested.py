"""The preamble the MoE selection scripts share (moe_ceiling / moe_config / moe_launch / moe_smem / moe_tactic /
moe_tile / moe_wave_selection, moe_fit): their common flags and the measured devices' hardware, so each script is only
its candidates and its decision. Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import FIT_ROWS  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402
from lvlmsim.specs.registry import load_hardware  # noqa: E402


def moe_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the flags every MoE script takes (tables folder, fit rows per device, subsample seed); each
    script adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"))
    ap.add_argument("--fit-rows", type=int, default=FIT_ROWS)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def device_hardware() -> dict[str, HardwareSpec]:
    """{aiconfigurator device folder: its hardware spec} for the measured devices."""
    return {g: load_hardware(h) for g, h in DEVICE_FOLDERS.items()}
