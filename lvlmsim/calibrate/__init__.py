"""Calibration: torch microbenchmarks, measured-table importers, fitted efficiency profiles (torch imported lazily)."""
