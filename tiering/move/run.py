"""A run from start to finish: refuse what cannot work, lock, repair, choose the path, move, close."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from django.db import DatabaseError
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .. import arguments, backends, relations, schema
from ..conf import tiering_settings
from ..exceptions import LockHeld, MoveError
from ..models import Direction, MigrationBatch, MigrationRun, RunState, TierLock
from ..registry import TieredModel
from ..signals import run_failed, run_finished
from ..text import one_line
from . import batch, hashing, locks, paths, repair, restore, throttle
from .context import MoveContext
from .selection import Selection

logger = logging.getLogger("tiering.mover")


@dataclass
class MovePlan:
    rows: int
    child_rows: int
    bytes: int
    batches: int


def move(
    tiered: TieredModel,
    direction: str,
    *,
    pks: Iterable[Any] | None = None,
    where: Q | dict | None = None,
    all_rows: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    max_runtime: float | None = None,
    sleep: float = 0.0,
    key_range: tuple[Any, Any] | None = None,
    run: MigrationRun | None = None,
    trigger: str = "command",
    progress=None,
    now: datetime | None = None,
    path: str | None = None,
    resumes: MigrationRun | None = None,
    record: dict | None = None,
    max_latency_ratio: float | None = None,
    max_replica_lag: float | None = None,
) -> MigrationRun | None:
    """Move the selected rows (and their children) between tiers; see ``tiering.move``.

    Returns the run, or None when there was nothing to do (``has_work``): no run is recorded then, so
    the ledger holds only runs that moved or settled rows. ``run``: a run opened by ``start_run`` that
    parallel workers share. ``resumes``: a run that did not finish (``resumable_run``); this run takes
    its cutoff and the ledger records which run it resumes (even with nothing left: it closes that run).
    ``record``: more keys for the run's ``selection`` in the ledger (``{"undo_run": N}``).
    ``max_latency_ratio``, ``max_replica_lag``: the throttle's limits over TIERING['THROTTLE'] (``throttle``).
    """
    selection = Selection(pks, where, all_rows, key_range)
    selection.check(direction, limit, batch_size)
    arguments.check_options({"max_runtime": max_runtime, "sleep": sleep or None})  # finite, before any run
    relations.refuse_cross_tier_q(tiered.model, selection.q())
    path_class = choose_path(path)  # refuses tiers that are the same tables before anything is written
    joined = run is not None
    if run is None and resumes is None and not _has_work(tiered, direction, selection, now):
        logger.info("%s %s: nothing to move, no run recorded", tiered.label, direction)
        return None
    if run is None:
        described = {**selection.describe(limit, batch_size), **(record or {})}
        if resumes is not None:
            now, described["resumes"] = resumes.cutoff, resumes.pk
        run = start_run(tiered, direction, trigger=trigger, now=now, selection=described)
    else:
        schema.gate_answering(tiered)
        locks.acquire(tiered, direction, run)
    ctx = MoveContext(tiered, direction, run, run.cutoff or now or timezone.now(), selection.q())
    limits = throttle.Limits.from_settings(max_latency_ratio, max_replica_lag)
    pacing = batch.Pacing(limit, batch_size, max_runtime, sleep, progress, limits)
    try:
        stopped = _move_selection(ctx, path_class, pacing)
        if direction == Direction.TO_HOT:
            restore.refresh_hold_stats(ctx)  # not on promote's way: a read that promotes must stay cheap
    except BaseException as exc:
        close = isinstance(exc, (KeyboardInterrupt, SystemExit)) or not joined  # else the run's owner closes it
        _raise_recorded(run, f"{tiered.label} {direction}", exc, close=close)
    run.refresh_from_db(using=tiering_settings.HOT)
    run.stopped_early = stopped  # a joined run's owner needs it to close the run as STOPPED
    if not joined:
        finish_run(run, RunState.STOPPED if stopped else RunState.SUCCEEDED)
    return run


def _move_selection(ctx: MoveContext, path_class, pacing: batch.Pacing) -> bool:
    """Open the path on the run's selection and move it; True when stopped early."""
    selected = ctx.model._base_manager.using(ctx.source).filter(ctx.eligible_q)
    if path_class.sql_where and ctx.where_sql is None:
        logger.info("%s: the selection needs joins; moving it on the portable ORM path", ctx.tiered.label)
        path_class = paths.load("orm")
    # before any batch: the repair reads both
    MigrationRun.objects.using(tiering_settings.HOT).filter(pk=ctx.run.pk).update(
        path=path_class.name, done_commits_with_delete=ctx.ledger_commits_with_delete)
    return batch.run_batches(ctx, path_class(ctx), selected, pacing)


