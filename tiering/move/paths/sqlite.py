"""Two SQLite files: the whole batch in ONE transaction on the target connection, the source ATTACHed.

``BEGIN IMMEDIATE`` write-locks both files, so the batch cannot change from
the copy to the delete. The target is ``main`` on purpose: in WAL mode a
transaction over attached files commits file by file in attach order,
target first, with ``synchronous = FULL``, so a crash or power loss in
between leaves a copy next to its source row (the repair removes it), never
a delete without its copy. Copies are ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``, the verify a join comparing every column with ``IS``; the ledger
commits in the same transaction when it lives in the source file (to cold).
"""
from __future__ import annotations

import logging
import time

from django.db import DatabaseError, connections

from ... import backends
from ...conf import tiering_settings
from ...exceptions import MoveError
from ...models import MigrationBatch
from ...registry import constraints_stay_inside
from .. import faults, ledger
from .base import BatchResult
from .one_connection import OneConnectionPath, Statements, Table

logger = logging.getLogger("tiering.mover")

COLD_CHECKPOINT_BATCHES = 8  # see checkpoint()


def payload_bytes(t: Table) -> str:
    """Aggregate SQL for the payload bytes of the rows ``s``: text and blobs by their bytes, numbers as 8.

    Columns are classed by SQLite's type affinity rules: ``length()`` of a
    number formats it as text first, which is slow.
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


class SQLiteAttachPath(OneConnectionPath):
    name = "sqlite"
    needs = "two SQLite files"
    vendor = "sqlite"

    @classmethod
    def fits_pair(cls, hot: str, cold: str) -> bool:
        a, b = backends.ops(hot), backends.ops(cold)
        return a.is_file() and b.is_file() and a.path() != b.path()

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        conn = connections[ctx.target]
        # integer keys go in an INTEGER PRIMARY KEY, the table's own b-tree, not a second index beside it: every
        # statement of the batch looks its keys up there; other keys keep their values
        key_type, suffix = ("INTEGER", "_int") if "INT" in ctx.model._meta.pk.rel_db_type(conn).upper() else ("", "")
        self.key_type, self.keys, self.bad = key_type, f"tiering_batch{suffix}", f"tiering_bad{suffix}"
        self.sql = Statements(src="tiering_src.", dst="main.", keys=f"temp.{self.keys}", bad=f"temp.{self.bad}",
                              member="IN (SELECT pk FROM {keys})", same="IS",
                              source_bytes=payload_bytes)
        # the application does not write to cold: its index pages, rewritten by every batch, are copied into
        # the file once per few batches instead of once per batch
        self.hot_schema = "tiering_src" if ctx.source == tiering_settings.HOT else "main"
        self.cold_schema = "main" if self.hot_schema == "tiering_src" else "tiering_src"
        self.cold_batches = 0  # batches not yet checkpointed into the cold file
        # the batch keeps the foreign keys itself when none reaches its tables from outside (tiering.E010):
        # it copies children after their parents and deletes them before
        self.constraints_inside = constraints_stay_inside(ctx.tiered)

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        ctx, sql, parent = self.ctx, self.sql, self.parent
        conn = connections[ctx.target]
        if conn.in_atomic_block:
            raise MoveError("the SQLite fast path cannot run inside transaction.atomic()", ctx.run)
        conn.ensure_connection()
        raw = conn.connection
        where, params = ctx.where_sql
        with conn.cursor() as cur:
            cur.execute("ATTACH DATABASE %s AS tiering_src", [backends.ops(ctx.source).path()])
            saved = {}
            for pragma in ("foreign_keys", "wal_autocheckpoint", "main.synchronous"):
                cur.execute(f"PRAGMA {pragma}", [])
                saved[pragma] = int(cur.fetchone()[0])
            try:
                for pragma in ("synchronous", "cache_size"):  # the source gets the target's settings
                    cur.execute(f"PRAGMA main.{pragma}", [])
                    cur.execute(f"PRAGMA tiering_src.{pragma} = {int(cur.fetchone()[0])}", [])
                # FULL syncs the target's WAL before the source's delete is written (NORMAL syncs only later)
                cur.execute(f"PRAGMA main.synchronous = {max(saved['main.synchronous'], 2)}", [])
                cur.execute("PRAGMA wal_autocheckpoint = 0", [])  # checkpoint() does it after the commit
                if saved["foreign_keys"] and self.constraints_inside:
                    cur.execute("PRAGMA foreign_keys = OFF", [])
                cur.execute("BEGIN IMMEDIATE", [])
                t0 = time.monotonic()
                # the batch: keys in the range that are eligible now (the source is write-locked from here on)
                for table in (self.keys, self.bad):
                    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (pk {self.key_type} PRIMARY KEY)", [])
                cur.execute(f"DELETE FROM temp.{self.keys}", [])
                # the key range as SQLite stores it (a UUID as 32 hex digits: the raw cursor takes no UUID objects)
                low, high = (ctx.model._meta.pk.get_db_prep_value(key, conn) for key in (keys[0], keys[-1]))
                t = parent
                cur.execute(f"INSERT INTO temp.{self.keys} (pk) SELECT {t.table}.{t.pk} FROM tiering_src.{t.table} "
                            f"AS {t.table} WHERE {t.table}.{t.pk} >= %s AND {t.table}.{t.pk} <= %s AND ({where})",
                            [low, high, *params])
                count_target = sql.children_in_target(cur, self.children, low, high)
                sql.copy(cur, parent, self.children, sql.keys)
                copy_seconds = time.monotonic() - t0
                faults.checkpoint("after_copy")
                result = self.verify_and_delete(sql, cur, batch, keys, copy_seconds, count_target)
                if ctx.ledger_commits_with_delete:  # to cold: the ledger lives in the source file
                    ledger.record_done_sql(cur, "tiering_src.", ctx, batch, result)
                    result.recorded = True
                else:  # to hot: hot is main, the file that commits first: the copies and their mark commit together
                    result.moved = sql.batch_keys(cur)
                    ledger.record_copied(batch, result.moved, cur, "main.")
                cur.execute("COMMIT", [])
                self.checkpoint(cur)
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            finally:  # other users of this connection must not lock the source file too
                if not raw.in_transaction:
                    raw.execute("DETACH DATABASE tiering_src")
                    for pragma, value in saved.items():
                        raw.execute(f"PRAGMA {pragma} = {value}")
        return result

    def checkpoint(self, cur) -> None:
        """Copy the batch's WAL frames into the database files, as SQLite's auto-checkpoint would at the
        commit: into hot after every batch, so the application's next commit does not inherit the work;
        into cold every ``COLD_CHECKPOINT_BATCHES`` batches and at the end of the run."""
        self.wal_checkpoint(cur, self.hot_schema)
        self.cold_batches += 1
        if self.cold_batches >= COLD_CHECKPOINT_BATCHES:
            self.wal_checkpoint(cur, self.cold_schema)
            self.cold_batches = 0

    def close(self) -> None:
        if self.cold_batches:  # the last batches are still in the cold file's WAL
            with connections[tiering_settings.COLD].cursor() as cur:
                self.wal_checkpoint(cur, "main")
            self.cold_batches = 0

    def wal_checkpoint(self, cur, schema: str) -> None:
        """A passive checkpoint of committed batches. One that fails is only logged: the frames stay in the
        WAL (as durable as the file) for SQLite's next checkpoint, and a batch that committed stays done."""
        try:
            cur.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)", [])
        except DatabaseError as exc:
            logger.warning("run %s: WAL checkpoint of %s failed (%s); SQLite retries it later",
                           self.ctx.run.pk, schema, exc)
