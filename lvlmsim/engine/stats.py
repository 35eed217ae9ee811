"""What an instance records while it runs: busy time, steps, the queue-length integral, a decimated time series of
batch size / queue length / KV occupancy, and inter-token gaps. The metrics collector reads these after the run."""

from __future__ import annotations

FLUSH_GAPS = 4096  # streaming runs: inter-token gaps held before they are folded into the sketch
TS_CAP = 4096  # time-series points kept per instance; beyond, every other point is dropped and the stride doubles


class InstanceStats:
    """Counters and series of one instance (plain attributes: the engine's hot path updates them in place)."""

    __slots__ = ("busy0", "busy_s", "itl_dt", "itl_n", "itl_sketch", "max_step_s", "nsteps", "q0", "q_area", "q_last",
                 "ts_batch", "ts_kv", "ts_mask", "ts_queue", "ts_t")

    def __init__(self) -> None:
        self.busy_s = 0.0
        self.max_step_s = 0.0
        self.nsteps = 0
        self.q_area = 0.0  # integral of the waiting-queue length over time (Little's law)
        self.q_last = 0.0
        # busy seconds and queue integral before the measured window opened (warm-up; see open_window)
        self.busy0 = 0.0
        self.q0 = 0.0
        self.ts_t: list[float] = []
        self.ts_batch: list[int] = []
        self.ts_queue: list[int] = []
        self.ts_kv: list[float] = []
        self.ts_mask = 0  # sample a step when nsteps & ts_mask == 0
        self.itl_dt: list[float] = []  # inter-token gaps, seconds
        self.itl_n: list[int] = []  # sequences that saw each gap
        self.itl_sketch = None  # streaming runs: a LogHistogram the two lists are flushed into (flush_itl)

    def queue_touch(self, now: float, queue_len: int) -> None:
        """Close the queue-length integral up to `now` (call before the queue length changes)."""
        self.q_area += queue_len * (now - self.q_last)
        self.q_last = now

    def open_window(self, busy_before_s: float, now: float, queue_len: int) -> None:
        """The measured window opens at `now` (warm-up requests sent): busy time and the queue integral count from
        here (`busy_before_s`: the busy seconds up to `now`, a step in flight included), and the inter-token gaps
        recorded so far are dropped."""
        self.queue_touch(now, queue_len)
        self.q0 = self.q_area
        self.busy0 = busy_before_s
        if self.itl_sketch is not None:
            self.itl_sketch = type(self.itl_sketch)()
        self.itl_dt.clear()  # in place: a decode stretch in progress appends through bound methods
        self.itl_n.clear()

    @property
    def window_busy_s(self) -> float:
        return self.busy_s - self.busy0

    @property
    def window_q_area(self) -> float:
        return self.q_area - self.q0

    def sample(self, now: float, batch: int, queue_len: int, kv_occupancy: float) -> None:
        self.ts_t.append(now)
        self.ts_batch.append(batch)
        self.ts_queue.append(queue_len)
        self.ts_kv.append(kv_occupancy)
        if len(self.ts_t) >= TS_CAP:
            for lst in (self.ts_t, self.ts_batch, self.ts_queue, self.ts_kv):
                del lst[1::2]
            self.ts_mask = self.ts_mask * 2 + 1

    def decode_gaps(self, since_last_s: float, step_s: float, n_dec: int, n_new: int) -> None:
        """Inter-token gaps of a step that advanced `n_dec` sequences: `since_last_s` for those that decoded in the
        previous decode step (prefill-only steps in between count, as with v0), `step_s` for the `n_new` that
        joined since (their previous token came out of the step just before)."""
        if n_dec - n_new:
            self.itl_dt.append(since_last_s)
            self.itl_n.append(n_dec - n_new)
        if n_new:
            self.itl_dt.append(step_s)
            self.itl_n.append(n_new)
        if self.itl_sketch is not None and len(self.itl_dt) >= FLUSH_GAPS:
            self.flush_itl()

    def flush_itl(self) -> None:
        """Streaming runs: fold the gaps recorded so far into the sketch and empty the lists (the engine calls this
        as sequences finish, so the lists stay short)."""
        if self.itl_sketch is not None and self.itl_dt:
            self.itl_sketch.add_many(self.itl_dt, self.itl_n)
            self.itl_dt.clear()
            self.itl_n.clear()

    def step_done(self, dt: float) -> None:
        self.busy_s += dt
        if dt > self.max_step_s:
            self.max_step_s = dt
        self.nsteps += 1


__all__ = ["FLUSH_GAPS", "TS_CAP", "InstanceStats"]
