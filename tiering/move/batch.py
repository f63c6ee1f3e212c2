"""Batch after batch: select the next keys (keyset, never OFFSET), size each batch by time, move it on the
run's path, and record it, or its failure."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from .. import schema
from ..conf import tiering_settings
from ..models import BatchState, Direction, MigrationBatch
from ..signals import batch_done
from ..text import one_line
from . import conflicts, ledger, locks, repair, restore, throttle

logger = logging.getLogger("tiering.mover")

FIRST_BATCH = 1000
MIN_BATCH = 10
# how far one batch's time may move the next batch's size, either way: the first batch probes, the next
# ones reach the cap in two steps, and one slow batch (a lock wait, wide rows) is followed by one on target
BATCH_STEP = 16.0


@dataclass
class MoveProgress:
    rows: int
    batches: int
    bytes: int
    total_estimate: int | None
    waiting: str = ""  # set when the throttle starts a wait: why


@dataclass(frozen=True)
class Pacing:
    """How much a run moves and how fast: row limit, batch cap, time budget, pause between batches."""

    limit: int | None = None
    batch_size: int | None = None
    max_runtime: float | None = None
    sleep: float = 0.0
    progress: Callable[[MoveProgress], None] | None = None
    limits: throttle.Limits | None = None  # the throttle's; None or inactive: no throttle


def run_batches(ctx, path, selected, pacing: Pacing) -> bool:
    """Move the ``selected`` source rows batch by batch; return True when stopped early by limit or
    max_runtime."""
    throttled = None
    if pacing.limits is not None and pacing.limits.active:
        throttled = throttle.Throttle(ctx, pacing.limits)
    try:
        stopped = _batches(ctx, path, selected, pacing, throttled)
    finally:
        if throttled is not None:
            throttled.stop()
    path.close()
    return stopped


def _batches(ctx, path, selected, pacing: Pacing, throttled: throttle.Throttle | None) -> bool:
    limit = pacing.limit
    cap = pacing.batch_size or tiering_settings.BATCH_SIZE
    if path.max_batch is not None:
        cap = min(cap, path.max_batch)
    size = min(cap, FIRST_BATCH)
    total = None
    if pacing.progress is not None:  # for the progress bar's ETA only (a scan of the selection)
        total = selected.count()
        total = min(total, limit) if limit is not None else total
    started, last_pk, moved, done = time.monotonic(), None, 0, MoveProgress(0, 0, 0, total)
    deadline = started + pacing.max_runtime if pacing.max_runtime is not None else None
    if throttled is not None:
        if pacing.progress is not None:
            throttled.report = lambda why: pacing.progress(
                MoveProgress(done.rows, done.batches, done.bytes, total, why))
        throttled.start(deadline)
    while True:
        if limit is not None and moved >= limit:
            return True
        if pacing.max_runtime is not None and time.monotonic() - started >= pacing.max_runtime:
            return True
        schema.recheck(ctx.tiered)  # cheap: the full gate again only after a migration on a tier
        want = size if throttled is None else throttled.size(size)
        keys = next_keys(selected, last_pk, want if limit is None else min(want, limit - moved))
        if not keys:
            return False
        last_pk = keys[-1]
        t0 = time.monotonic()
        for part in conflicts.set_aside(ctx, keys):  # a restore leaves rows whose unique values hot holds
            batch = move_batch(ctx, path, part)
            done.rows, done.batches, done.bytes = done.rows + batch.rows, done.batches + 1, done.bytes + batch.bytes
        elapsed = time.monotonic() - t0
        moved += len(keys)
        if pacing.progress is not None:
            pacing.progress(MoveProgress(done.rows, done.batches, done.bytes, total))
        factor = min(BATCH_STEP, max(1 / BATCH_STEP, tiering_settings.BATCH_TARGET_SECONDS / max(elapsed, 1e-3)))
        size = int(min(cap, max(MIN_BATCH, want * factor)))
        if throttled is not None:
            ledger.record_throttled(batch, *throttled.between(len(keys), elapsed, deadline))
        if pacing.sleep:
            time.sleep(pacing.sleep)


def next_keys(selected, last_pk, want: int) -> list:
    """The next ``want`` eligible keys after ``last_pk`` in key order, fetched in one piece (not 100 rows
    at a time through a queryset iterator)."""
    keys_qs = selected.order_by("pk")
    if last_pk is not None:
        keys_qs = keys_qs.filter(pk__gt=last_pk)
    compiler = keys_qs.values_list("pk", flat=True)[:want].query.get_compiler(using=keys_qs.db)
    return [row[0] for row in compiler.results_iter(chunk_size=want)]


def move_batch(ctx, path, keys: list) -> MigrationBatch:
    """One batch: record its keys (COPYING), then copy, verify, delete and ledger on the run's path."""
    locks.heartbeat(ctx.run)
    batch = ledger.open_batch(ctx, keys)
    try:
        result = path.move_batch(batch, keys)
        if ctx.direction == Direction.TO_HOT:
            restore.mark_restored(ctx, result.moved)
    except BaseException as exc:
        fail_batch(ctx, batch, exc)
        raise
    if not result.recorded:
        ledger.record_done(ctx, batch, result)
    for key, value in ledger.done_values(result).items():
        setattr(batch, key, value)
    if result.kept:
        logger.info("run %s batch %s: %s rows changed or no longer eligible stay in %s",
                    ctx.run.pk, batch.seq, result.kept, ctx.source)
    batch_done.send(sender=MigrationBatch, run=ctx.run, batch=batch)
    return batch


def fail_batch(ctx, batch: MigrationBatch, exc: BaseException) -> None:
    """Record the failure; undo the copies when the target answers, else leave them to the repair.

    An error raised after the batch's own commit (its DONE is in the ledger) leaves the batch alone: its
    rows moved, and an undo would have nothing to undo but would relabel it.
    """
    error = f"{type(exc).__name__}: {exc}"
    try:  # as the ledger has it now: a restore's copies may have committed with their VERIFIED mark
        batch = MigrationBatch.objects.using(tiering_settings.HOT).get(pk=batch.pk)
        committed = batch.state == BatchState.DONE
    except Exception:  # unknown (hot is unreachable): the undo then takes no key gone from the source for deleted
        committed = None
    if committed:
        logger.error("run %s: batch %s had committed when it failed: %s", ctx.run.pk, batch.seq, error)
        return
    state = BatchState.FAILED
    if isinstance(exc, Exception):
        try:
            deleted_nothing = committed is False and ctx.ledger_commits_with_delete
            finished, _ = repair.undo_copies(ctx, batch, deleted_nothing=deleted_nothing)
            if not finished:
                state = BatchState.UNDONE
        except Exception as cleanup:  # the repair of the next run finishes it
            error += f" (copy not removed yet: {type(cleanup).__name__}: {cleanup})"
            if batch.state == BatchState.VERIFIED:
                state = BatchState.VERIFIED  # its keys name the copies made: the repair needs them
    elif batch.state == BatchState.VERIFIED:
        state = BatchState.VERIFIED
    try:
        ledger.set_state(batch, state=state, error=error, finished_at=timezone.now())
    except Exception as unrecorded:  # hot is away: the repair of the next run settles the batch
        logger.error("run %s: could not record the failure of batch %s: %s", ctx.run.pk, batch.seq,
                     one_line(unrecorded))
