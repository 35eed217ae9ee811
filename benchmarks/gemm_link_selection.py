"""Nested leave-one-device-out choice of the GEMM and all-reduce links of the device-general model (issue 11).

    python benchmarks/gemm_link_selection.py            # both families (~3 min)
    python benchmarks/gemm_link_selection.py nccl       # only the all-reduce links (seconds)

For each outer held-out device, a family's link set is chosen among its CANDIDATES by an inner leave-one-out over the
remaining devices only (median |error| over their rows), then the family is fitted on those devices with the chosen
links and priced on the outer device, so the outer figures are held out from the choice too. Prints per fold the inner
scores, the choice (the first listed on a tie: the inner devices cannot tell the candidates apart), and the outer
error next to the flat derate.
- gemm: prior exponent of the n0/k0 ~ (tensor FLOPs per SM per clock) links: none, 0.5, 1.0;
- nccl: all-reduce latency links: none, clock only (a0, a1 ~ 1/clock), clock + datacenter-Blackwell flag.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times  # noqa: E402
from lvlmsim.calibrate.loo import load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.cost.profile import DEFAULT_PROFILE  # noqa: E402


def _gemm_links(prior: float | None) -> dict:
    links = {p: dict(fs) for p, fs in general.LINKS["gemm"].items() if p not in ("n0", "k0")}
    if prior is not None:
        links.update({"n0": {"log_sm_rate": prior}, "k0": {"log_sm_rate": prior}})
    return links


def _nccl_links(latency: dict | None) -> dict:
    links = {p: dict(fs) for p, fs in general.LINKS["allreduce"].items() if p not in ("a0", "a1")}
    if latency is not None:
        links.update({"a0": dict(latency), "a1": dict(latency)})
    return links


# table family -> (form name, profile family keys, {candidate label: links of that form})
FAMILIES = {
    "gemm": ("gemm", ["gemm", "gemm.fp8", "gemm.fp4"],
             {"none": _gemm_links(None), "0.5": _gemm_links(0.5), "1.0": _gemm_links(1.0)}),
    "nccl": ("allreduce", ["allreduce"],
             {"none": _nccl_links(None), "clock": _nccl_links({"log_clock": -1.0}),
              "clock+sm100": _nccl_links(general.ALLREDUCE_LATENCY_LINKS)}),
}


def _errors(keys: list[str], train: dict, hw, rows) -> tuple[np.ndarray, np.ndarray]:
    model = general.fit_general(train, families=keys)
    meas = np.array([r.measured_s for r in rows])
    pred = cost_model_times(rows, hw, model.profile_for(hw))
    return abs_pct_errors(pred, meas), abs_pct_errors(cost_model_times(rows, hw, DEFAULT_PROFILE), meas)


def select(family: str, devices: dict) -> None:
    form, keys, candidates = FAMILIES[family]
    rows = {n: (hw, [r for r in rs if r.family == family]) for n, (hw, rs) in devices.items()}
    rows = {n: v for n, v in rows.items() if v[1]}
    print(f"\n{family}: {'outer held-out':<22}{'inner median % per candidate':<44}{'chosen':<13}{'outer %':>8}"
          f"{'p90 %':>7}{'flat %':>8}")
    saved = general.LINKS
    try:
        for outer in rows:
            rest = {n: v for n, v in rows.items() if n != outer}
            scores = {}
            for label, links in candidates.items():
                general.LINKS = {**saved, form: links}
                errs = [_errors(keys, {rest[m][0].id: rest[m] for m in rest if m != inner}, *rest[inner])[0]
                        for inner in rest]
                scores[label] = float(np.median(np.concatenate(errs)))
            choice = min(scores, key=scores.get)
            tied = [k for k, v in scores.items() if abs(v - scores[choice]) < 0.05]
            general.LINKS = {**saved, form: candidates[choice]}
            err, flat = _errors(keys, {v[0].id: v for v in rest.values()}, *rows[outer])
            inner = "  ".join(f"{k}: {v:.1f}" for k, v in scores.items())
            label = choice + (" (tie)" if len(tied) > 1 else "")
            print(f"{'':<6}{outer:<22}{inner:<44}{label:<13}{np.median(err):>8.1f}{np.percentile(err, 90):>7.1f}"
                  f"{np.median(flat):>8.1f}")
    finally:
        general.LINKS = saved
    shipped = next((k for k, v in candidates.items() if v == saved[form]), "other")
    print(f"{'':<6}shipped: {shipped}")


def main(argv: list[str] | None = None) -> int:
    families = (argv if argv is not None else sys.argv[1:]) or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        print(f"unknown family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    t0 = time.perf_counter()
    devices = load_devices(measured / "aiconfigurator" / "data")
    for family in families:
        select(family, devices)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
