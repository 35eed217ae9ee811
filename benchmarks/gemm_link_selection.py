"""Nested leave-one-device-out choice of the GEMM and all-reduce links of the device-general model (issue 11).

    python benchmarks/gemm_link_selection.py            # every selection (~8 min on the shared machine)
    python benchmarks/gemm_link_selection.py gemm-ridge # one of them
    python benchmarks/gemm_link_selection.py nccl       # only the all-reduce links (seconds)
    python benchmarks/gemm_link_selection.py gemm-waves --seed 1   # the tables' row subsample at seed 1 (fits at 0)

For each outer held-out device, a family's link set is chosen among its CANDIDATES by an inner leave-one-out over the
remaining devices only (median |error| over their rows), then the family is fitted on those devices with the chosen
links and priced on the outer device, so the outer figures are held out from the choice too. Prints per fold the inner
scores, the choice (the first listed on a tie: the inner devices cannot tell the candidates apart), and the outer
error next to the flat derate. A last line scores the candidates by leave-one-out over all devices: the value to ship
(the per-fold lines are the honest estimate of choosing that way and fitting).
- gemm: prior exponent of the n0/k0 ~ (tensor FLOPs per SM per clock) links: none, 0.5, 1.0 (at ridge weight 1);
- gemm-ridge: the GEMM ridge weight (lvlmsim.calibrate.general.RIDGE_WEIGHTS) at the shipped prior: 1, 0.3, 0.1, 0.03;
- nccl: all-reduce latency links: none, clock only (a0, a1 ~ 1/clock), clock + datacenter-Blackwell flag;
- gemm-waves: the fp8 GEMM family's form: the plain GEMM form or its wave-quantised variant (WaveGemmForm: vLLM's
  per-tensor fp8 kernel does not split K), GEMM's links and ridge weight either way;
- gemm-mono: the GEMM families' saturation steepness in m, n and k free or capped at 1 (MonotoneGemmForm: a smaller
  dimension never takes longer) for all three families or for NVFP4 only, the fp8 family in waves either way (bf16
  without the split-K term shipped since: benchmarks/gemm_splitk_selection.py);
- custom-ar-stages: the custom all-reduce family's form: the plain all-reduce form or the one priced by the kernel's
  algorithm (StagedAllreduceForm: one stage reads (n-1) x the message, two stages add a barrier, a2), the shipped
  latency links (a2 takes a0's);
- custom-ar: the same for vLLM's custom all-reduce kernel (family allreduce/custom; its two-stage latency a2 linked as
  a0 and a1), plus the flag alone; then its
  held-out rows priced by the custom family and by NCCL's (what every vLLM all-reduce got before the family).
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_arg import pop_seed  # noqa: E402

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


def _custom_links(latency: dict | None) -> dict:
    """NCCL's links for the custom kernel's family, its two-stage latency a2 linked as a0 and a1."""
    links = _nccl_links(latency)
    if latency is not None:
        links["a2"] = dict(latency)
    return links


# selection -> (table family, form name, profile family keys, {candidate label: (links of that form, ridge weight[,
# form variant of a 'setup:' family])}); a None ridge weight is the shipped one (the SM-rate prior was selected at
# the then-shipped ridge 1, then the ridge)
GEMM_KEYS = ["gemm", "gemm.fp8", "gemm.fp4"]
FAMILIES = {
    "gemm": ("gemm", "gemm", GEMM_KEYS,
             {"none": (_gemm_links(None), 1.0), "0.5": (_gemm_links(0.5), 1.0), "1.0": (_gemm_links(1.0), 1.0)}),
    "gemm-ridge": ("gemm", "gemm", GEMM_KEYS, {str(w): (_gemm_links(general.SM_RATE_PRIOR), w)
                                                for w in (1.0, 0.3, 0.1, 0.03)}),
    "nccl": ("nccl", "allreduce", ["allreduce"],
             {"none": (_nccl_links(None), None), "clock": (_nccl_links({"log_clock": -1.0}), None),
              "clock+sm100": (_nccl_links(general.ALLREDUCE_LATENCY_LINKS), None)}),
    "gemm-waves": ("gemm", "setup:gemm.fp8", GEMM_KEYS,
                   {"plain": (general.LINKS["gemm"], None, "gemm+l2"), "waves": (general.LINKS["gemm"], None,
                                                                             "gemm+waves+l2")}),
    "gemm-mono": ("gemm", "variants:gemm", GEMM_KEYS,
                  {"free": (None, None, {"gemm": "gemm+l2", "gemm.fp8": "gemm+waves+l2", "gemm.fp4": "gemm+l2"}),
                   "mono": (None, None, {"gemm": "gemm+mono+l2", "gemm.fp8": "gemm+waves+mono+l2",
                                         "gemm.fp4": "gemm+mono+l2"}),
                   "mono-fp4": (None, None, {"gemm": "gemm+l2", "gemm.fp8": "gemm+waves+l2",
                                             "gemm.fp4": "gemm+mono+l2"})}),
    "custom-ar-stages": ("custom_allreduce", "setup:allreduce/custom", ["allreduce/custom"],
                         {"plain": (_nccl_links(general.CUSTOM_AR_LATENCY_LINKS), None, ""),
                          "stages": (_custom_links(general.CUSTOM_AR_LATENCY_LINKS), None, "allreduce+stages")}),
    "custom-ar": ("custom_allreduce", "setup:allreduce/custom", ["allreduce/custom"],
                  {"none": (_custom_links(None), None), "clock": (_custom_links({"log_clock": -1.0}), None),
                   "clock+sm100": (_custom_links(general.ALLREDUCE_LATENCY_LINKS), None),
                   "sm100": (_custom_links({"arch_sm100": general.ALLREDUCE_LATENCY_LINKS["arch_sm100"]}), None)}),
}


def _errors(keys: list[str], train: dict, hw, rows) -> tuple[np.ndarray, np.ndarray]:
    model = general.fit_general(train, families=keys)
    meas = np.array([r.measured_s for r in rows])
    pred = cost_model_times(rows, hw, model.profile_for(hw))
    return abs_pct_errors(pred, meas), abs_pct_errors(cost_model_times(rows, hw, DEFAULT_PROFILE), meas)


def _use(form: str, candidate: tuple, saved: tuple) -> None:
    """Set a candidate's links: a form's default links, or ('setup:<key>') one family's FamilySetup links."""
    links, ridge, *variant = candidate
    if form.startswith("variants:"):  # one form variant per family key, each with its form's links and ridge
        general.FAMILY_SETUPS = {**saved[2], **{k: general.FamilySetup(v, None, None) for k, v in variant[0].items()}}
        return
    if form.startswith("setup:"):
        key = form.split(":", 1)[1]
        was = saved[2][key]
        general.FAMILY_SETUPS = {**saved[2], key: general.FamilySetup(variant[0] if variant else was.variant, links,
                                                                      ridge or was.ridge)}
        return
    general.LINKS = {**saved[0], form: links}
    general.RIDGE_WEIGHTS = {**saved[1], **({form: ridge} if ridge is not None else {})}


