"""The hardware database: every YAML in hardware_specs/ loads, carries dense datasheet peaks, and fails loudly."""

from __future__ import annotations

import math

import pytest
import yaml

from lvlmsim.errors import SpecError, UnknownIdError
from lvlmsim.specs.registry import hardware_dir, hardware_ids, load_hardware

REQUIRED_IDS = (
    "a100-sxm-80gb", "a100-pcie-40gb", "h100-sxm", "h100-pcie", "h200-sxm", "b200", "l4", "l40s", "a10g",
    "rtx-4090", "mi300x", "jetson-agx-orin-64gb", "cpu-generic",
)

ALL_IDS = sorted(set(REQUIRED_IDS) | set(hardware_ids()))


def test_all_required_ids_present():
    missing = sorted(set(REQUIRED_IDS) - set(hardware_ids()))
    assert not missing, f"hardware_specs/ lacks: {missing}"


@pytest.mark.parametrize("hw_id", ALL_IDS)
def test_every_spec_loads_and_is_complete(hw_id):
    hw = load_hardware(hw_id)
    assert hw.id == hw_id, "file stem must equal the id field"
    assert "bf16" in hw.peak_tflops or "fp32" in hw.peak_tflops, "needs a bf16 or fp32 peak"
    assert hw.source.strip() and hw.notes.strip() and hw.price_source.strip()
    # Orders of magnitude that catch unit slips (TB/s typed as GB/s, bytes as GiB, GB/s as Gb/s).
    assert 50 <= hw.mem_bw_gbps <= 20_000
    assert 4 <= hw.mem_capacity_gib <= 1024
    assert hw.intra_node_link.bw_gbps <= 2_000
    assert hw.inter_node_bw_gbps <= 200
    if hw.max_devices_per_node == 1:
        assert hw.kind in ("cpu", "soc")


@pytest.mark.parametrize("hw_id", ALL_IDS)
def test_peaks_are_dense_not_sparse(hw_id):
    """NVIDIA headline figures are 2:4-sparse (2x dense). Stored figures must be dense, so low-precision peaks stay
    within ~2x of the next wider dtype (2.1 leaves room for datasheet rounding such as 1978.9 / 989.4)."""
    p = load_hardware(hw_id).peak_tflops
    if "fp8" in p and "bf16" in p:
        assert p["fp8"] <= 2.1 * p["bf16"]
    if "bf16" in p and "fp16" in p:
        assert math.isclose(p["bf16"], p["fp16"], rel_tol=0.01)
    if "tf32" in p and "bf16" in p:
        assert p["tf32"] <= 0.51 * p["bf16"]
    if "int4" in p and "int8" in p:
        assert p["int4"] <= 2.1 * p["int8"]


def test_h100_sxm_anchor_and_ridge_point():
    hw = load_hardware("h100-sxm")
    assert hw.peak_tflops["bf16"] == pytest.approx(989.4)
    assert hw.peak_tflops["fp8"] == pytest.approx(1978.9)
    assert hw.mem_bw_gbps == pytest.approx(3350)
    assert hw.mem_capacity_gib == pytest.approx(80)
    # Ridge point, derived by hand: 989.4 TFLOP/s = 989.4e12 FLOP/s; 3350 GB/s = 3.35e12 B/s;
    # 989.4e12 / 3.35e12 = 295.34 FLOP/byte. Below it a bf16 kernel is memory-bound on an H100 SXM.
    assert hw.ridge_point("bf16") == pytest.approx(295.34, abs=0.05)


def test_a100_sxm_anchor_matches_survey_ridge():
    hw = load_hardware("a100-sxm-80gb")
    assert hw.peak_tflops["bf16"] == pytest.approx(312)
    assert "fp8" not in hw.peak_tflops  # Ampere has no fp8
    # 312e12 / 2.039e12 = 153.0 FLOP/byte, the survey's Table 11 ridge point for the A100.
    assert hw.ridge_point("bf16") == pytest.approx(153.0, abs=0.1)


CLOCKED_IDS = [i for i in ALL_IDS if load_hardware(i).sm_count and load_hardware(i).boost_clock_mhz]


