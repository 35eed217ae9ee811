"""vLLM's / SGLang's custom all-reduce: which algorithm the runtime runs (calibration/collectives.yaml) and how the
cost model prices it (the general model's `allreduce/custom` family), against hand-derived expectations."""

from __future__ import annotations

import math

import pytest

from lvlmsim.calibrate.measured import allreduce_op
from lvlmsim.calibrate.profiles import load_profile_for
from lvlmsim.cost.collectives import CUSTOM_AR_SUFFIX, _policy, custom_allreduce_policy, p2p_fabric
from lvlmsim.cost.roofline import CostModel
from lvlmsim.cost.runtime import serving_runtime
from lvlmsim.errors import SpecError
from lvlmsim.specs.registry import load_hardware
from tests.shared_data import MEASURED, needs_shared

MIB = 2**20


def _cost(hw_id: str, runtime: str, message_bytes: float, devices: int, *, eager: bool = False):
    hw = load_hardware(hw_id)
    prof = serving_runtime(runtime, enforce_eager=eager).apply(load_profile_for(hw))
    return CostModel(hw, prof).cost(allreduce_op(message_bytes, devices))


def test_fabric_follows_the_link_the_spec_names():
    """NVSwitch parts are NVLink-connected; PCIe cards are P2P over PCIe; a GeForce card without P2P has none."""
    assert p2p_fabric(load_hardware("h100-sxm")) == "nvlink"
    assert p2p_fabric(load_hardware("rtx-pro-6000-server")) == "pcie"
    assert p2p_fabric(load_hardware("l40s")) == "pcie"
    assert p2p_fabric(load_hardware("rtx-4090")) == "none"


@pytest.mark.parametrize(("hw_id", "devices", "nbytes", "custom"), [
    ("h100-sxm", 8, 16 * 1024, True),
    ("h100-sxm", 2, 8 * MIB - 16, True),  # strictly below the 8 MiB buffer
    ("h100-sxm", 2, 8 * MIB, False),  # at the buffer: NCCL
    ("h100-sxm", 3, 16 * 1024, False),  # unsupported group size
    ("rtx-pro-6000-server", 2, 16 * 1024, True),  # two PCIe GPUs with P2P
    ("rtx-pro-6000-server", 4, 16 * 1024, False),  # more than two PCIe GPUs
    ("rtx-4090", 2, 16 * 1024, False),  # no P2P
    ("mi300x", 8, 16 * 1024, False),  # ROCm path not modelled
])
def test_vllm_policy_matches_its_source_conditions(hw_id, devices, nbytes, custom):
    """should_custom_ar: world size in {2,4,6,8}, bytes < max_size (8 MiB), and two GPUs or full NVLink."""
    policy = custom_allreduce_policy("vllm")
    assert policy.picks_custom(load_hardware(hw_id), devices, nbytes) is custom


def test_trtllm_has_no_custom_policy_and_prices_nccl():
    """TensorRT-LLM's own all-reduce plugin is not measured here: its all-reduces stay NCCL's."""
    assert custom_allreduce_policy("trtllm") is None
    assert _cost("h100-sxm", "trtllm", 16 * 1024, 8).source.endswith(":allreduce")


def test_vllm_graph_run_prices_small_allreduce_with_custom_family_and_faster_than_nccl():
    """H100 TP8, 16 KiB: the custom kernel (measured 4.7-5.3 us) is priced below NCCL's 16 us floor."""
    custom = _cost("h100-sxm", "vllm", 16 * 1024, 8)
    nccl = _cost("h100-sxm", "trtllm", 16 * 1024, 8)
    assert custom.source.endswith(":allreduce/custom")
    assert 3e-6 < custom.time_s < 8e-6 < nccl.time_s


def test_eager_and_large_messages_stay_on_nccl():
    """enforce_eager: no custom pricing (the eager floor, set by the measured eager rows, applies); 64 MiB: NCCL."""
    eager = _cost("h100-sxm", "vllm", 16 * 1024, 8, eager=True)
    assert eager.source.endswith(":allreduce")
    assert eager.time_s >= 2.06e-5
    assert _cost("h100-sxm", "vllm", 64 * MIB, 8).source.endswith(":allreduce")


def test_datacenter_blackwell_latency_moves_by_its_flag_coefficient():
    """The custom family's latency links only to arch_sm100: a0 on B200 / a0 on H200 = exp(coefficient)."""
    from lvlmsim.calibrate.profiles import general_model

    fam = general_model().families["allreduce/custom"]
    coef = fam.coefs["a0"]["arch_sm100"]
    a0_b200 = fam.params_for(load_hardware("b200"), "bf16")["a0"]
    a0_h200 = fam.params_for(load_hardware("h200-sxm"), "bf16")["a0"]
    assert a0_b200 / a0_h200 == pytest.approx(math.exp(coef), rel=1e-4)


