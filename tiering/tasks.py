"""Celery tasks: archive, restore and analyse through the same engine as the commands.

Every task calls ``tiering.move`` (or ``tiering.analysis``); none moves a row
itself. Transient database errors (connection lost, database not accepting
connections, lock timeout, serialization failure, deadlock) are retried with
exponential backoff and full jitter; programming errors (bad SQL, integrity,
bad arguments) fail at once. A task that finds nothing to move returns
``{"status": "nothing to move"}`` and records no run. A task that finds the
model's lock held by another live run returns ``{"status": "locked"}`` and
logs why: the other run is doing the work. Failures are logged with the run id; the engine sends
``tiering.signals.run_failed``/``run_finished`` for projects to act on.

Scale-out: ``archive_model_parallel`` splits the eligible key range into
``workers`` slices, opens one ledger run, and hands the slices to a chord of
``archive_range`` tasks that all write their batches into that run; the chord
callback ``finish_parallel`` closes the run once every slice has ended.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from django.db import utils as db_utils
from django.db.models import F
from django.utils import timezone

from . import analysis, extras, move, schema
from .arguments import check_options
from .conf import tiering_settings
from .filters import check_lookups, parse_filters, parse_pks
from .models import Direction, MigrationRun, RunState, jsonable_key
from .move import keys, selection, undo
from .move.conflicts import described
from .registry import TieredModel, registry
from .text import one_line

try:
    from celery import Task, chord, shared_task
    from celery.utils.time import get_exponential_backoff_interval
except ImportError as exc:  # the [celery] extra is not installed
    raise extras.missing("tiering.tasks needs Celery", extras.CELERY) from exc

try:  # psycopg is optional: SQLite-only projects do not install it
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None

logger = logging.getLogger("tiering.tasks")

# --- which errors are worth a retry --------------------------------------------------------------

_PERMANENT: tuple[type[BaseException], ...] = (
    db_utils.ProgrammingError, db_utils.IntegrityError, db_utils.DataError, db_utils.NotSupportedError,
)
_TRANSIENT: tuple[type[BaseException], ...] = (
    db_utils.OperationalError, db_utils.InterfaceError, sqlite3.OperationalError, ConnectionError, TimeoutError,
)
if psycopg is not None:
    _PERMANENT += (psycopg.ProgrammingError, psycopg.IntegrityError, psycopg.DataError, psycopg.NotSupportedError)
    # SerializationFailure, DeadlockDetected, LockNotAvailable, QueryCanceled, AdminShutdown... are OperationalErrors.
    _TRANSIENT += (psycopg.OperationalError, psycopg.InterfaceError)

# SQLite reports schema mistakes as OperationalError too; those are programming errors.
_SQLITE_PROGRAMMING = ("no such table", "no such column", "syntax error", "has no column", "no such function")


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True when retrying later may succeed: the database was away, busy or had to abort us."""
    transient = False
    for error in _chain(exc):
        if isinstance(error, _PERMANENT):
            return False
        if isinstance(error, _TRANSIENT):
            if any(marker in str(error).lower() for marker in _SQLITE_PROGRAMMING):
                return False
            transient = True
    return transient


# --- the task base -------------------------------------------------------------------------------

class TieringTask(Task):
    """Retries transient errors: countdown = random(0, min(backoff_max, backoff * 2**retries))."""

    acks_late = True
    max_retries = 8
    retry_backoff = 2
    retry_backoff_max = 600
    retry_jitter = True

    def retry_or_raise(self, exc: BaseException, what: str, run_id: int | None = None):
        """Re-queue this task after a transient error, or log and re-raise a permanent one."""
        if is_transient(exc) and self.request.retries < self.max_retries:
            countdown = get_exponential_backoff_interval(
                self.retry_backoff, self.request.retries, self.retry_backoff_max, self.retry_jitter
            )
            logger.warning(
                "%s: transient error (run %s), retry %d/%d in %ss: %s",
                what, run_id, self.request.retries + 1, self.max_retries, countdown, one_line(exc),
            )
            raise self.retry(exc=exc, countdown=countdown)
        logger.error("%s failed (run %s): %s", what, run_id, one_line(exc))
        raise exc

    def runtime_budget(self, max_runtime: float | None) -> float | None:
        """Stop between batches before the soft time limit, so a long run ends STOPPED, not killed."""
        soft = (self.request.timelimit or (None, None))[1] or self.soft_time_limit or self.app.conf.task_soft_time_limit
        budget = soft * 0.9 if soft else None
        return min(x for x in (max_runtime, budget) if x is not None) if (max_runtime or budget) else None


