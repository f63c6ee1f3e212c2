"""Throttle a run on what the application sees: the latency of a probe on hot, and a replica's lag.

A thread times a probe on hot all through the run (by default a primary-key read of the model's newest hot
row; on SQLite also taking and releasing the write lock, which is what the application's inserts wait for
while a batch writes). Between batches the run asks ``Throttle.between``: when the probe's p99 over the
sliding window of its last ``WINDOW`` timings is above ``MAX_LATENCY_RATIO`` times the idle baseline (timed
before the first batch), the next batch is halved (a shorter write transaction) and the run pauses until
the probe's timings taken during the pause are within the ratio again; while within it, the batch grows
back and the pause shrinks. A pause whose timings stay over the limit for three windows is the
application's own load: the baseline is refreshed from it. With a replica alias, the run also waits
while the replica lags more than ``MAX_REPLICA_LAG`` seconds (asked of the replica's backend ops).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from .. import backends
from ..conf import DEFAULTS, tiering_settings
from . import locks

logger = logging.getLogger("tiering.mover")

MIN_BATCH = 10
MAX_PAUSE = 5.0  # longest pause between two looks at the probe
LAG_POLL = 0.2  # seconds between two looks at the replica's lag
REBASE = 3  # windows of timings over the limit in one pause that refresh the baseline
HEARTBEAT = 30.0  # a long wait keeps the run's lock fresh this often


def settings() -> dict:
    """TIERING['THROTTLE'] over its defaults."""
    return {**DEFAULTS["THROTTLE"], **(tiering_settings.THROTTLE or {})}


@dataclass(frozen=True)
class Limits:
    """The limits a run keeps; None: that limit is off."""

    max_latency_ratio: float | None = None
    max_replica_lag: float | None = None

    @classmethod
    def from_settings(cls, max_latency_ratio: float | None = None, max_replica_lag: float | None = None) -> Limits:
        conf = settings()
        return cls(max_latency_ratio if max_latency_ratio is not None else conf["MAX_LATENCY_RATIO"],
                   max_replica_lag if max_replica_lag is not None else conf["MAX_REPLICA_LAG"])

    @property
    def active(self) -> bool:
        return self.max_latency_ratio is not None or (self.max_replica_lag is not None and bool(settings()["REPLICA"]))


def p99(values) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0


def default_probe(tiered, alias: str) -> Callable[[], None]:
    """A primary-key read of the model's newest row on hot; where writers wait for a move's write transaction
    (SQLite), the write lock is also taken and released, as the application's inserts take it."""
    manager = tiered.model._base_manager.using(alias)
    key = manager.order_by("-pk").values_list("pk", flat=True).first()
    takes_write_lock = backends.ops(alias).writers_wait_for_moves

    def probe() -> None:
        manager.filter(pk=key).first()
        if takes_write_lock:
            with connections[alias].cursor() as cursor:
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute("ROLLBACK")

    return probe