def test_marked_op_without_custom_family_falls_back_to_nccl_family():
    """A profile without `allreduce/custom` (the default) prices a marked all-reduce as any all-reduce."""
    import dataclasses

    from lvlmsim.cost.profile import DEFAULT_PROFILE

    hw = load_hardware("h100-sxm")
    op = allreduce_op(16 * 1024, 8)
    marked = dataclasses.replace(op, name=op.name + CUSTOM_AR_SUFFIX)
    assert CostModel(hw, DEFAULT_PROFILE).cost(marked).time_s == CostModel(hw, DEFAULT_PROFILE).cost(op).time_s


def test_bad_policy_entry_names_the_field():
    with pytest.raises(SpecError, match="custom_allreduce.x"):
        _policy("x", {"world_sizes": [2], "max_bytes": 0, "pcie_max_devices": 2, "vendors": ["nvidia"]},
                "collectives.yaml: custom_allreduce.x")
    with pytest.raises(SpecError, match="max_bytes"):
        _policy("x", {"world_sizes": [2]}, "collectives.yaml: custom_allreduce.x")


@needs_shared
def test_loader_keeps_graph_rows_below_the_buffer_and_policy_splits_pcie_groups():
    """Per device 23 sizes x {2,4,8} GPUs x {graph, eager}; 15 sizes are below 4M elements (8 MiB of bf16).
    RTX PRO 6000 (PCIe): its 2-GPU rows ran the custom kernel, its 4/8-GPU rows NCCL."""
    from lvlmsim.calibrate.measured import assign_allreduce_algorithm, load_aiconfigurator

    res = load_aiconfigurator(MEASURED / "aiconfigurator" / "data" / "rtx_pro_6000_server", ["custom_allreduce"])
    assert len(res.rows) == 45
    rows = assign_allreduce_algorithm(res.rows, load_hardware("rtx-pro-6000-server"))
    custom = [r for r in rows if r.family == "custom_allreduce"]
    assert {r.op.devices for r in custom} == {2} and len(custom) == 15
    assert all(r.op.name.endswith(CUSTOM_AR_SUFFIX) for r in custom)
    assert {r.op.devices for r in rows if r.family == "custom_allreduce_nccl"} == {4, 8}


@pytest.mark.parametrize("runtime", ["vllm", "trtllm"])
def test_band_end_scales_the_whole_allreduce_time(runtime):
    """auto@p90 / auto is the op's band p90 for custom and NCCL all-reduces alike, although their fitted floors
    replace the cost model's link latency (the custom one's is negative: 6 us measured against 3 x 5 us of latency)."""
    from lvlmsim.cost.uncertainty import op_band

    hw = load_hardware("h200-sxm")
    op = allreduce_op(16 * 1024, 8)
    base = serving_runtime(runtime).apply(load_profile_for(hw))
    point = CostModel(hw, base).cost(op)
    p90 = CostModel(hw, serving_runtime(runtime).apply(load_profile_for(hw, "auto@p90"))).cost(op)
    band = op_band(base, point.source, base._as_run(op, hw))
    assert band is not None and band[1] > 1.0
    assert p90.time_s / point.time_s == pytest.approx(band[1], rel=1e-9)


@pytest.mark.parametrize(("devices", "nbytes", "one_stage"), [
    (2, 8 * MIB - 16, True),  # two GPUs: always one stage
    (4, 512 * 1024 - 16, True),  # <= 4 GPUs: one stage below 512 KiB
    (4, 512 * 1024, False),
    (6, 256 * 1024 - 16, True),  # <= 8 GPUs: one stage below 256 KiB
    (8, 256 * 1024 - 16, True),
    (8, 256 * 1024, False),
])
def test_custom_kernel_algorithm_follows_its_dispatch(devices, nbytes, one_stage):
    """vLLM csrc/custom_all_reduce.cuh: (world_size <= 4 and bytes < 512 KiB) or (<= 8 and < 256 KiB) -> 1 stage."""
    from lvlmsim.cost.collectives import custom_ar_one_stage

    assert custom_ar_one_stage(devices, nbytes) is one_stage