def _failed_run_id(exc: BaseException, tiered: TieredModel, direction: str, since) -> int | None:
    """The ledger run a failed move left behind (MoveError carries it when the engine knows it)."""
    for error in _chain(exc):
        if isinstance(error, move.MoveError) and error.run is not None:
            return error.run.pk
    try:
        return (
            MigrationRun.objects.using(tiering_settings.HOT)
            .filter(model_label=tiered.label, direction=direction, started_at__gte=since)
            .order_by("-started_at", "-id")
            .values_list("pk", flat=True)
            .first()
        )
    except db_utils.Error:  # the ledger's database is away too: the log says so without the id
        return None


def summary(run: MigrationRun) -> dict[str, Any]:
    """The JSON result of a move task."""
    return {
        "status": run.state,
        "run": run.pk,
        "model": run.model_label,
        "direction": run.direction,
        "rows": run.rows,
        "child_rows": run.child_rows,
        "batches": run.batches,
        "bytes": run.bytes,
        "retries": run.retries,
        "error": run.error,
        # restore: rows left in cold because hot holds one of their unique values (tiering.unique)
        "unique_conflicts": described(run) if run.direction == Direction.TO_HOT else [],
    }


def _locked(task: Task, tiered: TieredModel, direction: str, exc: BaseException) -> dict[str, Any]:
    logger.info("%s %s: lock held by another run, nothing to do here: %s", tiered.label, direction, one_line(exc))
    return {"status": "locked", "model": tiered.label, "direction": str(direction), "detail": one_line(exc)}


def _nothing(tiered: TieredModel, direction: str) -> dict[str, Any]:
    logger.info("%s %s: nothing to move, no run recorded", tiered.label, direction)
    return {"status": "nothing to move", "run": None, "model": tiered.label, "direction": str(direction), "rows": 0}


def _move(task: TieringTask, tiered: TieredModel, direction: str, **options: Any) -> dict[str, Any]:
    """One engine call with the task's retry policy; the retry count is written to the run."""
    what = f"{task.name} {tiered.label}"
    started = timezone.now()
    try:
        run = move.move(tiered, direction, trigger="task", **options)
    except move.LockHeld as exc:
        return _locked(task, tiered, direction, exc)
    except schema.SchemaDrift as exc:  # no retry: a migration fixes it, and nothing was recorded
        logger.error("%s: %s", what, one_line(exc))
        return {"status": "schema drift", "run": None, "model": tiered.label, "direction": str(direction),
                "rows": 0, "error": one_line(exc)}
    except Exception as exc:
        task.retry_or_raise(exc, what, _failed_run_id(exc, tiered, direction, started))
    if run is None:
        return _nothing(tiered, direction)
    if task.request.retries:
        MigrationRun.objects.using(tiering_settings.HOT).filter(pk=run.pk).update(
            retries=F("retries") + task.request.retries
        )
        run.refresh_from_db(fields=["retries"])
    if run.state == RunState.FAILED:
        logger.error("%s failed (run %s): %s", what, run.pk, run.error)
    else:
        logger.info("%s: run %s %s, %d rows in %d batches", what, run.pk, run.state, run.rows, run.batches)
    return summary(run)


# --- the tasks -----------------------------------------------------------------------------------

@shared_task(bind=True, base=TieringTask, name="tiering.archive_model")
def archive_model(self, label: str, limit: int | None = None, batch_size: int | None = None,
                  max_runtime: float | None = None, sleep: float = 0.0) -> dict[str, Any]:
    """Move the policy-eligible rows of one model (and their children) from hot to cold."""
    tiered = registry.by_label(label)
    checked = check_options(dict(limit=limit, batch_size=batch_size, max_runtime=max_runtime, sleep=sleep))
    return _move(self, tiered, Direction.TO_COLD, **{**checked, "max_runtime": self.runtime_budget(max_runtime)})


