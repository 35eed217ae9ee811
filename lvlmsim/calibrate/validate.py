"""`lvlmsim validate`: predicted vs measured time for every row of a folder of measured kernel tables.

For each row the cost model (CostModel(hardware, profile)) predicts the time of the Op the graph builders make for
that shape; errors are |predicted/measured - 1| in percent, summarised per family and per size regime, side by side
with the uncalibrated roofline default (DefaultProfile) so every figure says what calibration bought.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times, error_stats
from lvlmsim.calibrate.measured import (
    FAMILIES,
    TABLES,
    LoadResult,
    Measurement,
    assign_allreduce_algorithm,
    load_aiconfigurator,
)
from lvlmsim.cost.profile import DEFAULT_PROFILE, EfficiencyProfile
from lvlmsim.cost.roofline import CostModel
from lvlmsim.errors import SpecError
from lvlmsim.specs.hardware import HardwareSpec


def compare(rows: Sequence[Measurement], hw: HardwareSpec, profile: EfficiencyProfile,
            baseline: EfficiencyProfile = DEFAULT_PROFILE) -> dict:
    """Per-family and per-regime error of `profile` (and of `baseline`) on measured rows."""
    report: dict[str, dict] = {}
    fams = [f for f in TABLES if any(r.family == f for r in rows)]
    fams += sorted({r.family for r in rows} - set(fams))
    for fam in fams:
        sel = [r for r in rows if r.family == fam]
        meas = np.array([r.measured_s for r in sel])
        cm = CostModel(hw, profile)
        costs = [cm.cost(r.op) for r in sel]
        err = abs_pct_errors(np.array([c.time_s for c in costs]), meas)
        base = abs_pct_errors(cost_model_times(sel, hw, baseline), meas)
        entry = error_stats(err, base)
        entry["profile_sources"] = sorted({c.source for c in costs})
        regime_of = FAMILIES[fam].regime if fam in FAMILIES else None
        if regime_of:
            labels = np.array([regime_of(r) for r in sel])
            order = list(dict.fromkeys(sorted(set(labels), key=lambda s: _regime_order(fam, s))))
            entry["regimes"] = {lab: error_stats(err[labels == lab], base[labels == lab]) for lab in order}
        else:
            entry["regimes"] = {}
        dtypes = np.array([r.op.dtype for r in sel])
        if len(set(dtypes)) > 1:  # e.g. bf16 and fp8 GEMMs: separate kernels, separate fits
            for dt in sorted(set(dtypes)):
                entry["regimes"][f"dtype {dt}"] = error_stats(err[dtypes == dt], base[dtypes == dt])
        report[fam] = entry
    return report


def _regime_order(fam: str, label: str) -> int:
    probe = FAMILIES[fam].regime_order if fam in FAMILIES else ()
    return probe.index(label) if label in probe else len(probe)


def validate(hw: HardwareSpec, data_dir, profile: EfficiencyProfile) -> tuple[dict, dict]:
    """(report, info): the comparison for every table under `data_dir`, and what was read and skipped."""
    from lvlmsim.calibrate.mla import compare_mla, load_mla_modules

    mla = load_mla_modules(data_dir)  # the `mla` family: whole MLA modules priced as the graph's MLA layer
    try:
        loaded = load_aiconfigurator(data_dir)
    except SpecError:
        if not mla.rows:
            raise
        loaded = LoadResult()  # a folder of MLA module tables only
    report = compare(assign_allreduce_algorithm(loaded.rows, hw), hw, profile)
    report.update(compare_mla(mla.rows, hw, profile, data_dir=data_dir))
    from lvlmsim.calibrate.moe import moe_report
    from lvlmsim.specs.registry import profiles_dir

    moe = moe_report(hw, data_dir, profiles_dir())  # the `moe` family: fused MoE layers (device-general fit)
    if moe is not None:
        report["moe"] = moe
    attach_skipped(report, loaded.skipped + mla.skipped)
    # the moe table is read by its own loader: its rows and file count in the header too (they were left out)
    moe_files = [str(f.relative_to(data_dir)) for f in sorted(Path(data_dir).rglob("moe_perf.csv"))] if moe else []
    info = {"files": loaded.files + mla.files + moe_files, "skipped": dict(loaded.skipped + mla.skipped),
            "rows": len(loaded.rows) + len(mla.rows) + (moe["n"] if moe else 0), "hardware": hw.id,
            "profile": getattr(profile, "name", str(profile))}
    return report, info


# table families whose skipped rows are reported under another family's cell: the MLA module tables are one `mla`
SKIPPED_UNDER = {"mla_context": "mla", "mla_generation": "mla"}
EMPTY_CELL = {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0, "roofline_median_abs_pct_err": None,
              "roofline_p90_abs_pct_err": None, "profile_sources": [], "regimes": {}}


def skipped_by_family(skipped: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """{report family: {reason: rows}} of a loader's skip counts, whose reasons read '<table family>: <why>'."""
    out: dict[str, dict[str, int]] = {}
    for reason, n in sorted(skipped.items()):
        table = reason.split(":", 1)[0].strip()
        out.setdefault(SKIPPED_UNDER.get(table, table), {})[reason] = int(n)
    return out


def attach_skipped(report: dict, skipped: Mapping[str, int], empty_cell: Mapping = EMPTY_CELL) -> None:
    """Every family cell of `report` gains `skipped` ({reason: rows}, {} when none), so a JSON reader learns what the
    text output prints; a family whose every row was skipped gets `empty_cell` (n 0, no errors) to carry its reasons.
    A cell that already names its skips (the `moe` family's loader) keeps them."""
    by_family = skipped_by_family(skipped)
    for fam, entry in report.items():
        entry["skipped"] = {**by_family.pop(fam, {}), **entry.get("skipped", {})}
    for fam, reasons in by_family.items():
        report[fam] = {**empty_cell, "skipped": reasons}
