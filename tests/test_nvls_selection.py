"""benchmarks/nvls_selection.py (issue 11, wave 11): the candidate's byte rescaling and the rule's pick. Oracles are
hand-derived byte counts and hand-set scores."""

from __future__ import annotations

import pytest

from lvlmsim.calibrate.measured import Measurement, allreduce_op
from lvlmsim.specs.registry import load_hardware
from tests.bench_modules import load_bench


@pytest.fixture(scope="module")
def sel():
    return load_bench("nvls_selection")


def _row(nbytes: float, gpus: int) -> Measurement:
    return Measurement(allreduce_op(nbytes, gpus), 1e-5, "nccl", "test")


def test_nvls_rows_price_n_plus_one_over_n_of_the_message_above_two_gpus_on_an_in_switch_reducing_device(sel):
    """8 GPUs: the ring's 2 x 7/8 = 1.75 of the message becomes 9/8 = 1.125, i.e. the message x 9/14 through the ring's
    factor; 4 GPUs: 1.5 -> 1.25, x 5/6; 2 GPUs stay ring (NCCL enables NVLS above 2 GPUs)."""
    rows = [_row(1 << 20, 8), _row(1 << 20, 4), _row(1 << 20, 2)]
    scaled = [r.op.bytes_read for r in sel.nvls_rows(load_hardware("h100-sxm"), rows)]
    assert scaled == pytest.approx([(1 << 20) * 9 / 14, (1 << 20) * 5 / 6, 1 << 20])


def test_a100s_switch_does_not_reduce_so_its_rows_stay_ring(sel):
    rows = [_row(1 << 20, 8)]
    assert sel.nvls_rows(load_hardware("a100-sxm-80gb"), rows) == rows


@pytest.mark.parametrize("inner, expected", [
    ({"ring": 10.0, "nvls": 9.95}, "ring"),  # within 0.1 point: the shipped pricing stays
    ({"ring": 10.0, "nvls": 9.85}, "nvls"),
    ({"ring": 16.81, "nvls": 16.80}, "ring"),  # the A100 fold's scores
    ({"ring": 13.69, "nvls": 9.96}, "nvls"),  # the B300 fold's
])
def test_nvls_is_picked_only_when_it_beats_the_ring_by_more_than_a_tenth_of_a_point(sel, inner, expected):
    assert sel.pick(inner) == expected


def test_arguments_are_refused_with_exit_2(sel, capsys):
    assert sel.main(["--seed", "1"]) == 2
    assert "takes none" in capsys.readouterr().out
