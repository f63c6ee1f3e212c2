"""Nightly archiving schedules, kept as django-celery-beat PeriodicTask rows.

One PeriodicTask per tiered model runs ``tiering.archive_model`` on a crontab
taken from ``class Tiering: schedule`` or else ``TIERING["SCHEDULE"]``
(default ``"0 2 * * *"``), in the project's ``TIME_ZONE``. Beat reads the rows
from the database (``DatabaseScheduler``) and they show in django-celery-beat's
admin, where an operator may pause one. ``sync()`` is idempotent: it creates
missing rows, corrects drifted ones, removes rows of models no longer tiered,
and leaves ``enabled`` alone so that a paused schedule stays paused.

The rows need django-celery-beat (the ``[celery]`` extra) in INSTALLED_APPS;
without it the crontab expressions are still checked for their five fields.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, router, transaction

from . import extras
from .conf import tiering_settings
from .registry import registry

try:
    from celery.schedules import crontab
except ImportError:  # the [celery] extra is not installed: nothing reads the schedules
    crontab = None

ARCHIVE_TASK = "tiering.archive_model"
NAME_PREFIX = "tiering: archive "
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


@dataclass(frozen=True)
class Planned:
    label: str
    expression: str
    fields: dict[str, str]
    timezone: str

    @property
    def name(self) -> str:
        return schedule_name(self.label)


@dataclass(frozen=True)
class Change:
    action: str  # created, updated, unchanged, removed, enabled, disabled
    name: str
    detail: str = ""


def schedule_name(label: str) -> str:
    return f"{NAME_PREFIX}{label}"


def crontab_fields(expression: str) -> dict[str, str]:
    """``"0 2 * * *"`` -> CrontabSchedule fields; ValueError for a bad expression."""
    parts = str(expression).split()
    if len(parts) != 5:
        raise ValueError(f"crontab {expression!r} must have 5 fields: minute hour day-of-month month day-of-week")
    fields = dict(zip(CRON_FIELDS, parts))
    if crontab is None:
        return fields
    try:
        crontab(**fields)  # celery's own parser rejects out-of-range values
    except Exception as exc:
        raise ValueError(f"crontab {expression!r} is invalid: {exc}") from exc
    return fields


def plan(labels: Iterable[str] | None = None) -> list[Planned]:
    """The schedule each tiered model should have (raises ValueError/LookupError first, before any write)."""
    models = [registry.by_label(label) for label in labels] if labels else list(registry)
    planned = []
    for tiered in models:
        expression = tiered.schedule or tiering_settings.SCHEDULE
        try:
            fields = crontab_fields(expression)
        except ValueError as exc:
            raise ValueError(f"{tiered.label}: {exc}") from None
        planned.append(Planned(tiered.label, " ".join(fields.values()), fields, settings.TIME_ZONE))
    return planned


def _models():
    if not extras.has_beat():
        raise extras.missing("The schedules need django-celery-beat in INSTALLED_APPS", extras.CELERY)
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    return CrontabSchedule, PeriodicTask


def _describe(task) -> str:
    if task.crontab is None:
        return "no crontab"
    cron = task.crontab
    return " ".join(str(getattr(cron, f)) for f in CRON_FIELDS) + f" ({cron.timezone})"


def ours():
    """The PeriodicTasks this module manages, by name."""
    _, PeriodicTask = _models()
    return PeriodicTask.objects.filter(task=ARCHIVE_TASK, name__startswith=NAME_PREFIX).select_related("crontab")


def sync(labels: Iterable[str] | None = None, *, dry_run: bool = False) -> list[Change]:
    """Create or update one PeriodicTask per tiered model; idempotent."""
    CrontabSchedule, PeriodicTask = _models()
    labels = list(labels or [])
    planned = plan(labels)
    existing = {task.name: task for task in ours()}
    changes: list[Change] = []
    with transaction.atomic(using=router.db_for_write(PeriodicTask)):
        for entry in planned:
            wanted = f"{entry.expression} ({entry.timezone})"
            args = json.dumps([entry.label])
            task = existing.get(entry.name)
            if task is not None and task.args == args and task.interval_id is None and _describe(task) == wanted:
                changes.append(Change("unchanged", entry.name, wanted))
                continue
            changes.append(Change("created" if task is None else "updated", entry.name, wanted))
            if dry_run:
                continue
            cron, _ = CrontabSchedule.objects.get_or_create(**entry.fields, timezone=entry.timezone)
            task = task or PeriodicTask(name=entry.name, enabled=True)
            task.task, task.args, task.kwargs = ARCHIVE_TASK, args, "{}"
            task.crontab, task.interval, task.solar, task.clocked = cron, None, None, None
            task.description = f"Archive cold rows of {entry.label} (manage.py tiering_schedule)."
            task.save()
        if not labels:
            keep = {entry.name for entry in planned}
            for name, task in existing.items():
                if name not in keep:
                    changes.append(Change("removed", name, "model is no longer tiered"))
                    if not dry_run:
                        task.delete()
    return changes


def set_enabled(labels: Iterable[str] | None, enabled: bool, *, dry_run: bool = False) -> list[Change]:
    """Pause or resume the schedules of the named models (all when none are named)."""
    labels = [registry.by_label(label).label for label in labels or []]
    tasks = {task.name: task for task in ours()}
    names = [schedule_name(label) for label in labels] if labels else sorted(tasks)
    missing = [name for name in names if name not in tasks]
    if missing:
        raise LookupError(f"No schedule {missing[0]!r}: run manage.py tiering_schedule first")
    changes = []
    for name in names:
        task = tasks[name]
        if task.enabled == enabled:
            changes.append(Change("unchanged", name, "enabled" if enabled else "disabled"))
            continue
        changes.append(Change("enabled" if enabled else "disabled", name, _describe(task)))
        if not dry_run:
            task.enabled = enabled
            task.save()  # save(), not update(): beat notices the change through PeriodicTasks
    return changes


def listing() -> list[dict]:
    """Rows for ``tiering_schedule --list``."""
    return [
        {
            "name": task.name,
            "schedule": _describe(task),
            "enabled": task.enabled,
            "last_run_at": task.last_run_at,
            "total_run_count": task.total_run_count,
        }
        for task in ours().order_by("name")
    ]


@dataclass(frozen=True)
class NextRun:
    at: datetime  # aware; the page shows it in the current time zone
    schedule: str  # "0 2 * * * (Europe/Paris)"


def next_run_at(task, now: datetime) -> datetime:
    """When beat next runs ``task`` after ``now``: a crontab's next matching minute in the crontab's own
    time zone (celery's ``crontab.remaining_delta``, the fields beat itself matches), other schedules by
    their ``remaining_estimate`` from the last run."""
    if task.crontab is not None:
        start, delta, _ = task.crontab.schedule.remaining_delta(now)
        return (start + delta).astimezone(UTC)  # exact: remaining_estimate() reads its own clock
    schedule = task.schedule
    schedule.nowfun = lambda: now  # the same instant as the page, not a clock read a moment later
    return max(now, now + schedule.remaining_estimate(task.last_run_at or now))


def scheduled() -> list[tuple[list[str], object]] | None:
    """(labels, PeriodicTask) of every enabled ``archive_model`` beat schedule; None when django-celery-beat
    is not installed (nothing is scheduled then)."""
    if not extras.has_beat():
        return None
    _, PeriodicTask = _models()
    tasks = PeriodicTask.objects.filter(enabled=True, task=ARCHIVE_TASK).select_related(
        "crontab", "interval", "solar", "clocked")
    try:
        tasks = list(tasks)
    except DatabaseError:  # its tables are not migrated: nothing is scheduled
        return []
    found = []
    for task in tasks:
        try:
            args = json.loads(task.args or "[]")
            kwargs = json.loads(task.kwargs or "{}")
        except ValueError:
            continue
        found.append(([v for v in [*args, *kwargs.values()] if isinstance(v, str)], task))
    return found


def next_runs(now: datetime) -> dict[str, NextRun] | None:
    """The soonest enabled ``archive_model`` beat schedule of each model, by lower-case label; None when
    django-celery-beat is not installed (the next run is then unknown)."""
    tasks = scheduled()
    if tasks is None:
        return None
    found: dict[str, NextRun] = {}
    for labels, task in tasks:
        at = next_run_at(task, now)
        described = _describe(task) if task.crontab is not None else str(task.interval or task.solar or task.clocked)
        for label in labels:
            key = label.lower()
            if key not in found or at < found[key].at:
                found[key] = NextRun(at, described)
    return found
