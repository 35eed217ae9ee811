"""Nested leave-one-device-out check of a GEMM's fixed time counted in SM clock cycles (issue 11, wave 6).

    python benchmarks/gemm_clock_selection.py          # bf16 and fp8 (~5 min on the shared machine)
    python benchmarks/gemm_clock_selection.py bf16     # one dtype
    python benchmarks/gemm_clock_selection.py bf16 --seed 1   # the tables' row subsample at seed 1 (fits at seed 0)

Why: held out, the bf16 GEMMs' memory-bound and ridge rows with m <= 1024 are priced fast on A100 (signed median
-8.5 to -9.5%, 60% of its rows) and slow on H100 (+5.6 to +13.4%), while each is priced within 2% when fitted with
the others (`python benchmarks/gemm_residual_map.py --held-out --carriers`): what separates the two devices' small
GEMMs is not carried by any linked feature. A kernel's prologue and epilogue (address set-up, the first loads'
round trip, the tail wave, the launch inside the graph) are a number of SM cycles, so their time goes as 1 / clock:
A100's 1410 MHz is 0.71 x H100's 1980, RTX PRO 6000's 2430 MHz 1.23 x (datasheets, hardware_specs/*.yaml; B300
publishes no clock and gets H100's, the reference). Two places in the GEMM form hold such a fixed time, so three
candidates, each with the family's shipped form and ridge weight and GEMM's links (LINKS["gemm"]) otherwise:
- `b0bw`: the floor unlinked, bytes at half-saturated bandwidth (b0) by bandwidth alone (Little's law, prior 1): the
  setup every GEMM family had before this check;
- `b0clock`: b0 also by 1 / clock (prior -1): at steepness ~1 the memory term is bytes / (em_max x bandwidth) plus
  b0 / (em_max x bandwidth), a fixed time; b0 ~ bandwidth / clock makes that time a number of cycles;
- `floorclock`: the per-kernel floor by 1 / clock (prior -1).
The criterion is fixed before any outer figure is read (benchmarks/gemm_nested.py): per outer held-out device the
candidate with the lowest inner score (lvlmsim.calibrate.loo.inner_score: mean over the inner folds of the inner
held-out median |error|) wins, a tie keeps the first listed (`b0bw`); what ships is the candidate leave-one-out over
all the dtype's devices scores best (the mean of the `pooled held-out` line's per-device medians, as
benchmarks/gemm_link_selection.py). fp8 has three devices, so its inner folds fit on one device each. Figures are
median / p90 |error| (%), the dtype's rows only.
Outcome (seed 0): bf16 picks `b0clock` in the A100, B300 and H100 folds and `b0bw` in RTX PRO 6000's, nested A100 /
B300 / H100 / RTX PRO 6000 10.5 -> 8.7, 8.4 -> 9.4, 9.0 -> 7.7, 8.2 -> 8.2 (pooled 9.6 -> 8.3); it ships
(general.FAMILY_SETUPS["gemm"]). fp8 picks `b0clock` in the B300 and H100 folds and ties in RTX PRO 6000's (neither
inner device, B300 and H100, has a clock other than the reference's), outer 8.9 -> 8.7, 13.9 -> 14.2, 9.1 -> 9.1;
over all three devices `b0bw` scores 10.63 against 10.70, so fp8 keeps `b0bw`.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from gemm_nested import run_dtypes  # noqa: E402

from lvlmsim.calibrate import general  # noqa: E402

TABLE = "gemm"
FAMILIES = {"bf16": "gemm", "fp8": "gemm.fp8"}
CLOCK_PRIOR = -1.0  # a fixed number of SM cycles: time ~ 1 / clock


def candidates(key: str) -> dict[str, general.FamilySetup]:
    """Family `key`'s shipped form and ridge weight with GEMM's links, and with the two clock links added to them."""
    shipped = general.FAMILY_SETUPS[key]
    links = general.LINKS["gemm"]
    b0 = {**links, "b0": {**links["b0"], "log_clock": CLOCK_PRIOR}}
    floor = {**links, "floor_s": {"log_clock": CLOCK_PRIOR}}
    return {label: general.FamilySetup(shipped.variant, chosen, shipped.ridge)
            for label, chosen in (("b0bw", dict(links)), ("b0clock", b0), ("floorclock", floor))}


def main(argv: list[str] | None = None) -> int:
    return run_dtypes(list(argv if argv is not None else sys.argv[1:]), FAMILIES, candidates, inner_width=48,
                      label_width=11)


if __name__ == "__main__":
    raise SystemExit(main())