class Prober(threading.Thread):
    """Times ``probe`` every ``interval`` seconds on its own connection; a probe still running counts with
    the time it has taken so far (a probe that blocks is latency the application sees)."""

    def __init__(self, probe: Callable[[], None], interval: float, window: int) -> None:
        super().__init__(name="tiering-throttle-probe", daemon=True)
        self.probe, self.interval = probe, interval
        self.samples: deque[float] = deque(maxlen=window)
        self.count, self.in_flight = 0, None
        self.lock, self.stopping = threading.Lock(), threading.Event()

    def run(self) -> None:
        try:
            self.probe()  # untimed: it connects
            while not self.stopping.is_set():
                start = self.in_flight = time.perf_counter()
                try:
                    self.probe()
                except DatabaseError:  # "database is locked" after the busy timeout: it waited that long
                    logger.debug("throttle probe failed", exc_info=True)
                with self.lock:
                    self.samples.append(time.perf_counter() - start)
                    self.count, self.in_flight = self.count + 1, None
                self.stopping.wait(self.interval)
        finally:
            connections.close_all()

    def window(self, since: int = 0) -> list[float]:
        """The window's timings taken after the ``since``-th, the running probe's included."""
        with self.lock:
            values = list(self.samples)[max(0, len(self.samples) - (self.count - since)):]
            if self.in_flight is not None:
                values.append(time.perf_counter() - self.in_flight)
        return values

    def wait_for(self, count: int, deadline: float | None) -> None:
        while self.count < count and self.is_alive() and not _past(deadline):
            time.sleep(self.interval)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class Throttle:
    """The decisions between batches: how large the next batch may be and how long to wait before it."""

    def __init__(self, ctx, limits: Limits, report: Callable[[str], None] | None = None) -> None:
        conf = settings()
        self.limits, self.report = limits, report or (lambda why: None)
        self.run, self.beaten = ctx.run, time.monotonic()
        self.window_size, self.interval = int(conf["WINDOW"]), float(conf["PROBE_INTERVAL"])
        self.replica = conf["REPLICA"] if limits.max_replica_lag is not None else None
        self.prober = None
        if limits.max_latency_ratio is not None:
            hot = tiering_settings.HOT
            probe = import_string(conf["PROBE"])(ctx.tiered, hot) if conf["PROBE"] else default_probe(ctx.tiered, hot)
            self.prober = Prober(probe, self.interval, self.window_size)
        self.baseline = 0.0
        self.cap: int | None = None  # the throttle's bound on the next batch's size
        self.pause = 0.0

    def start(self, deadline: float | None = None) -> None:
        """Time the idle baseline before the first batch."""
        if self.prober is None:
            return
        self.prober.start()
        self.prober.wait_for(self.window_size, deadline)
        self.baseline = p99(self.prober.window())
        logger.info("throttle: idle probe p99 %.2f ms", self.baseline * 1000)

    def stop(self) -> None:
        if self.prober is not None and self.prober.is_alive():
            self.prober.stopping.set()
            self.prober.join()

    @property
    def limit(self) -> float:
        return self.limits.max_latency_ratio * self.baseline

    def size(self, wanted: int) -> int:
        return wanted if self.cap is None else max(MIN_BATCH, min(wanted, self.cap))

    def between(self, size: int, elapsed: float, deadline: float | None = None) -> tuple[float, str]:
        """Wait as the limits ask after a batch of ``size`` rows that took ``elapsed`` seconds; return the
        seconds waited and why (empty when it did not wait)."""
        started, reasons = time.monotonic(), []
        if self.prober is not None:
            reasons += self._latency(size, elapsed, deadline)
        if self.replica is not None:
            reasons += self._replica_lag(deadline)
        return (time.monotonic() - started if reasons else 0.0), "; ".join(reasons)

    def _latency(self, size: int, elapsed: float, deadline: float | None) -> list[str]:
        seen = p99(self.prober.window())
        if seen <= self.limit:
            if self.cap is not None:
                self.cap = self.cap * 2 if self.cap * 2 < tiering_settings.BATCH_SIZE else None
            self.pause = self.pause / 2 if self.pause >= 0.002 else 0.0
            if not self.pause:
                return []
            time.sleep(min(self.pause, _left(deadline)))
            return [f"pacing {self.pause * 1000:.0f} ms for latency"]
        self.cap = max(MIN_BATCH, size // 2)
        self.pause = min(MAX_PAUSE, max(self.pause * 2, elapsed, self.interval))
        why = (f"probe p99 {seen * 1000:.1f} ms > {self.limits.max_latency_ratio:g}x idle "
               f"{self.baseline * 1000:.2f} ms; next batch <= {self.cap} rows")
        self.report(why)
        self._pause_until_within(deadline)
        return [why]

    def heartbeat(self) -> None:
        """Keep the run's lock from going stale (and being taken over) during a long wait."""
        if time.monotonic() - self.beaten >= HEARTBEAT:
            locks.heartbeat(self.run)
            self.beaten = time.monotonic()

    def _pause_until_within(self, deadline: float | None) -> None:
        """Pause at least ``self.pause``, then until the pause's latest timings (a window at most) are within
        the limit. Timings that stay over it for REBASE windows while the run is idle are the application's
        own load now: the latest window's p99 becomes the baseline."""
        mark = self.prober.count
        time.sleep(min(self.pause, _left(deadline)))
        while not _past(deadline) and self.prober.is_alive():
            self.prober.wait_for(mark + min(self.window_size, 20), deadline)
            seen = p99(self.prober.window(since=mark)[-self.window_size:])
            if seen <= self.limit:
                return
            if self.prober.count - mark >= REBASE * self.window_size:
                logger.info("throttle: idle probe p99 refreshed to %.2f ms", seen * 1000)
                self.baseline = seen
                return
            self.heartbeat()
            time.sleep(self.interval)

    def _replica_lag(self, deadline: float | None) -> list[str]:
        ops, limit, worst = backends.ops(self.replica), self.limits.max_replica_lag, None
        while not _past(deadline):
            lag = ops.replica_lag_seconds()
            if lag <= limit:
                break
            if worst is None:
                self.report(f"replica {self.replica!r} lags {lag:.1f} s > {limit:g} s")
            worst = max(worst or 0.0, lag)
            self.heartbeat()
            time.sleep(min(LAG_POLL, _left(deadline)))
        if worst is None:
            return []
        return [f"replica {self.replica!r} lagged up to {worst:.1f} s > {limit:g} s"]


def _left(deadline: float | None) -> float:
    return math.inf if deadline is None else max(0.0, deadline - time.monotonic())