@shared_task(bind=True, base=TieringTask, name="tiering.restore")
def restore(self, label: str, pks: list | None = None, filter: list[str] | dict | None = None,
            all_rows: bool = False, limit: int | None = None, batch_size: int | None = None,
            undo_run: int | None = None) -> dict[str, Any]:
    """Move a selection back to hot: ``pks``, ``filter`` (``["field__lookup=value", ...]`` as
    ``restore_hot --filter``, or a dict of lookups), ``all_rows=True`` or ``undo_run`` (the rows archive
    run N moved that are still cold, as ``restore_hot --run``); exactly one of them. Arguments are
    checked as ``restore_hot`` checks them (``ArgumentError``, no run recorded); with ``pks`` the result's
    ``not_found`` names the keys in neither tier (empty when every key was found)."""
    tiered = registry.by_label(label)
    checked = check_options(dict(limit=limit, batch_size=batch_size))
    if undo_run is not None:
        run = MigrationRun.objects.using(tiering_settings.HOT).get(pk=undo_run)
        undone = undo.keys(run)
        if not undone:
            return _nothing(tiered, Direction.TO_HOT)
        return _move(self, tiered, Direction.TO_HOT, pks=undone, record={"undo_run": run.pk}, **checked,
                     max_runtime=self.runtime_budget(None))
    chosen = [name for name, value in (("pks", pks), ("filter", filter), ("all_rows", all_rows)) if value]
    if len(chosen) != 1:
        raise ValueError(f"restore {label}: give exactly one of pks, filter or all_rows (got {chosen or 'none'})")
    where = None
    if isinstance(filter, dict):
        where = check_lookups(tiered, filter)
    elif filter:
        where = parse_filters(tiered, filter)
    pks = parse_pks(tiered, pks) if pks else None
    result = _move(self, tiered, Direction.TO_HOT, pks=pks, where=where, all_rows=all_rows, **checked,
                   max_runtime=self.runtime_budget(None))
    if pks:  # keys in neither tier: the request was not fully met, and the result names them
        result["not_found"] = not_found(tiered, pks)
    return result


def not_found(tiered: TieredModel, pks: list) -> list:
    """Those of ``pks`` in neither tier, as JSON keys."""
    found = set().union(*(keys.present(tiered.model, alias, pks) for alias in (tiering_settings.HOT,
                                                                            tiering_settings.COLD)))
    return [jsonable_key(pk) for pk in pks if pk not in found]


@shared_task(bind=True, base=TieringTask, name="tiering.analyse")
def analyse(self, labels: list[str] | None = None, detail: bool = True) -> dict[str, Any]:
    """The ``analyze_tiers --format json`` document: rows, bytes, backlog and cost per model and tier."""
    try:
        return analysis.report(analysis.analyze_all(labels, detail=detail))
    except Exception as exc:
        self.retry_or_raise(exc, f"{self.name} {labels or 'all models'}")


# --- scale-out: key ranges over several workers --------------------------------------------------

