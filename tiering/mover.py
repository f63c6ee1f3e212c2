"""The copy -> verify -> delete engine, both directions, read top-down.

One run of ``move()``:

1. **Lock** ``<model>:<direction>`` (a ``TierLock`` row in hot, owned by the
   run so parallel range workers of one run share it). A lock whose heartbeat
   is older than ``LOCK_STALE_SECONDS``, or whose owner is a dead process on
   this host, is taken over. Then **repair** half-done batches of earlier
   runs: a row in both tiers keeps its hot version (see "Batch states"); a
   row gone from the source was moved, and its target copy *is* the row.
2. **Select** the next batch of keys in key order (keyset, never OFFSET) with
   the cutoff ``now`` fixed once per run; the batch size adapts to
   ``BATCH_TARGET_SECONDS`` within the ``batch_size`` cap. The keys and the key
   range are written to the ledger (``MigrationBatch``, state COPYING) in their
   own commit *before* the copy: the repair works from the range.
3. **Copy** parents, then their ``Tiering.related`` children. Keys already in
   the target are not inserted again, so a retried batch neither fails nor
   duplicates.
4. **Verify**: the copy is compared with the source, and only what matches is
   deleted.
5. **Delete** children, then parents, re-checking the policy in the delete. A
   row changed since its copy or no longer eligible stays in the source and its
   copy is removed, so no concurrent update is lost and no row ends in both tiers.
6. **Ledger**: the batch becomes DONE with rows, bytes, checksum, timings and
   the number of rows kept; ``batch_done`` is sent. ``run_finished`` (and
   ``run_failed``) at the end; errors are logged on ``tiering.mover``.

Four paths do steps 3-6:

- ``sqlite`` (two SQLite files): ONE transaction (``BEGIN IMMEDIATE``) on the
  target connection with the source ATTACHed: the eligible keys of the range
  into a temp table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` parents
  and children, a join comparing every column null-safely (``IS``), deletes,
  and the ledger (when it lives in the source file). The target is ``main`` so
  that, in WAL mode, it commits first, with ``synchronous = FULL``: a crash or
  power loss between the two files' commits leaves copies next to their source
  rows, never deletes without copies.
- ``pg_copy`` (two PostgreSQL databases): the source transaction locks the
  batch's parents (``FOR UPDATE``); ``COPY (SELECT ... ORDER BY pk FOR UPDATE)
  TO STDOUT`` (binary) locks the children too and is piped into ``COPY ... FROM
  STDIN`` of the target tables (staging tables + ``INSERT ... ON CONFLICT DO
  NOTHING`` when stale copies are there), hashing the stream on the way; the
  target's rows are read back the same way and must hash the same (count +
  BLAKE2 of byte-identical rows). If not, PostgreSQL digests both sides (a
  64-bit hash of each row's text, with the source's session settings) to find
  the rows that differ. The target commits, then the source deletes and
  commits (with the ledger for TO_COLD).
- ``pg_insert`` (two PostgreSQL aliases on one server and database, cold in its
  own schema through the cold alias's search_path; each alias's schema is its
  ``current_schema()``): ONE transaction on the source connection, every table
  schema-qualified: the batch locked ``FOR UPDATE`` (children included) into a
  temp table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` parents and
  children, a join comparing every column null-safely (``IS NOT DISTINCT
  FROM``), the target sequences, deletes and the ledger (TO_COLD). One commit:
  a crash leaves nothing half-done. Aliases that reach the same tables (one
  SQLite file; one PostgreSQL database and schema) are refused by every path
  (and by the system check tiering.E011): each row would be copied onto itself,
  verified and deleted.
- ``orm`` (any other pair, and selections that need joins): raw bulk inserts, then a
  Python content hash per parent (with children) compared under row locks in
  both tiers; a write made to the copy between copy and verify wins. The
  deletes and the ledger (TO_COLD) commit in one hot transaction. To hot the
  copies are also compared with cold before they commit, as on the other paths.

On the SQL paths a mismatching row (a stale copy of a crashed attempt or a row
written through it) is copied again from the authoritative source and compared
again; what still differs stays in the source, its copy removed. The SQLite
checksum in the ledger is a digest of the verified batch summary (SQLite has no
hash function; the verify itself compares every column).

Batch states in the ledger: COPYING (keys recorded) -> [COPIED, orm to cold;
VERIFIED, to hot] -> DONE, or UNDONE/FAILED. A restore's verified copies commit
in hot together with the batch's VERIFIED mark and the keys of those copies.
After a crash the repair looks at the rows of each open batch's key range. A
key in both tiers keeps its hot row: to cold the cold copy is removed (hot, the
source, is authoritative); to hot the cold row is removed, because a restore's
copies commit in hot only verified, and from then on the application reads
them there and writes to them. A key gone from the source was moved, or
deleted by the application; a key of a VERIFIED restore gone from hot was
deleted by the application, and its cold row goes too (see ``_undo_copies``). ``HOTCOLD_TEST_CRASH_AT=step:n``
(test subprocesses only) kills the process at a named step: after_copy,
after_verify (on pg_copy after the target commit), mid_delete,
after_delete_before_ledger.

Restored rows (TO_HOT) get a fresh mark so the next archive run does not send
them straight back: the access field of an access (or hybrid) policy is set to
now, and for policies with a time part a ``RestoredRow`` hold is written; TO_COLD
skips held rows for the time policy's ``older_than`` after the restore.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone as dt_timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import DatabaseError, IntegrityError, connections, models, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Cast
from django.utils import timezone

from .conf import tiering_settings
from .models import (BatchState, Direction, MigrationBatch, MigrationRun, RestoredRow, RunState, TierLock,
                     jsonable_key)
from .policies import HybridPolicy, TimePolicy
from .registry import TieredModel
from .signals import batch_done, run_failed, run_finished

logger = logging.getLogger("tiering.mover")

PATHS = ("sqlite", "pg_copy", "pg_insert", "orm")
MIN_BATCH = 10
# how far one batch's time may move the next batch's size, either way: the first batch (1,000 rows) probes,
# the next ones reach the cap in two steps (each batch costs ~10 ms however small), and one slow batch
# (a lock wait, wide rows) brings the next one back to the time target at once
BATCH_STEP = 16.0
KEYS_PER_STATEMENT = 10000  # keys passed as query parameters to one statement (SQLite: 32,766 by default)
ORM_BATCH_CAP = KEYS_PER_STATEMENT  # the orm path passes each key of a batch as a query parameter
SQLITE_COLD_CHECKPOINT_BATCHES = 8  # see _sqlite_checkpoint
OPEN_STATES = (BatchState.COPYING, BatchState.COPIED, BatchState.VERIFIED, BatchState.FAILED)


class LockHeld(Exception):
    """Another live run holds the model+direction lock."""


class MoveError(Exception):
    """A run failed; ``run`` is the failed MigrationRun (the ledger says why)."""

    def __init__(self, message: str, run: MigrationRun | None = None) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class MoveProgress:
    rows: int
    batches: int
    bytes: int
    total_estimate: int | None


@dataclass
class MovePlan:
    rows: int
    child_rows: int
    bytes: int
    batches: int


# --------------------------------------------------------------------------------- public API
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
    progress: Callable[[MoveProgress], None] | None = None,
    now: datetime | None = None,
    path: str | None = None,
    resumes: MigrationRun | None = None,
) -> MigrationRun:
    """Move the selected rows (and their children) between tiers; see the module docstring.

    ``resumes``: a run that did not finish (``resumable_run``); this run takes its cutoff, so it moves
    what was eligible then, and the ledger records which run it resumes.
    """
    _check_selection(direction, pks, where, all_rows, limit, batch_size)
    path = _choose_path(direction, path)  # refuses tiers that are the same tables before anything is written
    joined = run is not None
    if run is None:
        selection = _describe_selection(pks, where, all_rows, limit, batch_size, key_range)
        if resumes is not None:
            now, selection["resumes"] = resumes.cutoff, resumes.pk
        run = start_run(tiered, direction, trigger=trigger, now=now, selection=selection)
    else:
        _acquire_lock(tiered, direction, run)
    ctx = _Move(tiered, direction, run, now=run.cutoff or now or timezone.now(), path=path)
    try:
        selection = _selection(ctx, pks, where, key_range)  # may fall back to the orm path
        MigrationRun.objects.using(_hot()).filter(pk=run.pk).update(  # before any batch: the repair reads it
            path=ctx.path, done_commits_with_delete=ctx.ledger_commits_with_delete)
        stopped = _run_batches(ctx, selection, limit, batch_size, max_runtime, sleep, progress)
        _analyze_holds(ctx)  # not on promote's path: a read that promotes a few rows must stay cheap
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        logger.exception("run %s (%s %s) failed: %s", run.pk, tiered.label, direction, message)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not joined:
            finish_run(run, RunState.FAILED, message, _exc=exc)
        else:
            MigrationRun.objects.using(_hot()).filter(pk=run.pk).update(error=message)
        if isinstance(exc, Exception) and not isinstance(exc, MoveError):
            raise MoveError(f"run {run.pk} failed: {message}", run) from exc
        raise
    run.refresh_from_db(using=_hot())
    run.stopped_early = stopped  # a joined run's owner needs it to close the run as STOPPED
    if not joined:
        finish_run(run, RunState.STOPPED if stopped else RunState.SUCCEEDED)
    return run


def plan(tiered: TieredModel, direction: str, *, pks=None, where=None, all_rows: bool = False,
         limit: int | None = None, batch_size: int | None = None, now: datetime | None = None) -> MovePlan:
    """What ``move()`` would move, without changing anything (for --dry-run and confirmation)."""
    _check_selection(direction, pks, where, all_rows, limit, batch_size)
    ctx = _Move(tiered, direction, None, now=now or timezone.now(), path="orm")
    qs = _selection(ctx, pks, where, None)
    eligible = qs.count()
    rows = eligible if limit is None else min(eligible, limit)
    child_rows = sum(c.model._base_manager.using(ctx.source).filter(**{f"{c.fk.attname}__in": qs.values("pk")}).count()
                     for c in tiered.children)
    if eligible and rows < eligible:
        child_rows = math.ceil(child_rows * rows / eligible)
    sample = list(qs.order_by("pk").values_list("pk", flat=True)[:100])
    per_row = 0.0
    if sample:
        _, _, sample_bytes = _group_hashes(ctx, ctx.source, sample, eligible_only=False, lock=False)
        per_row = sample_bytes / len(sample)
    size = batch_size or tiering_settings.BATCH_SIZE
    return MovePlan(rows=rows, child_rows=child_rows, bytes=int(per_row * rows), batches=math.ceil(rows / size))


def resumable_run(tiered: TieredModel, direction: str) -> MigrationRun | None:
    """The model's last run in ``direction`` when it did not finish its work: failed, stopped early (limit,
    max runtime) or interrupted (still RUNNING, its lock stale or gone); None when it finished or is live.
    A run that failed before its first batch (refused by the lock, say) did no work and is passed over."""
    no_batch = ~Exists(MigrationBatch.objects.filter(run=OuterRef("pk")))
    last = (MigrationRun.objects.using(_hot()).filter(model_label=tiered.label, direction=direction)
            .exclude(trigger="promote").exclude(state=RunState.DRY_RUN).exclude(Q(state=RunState.FAILED) & no_batch)
            .order_by("-started_at", "-id").first())
    if last is None or last.state == RunState.SUCCEEDED:
        return None
    if last.state == RunState.RUNNING and held_lock(tiered, direction) is not None:
        return None
    return last


def start_run(tiered: TieredModel, direction: str, *, trigger: str, selection: dict,
              now: datetime | None = None) -> MigrationRun:
    """Create the run, take the model+direction lock and repair earlier half-done batches."""
    _refuse_same_tables(tiering_settings.HOT, tiering_settings.COLD)
    now = now or timezone.now()
    run = MigrationRun.objects.using(_hot()).create(
        model_label=tiered.label, direction=direction, trigger=trigger, cutoff=now,
        policy=tiered.policy.describe() if tiered.policy else "", selection=selection, owner=_owner(),
    )
    try:
        _acquire_lock(tiered, direction, run)
    except LockHeld as exc:
        MigrationRun.objects.using(_hot()).filter(pk=run.pk).update(
            state=RunState.FAILED, error=str(exc), finished_at=timezone.now())
        raise
    try:
        _repair(_Move(tiered, direction, run, now=now, path="orm"))
    except Exception as exc:
        finish_run(run, RunState.FAILED, f"repair failed: {type(exc).__name__}: {exc}", _exc=exc)
        raise MoveError(f"run {run.pk}: repairing earlier batches failed: {exc}", run) from exc
    return run


def finish_run(run: MigrationRun, state: str | None = None, error: str = "", *,
               _exc: BaseException | None = None) -> MigrationRun:
    """Close the run in the ledger, release its locks and send the signals."""
    hot = _hot()
    run.refresh_from_db(using=hot)
    state = state or (RunState.FAILED if error else RunState.SUCCEEDED)
    run.state, run.finished_at = state, timezone.now()
    if error:
        run.error = error
    run.save(using=hot, update_fields=["state", "finished_at", "error"])
    TierLock.objects.using(hot).filter(run=run)._raw_delete(hot)
    if state == RunState.FAILED:
        run_failed.send(sender=MigrationRun, run=run, error=_exc or MoveError(error, run))
    run_finished.send(sender=MigrationRun, run=run)
    return run


def promote(tiered: TieredModel, pks: Iterable[Any]) -> int:
    """Move these rows (with children) cold -> hot now, through the same protocol.

    It takes no model lock (a long archive run may hold it): every row is
    still moved under the per-row verify-and-delete, so it is safe alongside.
    """
    pks = list(pks)
    path = _choose_path(Direction.TO_HOT, None)
    run = MigrationRun.objects.using(_hot()).create(
        model_label=tiered.label, direction=Direction.TO_HOT, trigger="promote", cutoff=timezone.now(),
        policy=tiered.policy.describe() if tiered.policy else "", selection={"pks": [str(p) for p in pks]},
        owner=_owner(),
    )
    ctx = _Move(tiered, Direction.TO_HOT, run, now=run.cutoff, path=path)
    try:
        _run_batches(ctx, _selection(ctx, pks, None, None), None, None, None, 0.0, None)
    except Exception as exc:
        logger.exception("run %s (promote %s %s) failed", run.pk, tiered.label, pks)
        finish_run(run, RunState.FAILED, f"{type(exc).__name__}: {exc}", _exc=exc)
        raise MoveError(f"promote run {run.pk} failed: {exc}", run) from exc
    finish_run(run, RunState.SUCCEEDED)
    return run.rows


# ------------------------------------------------------------------------------ the run loop
class _Move:
    """Everything one run needs: model, direction, aliases, cutoff, copy path."""

    def __init__(self, tiered: TieredModel, direction: str, run: MigrationRun | None, *, now: datetime,
                 path: str) -> None:
        self.tiered, self.model, self.direction, self.run, self.now = tiered, tiered.model, direction, run, now
        hot, cold = tiering_settings.HOT, tiering_settings.COLD
        self.source, self.target = (hot, cold) if direction == Direction.TO_COLD else (cold, hot)
        self.path = path  # checked against the pair by _choose_path
        if path == "pg_insert":
            self.schemas = (_pg_schema(self.source), _pg_schema(self.target))
        self.cold_batches = 0  # SQLite batches not yet checkpointed into the cold file
        self._constraints_inside: bool | None = None

    @property
    def constraints_stay_inside(self) -> bool:
        """True when no database foreign key reaches a moved table from outside its parent/children unit,
        as ``tiering.E010`` demands: then the SQLite path may switch off SQLite's row-by-row foreign key
        checks for its batch, because it copies children after their parents and deletes them before.
        A silenced E010 keeps the checks on (a violating delete then fails the batch at commit)."""
        if self._constraints_inside is None:
            from .checks import foreign_key_errors
            from .registry import registry

            self._constraints_inside = not foreign_key_errors(self.tiered, list(registry))
        return self._constraints_inside

    @property
    def ledger_commits_with_delete(self) -> bool:
        """True when each batch's DONE commits in the same transaction as its source delete, on every path:
        TO_COLD, where the ledger lives in hot, the source. An open batch then never had its delete
        committed (see ``_undo_copies``); the run records it as ``MigrationRun.done_commits_with_delete``."""
        return self.direction == Direction.TO_COLD



def _run_batches(ctx: _Move, selection, limit, batch_size, max_runtime, sleep, progress) -> bool:
    """Move batch after batch; return True when stopped early by limit or max_runtime."""
    stopped = _batches(ctx, selection, limit, batch_size, max_runtime, sleep, progress)
    if ctx.cold_batches:  # the SQLite path's last batches are still in the cold file's WAL
        with connections[tiering_settings.COLD].cursor() as cur:
            _wal_checkpoint(ctx, cur, "main")
        ctx.cold_batches = 0
    return stopped


def _batches(ctx: _Move, selection, limit, batch_size, max_runtime, sleep, progress) -> bool:
    cap = batch_size or tiering_settings.BATCH_SIZE
    if ctx.path == "orm":
        cap = min(cap, ORM_BATCH_CAP)
    size = min(cap, 1000)
    total = None
    if progress is not None:  # the count is for the progress bar's ETA only (a scan of the selection)
        total = selection.count()
        total = min(total, limit) if limit is not None else total
    started, last_pk, moved, done = time.monotonic(), None, 0, {"rows": 0, "batches": 0, "bytes": 0}
    while True:
        if limit is not None and moved >= limit:
            return True
        if max_runtime is not None and time.monotonic() - started >= max_runtime:
            return True
        want = size if limit is None else min(size, limit - moved)
        keys = _next_keys(selection, last_pk, want)
        if not keys:
            return False
        last_pk = keys[-1]
        t0 = time.monotonic()
        batch = _move_batch(ctx, keys)
        elapsed = time.monotonic() - t0
        moved += len(keys)
        done["rows"] += batch.rows
        done["batches"] += 1
        done["bytes"] += batch.bytes
        if progress is not None:
            progress(MoveProgress(done["rows"], done["batches"], done["bytes"], total))
        # size the next batch by time, within the cap
        factor = min(BATCH_STEP, max(1 / BATCH_STEP, tiering_settings.BATCH_TARGET_SECONDS / max(elapsed, 1e-3)))
        size = int(min(cap, max(MIN_BATCH, size * factor)))
        if sleep:
            time.sleep(sleep)


def _next_keys(selection, last_pk, want: int) -> list:
    """2. select: the next ``want`` eligible keys after ``last_pk`` in key order (keyset; the cutoff is fixed
    for the run), fetched in one piece, not 100 rows at a time through a queryset iterator (1.4% of a run)."""
    keys_qs = selection.order_by("pk")
    if last_pk is not None:
        keys_qs = keys_qs.filter(pk__gt=last_pk)
    compiler = keys_qs.values_list("pk", flat=True)[:want].query.get_compiler(using=keys_qs.db)
    return [row[0] for row in compiler.results_iter(chunk_size=want)]


def _move_batch(ctx: _Move, pks: list) -> MigrationBatch:
    """One batch: record its keys (COPYING), then copy, verify, delete and ledger on the run's path."""
    _heartbeat(ctx)
    batch = _open_batch(ctx, pks)
    path = {"sqlite": _batch_sqlite, "pg_copy": _batch_pg, "pg_insert": _batch_pg_insert, "orm": _batch_orm}[ctx.path]
    try:
        done, recorded, moved_keys = path(ctx, batch, pks)
        if ctx.direction == Direction.TO_HOT:
            _mark_restored(ctx, moved_keys)
    except BaseException as exc:
        _fail_batch(ctx, batch, exc)
        raise
    if not recorded:
        _record_done(ctx, batch, done)
    for key, value in _done_values(done).items():
        setattr(batch, key, value)
    if done.kept:
        logger.info("run %s batch %s: %s rows changed or no longer eligible stay in %s",
                    ctx.run.pk, batch.seq, done.kept, ctx.source)
    batch_done.send(sender=MigrationBatch, run=ctx.run, batch=batch)
    return batch


