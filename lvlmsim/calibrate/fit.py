"""Least-squares fit of a family's efficiency form on log time, in numpy only (no scipy).

The objective is sum_i (log t_pred_i - log t_meas_i)^2 — relative error, so a 3 us kernel counts as much as a
30 ms one. t_pred replicates roofline.CostModel exactly (the same max(compute, memory) + floor, the same link model
for all-reduce), vectorised over rows. The minimiser is Levenberg-Marquardt with a forward-difference Jacobian in
an unconstrained parameter space (logistic for efficiencies, log for scales), restarted from a few jittered points;
discrete hyper-parameters (tile sizes) are picked by grid search on a subsample. Rows are split at random (seeded)
into a fit half and a held-out half; the held-out median |error| is what the profile reports as its error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lvlmsim.calibrate.bands import ratio_band
from lvlmsim.calibrate.kernels import as_run
from lvlmsim.calibrate.measured import Measurement
from lvlmsim.calibrate.model import (
    EFF_MIN,
    EXP_RANGE,
    FORMS,
    FamilyFit,
    Form,
    apply_overlap,
    elementwise_role,
    family_key,
    np_math,
    op_role,
)
from lvlmsim.cost.profile import DEFAULT_PROFILE, EfficiencyProfile
from lvlmsim.cost.roofline import CostModel, allreduce_latency_s, alltoall_link
from lvlmsim.ops.op import ALLREDUCE, ALLTOALL, ELEMENTWISE
from lvlmsim.specs.hardware import HardwareSpec


@dataclass
class FamilyData:
    """Columns of one family's rows, ready for vectorised prediction on one device."""

    kind: str
    x: tuple[np.ndarray, ...]  # form features
    compute_s: np.ndarray  # flops / peak[dtype] (seconds at 100% compute efficiency)
    memory_s: np.ndarray  # bytes / bw, or the ring's bandwidth term for all-reduce (seconds at 100%)
    fixed_s: np.ndarray  # terms the cost model adds outside the profile (ring latency)
    measured_s: np.ndarray

    def __len__(self) -> int:
        return len(self.measured_s)

    def take(self, idx: np.ndarray) -> FamilyData:
        return FamilyData(self.kind, tuple(c[idx] for c in self.x), self.compute_s[idx], self.memory_s[idx],
                          self.fixed_s[idx], self.measured_s[idx])


def family_data(kind: str, rows: Sequence[Measurement], hw: HardwareSpec, form: Form | None = None) -> FamilyData:
    form = form or FORMS[kind]
    ops = [as_run(r.op, hw) for r in rows]  # as the device's attention kernel runs them (FA2 windowed decode)
    feats = np.array([form.features(op, hw) for op in ops], dtype=float).reshape(len(rows), -1)
    meas = np.array([r.measured_s for r in rows], dtype=float)
    if kind == ALLREDUCE:
        lat = hw.intra_node_link.latency_us * 1e-6
        n = np.array([max(r.op.devices, 1) for r in rows], dtype=float)
        link_bw = np.array([hw.intra_node_link.collective_bw_bytes_s(int(d)) for d in n], dtype=float)
        b = np.array([r.op.bytes_read for r in rows], dtype=float)
        comp = np.zeros(len(rows))
        mem = 2 * (n - 1) / n * b / link_bw
        fixed = np.array([allreduce_latency_s(d, lat) for d in n], dtype=float)
    elif kind == ALLTOALL:  # as CostModel._alltoall: (n-1)/n of the bytes over the link, plus one latency
        links = [alltoall_link(r.op, hw) for r in rows]
        n = np.array([max(r.op.devices, 1) for r in rows], dtype=float)
        b = np.array([r.op.bytes_read for r in rows], dtype=float)
        comp = np.zeros(len(rows))
        mem = (n - 1) / n * b / np.array([bw for bw, _lat in links], dtype=float)
        fixed = np.where(n > 1, np.array([lat for _bw, lat in links], dtype=float), 0.0)
    else:
        peaks: dict[str, float] = {}
        for op in ops:
            if op.dtype not in peaks:
                peaks[op.dtype] = hw.peak_flops(op.dtype)
        comp = np.array([op.flops / peaks[op.dtype] for op in ops], dtype=float)
        mem = np.array([op.bytes for op in ops], dtype=float) / hw.mem_bw_bytes_per_s
        fixed = np.zeros(len(rows))
    return FamilyData(kind, tuple(feats[:, i] for i in range(feats.shape[1])), comp, mem, fixed, meas)