def split_key_range(tiered: TieredModel, workers: int, now=None) -> list[tuple[Any, Any]]:
    """Up to ``workers`` half-open key ranges [low, high) holding about equal numbers of the
    eligible hot rows. Boundaries are keys read once at equal row offsets; the first range is
    open below and the last open above, so together they cover every key exactly once."""
    eligible = selection.eligible(tiered, now).order_by("pk").values_list("pk", flat=True)
    total = eligible.count()
    if total == 0:
        return []
    workers = max(1, min(workers, total))
    inner = sorted({eligible[total * i // workers] for i in range(1, workers)})
    bounds = [None, *inner, None]
    return list(zip(bounds[:-1], bounds[1:]))


@shared_task(bind=True, base=TieringTask, name="tiering.archive_model_parallel")
def archive_model_parallel(self, label: str, workers: int = 2, batch_size: int | None = None,
                           max_runtime: float | None = None) -> dict[str, Any]:
    """Open one run, split the eligible keys into ``workers`` ranges and archive them at once."""
    tiered = registry.by_label(label)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, not {workers!r}")
    check_options(dict(batch_size=batch_size, max_runtime=max_runtime))
    started = timezone.now()
    if not move.has_work(tiered, Direction.TO_COLD):
        return {**_nothing(tiered, Direction.TO_COLD), "ranges": []}
    try:  # lock first, then split: the run holds the model's lock while its ranges run
        run = move.start_run(tiered, Direction.TO_COLD, trigger="task", selection={"workers": workers})
    except move.LockHeld as exc:
        return _locked(self, tiered, Direction.TO_COLD, exc)
    except Exception as exc:
        self.retry_or_raise(exc, f"{self.name} {label}", _failed_run_id(exc, tiered, Direction.TO_COLD, started))
    try:
        ranges = split_key_range(tiered, workers, run.cutoff)
        run.selection = {**run.selection, "ranges": ranges}
        run.save(using=tiering_settings.HOT, update_fields=["selection"])
    except Exception as exc:
        move.finish_run(run, RunState.FAILED, f"{type(exc).__name__}: {exc}")
        self.retry_or_raise(exc, f"{self.name} {label}", run.pk)
    if not ranges:
        run = move.finish_run(run)
        return {**summary(run), "ranges": []}
    options = {"batch_size": batch_size, "max_runtime": max_runtime}
    header = [archive_range.s(label, low, high, run.pk, **options) for low, high in ranges]
    result = chord(header)(finish_parallel.s(run.pk))
    logger.info("%s: run %s split into %d ranges %s", label, run.pk, len(ranges), ranges)
    return {"status": "started", "run": run.pk, "model": label, "ranges": ranges, "callback": result.id}


@shared_task(bind=True, base=TieringTask, name="tiering.archive_range")
def archive_range(self, label: str, low: Any, high: Any, run_id: int, batch_size: int | None = None,
                  max_runtime: float | None = None) -> dict[str, Any]:
    """Archive the eligible rows with low <= pk < high into the shared run ``run_id``.

    Never raises after its retries: it reports failure in its result, so that the
    chord callback always runs and can close the run as failed.
    """
    part = {"low": low, "high": high, "worker": f"{self.request.hostname}/{os.getpid()}"}
    try:
        tiered = registry.by_label(label)
        run = MigrationRun.objects.using(tiering_settings.HOT).get(pk=run_id)
        run = move.move(tiered, Direction.TO_COLD, key_range=(low, high), run=run, trigger="task",
                         batch_size=batch_size, max_runtime=self.runtime_budget(max_runtime))
    except move.LockHeld as exc:  # another run holds the model: this range is not ours to move
        return {**part, **_locked(self, registry.by_label(label), Direction.TO_COLD, exc)}
    except Exception as exc:
        if is_transient(exc) and self.request.retries < self.max_retries:
            MigrationRun.objects.using(tiering_settings.HOT).filter(pk=run_id).update(retries=F("retries") + 1)
            self.retry_or_raise(exc, f"{self.name} {label} [{low}, {high})", run_id)
        logger.error("%s %s [%s, %s) failed (run %s): %s", self.name, label, low, high, run_id, one_line(exc))
        return {**part, "status": "failed", "error": one_line(exc)}
    return {**part, "status": "stopped" if run.stopped_early else "done"}


@shared_task(bind=True, base=TieringTask, name="tiering.finish_parallel")
def finish_parallel(self, results: list[dict[str, Any]], run_id: int) -> dict[str, Any]:
    """Chord callback: close the shared run, failed if any range failed."""
    run = MigrationRun.objects.using(tiering_settings.HOT).get(pk=run_id)
    failed = [r for r in results if r.get("status") not in ("done", "stopped")]
    stopped = [r for r in results if r.get("status") == "stopped"]
    if failed:
        error = "; ".join(f"[{r['low']}, {r['high']}) {r.get('status')}: {r.get('error') or r.get('detail', '')}"
                          for r in failed)
        run = move.finish_run(run, state=RunState.FAILED, error=error)
        logger.error("%s parallel run %s failed: %s", run.model_label, run.pk, error)
    else:
        run = move.finish_run(run, state=RunState.STOPPED if stopped else None)
        logger.info("%s parallel run %s %s: %d rows in %d batches", run.model_label, run.pk, run.state,
                    run.rows, run.batches)
    return {**summary(run), "ranges": results}
