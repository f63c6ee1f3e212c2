"""Any pair, and selections whose eligibility needs joins: the portable path through the ORM.

Raw bulk inserts copy the rows; a content hash per parent (with its
children), computed in Python, is compared under row locks in both tiers; a
write made to the copy between copy and verify wins. The deletes and (to
cold) the ledger commit in one hot transaction. To hot the copies are also
compared with cold before they commit, as on the other paths.
"""
from __future__ import annotations

import time

from django.db import connections, models, transaction

from ... import backends
from ...conf import tiering_settings
from ...models import BatchState, Direction, MigrationBatch
from .. import faults, hashing, keys, ledger, repair
from .base import BaseCopyPath, BatchResult

INSERT_ROWS = 500  # rows per INSERT statement at most


class OrmPath(BaseCopyPath):
    name = "orm"
    needs = "any two aliases"
    sql_where = False

    @classmethod
    def fits(cls, hot: str, cold: str) -> bool:
        return True

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        # each key of a batch is a query parameter
        self.per_statement = keys.per_statement(ctx.source, ctx.target)
        self.max_batch = self.per_statement

    def move_batch(self, batch: MigrationBatch, pks: list) -> BatchResult:
        ctx = self.ctx
        t0 = time.monotonic()
        inserted, written = self.copy(batch, pks)
        backends.ops(ctx.target).advance_sequences(ctx.tiered.unit)
        copy_seconds = time.monotonic() - t0
        # to cold the batch is now COPIED; to hot, copy() marked it VERIFIED in the copies' commit
        copied = {"state": BatchState.COPIED} if ctx.direction == Direction.TO_COLD else {}
        ledger.set_state(batch, copy_seconds=copy_seconds, **copied)
        faults.checkpoint("after_copy")
        return self.verify_and_delete(batch, pks, written, inserted, copy_seconds)

    def copy(self, batch: MigrationBatch, pks: list) -> tuple[list, dict]:
        """Insert parents then children of ``pks`` missing from the target.

        Returns the keys inserted and the hash of each copy as written, read
        inside the copy transaction (so no application write can have touched
        it yet). To hot a copy that differs from cold is not committed: a copy
        that reaches hot is the row from then on, even for the repair; the
        batch is marked VERIFIED with the keys of the copies in the same commit.
        """
        ctx = self.ctx
        present = set(ctx.model._base_manager.using(ctx.target).filter(pk__in=pks).values_list("pk", flat=True))
        todo = [pk for pk in pks if pk not in present]
        if not todo:
            return [], {}
        parts = [(ctx.model, ctx.model._meta.pk)] + [(c.model, c.fk) for c in ctx.tiered.children]
        with transaction.atomic(using=ctx.target):
            for model, key in parts:
                fields = model._meta.concrete_fields
                names = [f.attname for f in fields]
                rows = model._base_manager.using(ctx.source).filter(**{f"{key.attname}__in": todo}).values_list(*names)
                insert_verbatim(model, ctx.target, [model(**dict(zip(names, row))) for row in rows])
            written, _, _ = hashing.group_hashes(ctx, ctx.target, todo, eligible_only=False, lock=False)
            if ctx.direction == Direction.TO_HOT:
                source, _, _ = hashing.group_hashes(ctx, ctx.source, todo, eligible_only=False, lock=False)
                differ = {pk for pk in todo if written.get(pk) != source.get(pk)}
                repair.delete_rows(ctx.tiered, ctx.target, list(differ))
                todo = [pk for pk in todo if pk not in differ]
                ledger.record_copied(batch, todo)
        return todo, written

    def verify_and_delete(self, batch: MigrationBatch, pks: list, written: dict, inserted: list,
                          copy_seconds: float) -> BatchResult:
        """Lock both sides, re-check eligibility, compare hashes, delete what moved, and record the batch
        DONE in hot's transaction (to cold the deletes').

        Per parent, with ``s``/``t`` the source/target hashes now and ``w`` the
        copy as written: ``s == t``: verified, the source row is deleted.
        ``s == w != t``: the application changed the copy, so the copy is the
        row: the source row is deleted too. Anything else (changed in the
        source, no longer eligible): the source row stays and the copy goes.
        """
        ctx, size = self.ctx, self.per_statement
        t0 = time.monotonic()
        # always hot before cold, whatever the direction, so two runs never wait on each other in a cycle
        with transaction.atomic(using=tiering_settings.HOT), transaction.atomic(using=tiering_settings.COLD):
            source, children, nbytes = hashing.group_hashes(ctx, ctx.source, pks, eligible_only=True, lock=True)
            target, _, _ = hashing.group_hashes(ctx, ctx.target, pks, eligible_only=False, lock=True)
            moved = [pk for pk in pks if pk in source and (
                source[pk] == target.get(pk) or (pk in target and source[pk] == written.get(pk)))]
            checksum = hashing.batch_checksum((pk, target[pk]) for pk in moved)
            faults.checkpoint("after_verify")
            child_rows = 0
            for child in ctx.tiered.children:  # children first: cascades never see an uncopied child
                child_keys = [k for pk in moved for k in children.get((child.model, pk), ())]
                child_rows += len(child_keys)
                for chunk in keys.chunks(child_keys, size):
                    child.model._base_manager.using(ctx.source).filter(pk__in=chunk)._raw_delete(ctx.source)
            faults.checkpoint("mid_delete")
            for chunk in keys.chunks(moved, size):
                ctx.model._base_manager.using(ctx.source).filter(pk__in=chunk)._raw_delete(ctx.source)
            moved_set = set(moved)
            repair.delete_rows(ctx.tiered, ctx.target, [pk for pk in inserted if pk not in moved_set])
            result = BatchResult(len(moved), child_rows, nbytes, checksum, len(pks) - len(moved), copy_seconds, 0.0,
                                 time.monotonic() - t0, moved=moved, recorded=True)
            faults.checkpoint("after_delete_before_ledger")
            # hot's transaction: to cold with the deletes; to hot with the removal of copies that stay out, so
            # no VERIFIED batch outlives that removal (the repair would take such a key for one deleted from hot)
            ledger.record_done(ctx, batch, result)
        return result


def insert_verbatim(model, alias: str, objs: list) -> None:
    """``bulk_create`` without ``pre_save``, as loaddata's raw save inserts: ``auto_now`` fields keep the
    source's values (a move is not an update) and file fields their names. ``QuerySet._insert`` is what
    both are built on; it takes ``raw``."""
    fields = [f for f in model._meta.concrete_fields if not f.generated]
    size = max(1, min(INSERT_ROWS, connections[alias].ops.bulk_batch_size(fields, objs) or len(objs)))
    for chunk in keys.chunks(objs, size):
        models.QuerySet(model)._insert(chunk, fields=fields, using=alias, raw=True)