@dataclass
class _Done:
    """What a batch moved, for the ledger."""

    rows: int
    child_rows: int
    bytes: int
    checksum: str
    kept: int
    copy_seconds: float = 0.0
    verify_seconds: float = 0.0
    delete_seconds: float = 0.0


def _open_batch(ctx: _Move, pks: list) -> MigrationBatch:
    """Write the batch (keys and key range, state COPYING) in its own commit, before any copy."""
    hot = _hot()
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
    raise AssertionError("unreachable")


def _done_values(done: _Done) -> dict:
    return dict(state=BatchState.DONE, rows=done.rows, child_rows=done.child_rows, bytes=done.bytes,
                checksum=done.checksum, kept=done.kept, copy_seconds=done.copy_seconds,
                verify_seconds=done.verify_seconds, delete_seconds=done.delete_seconds, finished_at=timezone.now())


def _record_done(ctx: _Move, batch: MigrationBatch, done: _Done) -> None:
    """Ledger: the batch is DONE and the run's counters grow (through the ORM on hot)."""
    hot = _hot()
    MigrationBatch.objects.using(hot).filter(pk=batch.pk).update(**_done_values(done))
    MigrationRun.objects.using(hot).filter(pk=ctx.run.pk).update(
        rows=F("rows") + done.rows, child_rows=F("child_rows") + done.child_rows, bytes=F("bytes") + done.bytes,
        batches=F("batches") + 1, heartbeat_at=timezone.now())


def _summary_checksum(ctx: _Move, low: Any, high: Any, done: _Done, *digests: str) -> str:
    text = f"{ctx.tiered.label}:{ctx.direction}:{low}:{high}:{done.rows}:{done.child_rows}:{done.bytes}"
    return hashlib.sha256(":".join((text, *digests)).encode()).hexdigest()


# ------------------------------------------ both tiers on one connection: sqlite and pg_insert
@dataclass
class _Table:
    table: str      # quoted table name
    ref: str        # quoted alias the compiled policy uses (the table name)
    pk: str         # quoted primary key column
    cols: list      # quoted concrete columns
    db_types: list  # their column types on the run's source


