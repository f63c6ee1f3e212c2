"""Every write to the ledger (``MigrationRun``, ``MigrationBatch``) that a run makes batch by batch.

A batch is recorded COPYING with its keys and key range before any copy,
then DONE with its figures; a restore's verified copies commit in hot with
the batch's VERIFIED mark and the keys of those copies (``record_copied``).
The SQL forms write the same rows inside a path's own transaction.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import IntegrityError, connections, models, transaction
from django.db.models import F
from django.utils import timezone

from ..conf import tiering_settings
from ..models import BatchState, MigrationBatch, MigrationRun


def open_batch(ctx, pks: list) -> MigrationBatch:
    """Write the batch (keys and key range, state COPYING) in its own commit, before any copy."""
    hot = tiering_settings.HOT
    keys = MigrationBatch.record_keys(pks)
    for attempt in range(50):  # parallel range workers of one run race for the next seq
        seq = (MigrationBatch.objects.using(hot).filter(run=ctx.run).aggregate(m=models.Max("seq"))["m"] or 0) + 1
        try:
            with transaction.atomic(using=hot):
                return MigrationBatch.objects.using(hot).create(
                    run=ctx.run, seq=seq, state=BatchState.COPYING, pks=keys,
                    key_low=str(pks[0]), key_high=str(pks[-1]))
        except IntegrityError:
            if attempt == 49:
                raise


def done_values(result) -> dict:
    return dict(state=BatchState.DONE, rows=result.rows, child_rows=result.child_rows, bytes=result.bytes,
                checksum=result.checksum, kept=result.kept, copy_seconds=result.copy_seconds,
                verify_seconds=result.verify_seconds, delete_seconds=result.delete_seconds,
                finished_at=timezone.now())


def record_throttled(batch: MigrationBatch, seconds: float, reason: str) -> None:
    """The seconds the throttle waited after ``batch``, and why (nothing when it did not wait)."""
    if seconds or reason:
        batch.throttled_seconds, batch.throttle_reason = seconds, reason[:200]
        MigrationBatch.objects.using(tiering_settings.HOT).filter(pk=batch.pk).update(
            throttled_seconds=seconds, throttle_reason=reason[:200])


def record_done(ctx, batch: MigrationBatch, result) -> None:
    """The batch is DONE and the run's counters grow (through the ORM on hot)."""
    hot = tiering_settings.HOT
    MigrationBatch.objects.using(hot).filter(pk=batch.pk).update(**done_values(result))
    MigrationRun.objects.using(hot).filter(pk=ctx.run.pk).update(
        rows=F("rows") + result.rows, child_rows=F("child_rows") + result.child_rows,
        bytes=F("bytes") + result.bytes, batches=F("batches") + 1, heartbeat_at=timezone.now())


def record_done_sql(cursor, prefix: str, ctx, batch: MigrationBatch, result) -> None:
    """``record_done`` as SQL on hot's tables under ``prefix`` (an attached file), in the caller's transaction."""
    ops = connections[tiering_settings.HOT].ops
    values = done_values(result)
    values["finished_at"] = ops.adapt_datetimefield_value(values["finished_at"])
    values["state"] = str(values["state"])
    sets = ", ".join(f"{ops.quote_name(MigrationBatch._meta.get_field(k).column)} = %s" for k in values)
    cursor.execute(f"UPDATE {prefix}{ops.quote_name(MigrationBatch._meta.db_table)} SET {sets} WHERE id = %s",
                   [*values.values(), batch.pk])
    grow = ", ".join(f'"{k}" = "{k}" + %s' for k in ("rows", "child_rows", "bytes", "batches"))
    cursor.execute(f"UPDATE {prefix}{ops.quote_name(MigrationRun._meta.db_table)} SET {grow}, heartbeat_at = %s "
                   "WHERE id = %s", [result.rows, result.child_rows, result.bytes, 1,
                                     ops.adapt_datetimefield_value(timezone.now()), ctx.run.pk])


def record_copied(batch: MigrationBatch, keys: list, cursor=None, prefix: str = "") -> None:
    """To hot, in the hot transaction that commits the batch's verified copies: the batch becomes VERIFIED
    with the keys of those copies, so the repair knows which copies were made. ``cursor``: a path's own,
    inside its own ``BEGIN`` (Django's atomic would commit it), on hot's tables under ``prefix``."""
    keys_json = MigrationBatch.record_keys(keys)
    if cursor is None:
        MigrationBatch.objects.using(tiering_settings.HOT).filter(pk=batch.pk).update(
            state=BatchState.VERIFIED, pks=keys_json)
        return
    table = connections[tiering_settings.HOT].ops.quote_name(MigrationBatch._meta.db_table)
    cursor.execute(f"UPDATE {prefix}{table} SET state = %s, pks = %s WHERE id = %s",
                   [str(BatchState.VERIFIED), json.dumps(keys_json), batch.pk])


def set_state(batch: MigrationBatch, **values: Any) -> None:
    """Write ``values`` to the batch's ledger row and to ``batch``."""
    for key, value in values.items():
        setattr(batch, key, value)
    MigrationBatch.objects.using(tiering_settings.HOT).filter(pk=batch.pk).update(**values)


def summary_checksum(ctx, low: Any, high: Any, result, *digests: str) -> str:
    """The ledger checksum of a batch the SQL paths verified column by column: a digest of its summary."""
    text = f"{ctx.tiered.label}:{ctx.direction}:{low}:{high}:{result.rows}:{result.child_rows}:{result.bytes}"
    return hashlib.sha256(":".join((text, *digests)).encode()).hexdigest()
