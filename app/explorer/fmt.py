"""The explorer formats numbers exactly as the CLI does: both use lvlmsim.fmt."""

from lvlmsim.fmt import GIB, band_text, fmt_count, fmt_gib, fmt_pct, fmt_si, fmt_time, fmt_usd, provenance_text

__all__ = ["GIB", "band_text", "fmt_count", "fmt_gib", "fmt_pct", "fmt_si", "fmt_time", "fmt_usd", "provenance_text"]
