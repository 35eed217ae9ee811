"""The explorer formats numbers exactly as the CLI does: both use lvlmsim.fmt."""

from lvlmsim.fmt import GIB, fmt_gib, fmt_si, fmt_time

__all__ = ["GIB", "fmt_gib", "fmt_si", "fmt_time"]