def _tables(model, alias: str) -> _Table:
    fields = model._meta.concrete_fields
    return _Table(_qn(model._meta.db_table), _qn(model._meta.db_table), _qn(model._meta.pk.column),
                  [_qn(f.column) for f in fields], [f.db_type(connections[alias]) for f in fields])


@dataclass(frozen=True)
class _OneConnection:
    """Copy, verify and delete of a batch as plain SQL over both tiers on one connection.

    The ``sqlite`` path (the source ATTACHed) and the ``pg_insert`` path (two
    schemas of one database) run the same statements; the fields are the few
    words in which the two databases differ. The batch's parent keys are in
    the temp table ``keys``.
    """

    src: str        # prefix of the source's tables, with its dot
    dst: str        # prefix of the target's tables
    keys: str       # temp table of the batch's parent keys
    bad: str        # temp table of the parent keys whose copy (or a child's) differs
    in_batch: str   # "<column> {in_batch}": membership in ``keys``, in the form this database searches fastest
    same: str       # null-safe equality
    source_bytes: Callable[[_Table], str]  # aggregate SQL of the payload bytes of the source rows ``s``

    def copy(self, cur, parent: _Table, children: list, keys: str) -> None:
        """3. copy the parents (``pk {keys}``), then their children (``fk {keys}``); a key already in the target
        is left alone (the verify compares it), so a retried batch neither fails nor duplicates."""
        for t, key in [(parent, parent.pk)] + children:
            cols = ", ".join(t.cols)
            cur.execute(f"INSERT INTO {self.dst}{t.table} ({cols}) SELECT {cols} FROM {self.src}{t.table} "
                        f"WHERE {key} {keys} ON CONFLICT DO NOTHING")

    def children_in_target(self, cur, children: list, low: Any, high: Any) -> bool:
        """Before the copy: does the target hold a child of any parent key in ``low``..``high``? One index
        probe per child table; when it holds none, every target child of the batch is one the copy writes."""
        for c, fk in children:
            cur.execute(f"SELECT 1 FROM {self.dst}{c.table} WHERE {fk} >= %s AND {fk} <= %s LIMIT 1", [low, high])
            if cur.fetchone():
                return True
        return False

    def verify(self, ctx: _Move, cur, parent: _Table, children: list,
               count_target: bool) -> tuple[int, int, int, int]:
        """4. compare the batch column by column; return (rows, child_rows, bytes, kept).

        Mismatching parents (a stale copy of a crashed attempt, a row written
        through such a copy) get a fresh copy from the authoritative source and
        are compared again; what still differs stays in the source, its copy
        removed. ``count_target``: the target held children of the batch's key
        range before the copy, so its children are counted too (an extra one,
        that the source does not have, is a mismatch); otherwise each target
        child is a copy of a source child and the comparison covers it.
        """
        in_bad = f"IN (SELECT pk FROM {self.bad})"
        kept = 0
        for attempt in range(3):
            rows, matched, nbytes = self._compare(cur, parent, f"s.{parent.pk} {self.in_batch}")
            ok = rows == matched
            child_rows = 0
            for c, fk in children:
                n, m, b = self._compare(cur, c, f"s.{fk} {self.in_batch}")
                ok = ok and n == m
                if count_target:
                    cur.execute(f"SELECT count(*) FROM {self.dst}{c.table} WHERE {fk} {self.in_batch}")
                    ok = ok and n == cur.fetchone()[0]
                child_rows, nbytes = child_rows + n, nbytes + b
            if ok:
                return rows, child_rows, nbytes, kept
            if attempt == 2:
                break
            bad = self._bad_keys(cur, parent, children)
            logger.warning("run %s: %s rows of the batch differ in %s; %s", ctx.run.pk, bad, ctx.target,
                           "copying them again from the source" if attempt == 0 else "they stay in the source")
            for c, fk in children:
                cur.execute(f"DELETE FROM {self.dst}{c.table} WHERE {fk} {in_bad}")
            cur.execute(f"DELETE FROM {self.dst}{parent.table} WHERE {parent.pk} {in_bad}")
            if attempt == 0:
                self.copy(cur, parent, children, in_bad)
            else:
                cur.execute(f"DELETE FROM {self.keys} WHERE pk {in_bad}")
                kept += bad
        raise MoveError(f"run {ctx.run.pk}: the batch still differs in {ctx.target} after removing the mismatches",
                        ctx.run)

    def verify_and_delete(self, ctx: _Move, cur, batch: MigrationBatch, pks: list, parent: _Table,
                          children: list, copy_seconds: float, count_target: bool) -> _Done:
        """Steps 4 and 5 after the path's copy, timed and with the crash hooks; what the ledger records."""
        t0 = time.monotonic()
        rows, child_rows, nbytes, kept = self.verify(ctx, cur, parent, children, count_target)
        verify_seconds = time.monotonic() - t0
        _hook("after_verify")
        t0 = time.monotonic()
        self.delete(ctx, cur, batch, parent, children, rows, child_rows)
        _hook("after_delete_before_ledger")
        done = _Done(rows, child_rows, nbytes, "", kept, copy_seconds, verify_seconds, time.monotonic() - t0)
        done.checksum = _summary_checksum(ctx, pks[0], pks[-1], done)
        return done

    def batch_keys(self, cur) -> list:
        """The keys the batch moved, in key order (TO_HOT marks them restored and records them)."""
        cur.execute(f"SELECT pk FROM {self.keys} ORDER BY pk")
        return [r[0] for r in cur.fetchall()]

    def delete(self, ctx: _Move, cur, batch: MigrationBatch, parent: _Table, children: list, rows: int,
               child_rows: int) -> None:
        """5. delete children, then the parents still eligible (the policy re-checked in the delete itself);
        counts that differ from the verified ones raise, rolling the batch back."""
        where, params = ctx.where_sql
        deleted_children = 0
        for c, fk in children:
            cur.execute(f"DELETE FROM {self.src}{c.table} WHERE {fk} {self.in_batch}")
            deleted_children += cur.rowcount
        _hook("mid_delete")
        cur.execute(f"DELETE FROM {self.src}{parent.table} WHERE {parent.ref}.{parent.pk} {self.in_batch} "
                    f"AND ({where})", params)
        if cur.rowcount != rows or deleted_children != child_rows:
            raise MoveError(f"batch {batch.seq}: deleted {cur.rowcount} rows and {deleted_children} children, "
                            f"verified {rows} and {child_rows}; rolled back", ctx.run)

    def _compare(self, cur, t: _Table, where: str) -> tuple[int, int, int]:
        """(source rows, rows with an identical target row, source bytes) of ``t`` for ``where`` on ``s``."""
        same = "".join(f" AND d.{c} {self.same} s.{c}" for c in t.cols if c != t.pk)
        cur.execute(f"SELECT count(*), count(d.{t.pk}), {self.source_bytes(t)} FROM {self.src}{t.table} AS s "
                    f"LEFT JOIN {self.dst}{t.table} AS d ON d.{t.pk} = s.{t.pk}{same} WHERE {where}")
        n, m, b = cur.fetchone()
        return n, m, int(b)

    def _bad_keys(self, cur, parent: _Table, children: list) -> int:
        """Fill ``bad`` with the parents whose copy (or a child's) differs; return how many."""
        cur.execute(f"DELETE FROM {self.bad}")
        for t, key, fk in [(parent, parent.pk, parent.pk)] + [(c, c.pk, fk) for c, fk in children]:
            same = "".join(f" AND d.{c} {self.same} s.{c}" for c in t.cols if c != t.pk)
            cur.execute(f"INSERT INTO {self.bad} (pk) SELECT s.{fk} FROM {self.src}{t.table} AS s "
                        f"LEFT JOIN {self.dst}{t.table} AS d ON d.{key} = s.{key}{same} "
                        f"WHERE s.{fk} {self.in_batch} AND d.{key} IS NULL ON CONFLICT DO NOTHING")
            if t is not parent:  # children in the target that the source does not have
                cur.execute(f"INSERT INTO {self.bad} (pk) SELECT d.{fk} FROM {self.dst}{t.table} AS d "
                            f"WHERE d.{fk} {self.in_batch} AND NOT EXISTS (SELECT 1 FROM {self.src}{t.table} AS s "
                            f"WHERE s.{key} = d.{key} AND s.{fk} {self.same} d.{fk}) ON CONFLICT DO NOTHING")
        cur.execute(f"SELECT count(*) FROM {self.bad}")
        return cur.fetchone()[0]


# ------------------------------------------------------------- fast path: two SQLite files
def _batch_sqlite(ctx: _Move, batch: MigrationBatch, pks: list) -> tuple[_Done, bool, list]:
    """Two SQLite files: the whole batch in ONE transaction on the target connection, source ATTACHed.

    ``BEGIN IMMEDIATE`` write-locks both files, so the batch cannot change from
    the copy to the delete. The target is ``main`` on purpose: in WAL mode a
    transaction over attached files commits file by file in attach order,
    target first, so a crash in between leaves a copy next to its source row
    (the repair removes it), never a delete without its copy.
    """
    conn = connections[ctx.target]
    if conn.in_atomic_block:
        raise MoveError("the SQLite fast path cannot run inside transaction.atomic()", ctx.run)
    conn.ensure_connection()
    raw = conn.connection
    source = os.path.abspath(str(connections[ctx.source].settings_dict["NAME"]))
    parent = _tables(ctx.model, ctx.source)
    children = [(_tables(c.model, ctx.source), _qn(c.fk.column)) for c in ctx.tiered.children]
    where, params = ctx.where_sql
    # integer keys go in an INTEGER PRIMARY KEY, the table's own b-tree, not a second index beside it: every
    # statement of the batch looks its keys up there (6% of a run of 100k orders); other keys keep their values
    key_type, suffix = ("INTEGER", "_int") if "INT" in ctx.model._meta.pk.rel_db_type(conn).upper() else ("", "")
    keys, bad = f"tiering_batch{suffix}", f"tiering_bad{suffix}"
    sql = _OneConnection(src="tiering_src.", dst="main.", keys=f"temp.{keys}", bad=f"temp.{bad}",
                         in_batch=f"IN (SELECT pk FROM temp.{keys})", same="IS", source_bytes=_sqlite_bytes)
    with conn.cursor() as cur:
        cur.execute("ATTACH DATABASE %s AS tiering_src", [source])
        saved = {}
        for pragma in ("foreign_keys", "wal_autocheckpoint", "main.synchronous"):
            cur.execute(f"PRAGMA {pragma}", [])
            saved[pragma] = int(cur.fetchone()[0])
        try:
            for pragma in ("synchronous", "cache_size"):  # the source gets the target's settings
                cur.execute(f"PRAGMA main.{pragma}", [])
                cur.execute(f"PRAGMA tiering_src.{pragma} = {int(cur.fetchone()[0])}", [])
            # WAL commits file by file, target first; FULL syncs the target's WAL before the source's delete is
            # written, so not even a power loss can keep the delete and lose the copy (NORMAL syncs only later)
            cur.execute(f"PRAGMA main.synchronous = {max(saved['main.synchronous'], 2)}", [])
            cur.execute("PRAGMA wal_autocheckpoint = 0", [])  # _sqlite_checkpoint does it after the commit
            if saved["foreign_keys"] and ctx.constraints_stay_inside:
                cur.execute("PRAGMA foreign_keys = OFF", [])  # the batch keeps them itself (see the property)
            cur.execute("BEGIN IMMEDIATE", [])
            t0 = time.monotonic()
            # the batch: keys in the range that are eligible now (the source is write-locked from here on)
            for table in (keys, bad):
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (pk {key_type} PRIMARY KEY)", [])
            cur.execute(f"DELETE FROM temp.{keys}", [])
            t = parent
            # the key range as SQLite stores it (a UUID as 32 hex digits: the raw cursor takes no UUID objects)
            low, high = (ctx.model._meta.pk.get_db_prep_value(key, conn) for key in (pks[0], pks[-1]))
            cur.execute(f"INSERT INTO temp.{keys} (pk) SELECT {t.ref}.{t.pk} FROM tiering_src.{t.table} "
                        f"AS {t.ref} WHERE {t.ref}.{t.pk} >= %s AND {t.ref}.{t.pk} <= %s AND ({where})",
                        [low, high, *params])
            count_target = sql.children_in_target(cur, children, low, high)
            sql.copy(cur, parent, children, sql.in_batch)
            copy_seconds = time.monotonic() - t0
            _hook("after_copy")
            done = sql.verify_and_delete(ctx, cur, batch, pks, parent, children, copy_seconds, count_target)
            # 6. ledger: in the same transaction when it lives in the source file (hot, for TO_COLD)
            recorded = ctx.ledger_commits_with_delete
            moved: list = []
            if recorded:
                _sqlite_record_done(cur, ctx, batch, done)
            else:  # TO_HOT: hot is main, the file that commits first: the copies and their mark commit together
                moved = sql.batch_keys(cur)
                _record_copied(batch, moved, cur)
            cur.execute("COMMIT", [])
            _sqlite_checkpoint(ctx, cur)
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        finally:  # other users of this connection must not lock the source file too
            if not raw.in_transaction:
                raw.execute("DETACH DATABASE tiering_src")
                for pragma, value in saved.items():
                    raw.execute(f"PRAGMA {pragma} = {value}")
    return done, recorded, moved