@pytest.mark.parametrize("hw_id", CLOCKED_IDS)
def test_16bit_peak_is_sms_times_a_power_of_two_mma_rate_times_clock(hw_id):
    """A dense 16-bit tensor peak is SMs (CUs) x a power-of-two FLOP/clk per SM x the clock it is quoted at, and that
    clock sits at most ~9% below the maximum SM clock stored (H100 SXM: 989.4e12 / (132 x 1.98e9) = 3786 = 0.924 x
    4096, i.e. quoted at 1830 MHz; B200: 2250e12 / (148 x 1.965e9) = 0.944 x 8192). A full-die SM count paired with a
    shipping clock (B300: 160 x 2032 MHz -> 0.845 x 8192), or a clock off by >10%, falls outside [0.90, 1.005]."""
    hw = load_hardware(hw_id)
    peak = hw.peak_tflops.get("bf16") or hw.peak_tflops["fp16"]
    flop_per_clk_sm = peak * 1e12 / (hw.sm_count * hw.boost_clock_mhz * 1e6)
    mma_rate = 2.0 ** round(math.log2(flop_per_clk_sm))
    assert 0.90 <= flop_per_clk_sm / mma_rate <= 1.005, f"{flop_per_clk_sm:.0f} FLOP/clk/SM vs {mma_rate:.0f}"


def test_h200_is_h100_compute_with_more_memory():
    h100, h200 = load_hardware("h100-sxm"), load_hardware("h200-sxm")
    assert h200.peak_tflops == h100.peak_tflops
    assert h200.mem_bw_gbps == pytest.approx(4800)
    assert h200.mem_capacity_gib > h100.mem_capacity_gib


def test_nvlink_bandwidth_is_per_direction():
    # NVLink 4 is 900 GB/s bidirectional in total, 450 GB/s each way.
    assert load_hardware("h100-sxm").intra_node_link.bw_gbps == pytest.approx(450)
    assert load_hardware("a100-sxm-80gb").intra_node_link.bw_gbps == pytest.approx(300)


def test_in_switch_reduction_follows_the_nvswitch_generation():
    """NVLink SHARP (NCCL's NVLS) came with NVSwitch gen 3: HGX H100/H200 and Blackwell's gen 4 have it, HGX A100's gen
    2 does not; a device whose YAML states nothing (PCIe parts, NVL72 racks, H20) reads null, not a guess."""
    flags = {h: load_hardware(h).intra_node_link.in_switch_reduction
             for h in ("a100-sxm-80gb", "h100-sxm", "h200-sxm", "b200", "b300", "rtx-pro-6000-server")}
    assert flags == {"a100-sxm-80gb": False, "h100-sxm": True, "h200-sxm": True, "b200": True, "b300": True,
                     "rtx-pro-6000-server": None}


def test_xgmi_mesh_bandwidth_grows_with_the_group_while_nvswitch_does_not():
    # MI300X: 7 point-to-point xGMI links of 64 GB/s per direction; a tp-n collective drives n-1 of them.
    mesh = load_hardware("mi300x").intra_node_link
    assert mesh.topology == "mesh"
    assert [mesh.collective_bw_bytes_s(n) / 1e9 for n in (2, 4, 8)] == [64.0, 192.0, 448.0]
    switch = load_hardware("h100-sxm").intra_node_link
    assert [switch.collective_bw_bytes_s(n) / 1e9 for n in (2, 4, 8)] == [450.0, 450.0, 450.0]


def test_unknown_id_suggests_closest():
    with pytest.raises(UnknownIdError) as exc:
        load_hardware("h100-sxn")
    assert "h100-sxm" in exc.value.suggestions
    assert "h100-sxm" in str(exc.value)


def _valid_mapping() -> dict:
    return yaml.safe_load((hardware_dir() / "h100-sxm.yaml").read_text())


def test_unknown_field_is_rejected_by_name(tmp_path):
    data = _valid_mapping()
    data["mem_bandwith_gbps"] = 3350  # typo'd extra field
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="mem_bandwith_gbps"):
        load_hardware(str(path))


