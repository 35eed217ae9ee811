"""Human formatting of the API's SI numbers, shared by the CLI and the explorer (one place, one spelling).

Units: times in s/ms/us (min/h beyond two minutes), FLOPs and bytes in decimal SI prefixes (kB = 1000 B) except
memory capacities in GiB (2**30 B, as the devices' HBM sizes are quoted); money in US dollars."""

from __future__ import annotations

import math

GIB = 2**30


def fmt_time(s: float) -> str:
    """Seconds with a unit a person reads at a glance (h, min, s, ms or us)."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    if s >= 7200:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_si(x: float, unit: str) -> str:
    """1.23e12 -> '1.23 T<unit>'."""
    for div, pre in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {pre}{unit}"
    return f"{x:.0f} {unit}"


def fmt_gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def fmt_usd(x: float | None) -> str:
    """Dollars: cents below $100, whole dollars with thousands separators above ('$4,380')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"${x:,.2f}" if abs(x) < 100 else f"${x:,.0f}"


def fmt_pct(x: float | None) -> str:
    """A percentage already in % units ('18%', '-3%')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.0f}%"


def fmt_count(n: float) -> str:
    """Large counts with thousands separators ('84,672')."""
    return f"{n:,.0f}"


def band_text(keys: dict) -> str:
    """One line for an estimate's p10/p90 keys (Estimate.band_keys): '80% band (...): TTFT a - b  TPOT ...', or why
    there is none."""
    if keys.get("ttft_s_p10") is None:
        return "80% band: none (this profile has no held-out errors: flat derate or pure roofline)"
    parts = [f"{label} {fmt_time(keys[f'{k}_p10'])} - {fmt_time(keys[f'{k}_p90'])}"
             for label, k in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"))]
    return "80% band (p10 - p90, from the cost model's held-out errors): " + "  ".join(parts)


PROFILE_KINDS = {"measured": "measured on this device", "transferred": "transferred: the device-general model or "
                 "another device's profile", "flat": "flat roofline derate"}


def provenance_text(prov: dict) -> str:
    """Which efficiency model priced a device and how sure it is, from calibrate.profiles.profile_provenance:
    "priced by general-gpu (transferred: ..., expected error ~14%)", as `plan` prints it per device."""
    err = prov.get("expected_error_pct")
    err_txt = f", expected error ~{err:.0f}%" if err is not None else ", no error estimate"
    kind = prov.get("profile_kind", "")
    return f"priced by {prov.get('profile')} ({PROFILE_KINDS.get(kind, kind)}{err_txt})"
