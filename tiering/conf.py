"""The ``TIERING`` settings dict and its documented defaults.

Read it through ``tiering_settings.NAME``; values are looked up on every access,
so ``override_settings(TIERING=...)`` in tests takes effect at once.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Database alias that holds new and recently used rows; all writes go here.
    "HOT": "default",
    # Database alias that holds rows that went cold.
    "COLD": "cold",
    # Upper bound of rows per move batch (batches are sized by time within it; the orm path passes each key
    # as a query parameter and takes at most 10000). Large batches keep the per-batch overhead small;
    # BATCH_TARGET_SECONDS keeps each one a short transaction.
    "BATCH_SIZE": 50000,
    # Target wall time of one move batch, in seconds: batches stay short transactions. The first batch is
    # 1000 rows; each batch's time then sets the next one's size, at most 16x larger or smaller.
    "BATCH_TARGET_SECONDS": 0.5,
    # Rows pulled per tier and round trip when merged lists stream both tiers.
    "READ_CHUNK_SIZE": 500,
    # Access tracking writes at most once per row per this many seconds.
    "TOUCH_INTERVAL": 300,
    # Pending touches are written in bulk when this many are buffered...
    "TOUCH_BUFFER_SIZE": 500,
    # ...or when the oldest pending touch is this many seconds old.
    "TOUCH_FLUSH_SECONDS": 5,
    # A run lock whose heartbeat is older than this many seconds is taken over.
    "LOCK_STALE_SECONDS": 300,
    # Default celery-beat crontab for archiving each tiered model (minute hour dom month dow).
    "SCHEDULE": "0 2 * * *",
    # Storage prices per GB and month used by analyze_tiers and the dashboard.
    "COST_PER_GB_MONTH": {"hot": 0.25, "cold": 0.02},
    # ISO 4217 code of the currency of COST_PER_GB_MONTH, shown with every cost figure.
    "CURRENCY": "USD",
    # Force the copy path: "sqlite" (ATTACH), "pg_copy" (COPY), "pg_insert" (INSERT ... SELECT between two
    # schemas of one PostgreSQL database), "orm", or the dotted path of a tiering.move.paths.BaseCopyPath
    # subclass; None takes the first path that fits the HOT/COLD pair.
    "MOVE_PATH": None,
    # Run dashboard "Run now" moves in the web process instead of through Celery.
    "RUN_IN_PROCESS": False,
    # Opening a row's change page in the admin reads it as the application does: a cold row of a model whose
    # AccessPolicy has promote_on_access moves back to hot, and the access field is touched. False: the admin
    # (changelist, change, history and delete pages, actions) leaves every row in its tier, its access field
    # untouched; only the move actions move rows.
    "ADMIN_PROMOTES_ON_VIEW": False,
    # Throttle moves on what the application sees (tiering/move/throttle.py); migrate_cold/restore_hot's
    # --max-latency-ratio and --max-replica-lag override the two limits. None turns a limit off.
    "THROTTLE": {
        # Keep the p99 of a probe on hot, over its sliding window, within this many times its idle p99 (timed
        # before the run): the next batch is halved and the run pauses while it is over; e.g. 1.5.
        "MAX_LATENCY_RATIO": None,
        # Pause between batches while REPLICA lags more than this many seconds behind hot.
        "MAX_REPLICA_LAG": None,
        # Database alias of a replica of hot (PostgreSQL streaming replica) whose lag MAX_REPLICA_LAG limits.
        "REPLICA": None,
        # Dotted path of a function (tiered_model, alias) -> a callable timed as one probe, standing for the
        # application's typical request; None: a primary-key read of the model's newest hot row (on SQLite
        # also taking and releasing the write lock, which the application's inserts wait for).
        "PROBE": None,
        # Seconds between two probes, and probes in the sliding window (and in the idle baseline).
        "PROBE_INTERVAL": 0.01,
        "WINDOW": 100,
    },
    # Tier row and byte gauges of /metrics are recomputed at most this often (and after each run).
    "METRICS_REFRESH_SECONDS": 60,
}


class TieringSettings:
    """Attribute access to ``settings.TIERING`` merged over ``DEFAULTS``."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown TIERING setting {name!r}")
        user = getattr(settings, "TIERING", {}) or {}
        return user.get(name, DEFAULTS[name])

    @property
    def aliases(self) -> tuple[str, str]:
        return (self.HOT, self.COLD)


tiering_settings = TieringSettings()
