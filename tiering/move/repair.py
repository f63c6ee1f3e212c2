"""Settle what a crash or a failure left half-done: each row of an open batch ends in exactly one tier.

A key in both tiers keeps its hot row: to cold the cold copy goes (hot, the
source, is authoritative); to hot the cold row goes, because a restore's
copies commit in hot only verified, and from then on the application reads
and writes them there. A key gone from the source was moved (or deleted by
the application, which the ledger tells apart where it can; see
``undo_copies``). Runs repair only under the model's lock.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..conf import tiering_settings
from ..models import BatchState, Direction, MigrationBatch, MigrationRun, RunState
from . import keys, ledger, locks, restore

logger = logging.getLogger("tiering.mover")

OPEN_STATES = (BatchState.COPYING, BatchState.COPIED, BatchState.VERIFIED, BatchState.FAILED)


def live_promote() -> Q:
    """The runs that are promotes still under way (heartbeat fresh, not given up by this process): their
    batches are their own, not half-done work to repair."""
    fresh = timezone.now() - timedelta(seconds=tiering_settings.LOCK_STALE_SECONDS)
    return Q(trigger="promote", state=RunState.RUNNING, heartbeat_at__gte=fresh) & ~Q(pk__in=locks.abandoned())


def repair(ctx) -> None:
    """Finish or undo the half-done batches of earlier runs of this model and direction."""
    hot = tiering_settings.HOT
    live = live_promote()
    batches = (MigrationBatch.objects.using(hot)
               .filter(run__model_label=ctx.tiered.label, run__direction=ctx.direction, state__in=OPEN_STATES)
               .exclude(run=ctx.run).exclude(run__in=MigrationRun.objects.using(hot).filter(live))
               .select_related("run").order_by("run_id", "seq"))
    for batch in batches:
        # a FAILED batch had its copies undone when it failed: what is left of it is treated the cautious way
        cut_short = batch.state != BatchState.FAILED
        deleted_nothing = cut_short and batch.run.done_commits_with_delete
        finished, undone = undo_copies(ctx, batch, deleted_nothing=deleted_nothing)
        if ctx.direction == Direction.TO_HOT:
            restore.mark_restored(ctx, finished)
        removed = f"{undone} cold rows removed" if ctx.direction == Direction.TO_HOT else f"{undone} copies removed"
        note = f"repaired by run {ctx.run.pk}: {len(finished)} rows finished, {removed}"
        ledger.set_state(batch, state=BatchState.DONE if finished else BatchState.UNDONE,
                         error=(batch.error + "; " if batch.error else "") + note, finished_at=timezone.now())
        logger.warning("run %s: batch %s of run %s %s", ctx.run.pk, batch.seq, batch.run_id, note)
    (MigrationRun.objects.using(hot)
     .filter(model_label=ctx.tiered.label, direction=ctx.direction, state=RunState.RUNNING)
     .exclude(pk=ctx.run.pk).exclude(live)
     .update(state=RunState.FAILED, finished_at=timezone.now(),
             error=f"interrupted; half-done batches repaired by run {ctx.run.pk}"))


def undo_copies(ctx, batch: MigrationBatch, *, deleted_nothing: bool) -> tuple[list, int]:
    """Settle the rows of the batch's key range that are in both tiers; return the batch keys that moved
    (gone from the source, or settled in the target) and the rows removed.

    It works from the key range, so copies of rows that became eligible after
    the keys were recorded are found too. To hot, a VERIFIED batch names the
    copies its commit made: one gone from hot since was deleted by the
    application, and its cold row goes too, unless a run to cold may have
    archived it again since. ``deleted_nothing``: the batch's DONE commits
    with its delete and it was cut short, so a recorded key gone from the
    source was deleted by the application after the copy, and its copy goes
    too. Otherwise a key gone from the source was moved: no rule here may
    remove what could be a row's only copy.
    """
    to_python = ctx.model._meta.pk.to_python
    pks = [to_python(p) for p in batch.keys()]
    target = ctx.model._base_manager.using(ctx.target)
    if batch.key_low and batch.key_high:
        copies = list(target.filter(pk__gte=to_python(batch.key_low), pk__lte=to_python(batch.key_high))
                      .values_list("pk", flat=True))
    else:
        copies = list(target.filter(pk__in=pks).values_list("pk", flat=True))
    source = ctx.model._base_manager.using(ctx.source)
    present = set()
    for chunk in keys.chunks(sorted(set(copies) | set(pks)), keys.per_statement(ctx.source)):
        present.update(source.filter(pk__in=chunk).values_list("pk", flat=True))
    if ctx.direction == Direction.TO_HOT:
        both = [pk for pk in copies if pk in present]
        gone = set()
        if batch.state == BatchState.VERIFIED:  # pks: the copies committed in hot with that mark
            gone = (set(pks) - set(copies)) & present
            gone -= archived_since(ctx, batch, gone)
        delete_rows(ctx.tiered, ctx.source, both + sorted(gone, key=str))
        settled = set(both)
        return [pk for pk in pks if (pk not in present or pk in settled) and pk not in gone], len(both) + len(gone)
    deleted = set(pks) - present if deleted_nothing else set()
    undo = [pk for pk in copies if pk in present or pk in deleted]
    delete_rows(ctx.tiered, ctx.target, undo)
    return [pk for pk in pks if pk not in present and pk not in deleted], len(undo)


def archived_since(ctx, batch: MigrationBatch, found_keys: set) -> set:
    """Those of ``found_keys`` in a batch to cold that was open at or after ``batch``'s start (any state but
    UNDONE: cautious): such a key's cold row may be the row, archived again since, not a stale original."""
    to_python, found = ctx.model._meta.pk.to_python, set()
    if not found_keys:
        return found
    later = (MigrationBatch.objects.using(tiering_settings.HOT)
             .filter(run__model_label=ctx.tiered.label, run__direction=Direction.TO_COLD)
             .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=batch.started_at))
             .exclude(state=BatchState.UNDONE))
    for other in later.only("pks").iterator():
        found.update(key for key in map(to_python, other.keys()) if key in found_keys)
    return found


def delete_rows(tiered, alias: str, pks: list) -> None:
    """Delete these parents from ``alias`` with their children (children first), in one transaction."""
    if not pks:
        return
    size = keys.per_statement(alias)
    with transaction.atomic(using=alias):
        for child in tiered.children:
            for chunk in keys.chunks(pks, size):
                child.model._base_manager.using(alias).filter(**{f"{child.fk.attname}__in": chunk})._raw_delete(alias)
        for chunk in keys.chunks(pks, size):
            tiered.model._base_manager.using(alias).filter(pk__in=chunk)._raw_delete(alias)