def predict(form: Form, params: Sequence[float], hyper: dict[str, float], data: FamilyData) -> np.ndarray:
    """Seconds per call, as CostModel would compute them with these parameters (vectorised)."""
    params = tuple(params)
    ncore = len(form.core)
    with np.errstate(over="ignore"):
        ec, em, floor_s = form.eff(np_math(), params[:ncore], hyper, data.x)
    ec = np.clip(ec, EFF_MIN, 1.0)
    em = np.clip(em, EFF_MIN, 1.0)
    if form.overlap:
        with np.errstate(divide="ignore", invalid="ignore"):
            ec2, em2 = apply_overlap(ec, em, params[ncore], data.compute_s, data.memory_s)
        ok = (data.compute_s > 0) & (data.memory_s > 0)
        ec, em = np.where(ok, ec2, ec), np.where(ok, em2, em)
    body = np.maximum(data.compute_s / ec, data.memory_s / em)
    return body + data.fixed_s + floor_s


# ------------------------------------------------------------------------------------------------------------------
# parameter transforms


def to_z(form: Form, natural: Sequence[float], floor_ref: float = 1.0) -> np.ndarray:
    """Unconstrained coordinates: logit for efficiencies, log for scales, a bounded logit for the floor."""
    z = []
    for q, v in zip(form.params, natural, strict=True):
        if q.kind == "eff":
            v = min(max(v, 1e-6), 1 - 1e-6)
            z.append(math.log(v / (1 - v)))
        elif q.kind in ("floor", "exp"):
            lo, hi = (FLOOR_BAND[0] * floor_ref, FLOOR_BAND[1] * floor_ref) if q.kind == "floor" else EXP_RANGE
            u = min(max((v - lo) / (hi - lo), 1e-6), 1 - 1e-6)
            z.append(math.log(u / (1 - u)))
        elif q.kind == "pos":
            z.append(math.log(max(v, 1e-300)))
        else:
            z.append(v)
    return np.array(z)


def from_z(form: Form, z: np.ndarray, floor_ref: float = 1.0) -> list[float]:
    out = []
    for q, v in zip(form.params, z, strict=True):
        if q.kind == "eff":
            out.append(1.0 / (1.0 + math.exp(-min(max(v, -40.0), 40.0))))
        elif q.kind in ("floor", "exp"):
            lo, hi = (FLOOR_BAND[0] * floor_ref, FLOOR_BAND[1] * floor_ref) if q.kind == "floor" else EXP_RANGE
            u = 1.0 / (1.0 + math.exp(-min(max(v, -40.0), 40.0)))
            out.append(lo + (hi - lo) * u)
        elif q.kind == "pos":
            out.append(math.exp(min(max(v, -700.0), 700.0)))
        else:
            out.append(float(v))
    return out


FLOOR_QUANTILE = 0.01  # the floor's reference: this quantile of a family's measured times ...
FLOOR_BAND = (0.5, 1.3)  # ... and the floor is fitted within this band of multiples of it
FLOOR_INIT = 0.95
PRIOR_WEIGHT = 0.01
Z_LIMIT = 30.0  # unconstrained coordinates stay within +-30: scales within e^30, efficiencies not at exactly 0 or 1
ROBUST_SCALE = 0.05  # soft-L1 scale on log time: residuals beyond ~5% count linearly, not quadratically