def _staged(nbytes: float, devices: int) -> tuple[float, float, float]:
    from lvlmsim.calibrate.model import FORM_VARIANTS, PYMATH, AllreduceForm

    staged, plain = FORM_VARIANTS["allreduce+stages"], AllreduceForm()
    hw = load_hardware("h100-sxm")
    params = tuple(q.init for q in staged.core)
    op = allreduce_op(nbytes, devices)
    _, em_s, floor_s = staged.eff(PYMATH, params, {}, staged.features(op, hw))
    _, em_p, floor_p = plain.eff(PYMATH, params[:-1], {}, plain.features(op, hw))
    return em_s / em_p, floor_s - floor_p, params[-1]


def test_one_stage_reads_the_whole_message_from_every_peer():
    """One stage at 8 GPUs moves 7 x the bytes where the ring term counts 2 x 7 / 8: efficiency x 2/8, no barrier;
    at 2 GPUs the two agree (1 x the bytes)."""
    ratio, extra, _a2 = _staged(64 * 1024, 8)
    assert ratio == pytest.approx(2 / 8) and extra == 0.0
    ratio, extra, _a2 = _staged(64 * 1024, 2)
    assert ratio == pytest.approx(1.0) and extra == 0.0


def test_two_stages_move_the_ring_bytes_and_add_the_second_barrier():
    ratio, extra, a2 = _staged(1 * MIB, 8)
    assert ratio == pytest.approx(1.0) and extra == pytest.approx(a2)


def test_bad_algorithm_table_names_the_field(tmp_path, monkeypatch):
    from lvlmsim.cost import collectives

    bad = tmp_path / "collectives.yaml"
    bad.write_text("custom_allreduce_kernel:\n  two_stage_from_bytes: {1: 100}\n")
    monkeypatch.setattr("lvlmsim.specs.registry.collectives_path", lambda: bad)
    collectives.two_stage_from_bytes.cache_clear()
    try:
        with pytest.raises(SpecError, match="two_stage_from_bytes"):
            collectives.two_stage_from_bytes()
    finally:
        collectives.two_stage_from_bytes.cache_clear()


def _tiny_h100_tables(root):
    """A two-table aiconfigurator folder for h100_sxm: 2 NCCL all-reduce rows (plus an all-gather, skipped) and 5
    custom all-reduce rows, of which 3 are CUDA-graph rows below the 8 MiB buffer (2/4/8 GPUs), 1 is eager and 1 is
    at 8 MiB of bf16 (4M elements)."""
    comm = root / "aiconfigurator" / "data" / "h100_sxm" / "comm"
    (comm / "nccl" / "v").mkdir(parents=True)
    (comm / "nccl" / "v" / "nccl_perf.csv").write_text(
        "op_name,kernel_source,nccl_dtype,num_gpus,message_size,latency\n"
        "all_reduce,NCCL,half,2,1024,0.010\nall_reduce,NCCL,half,8,1048576,0.050\n"
        "all_gather,NCCL,half,2,1024,0.005\n")
    (comm / "vllm" / "v").mkdir(parents=True)
    (comm / "vllm" / "v" / "custom_allreduce_perf.csv").write_text(
        "kernel_source,allreduce_dtype,num_gpus,message_size,latency,backend\n"
        "vLLM_custom_graph,bfloat16,2,128,0.0043,vllm_graph\n"
        "vLLM_custom_graph,bfloat16,4,4096,0.0050,vllm_graph\n"
        "vLLM_custom_graph,bfloat16,8,65536,0.0090,vllm_graph\n"
        "vLLM_custom_eager,bfloat16,2,128,0.0206,vllm_eager\n"
        "vLLM_custom_graph,bfloat16,2,4194304,0.0500,vllm_graph\n")
    return root


def test_shipped_profile_rows_give_custom_allreduce_its_own_family(tmp_path):
    """The per-device profile's rows (shipped.gpu_rows) settle custom all-reduce rows by vLLM's policy as validate and
    the general model do: on H100 (NVSwitch) the 3 graph rows below the buffer are the custom kernel's and fit the
    `allreduce/custom` family; the NCCL family keeps its own 2 rows (before the fix it had all 5)."""
    from collections import Counter

    from lvlmsim.calibrate.fit import group_key
    from lvlmsim.calibrate.shipped import gpu_rows

    res = gpu_rows(_tiny_h100_tables(tmp_path), "h100-sxm", with_vidur=False)
    assert Counter(group_key(r) for r in res.rows) == {"allreduce": 2, "allreduce/custom": 3}
    assert sorted(r.op.devices for r in res.rows if r.family == "custom_allreduce") == [2, 4, 8]
    assert all(r.op.name.endswith(CUSTOM_AR_SUFFIX) for r in res.rows if r.family == "custom_allreduce")
