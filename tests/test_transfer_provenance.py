"""A device the device-general model prices outside every category it was fitted on (AMD Instinct: another vendor, no
fitted attention kernel generation) is flagged in the estimate's provenance, its notes and the CLI faces (issue 11:
every estimate says which model priced it and how sure it is; never silently pretend)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from lvlmsim.api import estimate
from lvlmsim.calibrate.general import device_features, injection_gbps, outside_fitted
from lvlmsim.calibrate.profiles import general_model, load_profile_for, transfer_note, transfer_notes
from lvlmsim.cli import app
from lvlmsim.specs.registry import load_hardware

H100, B300, MI300X = (load_hardware(h) for h in ("h100-sxm", "b300", "mi300x"))


def test_outside_fitted_names_vendor_and_kernel_generation():
    """Fitted on NVIDIA sm90/sm100 only: an AMD part misses both categories, an NVIDIA sm90 part none, an NVIDIA part
    without a compute capability only the kernel generation."""
    fitted = [H100, B300]
    reasons = outside_fitted(MI300X, fitted)
    assert len(reasons) == 2
    assert reasons[0].startswith("vendor AMD") and "NVIDIA" in reasons[0]
    assert reasons[1].startswith("attention kernel generation") and "no CUDA compute capability" in reasons[1]
    assert outside_fitted(H100.model_copy(update={"id": "h100-clone"}), fitted) == []
    no_cc = outside_fitted(H100.model_copy(update={"id": "nvidia-no-cc", "compute_capability": None}), fitted)
    assert len(no_cc) == 1 and no_cc[0].startswith("attention kernel generation")


def test_shipped_general_model_is_fitted_on_nvidia_only_and_flags_every_amd_gpu():
    """The shipped model's fitted devices are the four NVIDIA GPUs of the measured tables; MI300X / MI325X / MI355X
    are each outside its categories, an NVIDIA GPU it was not fitted on (L40S, sm89 -> FA2) is not."""
    assert {hw.vendor for hw in general_model().fitted_devices()} == {"NVIDIA"}
    for hw_id in ("mi300x", "mi325x", "mi355x"):
        hw = load_hardware(hw_id)
        note = transfer_note(load_profile_for(hw), hw)
        assert note is not None and "vendor AMD" in note and "error is unknown" in note, hw_id
    l40s = load_hardware("l40s")
    assert transfer_note(load_profile_for(l40s), l40s) is None
    assert transfer_note(load_profile_for(H100), H100) is None  # its own measured profile


def test_estimate_provenance_says_transferred_and_unknown_error_on_amd():
    est = estimate("llava-1.5-7b", "mi300x")
    prov = est.to_dict()["provenance"]
    assert prov["profile"] == "general-gpu" and prov["profile_kind"] == "transferred"
    assert prov["expected_error_pct"] is not None and f"~{prov['expected_error_pct']:.0f}%" in prov["transfer_note"]
    assert prov["transfer_note"] in est.notes
    h100 = estimate("llava-1.5-7b", "h100-sxm").to_dict()
    assert h100["provenance"]["transfer_note"] is None
    assert not any("is transferred" in n for n in h100["notes"])


def test_transfer_notes_once_per_device():
    notes = transfer_notes(["mi300x", "h100-sxm", "mi300x"])
    assert len(notes) == 1 and notes[0].startswith("mi300x is transferred")


def test_cli_estimate_states_the_transfer_in_json_and_text():
    runner = CliRunner()
    res = runner.invoke(app, ["estimate", "--hardware", "mi300x", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["provenance"]["profile_kind"] == "transferred" and "vendor AMD" in doc["provenance"]["transfer_note"]
    text = runner.invoke(app, ["estimate", "--hardware", "mi300x"], env={"COLUMNS": "400"})
    assert text.exit_code == 0, text.output
    assert "profile=general-gpu, transferred" in text.output and "mi300x is transferred" in text.output


def test_cli_simulate_json_carries_transfer_notes_only_for_a_device_outside_the_fit():
    runner = CliRunner()
    amd = runner.invoke(app, ["simulate", "--hardware", "mi300x", "-n", "20", "--json"])
    assert amd.exit_code == 0, amd.output
    notes = json.loads(amd.stdout)["transfer_notes"]
    assert len(notes) == 1 and notes[0].startswith("mi300x is transferred")
    nvidia = runner.invoke(app, ["simulate", "--hardware", "h100-sxm", "-n", "20", "--json"])
    assert nvidia.exit_code == 0, nvidia.output
    assert "transfer_notes" not in json.loads(nvidia.stdout)


def test_link_feature_is_the_device_injection_bandwidth_on_a_mesh_too():
    """The reference's 450 GB/s is H100's per-GPU NVLink total; a mesh spec stores ONE xGMI link, so the feature
    counts all max_devices_per_node - 1 links: MI300X 7 x 64 = 448, MI355X 7 x 76.8 = 537.6; switch specs unchanged."""
    assert injection_gbps(MI300X) == pytest.approx(448.0)
    assert injection_gbps(load_hardware("mi355x")) == pytest.approx(537.6)
    assert injection_gbps(H100) == pytest.approx(450.0)
    assert injection_gbps(load_hardware("rtx-pro-6000-server")) == pytest.approx(64.0)
    assert device_features(MI300X)["log_link"] == pytest.approx(math.log(448 / 450))