def _sqlite_checkpoint(ctx: _Move, cur) -> None:
    """Copy the batch's WAL frames into the database files, as SQLite's auto-checkpoint would at the commit,
    but into the cold file only every ``SQLITE_COLD_CHECKPOINT_BATCHES`` batches and at the end of the run.

    Hot is checkpointed after every batch, so the application's next commit does not inherit the work. The
    application does not write to cold, and its index pages, rewritten by every batch, are then copied once
    per checkpoint instead of once per batch (checkpoints took 3.0 s of a 10.9 s move of 1M orders, cold's
    share went from 1.3 s to 0.4 s).
    """
    hot = "tiering_src" if ctx.source == _hot() else "main"
    _wal_checkpoint(ctx, cur, hot)
    ctx.cold_batches += 1
    if ctx.cold_batches >= SQLITE_COLD_CHECKPOINT_BATCHES:
        _wal_checkpoint(ctx, cur, "main" if hot == "tiering_src" else "tiering_src")
        ctx.cold_batches = 0


def _wal_checkpoint(ctx: _Move, cur, schema: str) -> None:
    """A passive checkpoint of committed batches: one that fails is only logged, since the frames stay in
    the WAL (as durable as the file) for SQLite's next checkpoint, and must not fail a batch that committed."""
    try:
        cur.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)", [])
    except DatabaseError as exc:
        logger.warning("run %s: WAL checkpoint of %s failed (%s); SQLite retries it later", ctx.run.pk, schema, exc)


def _sqlite_bytes(t: _Table) -> str:
    """Aggregate SQL for the payload bytes of the rows ``s``: text and blobs by their bytes, numbers as 8.

    Columns are classed by SQLite's type affinity rules: measuring a number by
    ``length()`` formats it as text, which cost half of the whole comparison.
    """
    numbers, sized = [], []
    for col, db_type in zip(t.cols, t.db_types):
        kind = (db_type or "").upper()
        if "INT" in kind or any(word in kind for word in ("REAL", "FLOA", "DOUB")):
            numbers.append(f"count(s.{col})")
        elif any(word in kind for word in ("CHAR", "CLOB", "TEXT", "BLOB")) or not kind:
            sized.append(f"ifnull(length(CAST(s.{col} AS BLOB)), 0)")
        else:  # NUMERIC affinity holds numbers and text (dates, for one): measure each value
            sized.append(f"CASE WHEN typeof(s.{col}) IN ('integer', 'real') THEN 8 "
                         f"ELSE ifnull(length(CAST(s.{col} AS BLOB)), 0) END")
    return f"total({' + '.join(sized) or '0'}) + 8 * ({' + '.join(numbers) or '0'})"


def _sqlite_record_done(cur, ctx: _Move, batch: MigrationBatch, done: _Done) -> None:
    """The ledger update of ``_record_done`` as SQL on the attached hot file, inside the batch transaction."""
    ops = connections[_hot()].ops
    values = _done_values(done)
    values["finished_at"] = ops.adapt_datetimefield_value(values["finished_at"])
    values["state"] = str(values["state"])
    sets = ", ".join(f"{_qn(MigrationBatch._meta.get_field(k).column)} = %s" for k in values)
    cur.execute(f"UPDATE tiering_src.{_qn(MigrationBatch._meta.db_table)} SET {sets} WHERE id = %s",
                [*values.values(), batch.pk])
    grow = ", ".join(f'"{k}" = "{k}" + %s' for k in ("rows", "child_rows", "bytes", "batches"))
    cur.execute(f"UPDATE tiering_src.{_qn(MigrationRun._meta.db_table)} SET {grow}, heartbeat_at = %s "
                "WHERE id = %s", [done.rows, done.child_rows, done.bytes, 1,
                                  ops.adapt_datetimefield_value(timezone.now()), ctx.run.pk])


def _record_copied(batch: MigrationBatch, keys: list, cursor=None) -> None:
    """TO_HOT, in the hot transaction that commits the batch's verified copies: the batch becomes VERIFIED
    with the keys of those copies, so the repair knows which copies were made. One of them missing from hot
    later was deleted by the application, and its cold row must not bring it back (see ``_undo_copies``).
    ``cursor``: the SQLite path's, inside its own ``BEGIN`` (Django's atomic would commit it)."""
    keys_json = MigrationBatch.record_keys(keys)
    if cursor is None:
        MigrationBatch.objects.using(_hot()).filter(pk=batch.pk).update(state=BatchState.VERIFIED, pks=keys_json)
        return
    cursor.execute(f"UPDATE main.{_qn(MigrationBatch._meta.db_table)} SET state = %s, pks = %s WHERE id = %s",
                   [str(BatchState.VERIFIED), json.dumps(keys_json), batch.pk])


# ------------------------------------------------------------- fast path: PostgreSQL pair
def _batch_pg(ctx: _Move, batch: MigrationBatch, pks: list) -> tuple[_Done, bool, list]:
    """PostgreSQL to PostgreSQL: lock the batch in the source, COPY it into the target, verify by read-back.

    Source transaction: ``SELECT ... FOR UPDATE`` of the batch (range + policy),
    and its children locked by their COPY, so nothing changes until the delete.
    Target transaction: COPY straight into the tables (or TEMP staging tables +
    ``INSERT ... ON CONFLICT DO NOTHING`` when stale copies are there), then
    the batch read back in the same binary form must hash to what was sent;
    commit. Then the source deletes and commits. A crash between the two
    commits leaves copies the repair removes.
    """
    import psycopg  # the PostgreSQL driver, needed on this path only

    parent = _tables(ctx.model, ctx.source)
    children = [(_tables(c.model, ctx.source), _qn(c.fk.column)) for c in ctx.tiered.children]
    where, params = ctx.where_sql
    t, keys = parent, _temp_name("tiering_keys", ctx.model._meta.db_table)
    src_conn, dst_conn = connections[ctx.source], connections[ctx.target]
    with transaction.atomic(using=ctx.source), src_conn.cursor() as src:
        t0 = time.monotonic()
        pk_type = ctx.model._meta.pk.rel_db_type(src_conn)
        src.execute(f"CREATE TEMP TABLE IF NOT EXISTS {keys} (pk {pk_type} PRIMARY KEY) ON COMMIT DELETE ROWS")
        src.execute(f"INSERT INTO {keys} SELECT pk FROM (SELECT {t.ref}.{t.pk} AS pk FROM {t.table} "
                    f"WHERE {t.ref}.{t.pk} >= %s AND {t.ref}.{t.pk} <= %s AND ({where}) "
                    f"ORDER BY 1 FOR UPDATE) locked", [pks[0], pks[-1], *params])
        settings_values = _pg_session(src)
        with transaction.atomic(using=ctx.target), dst_conn.cursor() as dst:
            # the source's text settings; and the copy must be on disk before the source deletes, so a server
            # set to synchronous_commit = off flushes this commit anyway ('local': no wait for standbys)
            dst.execute("SELECT set_config('TimeZone', %s, true), set_config('DateStyle', %s, true), "
                        "set_config('IntervalStyle', %s, true), set_config('extra_float_digits', %s, true), "
                        "set_config('bytea_output', %s, true), set_config('synchronous_commit', "
                        "CASE current_setting('synchronous_commit') WHEN 'off' THEN 'local' "
                        "ELSE current_setting('synchronous_commit') END, true)", settings_values)
            # 3. copy: COPY (SELECT ... FOR UPDATE) TO STDOUT piped into COPY ... FROM STDIN, straight into the
            # tables, hashing the stream on the way; if a key is there already (a stale copy) into staging
            # tables, then INSERT ... ON CONFLICT. The children are locked by their COPY (nothing is added
            # meanwhile: the FK waits on the locked parents).
            src.execute(f"SELECT coalesce(array_agg(pk), '{{}}') FROM {keys}")
            batch_keys = src.fetchone()[0]
            # (template, params) selecting the batch by a table's parent-key column ({key}); in the source the
            # key range lets PostgreSQL use that column's index instead of scanning the whole table for every
            # batch; in the target a range misled the plans of tables still being filled (measured 15% slower)
            in_source = (f"{{key}} >= %s AND {{key}} <= %s AND {{key}} IN (SELECT pk FROM {keys})", [pks[0], pks[-1]])
            in_target = ("{key} = ANY(%s)", [batch_keys])
            stages = None
            try:
                with transaction.atomic(using=ctx.target):  # a savepoint
                    source = _pg_copy(src, dst, parent, children, in_source, None)
            except psycopg.IntegrityError:
                stages = {c.table: _temp_name("tiering_stage", c.table.strip('"')) for c, _ in [(parent, 0)] + children}
                source = _pg_copy(src, dst, parent, children, in_source, stages)
                _pg_insert(dst, parent, children, stages, None)
                in_target = (f"{{key}} IN (SELECT {parent.pk} FROM {stages[parent.table]})", [])
            _advance_sequences(ctx)
            copy_seconds = time.monotonic() - t0
            _hook("after_copy")
            # 4. verify: the target's rows, read back in key order, hash to what left the source; if not (stale
            # copies were there), PostgreSQL digests both sides and the rows that differ are found and mended
            t0 = time.monotonic()
            kept = 0
            if _pg_read_back(dst, parent, children, in_target) == source:
                rows, nbytes = source[0][0], sum(b for _, b, _ in source)
                child_rows, digests = sum(n for n, _, _ in source[1:]), [d for _, _, d in source]
            else:
                (rows, child_rows, nbytes, digests), kept = _pg_verify(ctx, src, dst, parent, children, keys,
                                                                       stages, in_source, in_target)
            verify_seconds = time.monotonic() - t0
            moved: list = []
            if not ctx.ledger_commits_with_delete:  # TO_HOT: the target is hot, the copies commit with their mark
                src.execute(f"SELECT pk FROM {keys} ORDER BY pk")
                moved = [r[0] for r in src.fetchall()]
                _record_copied(batch, moved)
        _hook("after_verify")  # the target has committed: a crash here leaves copies for the repair
        # 5. delete: children, then parents still eligible (re-checked in the delete itself)
        t0 = time.monotonic()
        deleted_children = 0
        for c, fk in children:
            src.execute(f"DELETE FROM {c.table} WHERE {in_source[0].format(key=fk)}", in_source[1])
            deleted_children += src.rowcount
        _hook("mid_delete")
        src.execute(f"DELETE FROM {t.table} WHERE {in_source[0].format(key=f'{t.ref}.{t.pk}')} AND ({where})",
                    [*in_source[1], *params])
        if src.rowcount != rows or deleted_children != child_rows:
            raise MoveError(f"batch {batch.seq}: deleted {src.rowcount} rows and {deleted_children} children, "
                            f"verified {rows} and {child_rows}; rolled back", ctx.run)
        _hook("after_delete_before_ledger")
        done = _Done(rows, child_rows, nbytes, "", kept, copy_seconds, verify_seconds, time.monotonic() - t0)
        done.checksum = _summary_checksum(ctx, pks[0], pks[-1], done, *digests)
        # 6. ledger: in the source transaction when the ledger lives there (hot, for TO_COLD)
        recorded = ctx.ledger_commits_with_delete
        if recorded:
            _record_done(ctx, batch, done)
    return done, recorded, moved


