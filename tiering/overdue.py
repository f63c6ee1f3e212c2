"""The stale-schedule alarm: a scheduled model whose archive job has silently stopped doing its work.

A model is overdue when an enabled django-celery-beat schedule archives it, its last SUCCEEDED archive
run finished more than twice the schedule's interval ago (or it never had one), and rows that were
already eligible twice the interval ago are still in hot: the job had work and did not do it. The last
condition keeps an idle model quiet: a run with nothing to move records nothing in the ledger, so the
last success alone would call a healthy schedule overdue. A crontab's interval is the longest gap
between its next eight fire times (celery's own crontab arithmetic), so a weekday crontab counts the
weekend; an interval schedule's is its period. Without django-celery-beat nothing is scheduled: no alarm.

``overdue(send=True)`` also sends ``tiering.signals.run_overdue`` for each overdue model, once per
process and overdue state (model and last success): analyze_tiers, the dashboard and the metrics refresh
(at most every METRICS_REFRESH_SECONDS) call it so, so an alarm reaches receivers without a page reload
sending it again.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from . import schedule
from .conf import tiering_settings
from .models import Direction, MigrationRun, RunState
from .move import selection
from .registry import TieredModel, registry
from .signals import run_overdue

FIRES = 8  # fire times a crontab's interval is measured over

_sent: set[tuple[str, float | None]] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Overdue:
    tiered: TieredModel
    last_success: datetime | None
    interval: timedelta
    schedule: str

    @property
    def label(self) -> str:
        return self.tiered.label

    @property
    def every(self) -> str:
        return _human(self.interval)

    def describe(self) -> str:
        last = f"last succeeded {self.last_success:%Y-%m-%d %H:%M %Z}" if self.last_success else "never succeeded"
        return (f"{self.label}: archive run overdue, {last}; its schedule {self.schedule} runs every "
                f"{self.every} and eligible rows are waiting in hot")


def interval(task, now: datetime) -> timedelta | None:
    """How long a beat schedule waits between runs (None for solar or one-off schedules)."""
    if task.crontab is not None:
        cron, fires, at = task.crontab.schedule, [], now
        for _ in range(FIRES):
            start, delta, _ = cron.remaining_delta(at)
            at = start + delta
            fires.append(at)
        return max(b - a for a, b in zip(fires, fires[1:]))
    if task.interval is not None:
        return task.interval.schedule.run_every
    return None


def last_successes() -> dict[str, datetime]:
    """When each model's last SUCCEEDED archive run finished (what the last-success gauge shows)."""
    rows = (MigrationRun.objects.using(tiering_settings.HOT)
            .filter(direction=Direction.TO_COLD, state=RunState.SUCCEEDED, finished_at__isnull=False)
            .values_list("model_label").annotate(last=Max("finished_at")).order_by())
    return dict(rows)


def overdue(now: datetime | None = None, *, send: bool = False) -> list[Overdue]:
    """The overdue models (see the module docstring); ``send``: signal the ones not signalled yet."""
    now = now or timezone.now()
    tasks = schedule.scheduled()
    if not tasks:
        return []
    shortest: dict[str, tuple[timedelta, str]] = {}
    for labels, task in tasks:
        every = interval(task, now)
        if every is None:
            continue
        for label in labels:
            key = label.lower()
            if key not in shortest or every < shortest[key][0]:
                shortest[key] = (every, schedule._describe(task) if task.crontab else str(task.interval))
    last = {label.lower(): at for label, at in last_successes().items()}
    found = []
    for tiered in registry:
        if tiered.label.lower() not in shortest:
            continue
        every, described = shortest[tiered.label.lower()]
        since = last.get(tiered.label.lower())
        if since is not None and now - since <= 2 * every:
            continue
        if selection.eligible(tiered, now - 2 * every).exists():
            found.append(Overdue(tiered, since, every, described))
    if send:
        _send(found)
    return found


def _send(found: list[Overdue]) -> None:
    for late in found:
        key = (late.label, late.last_success.timestamp() if late.last_success else None)
        with _lock:
            if key in _sent:
                continue
            _sent.add(key)
        run_overdue.send(sender=TieredModel, model=late.label, last_success=late.last_success,
                         interval=late.interval)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