def _shipped_links(form: str, saved: tuple) -> dict:
    links = saved[2][form.split(":", 1)[1]].links if form.startswith("setup:") else saved[0][form]
    return saved[0]["gemm"] if links is None else links  # a setup without links of its own takes its form's


def select(selection: str, devices: dict) -> None:
    family, form, keys, candidates = FAMILIES[selection]
    rows = {n: (hw, [r for r in rs if r.family == family]) for n, (hw, rs) in devices.items()}
    rows = {n: v for n, v in rows.items() if v[1]}
    print(f"\n{selection}: {'outer held-out':<22}{'inner median % per candidate':<62}{'chosen':<13}{'outer %':>8}"
          f"{'p90 %':>7}{'flat %':>8}")
    saved = (general.LINKS, general.RIDGE_WEIGHTS, general.FAMILY_SETUPS)
    try:
        for outer in rows:
            rest = {n: v for n, v in rows.items() if n != outer}
            scores = {}
            for label, candidate in candidates.items():
                _use(form, candidate, saved)
                errs = [_errors(keys, {rest[m][0].id: rest[m] for m in rest if m != inner}, *rest[inner])[0]
                        for inner in rest]
                scores[label] = float(np.median(np.concatenate(errs)))
            choice = min(scores, key=scores.get)
            tied = [k for k, v in scores.items() if abs(v - scores[choice]) < 0.05]
            _use(form, candidates[choice], saved)
            err, flat = _errors(keys, {v[0].id: v for v in rest.values()}, *rows[outer])
            inner = "  ".join(f"{k}: {v:.1f}" for k, v in scores.items())
            label = choice + (" (tie)" if len(tied) > 1 else "")
            print(f"{'':<6}{outer:<22}{inner:<62}{label:<13}{np.median(err):>8.1f}{np.percentile(err, 90):>7.1f}"
                  f"{np.median(flat):>8.1f}")
        scores = {}
        for label, candidate in candidates.items():
            _use(form, candidate, saved)
            errs = [_errors(keys, {rows[m][0].id: rows[m] for m in rows if m != held}, *rows[held])[0]
                    for held in rows]
            scores[label] = float(np.median(np.concatenate(errs)))
        inner = "  ".join(f"{k}: {v:.1f}" for k, v in scores.items())
        print(f"{'':<6}{'all devices':<22}{inner:<62}{min(scores, key=scores.get):<13}  (the value to ship)")
    finally:
        general.LINKS, general.RIDGE_WEIGHTS, general.FAMILY_SETUPS = saved
    ridge_now = saved[1].get(form, general.RIDGE_WEIGHT)
    if form.startswith("variants:"):
        now = {k: saved[2][k].variant if k in saved[2] else "gemm+l2" for k in keys}
        same = [k for k, (_links, _ridge, variants) in candidates.items() if variants == now]
        print(f"{'':<6}shipped: {same[0] if same else 'other'}")
        return
    variant_now = saved[2][form.split(":", 1)[1]].variant if form.startswith("setup:") else None
    same = [k for k, (links, _ridge, *variant) in candidates.items()
            if links == _shipped_links(form, saved) and (not variant or variant[0] == variant_now)]
    exact = [k for k in same if candidates[k][1] in (None, ridge_now)]
    shipped = exact[0] if exact else (f"{same[0]} links, at ridge {ridge_now}" if same else "other")
    print(f"{'':<6}shipped: {shipped}")