def _residuals(form: Form, z: np.ndarray, hyper: dict, data: FamilyData, log_meas: np.ndarray,
               floor_ref: float, z_prior: np.ndarray) -> np.ndarray:
    """Soft-L1 transformed log residuals: sum of squares = sum 2d^2(sqrt(1+(r/d)^2)-1), robust to kernel outliers.

    A weak prior pulls the unconstrained parameters toward the form's defaults (PRIOR_WEIGHT per parameter): it is
    negligible against thousands of rows, and keeps a 30-row CPU family from wandering to absurd values.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        t = predict(form, from_z(form, z, floor_ref), hyper, data)
        r = np.log(np.maximum(t, 1e-15)) - log_meas
    r = np.where(np.isfinite(r), r, 50.0)
    d = ROBUST_SCALE
    rr = np.sign(r) * d * np.sqrt(2.0 * (np.sqrt(1.0 + (r / d) ** 2) - 1.0))
    return np.concatenate([rr, PRIOR_WEIGHT * (z - z_prior)])


# The final (refinement) solves of fit_form run to the solver's own stopping rule; FINAL_MAX_ITER only bounds them.
# It was 150, which 21 of the 44 refinement solves of the shipped H100 profile (18 of cpu-generic's 32) stopped at;
# 16000 by the general model's rule (benchmarks/fit_convergence.py --profile: at 1000 13 and 9 reach it, at 4000 2
# and 1, at 16000 none, the most 6747). The shipped h100-sxm.json is refitted with it (calibration/README.md, "Round 6,
# per-device profile"); cpu-generic.json is not (its CSV cannot be re-measured here). `calibrate --quick` keeps 80
# (a speed mode). The grid's screening solves (GRID_MAX_ITER on the grid subsample) rank tile candidates: a
# heuristic, capped.
FINAL_MAX_ITER = 16000
GRID_MAX_ITER = 60


class Convergence(NamedTuple):
    """How an iterative solve ended: the iterations it ran and whether it stopped at its iteration cap, i.e. before
    its own stopping rule (no improving step, or a relative cost decrease below its tolerance) ended it."""

    iterations: int
    at_cap: bool


def levenberg_marquardt(form: Form, z0: np.ndarray, hyper: dict, data: FamilyData, max_iter: int = 150,
                        tol: float = 1e-10, floor_ref: float = 1.0,
                        z_prior: np.ndarray | None = None) -> tuple[np.ndarray, float, Convergence]:
    """Minimise the sum of squared (robust) log residuals from z0 over the `free` parameters; returns (z, cost, how
    the solve ended)."""
    log_meas = np.log(data.measured_s)
    z = np.clip(np.array(z0, dtype=float), -Z_LIMIT, Z_LIMIT)
    z_prior = np.array(z0 if z_prior is None else z_prior, dtype=float)
    r = _residuals(form, z, hyper, data, log_meas, floor_ref, z_prior)
    cost = float(r @ r)
    lam = 1e-3
    idx = list(range(len(z)))
    npar = len(idx)
    rel = 0.0
    iterations, at_cap = 0, True  # at_cap until the stopping rule ends the loop
    while iterations < max_iter:
        iterations += 1
        jac = np.empty((len(r), npar))
        for col, j in enumerate(idx):
            step = 1e-6 * max(1.0, abs(z[j]))
            zj = z.copy()
            zj[j] += step
            jac[:, col] = (_residuals(form, zj, hyper, data, log_meas, floor_ref, z_prior) - r) / step
        g = jac.T @ r
        a = jac.T @ jac
        diag = np.diag(a).copy() + 1e-12
        improved = False
        while lam < 1e12:
            try:
                dz = np.linalg.solve(a + lam * np.diag(diag), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            z_new = z.copy()
            z_new[idx] += dz
            z_new = np.clip(z_new, -Z_LIMIT, Z_LIMIT)
            r_new = _residuals(form, z_new, hyper, data, log_meas, floor_ref, z_prior)
            c_new = float(r_new @ r_new)
            if c_new < cost:
                rel = (cost - c_new) / max(cost, 1e-300)
                z, r, cost = z_new, r_new, c_new
                lam = max(lam / 3.0, 1e-9)
                improved = True
                break
            lam *= 4.0
        if not improved or rel < tol:
            at_cap = False
            break
    return z, cost, Convergence(iterations, at_cap)


def fit_form(kind: str, data: FamilyData, *, seed: int = 0, starts: int = 4, max_iter: int | None = None,
             grid_rows: int = 6000, init: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Best (params, hyper) for `data`: hyper grid on a subsample, then multi-start LM on all rows."""
    form = FORMS[kind]
    rng = np.random.default_rng(seed)
    init = dict(init or {})
    # The floor is fitted within a band around the time of the smallest kernels measured (a low quantile): left
    # free, a saturation in bytes with exponent 1 mimics a constant and steals it, and the floor is what a tiny op
    # costs however little it does (and what a runtime swaps).
    floor_ref = float(np.quantile(data.measured_s, FLOOR_QUANTILE))
    base = [init.get(q.name, floor_ref * FLOOR_INIT if q.kind == "floor" else q.init) for q in form.params]
    z_base = to_z(form, base, floor_ref)
    grid = [dict(zip(form.hyper_grid, vals, strict=True)) for vals in itertools.product(*form.hyper_grid.values())]
    grid = grid or [{}]
    sub = data if len(data) <= grid_rows else data.take(rng.choice(len(data), grid_rows, replace=False))
    starts_z = [z_base] + [z_base + rng.normal(0.0, 0.7, len(z_base)) for _ in range(max(0, starts - 1))]
    best_hyper, best_cost, best_z = grid[0], math.inf, z_base
    for hyper in grid:
        for z0 in starts_z[: 2 if len(grid) > 1 else len(starts_z)]:
            z, cost, _conv = levenberg_marquardt(form, z0, hyper, sub, max_iter=GRID_MAX_ITER,
                                                 floor_ref=floor_ref, z_prior=z_base)
            if cost < best_cost:
                best_hyper, best_cost, best_z = hyper, cost, z
    # refine on every row from the grid winner and from the jittered starts
    best_cost = math.inf
    for z0 in [best_z] + starts_z[1:]:
        z, cost, _conv = levenberg_marquardt(form, z0, best_hyper, data, z_prior=z_base, floor_ref=floor_ref,
                                             max_iter=FINAL_MAX_ITER if max_iter is None else max_iter)
        if cost < best_cost:
            best_cost, best_z_all = cost, z
    params = dict(zip(form.param_names, from_z(form, best_z_all, floor_ref), strict=True))
    return params, dict(best_hyper)


