"""Hot and cold in two schemas of one PostgreSQL database: the whole batch in ONE transaction on the source
connection, every table schema-qualified (each alias's schema is its ``current_schema()``), never through
the search_path.

``FOR UPDATE`` locks the batch (range + policy) and its children, ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING`` copies, a join compares every column with ``IS NOT DISTINCT FROM``, the target's sequences move
ahead, and the deletes and (to cold) the ledger commit together: a crash rolls the whole batch back.
The ledger calls this path "pg_insert".
"""
from __future__ import annotations

import time

from django.db import connections, transaction

from ... import backends
from ...models import MigrationBatch
from .. import faults, ledger
from .base import BatchResult, temp_table_name
from .one_connection import OneConnectionPath, Statements

ROW_TEXT_BYTES = "coalesce(sum(octet_length(s::text)), 0)"  # the bytes of the source rows ``s`` as row text


class PgSchemaPath(OneConnectionPath):
    name = "pg_insert"
    needs = "two PostgreSQL aliases on one database"
    vendor = "postgresql"

    @classmethod
    def fits_pair(cls, hot: str, cold: str) -> bool:
        return backends.ops(hot).same_database(backends.ops(cold))

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        qn = connections[ctx.source].ops.quote_name
        self.schemas = backends.ops(ctx.source).schema(), backends.ops(ctx.target).schema()
        table = ctx.model._meta.db_table
        self.keys = "pg_temp." + temp_table_name(ctx.source, "tiering_keys", table)
        self.bad = "pg_temp." + temp_table_name(ctx.source, "tiering_bad", table)
        # an array the index can be searched with (IN (SELECT ...) was a hash join over the whole table per batch)
        self.sql = Statements(src=f"{qn(self.schemas[0])}.", dst=f"{qn(self.schemas[1])}.", keys=self.keys,
                              bad=self.bad, member="= ANY(ARRAY(SELECT pk FROM {keys}))",
                              same="IS NOT DISTINCT FROM", source_bytes=lambda table: ROW_TEXT_BYTES)

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        ctx, sql, t = self.ctx, self.sql, self.parent
        conn = connections[ctx.source]
        where, params = ctx.where_sql
        with transaction.atomic(using=ctx.source), conn.cursor() as cur:
            t0 = time.monotonic()
            pk_type = ctx.model._meta.pk.rel_db_type(conn)
            for temp in (self.keys, self.bad):
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp.split('.', 1)[1]} (pk {pk_type} PRIMARY KEY) "
                            "ON COMMIT DELETE ROWS")
            # the batch: keys in the range that are eligible now, locked with their children until the commit
            cur.execute(f"INSERT INTO {self.keys} SELECT pk FROM (SELECT {t.table}.{t.pk} AS pk "
                        f"FROM {sql.src}{t.table} "
                        f"WHERE {t.table}.{t.pk} >= %s AND {t.table}.{t.pk} <= %s AND ({where}) "
                        f"ORDER BY 1 FOR UPDATE) locked", [keys[0], keys[-1], *params])
            for c, fk in self.children:
                cur.execute(f"SELECT count(*) FROM (SELECT 1 FROM {sql.src}{c.table} WHERE {fk} {sql.in_batch} "
                            f"ORDER BY {c.pk} FOR UPDATE) locked")
            count_target = sql.children_in_target(cur, self.children, keys[0], keys[-1])
            sql.copy(cur, t, self.children, sql.keys)
            # in this transaction, where the new keys are visible
            backends.ops(ctx.target).advance_sequences(ctx.tiered.unit, cur, self.schemas[1])
            copy_seconds = time.monotonic() - t0
            faults.checkpoint("after_copy")
            result = self.verify_and_delete(sql, cur, batch, keys, copy_seconds, count_target)
            if ctx.ledger_commits_with_delete:  # the ledger lives in the source (hot)
                ledger.record_done(ctx, batch, result)
                result.recorded = True
            else:
                result.moved = sql.batch_keys(cur)
        return result
