"""Prometheus metrics of the tiering engine (see docs/metrics.md).

Counters and the batch histogram are driven by the ``batch_done``,
``run_finished`` and ``run_failed`` signals, so they count in the process that
moved the rows. The per-tier row and byte gauges come from
``tiering.analysis`` and are cached: they are recomputed at most every
``METRICS_REFRESH_SECONDS`` (a key of ``settings.TIERING``, default 60) and
right after a run ends, never on every scrape. The last-success timestamp is
read from the ledger with them, so it is right whichever process ran the move; so is the
``tiering_run_overdue`` alarm (``tiering.overdue``), whose refresh sends ``run_overdue``.

Every metric works in prometheus_client's multi-process mode
(``PROMETHEUS_MULTIPROC_DIR``): the gauges use the ``mostrecent``/``max`` modes.

The module needs the ``[prometheus]`` extra (django-prometheus); the app
connects it only where that is installed (``TieringConfig.ready``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest, HttpResponse

from . import extras, overdue
from .analysis import analyze, batch_seconds
from .conf import tiering_settings
from .models import MigrationBatch, MigrationRun, RunState
from .registry import registry
from .signals import batch_done, run_failed, run_finished

try:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram
except ImportError as exc:  # the [prometheus] extra is not installed
    raise extras.missing("tiering.metrics needs django-prometheus", extras.PROMETHEUS) from exc

logger = logging.getLogger("tiering.metrics")


ROWS_MOVED = Counter(
    "tiering_rows_moved", "Rows of tiered models moved between tiers.", ["model", "direction"]
)
CHILD_ROWS_MOVED = Counter(
    "tiering_child_rows_moved", "Related (child) rows moved with their parents.", ["model", "direction"]
)
BATCHES = Counter("tiering_batches", "Move batches committed.", ["model", "direction"])
BATCH_SECONDS = Histogram(
    "tiering_batch_duration_seconds",
    "Wall time of one committed move batch (copy, verify, delete).",
    ["model", "direction"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
VERIFICATION_FAILURES = Counter(
    "tiering_verification_failures",
    "Rows whose copy did not verify (changed mid-batch or no longer eligible) and stayed in the source.",
    ["model", "direction"],
)
RUNS = Counter("tiering_runs", "Runs that ended, by final state.", ["model", "direction", "state"])
RUN_FAILURES = Counter("tiering_run_failures", "Runs that failed.", ["model", "direction"])

TIER_ROWS = Gauge(
    "tiering_tier_rows", "Rows of a tiered model in a tier (cached).", ["model", "tier"],
    registry=None, multiprocess_mode="mostrecent",
)
TIER_CHILD_ROWS = Gauge(
    "tiering_tier_child_rows", "Related rows of a tiered model in a tier (cached).", ["model", "tier"],
    registry=None, multiprocess_mode="mostrecent",
)
TIER_BYTES = Gauge(
    "tiering_tier_bytes", "Bytes on disk of a tiered model (table, indexes, children) in a tier (cached).",
    ["model", "tier"], registry=None, multiprocess_mode="mostrecent",
)
LAST_SUCCESS = Gauge(
    "tiering_last_success_timestamp_seconds", "Unix time the last successful run of a model finished.",
    ["model", "direction"], registry=None, multiprocess_mode="max",
)
OVERDUE = Gauge(
    "tiering_run_overdue", "1 when a scheduled model's archive run has not succeeded for more than twice its "
    "schedule's interval while eligible rows wait (tiering.overdue), else 0.", ["model"],
    registry=None, multiprocess_mode="mostrecent",
)
CACHE_AGE = Gauge(
    "tiering_gauges_refreshed_timestamp_seconds", "Unix time the tier gauges were last recomputed.",
    registry=None, multiprocess_mode="max",
)
CACHED_GAUGES = (TIER_ROWS, TIER_CHILD_ROWS, TIER_BYTES, LAST_SUCCESS, OVERDUE, CACHE_AGE)

_lock = threading.Lock()
_refreshed_at: float | None = None  # time.monotonic() of the last refresh


def refresh_seconds() -> float:
    return float(tiering_settings.METRICS_REFRESH_SECONDS)


def invalidate() -> None:
    """Make the next scrape recompute the gauges."""
    global _refreshed_at
    _refreshed_at = None


def refresh(force: bool = False) -> bool:
    """Recompute the cached gauges if they are stale (or ``force``); True if it did."""
    global _refreshed_at
    with _lock:
        if not force and _refreshed_at is not None and time.monotonic() - _refreshed_at < refresh_seconds():
            return False
        try:
            _compute()
        except Exception:  # a scrape must not fail because a database is away
            logger.exception("could not refresh the tiering gauges")
            return False
        _refreshed_at = time.monotonic()
        return True


def _compute() -> None:
    for tiered in registry:
        figures = analyze(tiered, detail=False)
        for tier in (figures.hot, figures.cold):
            TIER_ROWS.labels(tiered.label, tier.tier).set(tier.rows)
            TIER_CHILD_ROWS.labels(tiered.label, tier.tier).set(tier.child_rows)
            TIER_BYTES.labels(tiered.label, tier.tier).set(tier.bytes)
    last = (
        MigrationRun.objects.using(tiering_settings.HOT)
        .filter(state=RunState.SUCCEEDED, finished_at__isnull=False)
        .values_list("model_label", "direction")
        .annotate(last=Max("finished_at"))
        .order_by()
    )
    for label, direction, finished in last:
        LAST_SUCCESS.labels(label, direction).set(finished.timestamp())
    late = {item.label for item in overdue.overdue(send=True)}  # the refresh is the alarm's periodic watcher
    for tiered in registry:
        OVERDUE.labels(tiered.label).set(1 if tiered.label in late else 0)
    CACHE_AGE.set(time.time())


class CachedTierCollector:
    """Exposes the cached gauges from the default registry, refreshing them when stale."""

    def describe(self) -> list:
        return []  # keeps registration from running a refresh (and a query) at import time

    def collect(self):
        refresh()
        for gauge in CACHED_GAUGES:
            yield from gauge.collect()


# ------------------------------------------------------------------ signal receivers
def on_batch_done(sender: Any, run: MigrationRun, batch: MigrationBatch, **kwargs: Any) -> None:
    labels = (run.model_label, run.direction)
    ROWS_MOVED.labels(*labels).inc(batch.rows)
    CHILD_ROWS_MOVED.labels(*labels).inc(batch.child_rows)
    BATCHES.labels(*labels).inc()
    BATCH_SECONDS.labels(*labels).observe(batch_seconds(batch))
    kept = getattr(batch, "kept", 0) or 0
    if kept:
        VERIFICATION_FAILURES.labels(*labels).inc(kept)


def on_run_finished(sender: Any, run: MigrationRun, **kwargs: Any) -> None:
    RUNS.labels(run.model_label, run.direction, run.state).inc()
    invalidate()
    if _multiprocess():
        refresh(force=True)  # other processes serve /metrics: publish the new figures now


def on_run_failed(sender: Any, run: MigrationRun, **kwargs: Any) -> None:
    RUN_FAILURES.labels(run.model_label, run.direction).inc()


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


def export_view(request: HttpRequest) -> HttpResponse:
    """``/metrics``: refresh the cached gauges if stale, then django-prometheus's exporter.

    With ``PROMETHEUS_METRICS_TOKEN`` set in the settings, a scrape must send
    ``Authorization: Bearer <token>`` (403 otherwise).
    """
    from django_prometheus.exports import ExportToDjangoView

    token = getattr(settings, "PROMETHEUS_METRICS_TOKEN", "")
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    refresh()
    return ExportToDjangoView(request)


_connected = False


def connect() -> None:
    """Register the collector and the signal receivers (once per process)."""
    global _connected
    if _connected:
        return
    REGISTRY.register(CachedTierCollector())
    batch_done.connect(on_batch_done, dispatch_uid="tiering.metrics.batch_done")
    run_finished.connect(on_run_finished, dispatch_uid="tiering.metrics.run_finished")
    run_failed.connect(on_run_failed, dispatch_uid="tiering.metrics.run_failed")
    _connected = True