def has_work(tiered: TieredModel, direction: str, *, pks=None, where=None, all_rows: bool = False,
             now: datetime | None = None) -> bool:
    """Whether a run would do anything: move a selected row that is eligible now, or settle what an earlier
    run left (an open batch, a run still marked running, a lock to take over or to report as held). Read
    without the lock: a row that becomes eligible a moment later is the next run's."""
    return _has_work(tiered, direction, Selection(pks, where, all_rows), now)


def _has_work(tiered: TieredModel, direction: str, selection: Selection, now: datetime | None) -> bool:
    ctx = MoveContext(tiered, direction, None, now or timezone.now(), selection.q())
    if ctx.model._base_manager.using(ctx.source).filter(ctx.eligible_q).exists():
        return True
    hot = tiering_settings.HOT
    runs = (MigrationRun.objects.using(hot).filter(model_label=tiered.label, direction=direction)
            .exclude(repair.live_promote()))
    return (runs.filter(state=RunState.RUNNING).exists()
            or TierLock.objects.using(hot).filter(name=locks.lock_name(tiered, direction)).exists()
            or MigrationBatch.objects.using(hot).filter(run__in=runs, state__in=repair.OPEN_STATES).exists())


def choose_path(forced: str | None = None) -> type[paths.BaseCopyPath]:
    """The copy path for the configured pair: refuses tiers that are the same tables (or a database that
    tiering has no backend for) and a forced path that does not fit, before any run exists."""
    hot, cold = tiering_settings.HOT, tiering_settings.COLD
    backends.refuse_same_tables(hot, cold)
    return paths.choose(hot, cold, forced or tiering_settings.MOVE_PATH)


def plan(tiered: TieredModel, direction: str, *, pks=None, where=None, all_rows: bool = False,
         limit: int | None = None, batch_size: int | None = None, now: datetime | None = None) -> MovePlan:
    """What ``move()`` would move, without changing anything (for --dry-run and confirmation)."""
    selection = Selection(pks, where, all_rows)
    selection.check(direction, limit, batch_size)
    relations.refuse_cross_tier_q(tiered.model, selection.q())
    ctx = MoveContext(tiered, direction, None, now or timezone.now(), selection.q())
    qs = ctx.model._base_manager.using(ctx.source).filter(ctx.eligible_q)
    eligible = qs.count()
    rows = eligible if limit is None else min(eligible, limit)
    child_rows = sum(c.model._base_manager.using(ctx.source).filter(**{f"{c.fk.attname}__in": qs.values("pk")}).count()
                     for c in tiered.children)
    if eligible and rows < eligible:
        child_rows = math.ceil(child_rows * rows / eligible)
    sample = list(qs.order_by("pk").values_list("pk", flat=True)[:100])
    per_row = 0.0
    if sample:
        _, _, sample_bytes = hashing.group_hashes(ctx, ctx.source, sample, eligible_only=False, lock=False)
        per_row = sample_bytes / len(sample)
    size = batch_size or tiering_settings.BATCH_SIZE
    return MovePlan(rows=rows, child_rows=child_rows, bytes=int(per_row * rows), batches=math.ceil(rows / size))


def start_run(tiered: TieredModel, direction: str, *, trigger: str, selection: dict,
              now: datetime | None = None) -> MigrationRun:
    """Create the run, take the model+direction lock and repair earlier half-done batches."""
    backends.refuse_same_tables(tiering_settings.HOT, tiering_settings.COLD)
    schema.gate_answering(tiered)  # refuses drifted tables before the ledger records anything
    now = now or timezone.now()
    run = _create_run(tiered, direction, trigger, now, selection)
    try:
        locks.acquire(tiered, direction, run)
    except LockHeld as exc:
        MigrationRun.objects.using(tiering_settings.HOT).filter(pk=run.pk).update(
            state=RunState.FAILED, error=str(exc), finished_at=timezone.now())
        raise
    try:
        repair.repair(MoveContext(tiered, direction, run, now))
    except Exception as exc:
        finish_run(run, RunState.FAILED, f"repair failed: {type(exc).__name__}: {exc}", exc=exc)
        raise MoveError(f"run {run.pk}: repairing earlier batches failed: {exc}", run) from exc
    return run


def _create_run(tiered: TieredModel, direction: str, trigger: str, now: datetime, selection: dict) -> MigrationRun:
    return MigrationRun.objects.using(tiering_settings.HOT).create(
        model_label=tiered.label, direction=direction, trigger=trigger, cutoff=now,
        policy=tiered.policy.describe() if tiered.policy else "", selection=selection, owner=locks.owner())


