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
