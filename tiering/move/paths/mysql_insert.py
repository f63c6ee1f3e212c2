"""Hot and cold in two databases of one MySQL/MariaDB server: the whole batch in ONE transaction on the
source connection, every table qualified by its alias's database.

``INSERT INTO keys SELECT ... FOR UPDATE`` locks the batch (range + policy), ``INSERT ... SELECT ... FOR
UPDATE ON DUPLICATE KEY UPDATE pk = pk`` copies and locks what it copied, the children included (a stale
copy is left alone for the verify; ``INSERT IGNORE`` would also turn a truncated value into a warning),
a join read from the keys table outward (``IN (SELECT ...)`` may become a scan of the whole table) compares every
column with ``<=>`` (text as binary strings: the collations ignore case and trailing spaces), and the
deletes and (to cold) the ledger commit together: a crash rolls the whole batch back.

The statements that lock (the locking reads, the copies' ``INSERT ... SELECT`` and the deletes) read the
batch from the keys table outward, ``keys STRAIGHT_JOIN table FORCE INDEX (...)``: InnoDB locks the rows a
statement reads, so a plan that scans a table would lock rows outside the batch, and a child locked
through its primary key, not through its parent-key index as the application's ``DELETE ... WHERE
order_id = ...`` locks it, deadlocks with the application (each holds one of the two entries).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.db import connections, transaction

from ... import backends
from ...models import MigrationBatch
from .. import faults, ledger
from .base import BatchResult, temp_table_name
from .one_connection import OneConnectionPath, Statements, table_of


@dataclass(frozen=True)
class MySQLStatements(Statements):
    indexes: dict = field(default_factory=dict)  # quoted child table: its quoted parent-key index (or None)

    def batch_rows(self, t, key: str, keys: str, alias: str | None = None, prefix: str | None = None) -> str:
        """The FROM clause of the rows of ``t`` in ``prefix`` (the source's by default) whose ``key`` is in
        the temp table ``keys``, read from ``keys`` outward (in the source through the index on ``key``, as
        the locking statements must); ``alias`` names ``t`` (else its table name)."""
        prefix = prefix or self.src
        index = None
        if prefix == self.src:
            index = "PRIMARY" if key == t.pk else self.indexes.get(t.table)
        return (f"{keys} AS tiering_k STRAIGHT_JOIN {prefix}{t.table}{f' AS {alias}' if alias else ''}"
                f"{f' FORCE INDEX ({index})' if index else ''} ON {alias or t.table}.{key} = tiering_k.pk")

    def rows_in(self, prefix, t, key, keys, alias):
        """From ``keys`` outward too: a semi-join on ``IN (SELECT ...)`` may scan the whole table."""
        return self.batch_rows(t, key, keys, alias, prefix), "TRUE"

    def delete_in(self, prefix, t, key, keys):
        return f"DELETE d FROM {self.batch_rows(t, key, keys, 'd', prefix)}"

    def copy(self, cur, parent, children, keys):
        """A locking read: the rows copied stay as copied until the commit (the parents are locked already)."""
        for t, key in [(parent, parent.pk)] + children:
            cur.execute(f"INSERT INTO {self.dst}{t.table} ({', '.join(t.cols)}) "
                        f"SELECT {', '.join(f's.{c}' for c in t.cols)} FROM {self.batch_rows(t, key, keys, 's')} "
                        f"FOR UPDATE {self.keep_existing(self.dst + t.table, t.pk)}")

    def deletes(self, parent, children, where):
        """Multi-table DELETEs (MariaDB before 11.1 runs a single-table DELETE's ``IN (SELECT ...)`` once per
        row of the whole table); the parents' keeps its table's name for the policy ``where``."""
        sql, params = where
        return ([(f"DELETE s FROM {self.batch_rows(c, fk, self.keys, 's')}", None) for c, fk in children],
                (f"DELETE {parent.table} FROM {self.batch_rows(parent, parent.pk, self.keys)} WHERE ({sql})", params))


FIXED_SIZE_TYPES = ("int", "numeric", "decimal", "double", "float", "real", "date", "time", "bool", "year")


def source_bytes(t) -> str:
    """The payload bytes of the source rows ``s``: text and blobs by their bytes, numbers and dates as 8 (as
    the sqlite path counts them): ``LENGTH()`` of a number formats it as text first, which is slow."""
    fixed = [c for c, db_type in zip(t.cols, t.db_types) if any(w in (db_type or "").lower() for w in FIXED_SIZE_TYPES)]
    sized = [f"COALESCE(LENGTH(s.{c}), 0)" for c in t.cols if c not in fixed]
    return (f"COALESCE(SUM({' + '.join(sized) or '0'}), 0) + 8 * ({' + '.join(f'COUNT(s.{c})' for c in fixed) or '0'})")


class MySQLInsertPath(OneConnectionPath):
    name = "mysql_insert"
    needs = "two MySQL/MariaDB aliases on one server"
    vendor = "mysql"

    @classmethod
    def fits_pair(cls, hot: str, cold: str) -> bool:
        return backends.ops(hot).same_server(backends.ops(cold))

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        qn, ops = connections[ctx.source].ops.quote_name, backends.ops(ctx.source)
        self.databases = ops.database(), backends.ops(ctx.target).database()
        table = ctx.model._meta.db_table
        self.keys = temp_table_name(ctx.source, "tiering_keys", table)
        self.bad = temp_table_name(ctx.source, "tiering_bad", table)
        indexes = {table_of(c.model, ctx.source).table: ops.index_on(c.model._meta.db_table, c.fk.column)
                   for c in ctx.tiered.children}
        self.sql = MySQLStatements(src=f"{qn(self.databases[0])}.", dst=f"{qn(self.databases[1])}.", keys=self.keys,
                              bad=self.bad, member="IN (SELECT pk FROM {keys})", same="<=>", indexes=indexes,
                              source_bytes=source_bytes,
                              keep_existing=lambda table, pk: f"ON DUPLICATE KEY UPDATE {table}.{pk} = {table}.{pk}",
                              same_text="BINARY {d} <=> BINARY {s}")

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        ctx, sql, t = self.ctx, self.sql, self.parent
        conn = connections[ctx.source]
        where, params = ctx.where_sql
        with transaction.atomic(using=ctx.source), conn.cursor() as cur:
            t0 = time.monotonic()
            pk_type = ctx.model._meta.pk.rel_db_type(conn)
            # a temporary table commits nothing (unlike other DDL); in memory, as the batch's keys need no undo
            # log: the batch refills them, and a scan reads them in the key order they were written in
            for temp in (self.keys, self.bad):
                cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} (pk {pk_type} PRIMARY KEY) ENGINE=MEMORY")
                cur.execute(f"DELETE FROM {temp}")
            # the batch: keys in the range that are eligible now, locked with their children until the commit
            cur.execute(f"INSERT INTO {self.keys} SELECT {t.table}.{t.pk} FROM {sql.src}{t.table} "
                        f"FORCE INDEX (PRIMARY) WHERE {t.table}.{t.pk} >= %s AND {t.table}.{t.pk} <= %s AND ({where}) "
                        f"ORDER BY 1 FOR UPDATE", [keys[0], keys[-1], *params])
            count_target = sql.children_in_target(cur, self.children, keys[0], keys[-1])
            sql.copy(cur, t, self.children, sql.keys)
            backends.ops(ctx.target).advance_sequences(ctx.tiered.unit, cur)
            copy_seconds = time.monotonic() - t0
            faults.checkpoint("after_copy")
            result = self.verify_and_delete(sql, cur, batch, keys, copy_seconds, count_target)
            if ctx.ledger_commits_with_delete:  # the ledger lives in the source (hot)
                ledger.record_done(ctx, batch, result)
                result.recorded = True
            else:
                result.moved = sql.batch_keys(cur)
        return result
