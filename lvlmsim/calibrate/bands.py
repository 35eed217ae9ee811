"""Uncertainty bands of the device-general model, derived from its leave-one-device-out residuals.

On a device the model never saw, its log errors on one kernel family are not independent row noise: a whole family
is often off by a similar factor (another memory system, another kernel generation). They are modelled as a
device-level offset plus row noise,

    r[D, i] = log(predicted / measured) = delta_D + e[D, i],

with delta_D the median of device D's held-out residuals and e its residuals around that median. delta_D is a
transfer error: the model fitted without D, which sets each family's efficiency level on the other devices, priced
on D. A new device's offset is unknown and drawn, as a hierarchical (partially pooled) normal model says:

    delta_D = mu + u_D,   u_D ~ (0, tau^2)   (mu: the family's own transfer bias, shared by every device),
    mu ~ (0, sigma_mu^2)                     (no bias expected: every family's level is fitted),

so the centre is the devices' mean offset c shrunk toward no bias, w c with w = sigma_mu^2 / (sigma_mu^2 + tau0^2/k)
(k devices), and

    delta_new = w c + tau * sqrt(1 + w/k) * t_df.

sigma_mu^2 comes by moments from the families measured on two or more devices (E[c^2] = sigma_mu^2 + tau0^2/k; one
device's offset cannot tell bias from its own spread). With few devices a family's mean offset is mostly its devices'
own offsets - held-out offsets of a family on two devices are each other's transfer error and have opposite signs -
and on the measured residuals sigma_mu^2 comes out 0, so the band is centred on no bias; a bias every family shared
would be followed. tau^2 is partially pooled across families, as in empirical-Bayes variance moderation: a family's
own offsets around w c carry k - w degrees of freedom (E[sum (delta - w c)^2] = (k - w) tau^2), and the between-device
variance tau0^2 pooled over every family the same way (a family held out on one device adds its one offset) carries
PRIOR_DF,

    tau^2 = (sum (delta - w c)^2 + PRIOR_DF tau0^2) / (k - w + PRIOR_DF),    df = k - w + PRIOR_DF,

so a family measured on one or two devices still gets a transfer band as wide as its own offsets and the devices'
general disagreement support, and one that happened to agree on three devices does not get a narrower one. The new
device's rows scatter as the held-out devices' rows did around their own offsets (their pooled centred residuals,
each device weighted alike: asymmetric, heavy-tailed, as measured). The band is the (10%, 90%) quantiles of
delta_new + e (Monte Carlo, seeded: the same residuals give the same band), turned into multipliers of a predicted
time: measured = predicted * exp(-r).

A device the model was fitted on gets its own band: the quantiles of its in-sample residuals (its offset is whatever
the joint fit left, known, not drawn). Regimes (size bins: GEMM m, attention tokens, KV bytes, message size) get the
same treatment on their own residuals when every device contributing to them has MIN_REGIME_ROWS rows.

Everything is computed from the residuals of the fit (lvlmsim.calibrate.loo), so refitting the model refits the
bands; no width is set by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

BAND_QUANTILES = (0.1, 0.9)
# Degrees of freedom of the pooled between-device variance tau0^2 when moderating one family's: the weight of
# "devices disagree about this much on every family" against a family's own k - w (k with no bias to estimate). Two:
# as much as two devices' offsets, so a family's own spread dominates once it has more devices than that.
PRIOR_DF = 2.0
MC_DRAWS = 40000
MIN_REGIME_ROWS = 20
MIN_DEVICE_ROWS = 5
SLIDING_REGIME = "sliding window"  # regime label of sliding-window rows: validated, never fitted, priced as full ones

Residuals = Mapping[str, Mapping[str, Sequence[float]]]  # device -> family key (or 'key|regime') -> log(pred/meas)


def _offsets(per_device: Mapping[str, Sequence[float]], min_rows: int = MIN_DEVICE_ROWS) -> dict[str, float]:
    return {d: float(np.median(r)) for d, r in per_device.items() if len(r) >= min_rows}


def _centred_draws(per_device: Mapping[str, np.ndarray], offsets: Mapping[str, float], n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """n draws of a row's residual around its device's offset, each device weighted alike."""
    devs = sorted(offsets)
    pick = rng.integers(0, len(devs), n)
    out = np.empty(n)
    for j, d in enumerate(devs):
        sel = pick == j
        centred = np.asarray(per_device[d], dtype=float) - offsets[d]
        out[sel] = centred[rng.integers(0, len(centred), int(sel.sum()))]
    return out


def ratio_band(log_residuals: np.ndarray) -> tuple[float, float]:
    """(p10, p90) of measured/predicted from log(predicted/measured) residuals."""
    lo, hi = np.quantile(-np.asarray(log_residuals, dtype=float), BAND_QUANTILES)
    return round(float(math.exp(lo)), 4), round(float(math.exp(hi)), 4)


def _family_offsets(residuals: Residuals, min_rows: int = MIN_DEVICE_ROWS) -> dict[str, np.ndarray]:
    """{family key: its devices' offsets} for every family key (regime keys excluded) with a device of `min_rows`."""
    out = {}
    for key in sorted({k for pk in residuals.values() for k in pk if "|" not in k}):
        offs = _offsets({d: pk[key] for d, pk in residuals.items() if key in pk}, min_rows)
        if offs:
            out[key] = np.array([offs[d] for d in sorted(offs)])
    return out


def pooled_between_variance(residuals: Residuals, *, min_rows: int = MIN_DEVICE_ROWS) -> tuple[float, int]:
    """(variance, degrees of freedom) of device offsets around their family's mean offset, pooled over every family
    key (regime keys excluded) measured on at least two devices: the unshrunk estimate pooled_variances starts from."""
    ss, dof = 0.0, 0
    for offs in _family_offsets(residuals, min_rows).values():
        if len(offs) >= 2:
            ss += float(np.sum((offs - offs.mean()) ** 2))
            dof += len(offs) - 1
    return (ss / dof if dof else 0.0), dof


def bias_weight(bias_var: float, tau0_sq: float, k: int) -> float:
    """w in [0, 1]: the share of a family's mean offset over k devices taken as the family's own bias rather than
    those devices' offsets (normal-normal shrinkage toward no bias: w = sigma_mu^2 / (sigma_mu^2 + tau0^2 / k))."""
    if bias_var <= 0.0:
        return 0.0
    if math.isinf(bias_var) or tau0_sq <= 0.0:
        return 1.0
    return bias_var / (bias_var + tau0_sq / k)


def pooled_bias_variance(family_offsets: Iterable[np.ndarray], tau0_sq: float) -> float:
    """sigma_mu^2, the spread of families' biases, by moments: a family's mean offset c over k >= 2 devices has
    E[c^2] = sigma_mu^2 + tau0^2 / k. A family on one device is left out: its one offset cannot tell its bias from
    that device's own offset, and families' spreads differ (one family's large offset would pass for a bias of all)."""
    terms = [float(o.mean()) ** 2 - tau0_sq / len(o) for o in family_offsets if len(o) >= 2]
    return max(0.0, float(np.mean(terms))) if terms else 0.0


def pooled_variances(residuals: Residuals, *, bias_var: float | None = None, min_rows: int = MIN_DEVICE_ROWS,
                     tol: float = 1e-12, max_iter: int = 200) -> tuple[float, float]:
    """(tau0^2, sigma_mu^2) solved together: tau0^2 is the mean square of every family's offsets around its shrunk
    centre w c over sum (k - w) degrees of freedom (a family on one device adds its one offset), sigma_mu^2 by
    moments given tau0^2 (pooled_bias_variance), or `bias_var` when given (math.inf: unshrunk centres, tau0^2 the
    offsets' variance around their family means); fixed-point iteration from the unshrunk estimate."""
    fams = list(_family_offsets(residuals, min_rows).values())
    tau0_sq, _dof = pooled_between_variance(residuals, min_rows=min_rows)
    sigma_mu_sq = bias_var
    for _ in range(max_iter):
        sigma_mu_sq = pooled_bias_variance(fams, tau0_sq) if bias_var is None else bias_var
        ws = [bias_weight(sigma_mu_sq, tau0_sq, len(o)) for o in fams]
        ss = sum(float(np.sum((o - w * o.mean()) ** 2)) for o, w in zip(fams, ws, strict=True))
        dof = sum(len(o) - w for o, w in zip(fams, ws, strict=True))
        new = ss / dof if dof > 0 else 0.0
        converged = abs(new - tau0_sq) <= tol
        tau0_sq = new
        if converged:
            break
    return tau0_sq, (pooled_bias_variance(fams, tau0_sq) if bias_var is None else bias_var)


def transfer_band(per_device: Mapping[str, Sequence[float]], tau0_sq: float, *, bias_var: float,
                  prior_df: float = PRIOR_DF, min_rows: int = MIN_DEVICE_ROWS, seed: int = 0,
                  ) -> tuple[float, float] | None:
    """(p10, p90) multipliers of a predicted time on a device the model was not fitted on, from the held-out
    residuals of the devices in `per_device` (None when no device has `min_rows` rows), given the pooled
    between-device variance `tau0_sq` and the spread of family biases `bias_var` (sigma_mu^2; math.inf centres the
    band on the devices' mean offset unshrunk)."""
    offsets = _offsets(per_device, min_rows)
    k = len(offsets)
    if k == 0:
        return None
    offs = np.array([offsets[d] for d in sorted(offsets)])
    w = bias_weight(bias_var, tau0_sq, k)
    centre = w * float(offs.mean())
    # E[sum (delta - w c)^2] = (k - w) tau^2 under the hierarchical model: k - w degrees of freedom of the family's own
    own_ss = float(np.sum((offs - centre) ** 2))
    df = (k - w) + prior_df
    tau_sq = (own_ss + prior_df * tau0_sq) / df if df > 0 else 0.0
    rng = np.random.default_rng(seed)
    t = rng.standard_t(df, MC_DRAWS) if df > 0 else np.zeros(MC_DRAWS)
    delta = centre + math.sqrt(tau_sq * (1.0 + w / k)) * t
    rows = _centred_draws({d: np.asarray(per_device[d]) for d in offsets}, offsets, MC_DRAWS, rng)
    return ratio_band(delta + rows)


def transfer_bands(residuals: Residuals, *, prior_df: float = PRIOR_DF, seed: int = 0, bias_var: float | None = None,
                   ) -> dict[str, tuple[float, float]]:
    """{family key or 'key|regime': transfer band} from every device's held-out residuals; a regime band only where
    each device that has the regime has MIN_REGIME_ROWS rows of it (none for sliding-window rows: an op never
    reports that regime). `bias_var` fixes sigma_mu^2 instead of estimating it (math.inf: unshrunk centres)."""
    tau0_sq, bias_var = pooled_variances(residuals, bias_var=bias_var)
    out = {}
    for key in sorted({k for pk in residuals.values() for k in pk}):
        per_dev = {d: pk[key] for d, pk in residuals.items() if key in pk}
        min_rows = MIN_REGIME_ROWS if "|" in key else MIN_DEVICE_ROWS
        if key.endswith(f"|{SLIDING_REGIME}"):
            continue
        if "|" in key and any(len(r) < min_rows for r in per_dev.values()):
            continue
        band = transfer_band(per_dev, tau0_sq, bias_var=bias_var, prior_df=prior_df, min_rows=min_rows,
                             seed=seed)
        if band is not None:
            out[key] = band
    return out


def measured_bands(in_sample: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """{family key or 'key|regime': band} of one device the model was fitted on, from its in-sample residuals."""
    return {k: ratio_band(np.asarray(r)) for k, r in sorted(in_sample.items())
            if len(r) >= (MIN_REGIME_ROWS if "|" in k else MIN_DEVICE_ROWS) and not k.endswith(f"|{SLIDING_REGIME}")}


def _inside(r: Sequence[float], band: tuple[float, float]) -> np.ndarray:
    ratio = np.exp(-np.asarray(r, dtype=float))
    return (ratio >= band[0]) & (ratio <= band[1])


def row_bands(per_key: Mapping[str, Sequence[float]], key: str, bands: Mapping[str, tuple[float, float]],
              *, by_regime: bool = True) -> list[tuple[Sequence[float], tuple[float, float]]]:
    """The rows of family `key` paired with the band a prediction for them carries: their regime's when it has one
    (the regime lists partition the family's rows), else the family's."""
    regimes = [k for k in sorted(per_key) if k.startswith(f"{key}|")] if by_regime else []
    if not regimes:
        return [(per_key[key], bands[key])]
    return [(per_key[rk], bands.get(rk, bands[key])) for rk in regimes]


def coverage(per_key: Mapping[str, Sequence[float]], bands: Mapping[str, tuple[float, float]], *,
             by_regime: bool = True) -> dict[str, dict]:
    """{family key: {coverage, n, inside}}: the share of one device's rows (`per_key`, its held-out residuals) inside
    `bands` (and their count), each row against its regime's band when `by_regime` and there is one."""
    out = {}
    for key in per_key:
        if "|" in key or key not in bands:
            continue
        pairs = row_bands(per_key, key, bands, by_regime=by_regime)
        hits = sum(int(_inside(r, b).sum()) for r, b in pairs)
        n = sum(len(r) for r, _b in pairs)
        out[key] = {"coverage": round(hits / n, 3), "n": n, "inside": hits}
    return out


def pooled_coverage(cov: Mapping[str, Mapping[str, Mapping]], keys: Iterable[str] | None = None) -> float | None:
    """The share of every held-out row inside its band, pooled over the device x family cells of `cov` (those of
    `keys` only, when given): each row counts once, so a family with many rows weighs more than in the cell mean.
    None when no cell is left."""
    wanted = None if keys is None else set(keys)
    cells = [c for per_key in cov.values() for k, c in per_key.items() if wanted is None or k in wanted]
    n = sum(c["n"] for c in cells)
    if not n:
        return None
    return sum(c.get("inside", c["coverage"] * c["n"]) for c in cells) / n


def nested_coverage(residuals: Residuals, *, prior_df: float = PRIOR_DF, seed: int = 0, by_regime: bool = True,
                    bias_var: float | None = None) -> dict[str, dict[str, dict]]:
    """Per held-out device and family key: {coverage, n, inside}, the share of its held-out rows inside the band derived
    WITHOUT its residuals (transfer_bands of the other devices' held-out residuals, the pooled between-device
    variance included): the band a device nobody measured gets, judged on that device."""
    out: dict[str, dict[str, dict]] = {}
    for dev, per_key in residuals.items():
        bands = transfer_bands({d: pk for d, pk in residuals.items() if d != dev}, prior_df=prior_df, seed=seed,
                               bias_var=bias_var)
        cov = coverage(per_key, bands, by_regime=by_regime)
        if cov:
            out[dev] = cov
    return out