# ------------------------------------------------------------------------------------------------------------------
# errors


def error_stats(err: np.ndarray, base: np.ndarray) -> dict:
    """The validate report of one family or regime: median/p90 |error| % of the model and of its baseline, n."""
    if len(err) == 0:
        return {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0, "roofline_median_abs_pct_err": None,
                "roofline_p90_abs_pct_err": None}
    return {
        "median_abs_pct_err": round(float(np.median(err)), 2),
        "p90_abs_pct_err": round(float(np.percentile(err, 90)), 2),
        "n": int(len(err)),
        "roofline_median_abs_pct_err": round(float(np.median(base)), 2),
        "roofline_p90_abs_pct_err": round(float(np.percentile(base, 90)), 2),
    }


def abs_pct_errors(pred_s: np.ndarray, meas_s: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(pred_s) / np.asarray(meas_s) - 1.0) * 100.0


def summarize(err_pct: np.ndarray) -> dict[str, float | int | None]:
    err = np.asarray(err_pct, dtype=float)
    if len(err) == 0:
        return {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0}
    return {"median_abs_pct_err": round(float(np.median(err)), 2),
            "p90_abs_pct_err": round(float(np.percentile(err, 90)), 2), "n": int(len(err))}


def cost_model_times(rows: Sequence[Measurement], hw: HardwareSpec, profile: EfficiencyProfile) -> np.ndarray:
    """Predicted seconds for rows through the real CostModel (what the simulator will use)."""
    cm = CostModel(hw, profile)
    return np.array([cm.cost(r.op).time_s for r in rows], dtype=float)