def _pg_copy(src, dst, parent: _Table, children: list, in_source: tuple[str, list], stages: dict | None) -> list[tuple]:
    """COPY the batch's parents and children from the source into the target tables (or ``stages``).

    The source rows are locked (``FOR UPDATE``) and sent in key order; returns
    (rows, bytes, digest of the binary stream) per table, for ``_pg_read_back``.
    """
    out = []
    for t, key in [(parent, parent.pk)] + children:
        cols = ", ".join(t.cols)
        into = t.table
        if stages is not None:
            into = stages[t.table]
            dst.execute(f"CREATE TEMP TABLE IF NOT EXISTS {into} (LIKE {t.table}) ON COMMIT DELETE ROWS")
        with src.cursor.copy(f"COPY (SELECT {cols} FROM {t.table} WHERE {in_source[0].format(key=key)} "
                             f"ORDER BY {t.pk} FOR UPDATE) TO STDOUT (FORMAT BINARY)", in_source[1]) as reader, \
                dst.cursor.copy(f"COPY {into} ({cols}) FROM STDIN (FORMAT BINARY)") as writer:
            nbytes, digest = _pipe(reader, writer)
        out.append((src.cursor.rowcount, nbytes, digest))
    return out


def _pg_read_back(dst, parent: _Table, children: list, in_target: tuple[str, list]) -> list[tuple]:
    """(rows, bytes, digest) of the batch as the target holds it, in the same binary form and order as
    ``_pg_copy`` sent it: equal digests mean byte-identical rows."""
    where, params = in_target
    out = []
    for t, key in [(parent, parent.pk)] + children:
        with dst.cursor.copy(f"COPY (SELECT {', '.join(t.cols)} FROM {t.table} WHERE {where.format(key=key)} "
                             f"ORDER BY {t.pk}) TO STDOUT (FORMAT BINARY)", params) as reader:
            nbytes, digest = _pipe(reader, None)
        out.append((dst.cursor.rowcount, nbytes, digest))
    return out


def _pipe(reader, writer, size: int = 1 << 20) -> tuple[int, str]:
    """Stream COPY data to ``writer`` (if any) in large writes, hashing it; return (bytes, hex digest).

    Reads come a row at a time, so they are gathered into 1 MiB writes.
    """
    buffer, nbytes, digest = bytearray(), 0, hashlib.blake2b(digest_size=16)
    for data in reader:
        buffer += data
        if len(buffer) >= size:
            digest.update(buffer)
            nbytes += len(buffer)
            if writer is not None:
                writer.write(buffer)
            buffer = bytearray()
    if buffer:
        digest.update(buffer)
        nbytes += len(buffer)
        if writer is not None:
            writer.write(buffer)
    return nbytes, digest.hexdigest()


def _temp_name(prefix: str, table: str) -> str:
    return _qn(f"{prefix}_{table}"[:63])


def _pg_text_bytes(t: _Table) -> str:
    """Aggregate SQL for the bytes of the source rows ``s`` as PostgreSQL's row text."""
    return "coalesce(sum(octet_length(s::text)), 0)"


def _pg_session(cursor) -> list:
    """The session settings that shape row text; the target adopts the source's for the batch."""
    cursor.execute("SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
                   "current_setting('IntervalStyle'), current_setting('extra_float_digits'), "
                   "current_setting('bytea_output')")
    return list(cursor.fetchone())


def _pg_insert(dst, parent: _Table, children: list, stages: dict, only: list | None) -> None:
    """Insert staged rows missing from the target (all, or those of the parents ``only``)."""
    for t, key in [(parent, parent.pk)] + children:
        cols = ", ".join(t.cols)
        filt = f" WHERE {key} = ANY(%s)" if only is not None else ""
        dst.execute(f"INSERT INTO {t.table} ({cols}) SELECT {cols} FROM {stages[t.table]}{filt} "
                    f"ON CONFLICT ({t.pk}) DO NOTHING", [only] if only is not None else [])


def _pg_verify(ctx: _Move, src, dst, parent: _Table, children: list, keys: str, stages: dict | None,
               in_source: tuple[str, list], in_target: tuple[str, list]):
    """When the read-back differs: compare PostgreSQL's digests of both tiers; return (totals, kept).

    Mismatching parents are found row by row, re-copied from the staging
    tables (the source is authoritative) and compared again; what still
    differs stays in the source, its copy removed.
    """
    kept = 0
    for attempt in range(3):
        source = _pg_digests(src, parent, children, in_source)
        target = _pg_digests(dst, parent, children, in_target)
        if source == target:
            rows, nbytes, digest = source[0]
            return (rows, sum(c[0] for c in source[1:]), nbytes + sum(c[1] for c in source[1:]),
                    [str(d) for _, _, d in source]), kept
        if attempt == 2 or stages is None:  # copied straight in: a difference is not a stale copy
            break
        staged = (f"{{key}} IN (SELECT {parent.pk} FROM {stages[parent.table]})", [])
        differ = _pg_row_digests(src, parent, children, in_source) ^ _pg_row_digests(dst, parent, children, staged)
        bad = sorted({k for k, _ in differ})
        logger.warning("run %s: %s rows of the batch differ in %s; %s", ctx.run.pk, len(bad), ctx.target,
                       "copying them again from the source" if attempt == 0 else "they stay in the source")
        for c, fk in children:
            dst.execute(f"DELETE FROM {c.table} WHERE {fk} = ANY(%s)", [bad])
        dst.execute(f"DELETE FROM {parent.table} WHERE {parent.pk} = ANY(%s)", [bad])
        if attempt == 0:
            _pg_insert(dst, parent, children, stages, bad)
        else:
            src.execute(f"DELETE FROM {keys} WHERE pk = ANY(%s)", [bad])
            dst.execute(f"DELETE FROM {stages[parent.table]} WHERE {parent.pk} = ANY(%s)", [bad])
            kept += len(bad)
    raise MoveError(f"run {ctx.run.pk}: the batch still differs in {ctx.target} after removing the mismatches",
                    ctx.run)


def _pg_digests(cursor, parent: _Table, children: list, selected: tuple[str, list]) -> list[tuple]:
    """(rows, bytes, digest) of the parents and of each child table: the digest is the exact sum
    of a 64-bit hash of each row's text (no sort needed; a drill-down finds the rows that differ)."""
    out = []
    for t, key in [(parent, parent.pk)] + children:
        cursor.execute(f"SELECT count(*), coalesce(sum(length(r)), 0), coalesce(sum(hashtextextended(r, 0)"
                       f"::numeric), 0) FROM (SELECT x::text AS r FROM (SELECT {', '.join(t.cols)} FROM {t.table} "
                       f"WHERE {selected[0].format(key=key)}) x) y", selected[1])
        out.append(tuple(cursor.fetchone()))
    return out


def _pg_row_digests(cursor, parent: _Table, children: list, selected: tuple[str, list]) -> set:
    """{(parent key, digest of the parent row or of one child table's rows)} for a drill-down."""
    out = set()
    for n, (t, key) in enumerate([(parent, parent.pk)] + children):
        cursor.execute(f"SELECT x.{key}, md5(string_agg(md5(x::text), '' ORDER BY x.{t.pk})) FROM "
                       f"(SELECT {', '.join(t.cols)} FROM {t.table} WHERE {selected[0].format(key=key)}) x "
                       f"GROUP BY x.{key}", selected[1])
        out.update((k, f"{n}:{d}") for k, d in cursor.fetchall())
    return out


