"""Coalesced access tracking for access-based policies.

Reading a row must not turn into writing it. A touch is skipped while the
stored last-access value is younger than ``TIERING["TOUCH_INTERVAL"]``; the
remaining touches are buffered and written in bulk, one UPDATE per model,
tier and flush, when the buffer is full, when the oldest pending touch is
``TOUCH_FLUSH_SECONDS`` old, at the end of each request and at exit.
"""
from __future__ import annotations

import atexit
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.core.signals import request_finished
from django.utils import timezone

from .conf import tiering_settings


class AccessTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (model, alias, field) -> set of primary keys
        self._pending: dict[tuple[type, str, str], set] = defaultdict(set)
        self._oldest: float | None = None
        self.writes = 0  # UPDATE statements issued, for tests and metrics

    def touch(self, obj: Any, field: str) -> bool:
        """Record that ``obj`` was read; return True if a write was scheduled."""
        now = timezone.now()
        interval = timedelta(seconds=tiering_settings.TOUCH_INTERVAL)
        current = getattr(obj, field)
        if current is not None and now - current < interval:
            return False
        setattr(obj, field, now)
        key = (type(obj)._meta.concrete_model, obj._state.db or tiering_settings.HOT, field)
        with self._lock:
            self._pending[key].add(obj.pk)
            if self._oldest is None:
                self._oldest = time.monotonic()
            due = (
                sum(len(p) for p in self._pending.values()) >= tiering_settings.TOUCH_BUFFER_SIZE
                or time.monotonic() - self._oldest >= tiering_settings.TOUCH_FLUSH_SECONDS
            )
        if due:
            self.flush()
        return True

    def pending(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pending.values())

    def flush(self, **_signal_kwargs: Any) -> int:
        """Write every pending touch; return the number of rows updated."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(set)
            self._oldest = None
        if not pending:
            return 0
        now = timezone.now()
        updated = 0
        for (model, alias, field), pks in pending.items():
            done = model._base_manager.using(alias).filter(pk__in=pks).update(**{field: now})
            self.writes += 1
            if done < len(pks):
                # Some rows moved tier since they were read (or were deleted): follow them.
                other = tiering_settings.COLD if alias == tiering_settings.HOT else tiering_settings.HOT
                done += model._base_manager.using(other).filter(pk__in=pks).update(**{field: now})
                self.writes += 1
            updated += done
        return updated

    def discard(self) -> None:
        with self._lock:
            self._pending.clear()
            self._oldest = None


tracker = AccessTracker()
request_finished.connect(tracker.flush, dispatch_uid="tiering-flush-touches")


def _flush_at_exit() -> None:
    try:
        tracker.flush()
    except Exception:  # the database may already be gone at interpreter exit
        pass


atexit.register(_flush_at_exit)