def finish_run(run: MigrationRun, state: str | None = None, error: str = "", *,
               exc: BaseException | None = None) -> MigrationRun:
    """Close the run in the ledger, release its locks and send the signals (``exc``: what failed it)."""
    hot = tiering_settings.HOT
    run.refresh_from_db(using=hot)
    state = state or (RunState.FAILED if error else RunState.SUCCEEDED)
    run.state, run.finished_at = state, timezone.now()
    if error:
        run.error = error
    run.save(using=hot, update_fields=["state", "finished_at", "error"])
    TierLock.objects.using(hot).filter(run=run)._raw_delete(hot)
    if state == RunState.FAILED:
        run_failed.send(sender=MigrationRun, run=run, error=exc or MoveError(error, run))
    run_finished.send(sender=MigrationRun, run=run)
    return run


def _record_failure(run: MigrationRun, what: str, exc: BaseException, *, close: bool) -> BaseException:
    """Log the failure of ``run`` and record it (``close``: as FAILED); returns what to raise: a MoveError of
    one line naming the run, or ``exc`` itself when it is one or not an Exception. When hot, the ledger's
    database, does not answer, the run is left for the next run's repair to record."""
    message = f"{type(exc).__name__}: {exc}"
    # a database that went away is one line; anything else keeps its traceback for the operator
    logger.error("run %s (%s) failed: %s", run.pk, what, one_line(message),
                 exc_info=not isinstance(exc, (DatabaseError, MoveError)))
    try:
        if close:
            finish_run(run, RunState.FAILED, message, exc=exc)
        else:
            MigrationRun.objects.using(tiering_settings.HOT).filter(pk=run.pk).update(error=message)
    except Exception as unrecorded:
        locks.abandon(run)
        logger.error("run %s: the failure could not be recorded: %s", run.pk, one_line(unrecorded))
        return MoveError(f"the hot database (alias {tiering_settings.HOT!r}) did not answer to record the "
                         f"failure ({type(unrecorded).__name__}: {one_line(unrecorded)}); nothing is lost: the "
                         f"next run repairs it. Cause: {type(exc).__name__}: {one_line(exc)}", run)
    if isinstance(exc, MoveError):
        exc.run = exc.run or run
        return exc
    if isinstance(exc, Exception):
        return MoveError(f"run {run.pk} failed: {message}", run)
    return exc


def _raise_recorded(run: MigrationRun, what: str, exc: BaseException, *, close: bool) -> NoReturn:
    """Raise what ``_record_failure`` returns, from ``exc`` (``exc`` itself as it was)."""
    failure = _record_failure(run, what, exc, close=close)
    if failure is exc:
        raise exc
    raise failure from exc


def promote(tiered: TieredModel, pks: Iterable[Any]) -> int:
    """Move these rows (with children) cold -> hot now, through the same protocol.

    It takes no model lock (a long archive run may hold it): every row is
    still moved under the per-row verify-and-delete, so it is safe alongside.
    """
    pks = list(pks)
    path_class = choose_path()
    run = _create_run(tiered, Direction.TO_HOT, "promote", timezone.now(), {"pks": [str(p) for p in pks]})
    ctx = MoveContext(tiered, Direction.TO_HOT, run, run.cutoff, Selection(pks).q())
    try:
        _move_selection(ctx, path_class, batch.Pacing())
    except Exception as exc:
        _raise_recorded(run, f"promote {tiered.label} {pks}", exc, close=True)
    finish_run(run, RunState.SUCCEEDED)
    return run.rows


def resumable_run(tiered: TieredModel, direction: str) -> MigrationRun | None:
    """The model's last run in ``direction`` when it did not finish its work: failed, stopped early (limit,
    max runtime) or interrupted (still RUNNING, its lock stale or gone); None when it finished or is live.
    A run that failed before its first batch (refused by the lock, say) did no work and is passed over."""
    no_batch = ~Exists(MigrationBatch.objects.filter(run=OuterRef("pk")))
    last = (MigrationRun.objects.using(tiering_settings.HOT).filter(model_label=tiered.label, direction=direction)
            .exclude(trigger="promote").exclude(state=RunState.DRY_RUN).exclude(Q(state=RunState.FAILED) & no_batch)
            .order_by("-started_at", "-id").first())
    if last is None or last.state == RunState.SUCCEEDED:
        return None
    if last.state == RunState.RUNNING and locks.held_lock(tiered, direction) is not None:
        return None
    return last
