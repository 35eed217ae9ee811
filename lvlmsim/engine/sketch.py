"""Streaming summaries: a run's request metrics folded as requests end, in memory that does not grow with the count.

A `LogHistogram` is a quantile sketch over fixed log-spaced bins (ratio GROWTH between edges, from MIN_VALUE_S to
MAX_VALUE_S). A value is reported as its bin's geometric midpoint, clamped to the exact minimum and maximum seen, so
every order statistic it returns is within RELATIVE_ERROR (sqrt(GROWTH) - 1, 0.499%) of the true one for values in
[MIN_VALUE_S, MAX_VALUE_S]; values below MIN_VALUE_S (zero waits) come back within MIN_VALUE_S of the truth. The
percentiles use numpy's conventions: linear interpolation between the order statistics around rank q(n-1) for
plain values (np.percentile), and the first value whose cumulative weight reaches q x total for weighted ones
(metrics.weighted_stats): interpolating two values each within the bound keeps the bound. Counts, sums and means
are exact (up to float summation order).

`StreamSummary` folds one ended request at a time (metrics.summarize_stream turns it into the run summary).
"""

from __future__ import annotations

import math

import numpy as np

from lvlmsim.engine.request import COMPLETED, REJECTED_S, Request

GROWTH = 1.01
MIN_VALUE_S = 1e-9
MAX_VALUE_S = 1e7
RELATIVE_ERROR = math.sqrt(GROWTH) - 1.0
PENDING_CAP = 4096
_LOG_G = math.log(GROWTH)
_NBINS = int(math.ceil(math.log(MAX_VALUE_S / MIN_VALUE_S) / _LOG_G)) + 2  # + underflow bin 0, overflow last


class LogHistogram:
    """Weighted counts of values in fixed log-spaced bins, with the exact count, weight, sum, min and max."""

    __slots__ = ("_bins", "_pending_v", "_pending_w", "max", "min", "n", "total_w", "weighted_sum")

    def __init__(self) -> None:
        self._bins = np.zeros(_NBINS, dtype=float)
        self._pending_v: list[float] = []  # single adds, binned together by add_many (cheaper than one by one)
        self._pending_w: list[float] = []
        self.n = 0
        self.total_w = 0.0
        self.weighted_sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float, weight: float = 1.0) -> None:
        """Fold one value (non-finite ones are not values: skipped, as stats() drops them)."""
        self._pending_v.append(value)
        self._pending_w.append(weight)
        if len(self._pending_v) >= PENDING_CAP:
            self._flush()

    def _flush(self) -> None:
        if self._pending_v:
            v, w = self._pending_v, self._pending_w
            self._pending_v, self._pending_w = [], []
            self.add_many(v, w)

    def add_many(self, values, weights) -> None:
        """Fold many values with their weights at once (non-finite values skipped)."""
        v = np.asarray(values, dtype=float)
        w = np.asarray(weights, dtype=float)
        ok = np.isfinite(v)
        v, w = v[ok], w[ok]
        if v.size == 0:
            return
        idx = np.zeros(v.size, dtype=np.int64)
        big = v >= MIN_VALUE_S
        idx[big] = np.minimum((np.log(v[big] / MIN_VALUE_S) / _LOG_G).astype(np.int64) + 1, _NBINS - 1)
        self._bins += np.bincount(idx, weights=w, minlength=_NBINS)
        self.n += int(v.size)
        self.total_w += float(w.sum())
        self.weighted_sum += float((v * w).sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))

    def merge(self, other: LogHistogram) -> None:
        """Fold another histogram's values into this one (same bins)."""
        other._flush()
        self._bins += other._bins
        self.n += other.n
        self.total_w += other.total_w
        self.weighted_sum += other.weighted_sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _value(self, b: int) -> float:
        """The reported value of bin b: its geometric midpoint, clamped to what was seen."""
        mid = self.min if b == 0 else MIN_VALUE_S * GROWTH ** (b - 0.5)
        return min(max(mid, self.min), self.max)

    def _bin_at(self, cum: np.ndarray, target: float, side: str) -> int:
        return min(int(np.searchsorted(cum, target, side=side)), _NBINS - 1)

    def percentile(self, q: float) -> float | None:
        """np.percentile(values, q) within RELATIVE_ERROR (None when empty); unit weights assumed."""
        self._flush()
        if self.n == 0:
            return None
        rank = q / 100.0 * (self.n - 1)
        lo, hi = math.floor(rank), math.ceil(rank)
        cum = np.cumsum(self._bins)
        v_lo = self._value(self._bin_at(cum, lo, "right"))
        v_hi = self._value(self._bin_at(cum, hi, "right"))
        return v_lo + (rank - lo) * (v_hi - v_lo)

    def weighted_percentile(self, q: float) -> float | None:
        """The first value whose cumulative weight reaches q% of the total (metrics.weighted_stats' rule)."""
        self._flush()
        if self.n == 0 or self.total_w <= 0:
            return None
        cum = np.cumsum(self._bins)
        return self._value(self._bin_at(cum, q / 100.0 * self.total_w, "left"))

    def stats(self, percentiles, weighted: bool = False) -> dict:
        """mean and the percentiles in metrics.stats' shape."""
        self._flush()
        if self.n == 0 or self.total_w <= 0:
            return {"mean": None, **{f"p{p}": None for p in percentiles}}
        pick = self.weighted_percentile if weighted else self.percentile
        return {"mean": self.weighted_sum / self.total_w, **{f"p{p}": pick(p) for p in percentiles}}


_METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "transfer_s")


class StreamSummary:
    """Running aggregates of the measured requests: counts, sums, SLO hits and a LogHistogram per latency metric
    (TTFT/TPOT/E2E/transfer over completed requests, queue time over every arrived one)."""

    def __init__(self, slos) -> None:
        self.slos = slos
        self.limits = {n: getattr(slos, n) for n in ("ttft_s", "tpot_s", "e2e_s") if getattr(slos, n) is not None}
        self.hist = {n: LogHistogram() for n in _METRICS}
        self.requests = 0
        self.completed = 0
        self.rejected = 0
        self.in_flight = 0
        self.output_tokens = 0
        self.preemptions = 0
        self.good = 0

    def fold(self, r: Request) -> None:
        """One measured request, in its final state (completed, rejected, or still in flight at the end)."""
        self.requests += 1
        self.preemptions += r.preemptions
        self.hist["queue_s"].add(r.queue_s)
        if r.status == REJECTED_S:
            self.rejected += 1
            return
        if r.status != COMPLETED:
            self.in_flight += 1
            return
        self.completed += 1
        self.output_tokens += r.output_tokens
        vals = {"ttft_s": r.first_token_s - r.arrival_s, "e2e_s": r.finish_s - r.arrival_s,
                "tpot_s": (r.finish_s - r.first_token_s) / (r.output_tokens - 1) if r.output_tokens > 1 else math.nan,
                "transfer_s": r.transfer_s}
        for name, v in vals.items():
            self.hist[name].add(v)
        if all(not (vals[n] > lim) for n, lim in self.limits.items()):  # NaN TPOT meets any threshold
            self.good += 1

    def pct_check(self) -> dict:
        """Each SLO threshold checked at the SLO percentile (as metrics._slo_check), from the sketches."""
        p = self.slos.percentile
        out = {}
        for name, limit in self.limits.items():
            at = self.hist[name].percentile(p)
            out[name] = {"threshold": limit, f"p{p:g}": at, "met": at is not None and at <= limit}
        return out


__all__ = ["GROWTH", "MAX_VALUE_S", "MIN_VALUE_S", "RELATIVE_ERROR", "LogHistogram", "StreamSummary"]