# ---------------------------------------------- fast path: one PostgreSQL database, two schemas
def _batch_pg_insert(ctx: _Move, batch: MigrationBatch, pks: list) -> tuple[_Done, bool, list]:
    """Hot and cold in two schemas of one PostgreSQL database: the whole batch in ONE transaction on the
    source connection, every table schema-qualified (``ctx.schemas``), never through search_path.

    ``FOR UPDATE`` locks the batch (range + policy) and its children, ``INSERT ... SELECT ... ON CONFLICT DO
    NOTHING`` copies parents then children, a join compares every column null-safely, the deletes re-check
    the policy and, for TO_COLD, the ledger commits with them. One commit: a crash anywhere rolls the whole
    batch back, so there is no window between a target and a source commit for the repair to close.
    """
    conn = connections[ctx.source]
    src, dst = (_qn(s) for s in ctx.schemas)
    parent = _tables(ctx.model, ctx.source)
    children = [(_tables(c.model, ctx.source), _qn(c.fk.column)) for c in ctx.tiered.children]
    where, params = ctx.where_sql
    t = parent
    keys = "pg_temp." + _temp_name("tiering_keys", ctx.model._meta.db_table)
    bad = "pg_temp." + _temp_name("tiering_bad", ctx.model._meta.db_table)
    # an array the index can be searched with (IN (SELECT ...) was a hash join over the whole table per batch)
    in_batch = f"= ANY(ARRAY(SELECT pk FROM {keys}))"
    sql = _OneConnection(src=f"{src}.", dst=f"{dst}.", keys=keys, bad=bad, in_batch=in_batch,
                         same="IS NOT DISTINCT FROM", source_bytes=_pg_text_bytes)
    with transaction.atomic(using=ctx.source), conn.cursor() as cur:
        t0 = time.monotonic()
        pk_type = ctx.model._meta.pk.rel_db_type(conn)
        for temp in (keys, bad):
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp.split('.', 1)[1]} (pk {pk_type} PRIMARY KEY) "
                        "ON COMMIT DELETE ROWS")
        # the batch: keys in the range that are eligible now, locked with their children until the commit
        cur.execute(f"INSERT INTO {keys} SELECT pk FROM (SELECT {t.ref}.{t.pk} AS pk FROM {src}.{t.table} "
                    f"WHERE {t.ref}.{t.pk} >= %s AND {t.ref}.{t.pk} <= %s AND ({where}) "
                    f"ORDER BY 1 FOR UPDATE) locked", [pks[0], pks[-1], *params])
        for c, fk in children:
            cur.execute(f"SELECT count(*) FROM (SELECT 1 FROM {src}.{c.table} WHERE {fk} {in_batch} "
                        f"ORDER BY {c.pk} FOR UPDATE) locked")
        count_target = sql.children_in_target(cur, children, pks[0], pks[-1])
        sql.copy(cur, parent, children, in_batch)
        _advance_sequences(ctx, cur, ctx.schemas[1])  # in this transaction, where the new keys are visible
        copy_seconds = time.monotonic() - t0
        _hook("after_copy")
        done = sql.verify_and_delete(ctx, cur, batch, pks, parent, children, copy_seconds, count_target)
        # 6. ledger: in this transaction when it lives in the source (hot, for TO_COLD)
        recorded = ctx.ledger_commits_with_delete
        moved: list = []
        if recorded:
            _record_done(ctx, batch, done)
        else:
            moved = sql.batch_keys(cur)
    return done, recorded, moved


# --------------------------------------------------------------- portable path: the ORM
def _batch_orm(ctx: _Move, batch: MigrationBatch, pks: list) -> tuple[_Done, bool, list]:
    """Any pair: bulk_create copies, content hashes computed in Python, verify and delete under row locks."""
    t0 = time.monotonic()
    inserted, written = _copy(ctx, batch, pks)
    _advance_sequences(ctx)
    copy_seconds = time.monotonic() - t0
    # to cold the batch is now COPIED; to hot, _copy marked it VERIFIED in the copies' commit
    copied = {"state": BatchState.COPIED} if ctx.direction == Direction.TO_COLD else {}
    _set(batch, copy_seconds=copy_seconds, **copied)
    _hook("after_copy")
    done, moved = _verify_and_delete(ctx, batch, pks, written, inserted, copy_seconds)
    return done, True, moved


def _copy(ctx: _Move, batch: MigrationBatch, pks: list) -> tuple[list, dict]:
    """Insert parents then children of ``pks`` missing from the target (ORM path).

    Returns the keys inserted and the hash of each copy as written, read inside
    the copy transaction (so no application write can have touched it yet).
    To hot the copies are also compared with the source before they commit,
    and one that differs is not committed: a copy that reaches hot is the row
    from then on, even for the repair; the batch is marked VERIFIED with the
    keys of the copies in the same commit (see ``_record_copied``).
    """
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
            _insert_verbatim(model, ctx.target, [model(**dict(zip(names, row))) for row in rows])
        written, _, _ = _group_hashes(ctx, ctx.target, todo, eligible_only=False, lock=False)
        if ctx.direction == Direction.TO_HOT:
            source, _, _ = _group_hashes(ctx, ctx.source, todo, eligible_only=False, lock=False)
            differ = {pk for pk in todo if written.get(pk) != source.get(pk)}
            _delete_rows(ctx.model, ctx.tiered.children, ctx.target, list(differ))
            todo = [pk for pk in todo if pk not in differ]
            _record_copied(batch, todo)
    return todo, written


def _insert_verbatim(model, alias: str, objs: list) -> None:
    """``bulk_create`` without ``pre_save``, as loaddata's raw save inserts: ``auto_now`` fields keep the
    source's values (a move is not an update) and file fields their names. ``QuerySet._insert`` is what
    both are built on; it takes ``raw``."""
    fields = [f for f in model._meta.concrete_fields if not f.generated]
    size = max(1, min(500, connections[alias].ops.bulk_batch_size(fields, objs) or len(objs)))
    for chunk in _chunks(objs, size):
        models.QuerySet(model)._insert(chunk, fields=fields, using=alias, raw=True)


def _advance_sequences(ctx: _Move, cursor=None, schema: str | None = None) -> None:
    """Keep PostgreSQL target sequences ahead of the largest key copied in.

    ``cursor`` and ``schema``: the pg_insert path passes its own transaction's
    cursor (its uncommitted copies are visible there) and the target schema.
    """
    conn = connections[ctx.target]
    if conn.vendor != "postgresql":
        return
    if cursor is None:
        with conn.cursor() as cursor:
            return _advance_sequences(ctx, cursor)
    prefix = _qn(schema) + "." if schema else ""
    for model in [ctx.model] + [c.model for c in ctx.tiered.children]:
        pk = model._meta.pk
        if not isinstance(pk, models.AutoField):
            continue
        table = prefix + _qn(model._meta.db_table)
        cursor.execute(
            f"SELECT setval(s.seq, m.top) FROM (SELECT pg_get_serial_sequence(%s, %s) AS seq) s, "
            f"(SELECT MAX({_qn(pk.column)}) AS top FROM {table}) m "
            "WHERE s.seq IS NOT NULL AND m.top IS NOT NULL "
            "AND m.top > COALESCE(pg_sequence_last_value(s.seq::regclass), 0)",
            [table, pk.column])


def _verify_and_delete(ctx: _Move, batch: MigrationBatch, pks: list, written: dict, inserted: list,
                       copy_seconds: float) -> tuple[_Done, list]:
    """ORM path: lock both sides, re-check eligibility, compare hashes, delete what moved, and record the
    batch DONE in hot's transaction (to cold the deletes', ``ledger_commits_with_delete``). Returns it and
    the keys moved.

    Per parent, with ``s``/``t`` the source/target hashes now and ``w`` the copy as written:
    ``s == t``: verified, the source row is deleted. ``s == w != t``: the application
    changed the copy (it read it from the target), so the copy is the row: the source
    row is deleted too. Anything else (changed in the source, no longer eligible):
    the source row stays and our copy is removed, in the same pair of transactions.
    """
    t0 = time.monotonic()
    # always hot before cold, whatever the direction, so two runs never wait on each other in a cycle
    with transaction.atomic(using=tiering_settings.HOT), transaction.atomic(using=tiering_settings.COLD):
        source, children, nbytes = _group_hashes(ctx, ctx.source, pks, eligible_only=True, lock=True)
        target, _, _ = _group_hashes(ctx, ctx.target, pks, eligible_only=False, lock=True)
        moved = [pk for pk in pks if pk in source and (
            source[pk] == target.get(pk) or (pk in target and source[pk] == written.get(pk)))]
        checksum = _batch_checksum((pk, target[pk]) for pk in moved)
        _hook("after_verify")
        child_rows = 0
        for child in ctx.tiered.children:  # children first: cascades never see an uncopied child
            keys = [k for pk in moved for k in children.get((child.model, pk), ())]
            child_rows += len(keys)
            for chunk in _chunks(keys, KEYS_PER_STATEMENT):
                child.model._base_manager.using(ctx.source).filter(pk__in=chunk)._raw_delete(ctx.source)
        _hook("mid_delete")
        for chunk in _chunks(moved, KEYS_PER_STATEMENT):
            ctx.model._base_manager.using(ctx.source).filter(pk__in=chunk)._raw_delete(ctx.source)
        moved_set = set(moved)
        _delete_rows(ctx.model, ctx.tiered.children, ctx.target, [pk for pk in inserted if pk not in moved_set])
        done = _Done(len(moved), child_rows, nbytes, checksum, len(pks) - len(moved), copy_seconds, 0.0,
                     time.monotonic() - t0)
        _hook("after_delete_before_ledger")
        # hot's transaction: to cold with the deletes; to hot with the removal of copies that stay out, so
        # no VERIFIED batch outlives that removal (the repair would take such a key for one deleted from hot)
        _record_done(ctx, batch, done)
    return done, moved


# ------------------------------------------------------------------------- shared helpers
def _group_hashes(ctx: _Move, alias: str, pks: list, *, eligible_only: bool, lock: bool):
    """Hash each parent with all its children in ``alias``.

    Returns ``({pk: hash}, {(child_model, pk): [child keys]}, bytes)``. With
    ``eligible_only`` parents that no longer match the run's selection are left
    out; with ``lock`` the rows are locked (PostgreSQL) until the transaction ends.
    """
    for_update = lock and connections[alias].vendor == "postgresql"
    parents = ctx.model._base_manager.using(alias).filter(pk__in=pks)
    if eligible_only:
        parents = parents.filter(_eligible_q(ctx))
    names = [f.attname for f in ctx.model._meta.concrete_fields]
    if for_update:
        parents = parents.select_for_update()
    parts: dict[Any, list[str]] = {}
    nbytes, pk_i = 0, names.index(ctx.model._meta.pk.attname)
    for row in parents.values_list(*names):
        text = _row_text(row)
        nbytes += len(text)
        parts[row[pk_i]] = [text]
    child_keys: dict[tuple, list] = {}
    for child in ctx.tiered.children:
        cnames = [f.attname for f in child.model._meta.concrete_fields]
        fk_i, pk_i = cnames.index(child.fk.attname), cnames.index(child.model._meta.pk.attname)
        qs = child.model._base_manager.using(alias).filter(**{f"{child.fk.attname}__in": pks})
        if for_update:
            qs = qs.select_for_update()
        texts: dict[Any, list[str]] = {}
        for row in qs.values_list(*cnames):
            text = _row_text(row)
            nbytes += len(text)
            texts.setdefault(row[fk_i], []).append(text)
            child_keys.setdefault((child.model, row[fk_i]), []).append(row[pk_i])
        for pk, lines in texts.items():
            if pk in parts:
                parts[pk].append(child.model._meta.label + "\x1e" + "\x1d".join(sorted(lines)))
    hashes = {pk: hashlib.blake2b("\x1f".join(p).encode(), digest_size=16).hexdigest() for pk, p in parts.items()}
    return hashes, child_keys, nbytes


def _eligible_q(ctx: _Move) -> Q:
    """The policy re-check of the delete (TO_COLD, without held rows); TO_HOT re-checks the run's filter."""
    q = Q()
    if ctx.direction == Direction.TO_COLD:
        q = ctx.tiered.policy.cold_q(ctx.now)
        period = _hold_period(ctx.tiered.policy)
        if period is not None:
            q &= _not_held_q(ctx, period)
    return q & getattr(ctx, "where_q", Q())


