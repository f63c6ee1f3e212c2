"""Hot and cold in two databases of one MySQL/MariaDB server: the whole batch in ONE transaction on the
source connection, every table qualified by its alias's database.

``INSERT INTO keys SELECT ... FOR UPDATE`` locks the batch (range + policy), ``SELECT ... FOR UPDATE`` its
children, ``INSERT ... SELECT ... ON DUPLICATE KEY UPDATE pk = pk`` copies (a stale copy is left alone for
the verify; ``INSERT IGNORE`` would also turn a truncated value into a warning), a join compares every
column with ``<=>`` (text as binary strings: the collations ignore case and trailing spaces), and the
deletes and (to cold) the ledger commit together: a crash rolls the whole batch back.
"""
from __future__ import annotations

import time

from django.db import connections, transaction

from ... import backends
from ...models import MigrationBatch
from .. import faults, ledger
from .base import BatchResult, temp_table_name
from .one_connection import OneConnectionPath, Statements


class MySQLStatements(Statements):
    def deletes(self, parent, children, where):
        """Multi-table DELETEs joined to the keys: MariaDB before 11.1 runs a single-table DELETE's
        ``IN (SELECT ...)`` once per row of the whole table."""
        sql, params = where
        keys = f"JOIN {self.keys} AS tiering_k ON tiering_k.pk = "
        return ([(f"DELETE {c.table} FROM {self.src}{c.table} {keys}{c.table}.{fk}", None) for c, fk in children],
                (f"DELETE {parent.table} FROM {self.src}{parent.table} {keys}{parent.table}.{parent.pk} "
                 f"WHERE ({sql})", params))


def source_bytes(t) -> str:
    """The payload bytes of the source rows ``s``: the sum of their values' lengths."""
    return "COALESCE(SUM(" + " + ".join(f"COALESCE(LENGTH(s.{c}), 0)" for c in t.cols) + "), 0)"


class MySQLInsertPath(OneConnectionPath):
    name = "mysql_insert"
    needs = "two MySQL/MariaDB aliases on one server"
    vendor = "mysql"

    @classmethod
    def fits_pair(cls, hot: str, cold: str) -> bool:
        return backends.ops(hot).same_server(backends.ops(cold))

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        qn = connections[ctx.source].ops.quote_name
        self.databases = backends.ops(ctx.source).database(), backends.ops(ctx.target).database()
        table = ctx.model._meta.db_table
        self.keys = temp_table_name(ctx.source, "tiering_keys", table)
        self.bad = temp_table_name(ctx.source, "tiering_bad", table)
        self.sql = MySQLStatements(src=f"{qn(self.databases[0])}.", dst=f"{qn(self.databases[1])}.", keys=self.keys,
                              bad=self.bad, in_batch=f"IN (SELECT pk FROM {self.keys})", same="<=>",
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
            for temp in (self.keys, self.bad):  # a temporary table commits nothing (unlike other DDL)
                cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} (pk {pk_type} PRIMARY KEY)")
                cur.execute(f"DELETE FROM {temp}")
            # the batch: keys in the range that are eligible now, locked with their children until the commit
            cur.execute(f"INSERT INTO {self.keys} SELECT {t.table}.{t.pk} FROM {sql.src}{t.table} "
                        f"WHERE {t.table}.{t.pk} >= %s AND {t.table}.{t.pk} <= %s AND ({where}) "
                        f"ORDER BY 1 FOR UPDATE", [keys[0], keys[-1], *params])
            for c, fk in self.children:
                cur.execute(f"SELECT COUNT(*) FROM (SELECT {c.pk} FROM {sql.src}{c.table} WHERE {fk} {sql.in_batch} "
                            f"ORDER BY {c.pk} FOR UPDATE) locked")
            count_target = sql.children_in_target(cur, self.children, keys[0], keys[-1])
            sql.copy(cur, t, self.children, sql.in_batch)
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