def split_indices(n: int, seed: int, holdout_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Random (fit, holdout) split of n rows, reproducible from the seed."""
    perm = np.random.default_rng(seed).permutation(n)
    n_hold = int(round(n * holdout_fraction))
    if n >= 2:
        n_hold = min(max(n_hold, 1), n - 1)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


MIN_BAND_ROWS = 20  # fewer held-out rows: the band is derived from their median error (FamilyFit.band)


def fit_family(kind: str, rows: Sequence[Measurement], hw: HardwareSpec, *, seed: int = 0,
               holdout_fraction: float = 0.5, starts: int = 4, max_iter: int | None = None,
               max_fit_rows: int | None = None, notes: str = "") -> tuple[FamilyFit, np.ndarray]:
    """Fit one family on a random part of `rows`, measure its error and its p10/p90 band of measured / predicted on
    the rest; returns (fit, holdout mask)."""
    data = family_data(kind, rows, hw)
    fit_idx, hold_idx = split_indices(len(rows), seed, holdout_fraction)
    fit_data = data.take(fit_idx)
    if max_fit_rows and len(fit_idx) > max_fit_rows:
        fit_data = fit_data.take(np.random.default_rng(seed + 1).choice(len(fit_idx), max_fit_rows, replace=False))
    params, hyper = fit_form(kind, fit_data, seed=seed, starts=starts, max_iter=max_iter)
    params = {k: float(f"{v:.6g}") for k, v in params.items()}  # what the JSON keeps is what the errors are of
    form = FORMS[kind]
    plist = [params[n] for n in form.param_names]
    hold = data.take(hold_idx)
    pred_hold = predict(form, plist, hyper, hold)
    err = abs_pct_errors(pred_hold, hold.measured_s)
    err_fit = abs_pct_errors(predict(form, plist, hyper, data.take(fit_idx)), data.measured_s[fit_idx])
    hold_rows = [rows[i] for i in hold_idx]
    base = abs_pct_errors(cost_model_times(hold_rows, hw, DEFAULT_PROFILE), hold.measured_s)
    s, sf = summarize(err), summarize(err_fit)
    fam = FamilyFit(
        kind=kind, params=params, hyper=hyper,
        dtypes=sorted({r.op.dtype for r in rows}),
        holdout_median_abs_pct_err=s["median_abs_pct_err"] if len(hold_idx) else sf["median_abs_pct_err"],
        holdout_p90_abs_pct_err=s["p90_abs_pct_err"] if len(hold_idx) else sf["p90_abs_pct_err"],
        n_fit=int(len(fit_idx)), n_holdout=int(len(hold_idx)),
        roofline_default_holdout_median_abs_pct_err=summarize(base)["median_abs_pct_err"], notes=notes,
    )
    if len(hold_idx) >= MIN_BAND_ROWS:  # the held-out rows' own (asymmetric) quantiles of measured / predicted
        fam.band_p10_ratio, fam.band_p90_ratio = ratio_band(np.log(pred_hold / hold.measured_s))
    mask = np.zeros(len(rows), dtype=bool)
    mask[hold_idx] = True
    return fam, mask


# ------------------------------------------------------------------------------------------------------------------
# a whole profile

SEPARATE_DTYPES = ("fp8", "int8", "int4", "fp4")  # low-precision kernels get their own fit (different kernels, scaling)
MIN_ROWS = 8  # fewer rows than this and a family keeps the roofline default


def group_key(m: Measurement) -> str:
    """Profile family key a measurement belongs to: the op kind, kind.dtype for low-precision kernels, or
    elementwise/role for elementwise ops whose tag names a role (vidur.input_layernorm -> elementwise/norm)."""
    if m.op.kind == ELEMENTWISE:
        role = elementwise_role(m.tag or m.op.name)
        if role:
            return family_key(ELEMENTWISE, role=role)
    role = op_role(m.op.kind, m.op.name)  # a runtime's custom all-reduce kernel: allreduce/custom
    if role:
        return family_key(m.op.kind, role=role)
    return f"{m.op.kind}.{m.op.dtype}" if m.op.dtype in SEPARATE_DTYPES else m.op.kind


def fit_profile(rows: Sequence[Measurement], hw: HardwareSpec, *, name: str, seed: int = 0,
                holdout_fraction: float = 0.5, starts: int = 4, max_iter: int | None = None,
                max_fit_rows: int | None = 20000, aliases: dict[str, str] | None = None, meta: dict | None = None,
                notes: dict[str, str] | None = None, log=None):
    """Fit every family present in `rows`; returns (FittedProfile, holdout mask aligned with `rows`)."""
    from lvlmsim.calibrate.model import FittedProfile

    groups: dict[str, list[int]] = {}
    for i, m in enumerate(rows):
        groups.setdefault(group_key(m), []).append(i)
    families: dict[str, FamilyFit] = {}
    mask = np.zeros(len(rows), dtype=bool)
    for key in sorted(groups):
        idx = groups[key]
        if len(idx) < MIN_ROWS:
            if log:
                log(f"{key}: {len(idx)} rows < {MIN_ROWS}, left to the roofline default")
            continue
        sub = [rows[i] for i in idx]
        fam, hold = fit_family(sub[0].op.kind, sub, hw, seed=seed, holdout_fraction=holdout_fraction, starts=starts,
                               max_iter=max_iter, max_fit_rows=max_fit_rows, notes=(notes or {}).get(key, ""))
        families[key] = fam
        mask[np.asarray(idx)[hold]] = True
        if log:
            log(f"{key}: {fam.n_fit} fit / {fam.n_holdout} held out rows, held-out median |err| "
                f"{fam.holdout_median_abs_pct_err}% "
                f"(roofline default {fam.roofline_default_holdout_median_abs_pct_err}%)")
    aliases = dict(aliases or {})
    if ELEMENTWISE not in families and ELEMENTWISE not in aliases:
        # elementwise ops of an unknown role: the most generic fitted role stands in (stated in the JSON)
        for role in ("copy", "add", "act", "norm"):
            if family_key(ELEMENTWISE, role=role) in families:
                aliases[ELEMENTWISE] = family_key(ELEMENTWISE, role=role)
                break
    al = {k: v for k, v in aliases.items() if v in families and k not in families}
    meta = dict(meta or {})
    meta.setdefault("split", {"seed": seed, "holdout_fraction": holdout_fraction, "method": "random rows per family"})
    return FittedProfile(name, hw.id, families, aliases=al, meta=meta), mask