def _not_held_q(ctx: _Move, period: timedelta) -> Q:
    """Rows without a live ``RestoredRow`` hold: a subquery in hot, the source of TO_COLD, where the holds
    live (a list of held keys would take a query parameter per row: SQLite allows 32,766 by default).

    ``object_pk`` holds the key as the database casts it to text (see ``_mark_restored``). SQLite runs a
    correlated ``NOT EXISTS`` once per row, which made the key scan 1.5x slower even with no holds; an
    uncorrelated ``NOT IN`` is built once per statement. PostgreSQL plans ``NOT EXISTS`` as an anti-join,
    while its ``NOT IN`` turns into a per-row subplan when the holds outgrow ``work_mem``.
    """
    holds = RestoredRow.objects.filter(model_label=ctx.tiered.label, restored_at__gte=ctx.now - period)
    if connections[ctx.source].vendor == "sqlite":
        pk = ctx.model._meta.pk
        key_field = pk.target_field if pk.is_relation else pk
        return ~Q(pk__in=holds.values_list(Cast("object_pk", key_field), flat=True))
    return ~Exists(holds.filter(object_pk=Cast(OuterRef("pk"), models.CharField())))


def _where_sql(ctx: _Move) -> tuple[str, list] | None:
    """``_eligible_q`` as SQL on the source table (columns as "table"."column"); None if it needs joins."""
    query = ctx.model._base_manager.using(ctx.source).filter(_eligible_q(ctx)).query
    if len(query.alias_map) > 1:
        return None
    compiler = query.get_compiler(using=ctx.source)
    try:
        sql, params = compiler.compile(query.where)
    except FullResultSet:
        return "1 = 1", []
    except EmptyResultSet:
        return "1 = 0", []
    return sql or "1 = 1", list(params)


def _delete_rows(model, children: list, alias: str, pks: list) -> None:
    """Delete these parents from ``alias`` with their children (children first), in one transaction."""
    if not pks:
        return
    with transaction.atomic(using=alias):
        for child in children:
            for chunk in _chunks(pks, KEYS_PER_STATEMENT):
                child.model._base_manager.using(alias).filter(**{f"{child.fk.attname}__in": chunk})._raw_delete(alias)
        for chunk in _chunks(pks, KEYS_PER_STATEMENT):
            model._base_manager.using(alias).filter(pk__in=chunk)._raw_delete(alias)


def _analyze_holds(ctx: _Move) -> None:
    """After a restore wrote holds, refresh PostgreSQL's statistics of the holds table: the next run to cold
    plans its anti-join on them before autovacuum may have (a plan made for an empty table took two
    minutes over 70,000 holds)."""
    hot = connections[_hot()]
    if ctx.direction == Direction.TO_HOT and hot.vendor == "postgresql" and _hold_period(ctx.tiered.policy):
        with hot.cursor() as cursor:
            cursor.execute(f"ANALYZE {_qn(RestoredRow._meta.db_table)}")


def _mark_restored(ctx: _Move, pks: list) -> None:
    """Give rows restored to hot a fresh mark: access field = now, plus a hold for time policies."""
    if not pks:
        return
    policy, now = ctx.tiered.policy, timezone.now()
    access = policy.access_policy() if policy else None
    if access is not None:
        for chunk in _chunks(pks, KEYS_PER_STATEMENT):
            ctx.model._base_manager.using(ctx.target).filter(pk__in=chunk).update(**{access.field: now})
    if _hold_period(policy) is not None:
        hot = _hot()
        with transaction.atomic(using=hot):
            for chunk in _chunks(pks, KEYS_PER_STATEMENT):
                # the key as hot casts it to text, what _not_held_q compares it with (a UUID is hex on SQLite)
                labels = list(ctx.model._base_manager.using(hot).filter(pk__in=chunk)
                              .values_list(Cast("pk", models.CharField()), flat=True))
                RestoredRow.objects.using(hot).filter(model_label=ctx.tiered.label, object_pk__in=labels).update(
                    restored_at=now)
                existing = set(RestoredRow.objects.using(hot).filter(
                    model_label=ctx.tiered.label, object_pk__in=labels).values_list("object_pk", flat=True))
                RestoredRow.objects.using(hot).bulk_create(
                    [RestoredRow(model_label=ctx.tiered.label, object_pk=k, restored_at=now)
                     for k in labels if k not in existing])


def _fail_batch(ctx: _Move, batch: MigrationBatch, exc: BaseException) -> None:
    """Record the failure; undo the copies when the target answers, else leave them to the repair.

    An error raised after the batch's own commit (its DONE is in the ledger) leaves the batch alone: its
    rows moved, and ``_undo_copies`` would have nothing to undo but would relabel it.
    """
    error = f"{type(exc).__name__}: {exc}"
    try:  # as the ledger has it now: a restore's copies may have committed with their VERIFIED mark
        batch = MigrationBatch.objects.using(_hot()).get(pk=batch.pk)
        committed = batch.state == BatchState.DONE
    except Exception:  # unknown: the undo below then takes no key gone from the source for deleted
        committed = None
    if committed:
        logger.error("run %s: batch %s had committed when it failed: %s", ctx.run.pk, batch.seq, error)
        return
    state = BatchState.FAILED
    if isinstance(exc, Exception):
        try:
            deleted_nothing = committed is False and ctx.ledger_commits_with_delete
            finished, _ = _undo_copies(ctx, batch, deleted_nothing=deleted_nothing)
            if not finished:
                state = BatchState.UNDONE
        except Exception as cleanup:  # the repair of the next run finishes it
            error += f" (copy not removed yet: {type(cleanup).__name__}: {cleanup})"
            if batch.state == BatchState.VERIFIED:
                state = BatchState.VERIFIED  # its keys name the copies made: the repair needs them
    elif batch.state == BatchState.VERIFIED:
        state = BatchState.VERIFIED
    try:
        _set(batch, state=state, error=error, finished_at=timezone.now())
    except Exception:
        logger.exception("run %s: could not record the failure of batch %s", ctx.run.pk, batch.seq)


def _archived_since(ctx: _Move, batch: MigrationBatch, keys: set) -> set:
    """Those of ``keys`` in a batch to cold that was open at or after ``batch``'s start (any state but
    UNDONE: cautious): such a key's cold row may be the row, archived again since, not a stale original."""
    to_python, found = ctx.model._meta.pk.to_python, set()
    if not keys:
        return found
    later = (MigrationBatch.objects.using(_hot())
             .filter(run__model_label=ctx.tiered.label, run__direction=Direction.TO_COLD)
             .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=batch.started_at))
             .exclude(state=BatchState.UNDONE))
    for other in later.only("pks").iterator():
        found.update(key for key in map(to_python, other.keys()) if key in keys)
    return found