def test_negative_bandwidth_is_rejected_by_name(tmp_path):
    data = _valid_mapping()
    data["mem_bw_gbps"] = -3350
    path = tmp_path / "negative.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="mem_bw_gbps"):
        load_hardware(str(path))


def test_negative_link_bandwidth_names_the_nested_field(tmp_path):
    data = _valid_mapping()
    data["intra_node_link"]["bw_gbps"] = -1
    path = tmp_path / "negative_link.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"intra_node_link\.bw_gbps"):
        load_hardware(str(path))


# ---------------------------------------------------------------------------------------------------------------
# AMD Instinct beyond the MI300X and the accelerators that are not GPUs (issue 16)

ACCELERATORS = {"mi325x": "gpu", "mi355x": "gpu", "tpu-v6e": "tpu", "gaudi3": "hpu"}


@pytest.mark.parametrize("hw_id,kind", sorted(ACCELERATORS.items()))
def test_new_accelerators_load_with_their_kind_and_say_what_the_roofline_misses(hw_id, kind):
    hw = load_hardware(hw_id)
    assert hw.kind == kind
    assert "miss" in hw.notes or "cannot capture" in hw.notes, "notes must say what the roofline abstraction misses"


def test_mi355x_dense_peaks_follow_from_cus_clock_and_ops_per_clock():
    """256 CUs x 2.4 GHz x 8192 fp8 FLOP/clk/CU = 5033.2 TF; fp16 is half, MXFP4 double (AMD rounds to 2.5/5/10 PF)."""
    p = load_hardware("mi355x").peak_tflops
    fp8 = 256 * 2.4e9 * 8192 / 1e12
    assert p["fp8"] == pytest.approx(fp8, abs=0.1)
    assert p["bf16"] == pytest.approx(fp8 / 2, abs=0.1)
    assert p["fp4"] == pytest.approx(fp8 * 2, abs=0.1)


def test_mi325x_is_mi300x_compute_with_more_hbm():
    mi300x, mi325x = load_hardware("mi300x"), load_hardware("mi325x")
    assert mi325x.peak_tflops == mi300x.peak_tflops
    assert (mi325x.mem_capacity_gib, mi325x.mem_bw_gbps) == (256, 6000)


def test_xgmi_mesh_collective_uses_n_minus_one_links():
    """MI355X: 153.6 GB/s bidirectional per xGMI link = 76.8 per direction; tp=8 drives 7 links = 537.6 GB/s."""
    link = load_hardware("mi355x").intra_node_link
    assert link.topology == "mesh"
    assert link.collective_bw_bytes_s(2) == pytest.approx(76.8e9)
    assert link.collective_bw_bytes_s(8) == pytest.approx(7 * 76.8e9)


def test_tpu_v6e_ridge_point_and_ici_match_the_cloud_docs():
    """918 TF bf16 / 1638 GB/s = 560.4 FLOP/B; ICI 800 GB/s bidirectional = 400 per direction = 102.4 TB/s / 256."""
    hw = load_hardware("tpu-v6e")
    assert hw.ridge_point("bf16") == pytest.approx(918e12 / 1638e9)
    assert hw.intra_node_link.bw_gbps == pytest.approx(102.4e3 / 256)
    assert not hw.supports("fp8"), "v6e publishes bf16 and int8 only"


def test_gaudi3_fp8_runs_at_the_bf16_rate_over_a_roce_mesh():
    hw = load_hardware("gaudi3")
    assert hw.peak_tflops["fp8"] == hw.peak_tflops["bf16"] == 1835
    assert hw.intra_node_link.collective_bw_bytes_s(8) == pytest.approx(7 * 75e9)  # 21 of 24 ports x 25 GB/s


def test_unpublished_power_and_cache_are_null_not_invented():
    hw = load_hardware("tpu-v6e")
    assert hw.tdp_w is None and hw.l2_cache_mb is None


def test_hardware_kind_names_the_allowed_kinds(tmp_path):
    doc = yaml.safe_load((hardware_dir() / "gaudi3.yaml").read_text())
    doc["kind"] = "fpga"
    bad = tmp_path / "gaudi3.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match="kind.*tpu"):
        load_hardware(str(bad))
