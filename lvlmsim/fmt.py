"""Human formatting of the API's SI numbers, shared by the CLI and the explorer (one place, one spelling)."""

from __future__ import annotations

GIB = 2**30


def fmt_time(s: float) -> str:
    """Seconds with a unit a person reads at a glance (s, ms or us)."""
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