def nccl_priced(devices: dict) -> None:
    """The custom all-reduce rows held out per device, priced by the custom family and, as before it existed, by the
    NCCL family (the marker stripped), both fitted on the other devices with the shipped links."""
    import dataclasses

    from lvlmsim.cost.collectives import CUSTOM_AR_SUFFIX

    print(f"\ncustom all-reduce rows held out: {'device':<22}{'custom %':>9}{'p90':>7}{'NCCL-priced %':>15}{'p90':>7}")
    for held, (hw, rows) in devices.items():
        sel = [r for r in rows if r.family == "custom_allreduce"]
        train = {v[0].id: v for n, v in devices.items() if n != held}
        prof = general.fit_general(train, families=["allreduce", "allreduce/custom"]).profile_for(hw)
        meas = np.array([r.measured_s for r in sel])
        plain = [dataclasses.replace(r, op=dataclasses.replace(r.op, name=r.op.name.removesuffix(CUSTOM_AR_SUFFIX)))
                 for r in sel]
        own = abs_pct_errors(cost_model_times(sel, hw, prof), meas)
        nccl = abs_pct_errors(cost_model_times(plain, hw, prof), meas)
        print(f"{'':<33}{held:<22}{np.median(own):>9.1f}{np.percentile(own, 90):>7.1f}{np.median(nccl):>15.1f}"
              f"{np.percentile(nccl, 90):>7.1f}")


def main(argv: list[str] | None = None) -> int:
    try:
        seed, families = pop_seed(list(argv if argv is not None else sys.argv[1:]))
    except ValueError as err:
        print(err)
        return 2
    families = families or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        print(f"unknown family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to select")
        return 1
    t0 = time.perf_counter()
    devices = load_devices(measured / "aiconfigurator" / "data", seed=seed)
    for family in families:
        select(family, devices)
        if family == "custom-ar":
            nccl_priced(devices)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
