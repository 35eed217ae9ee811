"""benchmarks/nccl_link_selection.py (issue 11, wave 8): the rule's pick and the candidates it compares, and the fact
its explanation rests on (the NCCL family reads no SM-count feature). Oracles are hand-set scores and hand-built
devices."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lvlmsim.calibrate import general
from lvlmsim.specs.registry import load_hardware

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def sel():
    spec = importlib.util.spec_from_file_location("nccl_link_selection", BENCH / "nccl_link_selection.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


@pytest.mark.parametrize("inner, expected", [
    ({"shipped": 10.0, "sm100": 9.95}, "shipped"),  # 0.05 point better: a tie, the shipped set stays
    ({"shipped": 10.0, "sm100": 9.85}, "sm100"),  # 0.15 point better: picked
    ({"shipped": 16.81, "sm100": 14.82}, "sm100"),  # the A100 fold's scores
    ({"shipped": 13.69, "sm100": 30.18}, "shipped"),  # the B300 fold's
])
def test_an_alternative_is_picked_only_when_it_beats_the_shipped_links_by_more_than_a_tenth_of_a_point(
        sel, inner, expected):
    """Ties within 0.1 point keep the shipped set (the rule committed before the run)."""
    assert sel.pick(inner) == expected


def test_candidates_differ_only_in_the_latency_links(sel):
    """The shipped candidate is what ships (clock + datacenter-Blackwell flag); the alternative drops the clock and
    keeps the flag's prior; b0 keeps its link-bandwidth link in both."""
    assert sel.CANDIDATES["shipped"] == general.ALLREDUCE_LATENCY_LINKS
    alone = sel.candidate_links(sel.CANDIDATES["sm100"])
    assert alone["a0"] == alone["a1"] == {"arch_sm100": pytest.approx(0.26570316)}  # log(3.0 / 2.3)
    assert alone["b0"] == {"log_link": 1.0} == general.LINKS["allreduce"]["b0"]
    assert sel.candidate_links(sel.CANDIDATES["shipped"]) == general.LINKS["allreduce"]


def test_the_nccl_family_reads_no_sm_count_feature():
    """Why B300's 160 -> 148 SMs cannot move the NCCL fit: none of its linked features changes with the SM count
    (log_sms, log_onchip and log_sm_rate do), while log_clock moves by log(2032 / 1980) with the clock."""
    b300 = load_hardware("b300")
    full_chip = general.device_features(b300.model_copy(update={"sm_count": 160}))
    shipped = general.device_features(b300)
    moved = {f for f in shipped if shipped[f] != pytest.approx(full_chip[f])}
    assert moved == {"log_sms", "log_onchip", "log_sm_rate"}
    linked = {f for fs in general.LINKS["allreduce"].values() for f in fs}
    assert linked == {"log_link", "log_clock", "arch_sm100"} and not linked & moved
    old_clock = general.device_features(b300.model_copy(update={"boost_clock_mhz": None}))
    assert shipped["log_clock"] - old_clock["log_clock"] == pytest.approx(0.025924, abs=1e-6)  # log(2032 / 1980)