def _undo_copies(ctx: _Move, batch: MigrationBatch, *, deleted_nothing: bool) -> tuple[list, int]:
    """Settle the rows of the batch's key range that are in both tiers; return the batch keys that moved
    (gone from the source, or settled in the target) and the rows removed.

    To cold the source is authoritative: the target copy goes. To hot the cold
    row goes and the copy stays: every path verifies a restore's copies before
    they commit in hot, and from that commit on the application reads and
    writes them there (an update made to a copy after a crash is kept). A
    VERIFIED batch to hot names the copies its commit made (``_record_copied``):
    one of them gone from hot since was deleted by the application, and its
    cold row goes too, unless a run to cold may have archived it again since.

    It works from the key range, so copies of rows that became eligible after
    the keys were recorded are found too. ``deleted_nothing``: the batch's
    DONE commits with its delete (``ledger_commits_with_delete``) and it was
    cut short, so a recorded key gone from the source was deleted by the
    application after the copy (the crash left the row in both tiers until
    now): its copy goes too, or the repair would bring the deleted row back.
    Otherwise a key gone from the source was moved: no rule here may remove
    what could be a row's only copy.
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
    for chunk in _chunks(sorted(set(copies) | set(pks)), KEYS_PER_STATEMENT):
        present.update(source.filter(pk__in=chunk).values_list("pk", flat=True))
    if ctx.direction == Direction.TO_HOT:
        both = [pk for pk in copies if pk in present]
        gone = set()
        if batch.state == BatchState.VERIFIED:  # pks: the copies committed in hot with that mark
            gone = (set(pks) - set(copies)) & present
            gone -= _archived_since(ctx, batch, gone)
        _delete_rows(ctx.model, ctx.tiered.children, ctx.source, both + sorted(gone, key=str))
        settled = set(both)
        return [pk for pk in pks if (pk not in present or pk in settled) and pk not in gone], len(both) + len(gone)
    deleted = set(pks) - present if deleted_nothing else set()
    undo = [pk for pk in copies if pk in present or pk in deleted]
    _delete_rows(ctx.model, ctx.tiered.children, ctx.target, undo)
    return [pk for pk in pks if pk not in present and pk not in deleted], len(undo)


# --------------------------------------------------------------------------- 1. lock, repair
def lock_name(tiered: TieredModel, direction: str) -> str:
    return f"{tiered.label}:{direction}"


def held_lock(tiered: TieredModel, direction: str) -> TierLock | None:
    """The lock a live run holds on this model and direction (a stale lock does not count)."""
    lock = TierLock.objects.using(_hot()).filter(name=lock_name(tiered, direction)).first()
    if lock is None or _is_stale(lock, (timezone.now() - lock.heartbeat_at).total_seconds()):
        return None
    return lock


def _acquire_lock(tiered: TieredModel, direction: str, run: MigrationRun) -> None:
    """Take ``<label>:<direction>`` for ``run``; take over a stale lock; else raise LockHeld."""
    hot, name = _hot(), lock_name(tiered, direction)
    for _ in range(5):
        try:
            with transaction.atomic(using=hot):
                TierLock.objects.using(hot).create(name=name, run=run, owner=_owner())
            return
        except IntegrityError:
            lock = TierLock.objects.using(hot).filter(name=name).first()
            if lock is None:
                continue
            if lock.run_id == run.pk:
                return  # a parallel worker of the same run
            age = (timezone.now() - lock.heartbeat_at).total_seconds()
            if _is_stale(lock, age):
                logger.warning("run %s takes over the stale lock %s of %s (run %s, heartbeat %.0fs ago)",
                               run.pk, name, lock.owner, lock.run_id, age)
                TierLock.objects.using(hot).filter(pk=lock.pk, owner=lock.owner,
                                                   heartbeat_at=lock.heartbeat_at)._raw_delete(hot)
                continue
            raise LockHeld(
                f"{tiered.label} is already being moved {direction.replace('_', ' ')} by run {lock.run_id} "
                f"({lock.owner}, heartbeat {age:.0f}s ago); wait for it to finish")
    raise LockHeld(f"could not take the lock {name}")


def _is_stale(lock: TierLock, age: float) -> bool:
    if age > tiering_settings.LOCK_STALE_SECONDS:
        return True
    host, _, pid = lock.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def _heartbeat(ctx: _Move) -> None:
    hot, now = _hot(), timezone.now()
    if ctx.run.trigger == "promote":
        return
    if not TierLock.objects.using(hot).filter(run=ctx.run).update(heartbeat_at=now):
        raise MoveError(f"run {ctx.run.pk} lost its lock (taken over as stale); stopping", ctx.run)
    MigrationRun.objects.using(hot).filter(pk=ctx.run.pk).update(heartbeat_at=now)


def _repair(ctx: _Move) -> None:
    """Finish or undo half-done batches of earlier runs of this model and direction.

    A key in both tiers: to cold the hot row is authoritative (its cold copy is
    removed); to hot the verified copy in hot is (the cold row is removed, see
    ``_undo_copies``). A key gone from the source was deleted after a verified
    copy, so the target copy is the row. Runs reach here only under the lock.
    """
    hot = _hot()
    fresh = timezone.now() - timedelta(seconds=tiering_settings.LOCK_STALE_SECONDS)
    batches = (MigrationBatch.objects.using(hot)
               .filter(run__model_label=ctx.tiered.label, run__direction=ctx.direction, state__in=OPEN_STATES)
               .exclude(run=ctx.run)
               .exclude(run__trigger="promote", run__state=RunState.RUNNING, run__heartbeat_at__gte=fresh)
               .select_related("run").order_by("run_id", "seq"))
    for batch in batches:
        # a FAILED batch had its copies undone when it failed: what is left of it is treated the cautious way
        cut_short = batch.state != BatchState.FAILED
        deleted_nothing = cut_short and batch.run.done_commits_with_delete
        finished, undone = _undo_copies(ctx, batch, deleted_nothing=deleted_nothing)
        if ctx.direction == Direction.TO_HOT:
            _mark_restored(ctx, finished)
        removed = f"{undone} cold rows removed" if ctx.direction == Direction.TO_HOT else f"{undone} copies removed"
        note = f"repaired by run {ctx.run.pk}: {len(finished)} rows finished, {removed}"
        _set(batch, state=BatchState.DONE if finished else BatchState.UNDONE,
             error=(batch.error + "; " if batch.error else "") + note, finished_at=timezone.now())
        logger.warning("run %s: batch %s of run %s %s", ctx.run.pk, batch.seq, batch.run_id, note)
    (MigrationRun.objects.using(hot)
     .filter(model_label=ctx.tiered.label, direction=ctx.direction, state=RunState.RUNNING)
     .exclude(pk=ctx.run.pk).exclude(trigger="promote", heartbeat_at__gte=fresh)
     .update(state=RunState.FAILED, finished_at=timezone.now(),
             error=f"interrupted; half-done batches repaired by run {ctx.run.pk}"))


# ------------------------------------------------------------------------------------ helpers
def _hot() -> str:
    return tiering_settings.HOT


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _set(batch: MigrationBatch, **values: Any) -> None:
    for key, value in values.items():
        setattr(batch, key, value)
    MigrationBatch.objects.using(_hot()).filter(pk=batch.pk).update(**values)


def _check_selection(direction, pks, where, all_rows, limit, batch_size) -> None:
    if direction not in Direction.values:
        raise ValueError(f"Unknown direction {direction!r}; use Direction.TO_COLD or Direction.TO_HOT")
    if direction == Direction.TO_HOT and pks is None and where is None and not all_rows:
        raise ValueError("A move to hot needs pks, where or all_rows=True")
    for name, value in (("limit", limit), ("batch_size", batch_size)):
        if value is not None and value < (0 if name == "limit" else 1):
            raise ValueError(f"{name} must be positive, not {value}")


def _describe_selection(pks, where, all_rows, limit, batch_size, key_range) -> dict:
    out: dict[str, Any] = {}
    if pks is not None:
        out["pks"] = [jsonable_key(p) for p in list(pks)[:1000]]
    if where is not None:
        out["where"] = str(where)
    for key, value in (("all_rows", all_rows or None), ("limit", limit), ("batch_size", batch_size),
                       ("key_range", [jsonable_key(v) for v in key_range] if key_range else None)):
        if value is not None:
            out[key] = value
    return out


def _selection(ctx: _Move, pks, where, key_range) -> models.QuerySet:
    """The source rows this run may move, the policy evaluated at the run's fixed ``now``."""
    if ctx.tiered.policy is None and ctx.direction == Direction.TO_COLD:
        raise MoveError(f"{ctx.tiered.label} has no tiering policy", ctx.run)
    qs = ctx.model._base_manager.using(ctx.source).all()
    where_q = Q()
    if pks is not None:
        where_q &= Q(pk__in=list(pks))
    if where is not None:
        where_q &= where if isinstance(where, Q) else Q(**where)
    if key_range is not None:
        low, high = key_range
        if low is not None:
            where_q &= Q(pk__gte=low)
        if high is not None:
            where_q &= Q(pk__lt=high)
    ctx.where_q = where_q
    if ctx.path != "orm":
        ctx.where_sql = _where_sql(ctx)
        if ctx.where_sql is None:
            logger.info("%s: the selection needs joins; moving it on the portable ORM path", ctx.tiered.label)
            ctx.path = "orm"
    return qs.filter(_eligible_q(ctx))


def _hold_period(policy) -> timedelta | None:
    """How long a restored row is held in hot: policies with a time part only."""
    if isinstance(policy, TimePolicy):
        return policy.older_than
    if isinstance(policy, HybridPolicy):
        return policy.time.older_than
    return None


def _choose_path(direction: str, forced: str | None) -> str:
    """The copy path for the configured pair (or the forced one, if it fits); raises ValueError, before
    any run exists, for an unknown or unfit path and for tiers that are the same tables."""
    hot, cold = tiering_settings.HOT, tiering_settings.COLD
    _refuse_same_tables(hot, cold)
    forced = forced or tiering_settings.MOVE_PATH
    if forced:
        if forced not in PATHS:
            raise ValueError(f"Unknown move path {forced!r}; choose one of {', '.join(PATHS)}")
        if forced == "sqlite" and not _sqlite_pair(hot, cold):
            raise ValueError(f"path 'sqlite' needs two SQLite files, not {hot}/{cold}")
        if forced == "pg_copy" and not _vendor_pair(hot, cold, "postgresql"):
            raise ValueError(f"path 'pg_copy' needs two PostgreSQL aliases, not {hot}/{cold}")
        if forced == "pg_insert" and not _same_pg_database(hot, cold):
            raise ValueError(f"path 'pg_insert' needs two PostgreSQL aliases on one database, not {hot}/{cold}")
        return forced
    if _sqlite_pair(hot, cold):
        return "sqlite"
    if _vendor_pair(hot, cold, "postgresql"):
        return "pg_insert" if _same_pg_database(hot, cold) else "pg_copy"
    return "orm"


def same_tables(a: str, b: str) -> str | None:
    """Why aliases ``a`` and ``b`` reach the very same tables, or None when they do not.

    Moving between them would copy each row onto itself, verify it and delete
    it: every row lost. SQLite: one file. PostgreSQL: one server, database and
    schema (``current_schema()``; a cold alias in the same database needs its
    own schema through its search_path).
    """
    if _vendor_pair(a, b, "sqlite"):
        names = [str(connections[x].settings_dict["NAME"]) for x in (a, b)]
        if names[0] == names[1] or os.path.realpath(names[0]) == os.path.realpath(names[1]):
            if ":memory:" not in names[0] and "mode=memory" not in names[0]:
                return f"{a!r} and {b!r} are the same SQLite file {names[0]}"
    elif _vendor_pair(a, b, "postgresql") and _same_pg_database(a, b):
        if _pg_schema(a) == _pg_schema(b):
            return (f"{a!r} and {b!r} are the same PostgreSQL database and schema {_pg_schema(a)!r}: "
                    "give the cold alias its own schema (OPTIONS={'options': '-c search_path=cold'})")
    return None


def _refuse_same_tables(a: str, b: str) -> None:
    reason = same_tables(a, b)
    if reason:
        raise ValueError(f"Refusing to move rows: {reason}")


def _pg_place(alias: str) -> tuple:
    """(server, database, schema) that unqualified table names of ``alias`` resolve to.

    Asked of the server, once per connection: two spellings of one host are
    one database. The server is told apart by its start time and port.
    """
    conn = connections[alias]
    conn.ensure_connection()
    cached = getattr(conn, "_tiering_place", None)
    if cached is not None and cached[0] is conn.connection:
        return cached[1]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()::text || ' port ' || current_setting('port'), "
                       "current_database(), current_schema()")
        place = tuple(cursor.fetchone())
    conn._tiering_place = (conn.connection, place)
    return place


def _same_pg_database(a: str, b: str) -> bool:
    """Both aliases are PostgreSQL connections to one database of one server.

    An alias that does not answer is taken as another database: the run then
    fails on it with its own error, recorded in the ledger.
    """
    if not _vendor_pair(a, b, "postgresql"):
        return False
    try:
        return _pg_place(a)[:2] == _pg_place(b)[:2]
    except DatabaseError:
        return False


def _pg_schema(alias: str) -> str:
    schema = _pg_place(alias)[2]
    if schema is None:
        raise ValueError(f"The search_path of database alias {alias!r} names no existing schema; "
                         "create it (CREATE SCHEMA cold) and run migrate --database for that alias")
    return schema


def _vendor_pair(a: str, b: str, vendor: str) -> bool:
    return connections[a].vendor == vendor and connections[b].vendor == vendor


def _sqlite_pair(a: str, b: str) -> bool:
    if not _vendor_pair(a, b, "sqlite"):
        return False
    names = [str(connections[x].settings_dict["NAME"]) for x in (a, b)]
    return all(n and n != ":memory:" and "mode=memory" not in n for n in names) and names[0] != names[1]


def _qn(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _norm(value: Any) -> str:
    """One text per value, equal on SQLite and PostgreSQL for equal values."""
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, Decimal):
        return "d" + (format(value.normalize(), "f") if value else "0")
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = value.astimezone(dt_timezone.utc)
        return "t" + value.isoformat()
    if isinstance(value, (date, dtime)):
        return "t" + value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x" + bytes(value).hex()
    if isinstance(value, (dict, list)):
        return "j" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, float):
        return "f" + repr(value)
    return "s" + str(value)


def _row_text(row: tuple) -> str:
    return "\x1f".join(_norm(v) for v in row)


def _batch_checksum(pairs: Iterable[tuple[Any, str]]) -> str:
    digest = hashlib.sha256()
    for pk, row_hash in pairs:
        digest.update(f"{pk}:{row_hash};".encode())
    return digest.hexdigest()


def _hook(step: str) -> None:
    """Test-only crash hook: ``HOTCOLD_TEST_CRASH_AT=step:n`` SIGKILLs this process at the n-th ``step``."""
    spec = os.environ.get("HOTCOLD_TEST_CRASH_AT")
    if not spec or os.environ.get("HOTCOLD_TEST_SUBPROCESS") != "1":
        return
    name, _, count = spec.partition(":")
    if name != step:
        return
    _HOOK_COUNTS[step] = _HOOK_COUNTS.get(step, 0) + 1
    if _HOOK_COUNTS[step] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_HOOK_COUNTS: dict[str, int] = {}
