"""Two PostgreSQL databases: lock the batch in the source, COPY it into the target, verify by digests on both servers.

Source transaction: ``SELECT ... FOR UPDATE`` of the batch (range + policy);
``COPY (SELECT ... ORDER BY pk FOR UPDATE) TO STDOUT`` (binary) locks the
children too and is piped into ``COPY ... FROM STDIN`` of the target tables
(TEMP staging tables + ``INSERT ... ON CONFLICT DO NOTHING`` when stale copies
are there). Then each server digests the batch as it holds it, both at once:
per table the row count and two 64-bit hashes of every row's text summed, the
target with the source's session settings (time zone, float digits, bytea
output...), so equal digests mean every column of every row reads the same.
If they differ, PostgreSQL digests both sides row by row to find the rows
that differ. The source deletes the batch while the target commits (each
server checks its foreign keys at the same time) and commits once the target
has, with the ledger to cold. A crash between the two commits leaves copies
the repair removes.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connections, transaction

from ... import backends
from ...models import MigrationBatch
from .. import faults, ledger
from .base import BaseCopyPath, BatchResult, at_once, temp_table_name
from .one_connection import Table, tables_of

# the batch's statements read a few thousand rows by key: compiling them (JIT) and forking parallel workers
# costs more than it saves, on a busy server much more; for the batch's transaction on both servers
QUICK = "set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)"
PIPE_WRITE_BYTES = 1 << 20  # COPY data arrives a row at a time; it is written on in pieces this large


class PgCopyPath(BaseCopyPath):
    name = "pg_copy"
    needs = "two PostgreSQL aliases"
    vendor = "postgresql"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.parent, self.children = tables_of(ctx)
        self.keys = temp_table_name(ctx.source, "tiering_keys", ctx.model._meta.db_table)
        self.stages = {t.table: temp_table_name(ctx.target, "tiering_stage", t.table.strip('"'))
                       for t, _ in self.parts()}

    def parts(self) -> list[tuple[Table, str]]:
        """(table, the column holding its parent key) of the parent and each child."""
        return [(self.parent, self.parent.pk)] + self.children

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        import psycopg  # the driver's own errors: its COPY runs outside Django's cursor wrapper

        ctx, t = self.ctx, self.parent
        where, params = ctx.where_sql
        src_conn, dst_conn = connections[ctx.source], connections[ctx.target]
        with transaction.atomic(using=ctx.source), src_conn.cursor() as src:
            t0 = time.monotonic()
            pk_type = ctx.model._meta.pk.rel_db_type(src_conn)
            src.execute(f"CREATE TEMP TABLE IF NOT EXISTS {self.keys} (pk {pk_type} PRIMARY KEY) ON COMMIT DELETE ROWS")
            src.execute(f"INSERT INTO {self.keys} SELECT pk FROM (SELECT {t.table}.{t.pk} AS pk FROM {t.table} "
                        f"WHERE {t.table}.{t.pk} >= %s AND {t.table}.{t.pk} <= %s AND ({where}) "
                        f"ORDER BY 1 FOR UPDATE) locked", [keys[0], keys[-1], *params])
            settings_values = session_settings(src)
            # the pool's exit waits for the source's delete, which runs while the target commits
            with ThreadPoolExecutor(max_workers=1) as pool, transaction.atomic(using=ctx.target), \
                    dst_conn.cursor() as dst:
                # the source's text settings; and the copy must be on disk before the source deletes, so a server
                # set to synchronous_commit = off flushes this commit anyway ('local': no wait for standbys)
                dst.execute("SELECT set_config('TimeZone', %s, true), set_config('DateStyle', %s, true), "
                            "set_config('IntervalStyle', %s, true), set_config('extra_float_digits', %s, true), "
                            "set_config('bytea_output', %s, true), set_config('synchronous_commit', "
                            "CASE current_setting('synchronous_commit') WHEN 'off' THEN 'local' "
                            f"ELSE current_setting('synchronous_commit') END, true), {QUICK}", settings_values)
                # the keys as an array literal: the target reads them as they are (no list of Python values)
                src.execute(f"SELECT coalesce(array_agg(pk), '{{}}')::text FROM {self.keys}")
                batch_keys = src.fetchone()[0]
                # (template, params) selecting the batch by a table's parent-key column ({key}); in the source the
                # key range lets PostgreSQL use that column's index; in the target a range misled the plans of
                # tables still being filled
                in_source = (f"{{key}} >= %s AND {{key}} <= %s AND {{key}} IN (SELECT pk FROM {self.keys})",
                             [keys[0], keys[-1]])
                in_target = (f"{{key}} = ANY(%s::{pk_type}[])", [batch_keys])
                staged = False
                try:  # straight into the tables; a key there already (a stale copy): through the staging tables
                    with transaction.atomic(using=ctx.target):  # a savepoint
                        self.copy(src, dst, in_source, staged=False)
                except psycopg.IntegrityError:
                    staged = True
                    self.copy(src, dst, in_source, staged=True)
                    self.insert_staged(dst, None)
                    in_target = (f"{{key}} IN (SELECT {t.pk} FROM {self.stages[t.table]})", [])
                backends.ops(ctx.target).advance_sequences(ctx.tiered.unit)
                copy_seconds = time.monotonic() - t0
                faults.checkpoint("after_copy")
                t0 = time.monotonic()
                (rows, child_rows, nbytes, digests), kept = self.verify_with_retries(
                    lambda: self.compare(src, dst, in_source, in_target),
                    (lambda attempt: self.mend(src, dst, in_source, attempt)) if staged else None)
                verify_seconds = time.monotonic() - t0
                moved: list = []
                if not ctx.ledger_commits_with_delete:  # to hot: the copies commit with their mark
                    src.execute(f"SELECT pk FROM {self.keys} ORDER BY pk")
                    moved = [r[0] for r in src.fetchall()]
                    ledger.record_copied(batch, moved)
                deleting = pool.submit(self.delete, src_conn, src.cursor, batch, in_source, rows, child_rows)
            delete_seconds = deleting.result()
            # the target has committed, the source's delete is not: a crash here leaves copies for the repair
            faults.checkpoint("after_verify")
            faults.checkpoint("after_delete_before_ledger")
            result = BatchResult(rows, child_rows, nbytes, "", kept, copy_seconds, verify_seconds, delete_seconds,
                                 moved=moved)
            result.checksum = ledger.summary_checksum(ctx, keys[0], keys[-1], result, *digests)
            if ctx.ledger_commits_with_delete:  # in the source transaction, where the ledger lives (hot)
                ledger.record_done(ctx, batch, result)
                result.recorded = True
        return result

    def delete(self, src_conn, src, batch: MigrationBatch, in_source: tuple[str, list], rows: int,
               child_rows: int) -> float:
        """Delete the verified batch from the source, its foreign keys checked now rather than at its commit, and
        return the seconds it took. It runs in a thread while the target commits, on the driver's cursor (with
        Django's errors); the source commits after the target, so a failure of either rolls the delete back."""
        t0 = time.monotonic()
        t, (where, params) = self.parent, self.ctx.where_sql
        with src_conn.wrap_database_errors:
            src.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self.checked_delete(
                src, batch, [(f"DELETE FROM {c.table} WHERE {in_source[0].format(key=fk)}", in_source[1])
                             for c, fk in self.children],
                (f"DELETE FROM {t.table} WHERE {in_source[0].format(key=f'{t.table}.{t.pk}')} AND ({where})",
                 [*in_source[1], *params]), rows, child_rows)
        return time.monotonic() - t0

    def copy(self, src, dst, in_source: tuple[str, list], *, staged: bool) -> None:
        """COPY the batch's parents and children, locked and in key order, into the target tables (or their
        staging tables)."""
        for t, key in self.parts():
            cols = ", ".join(t.cols)
            into = t.table
            if staged:
                into = self.stages[t.table]
                dst.execute(f"CREATE TEMP TABLE IF NOT EXISTS {into} (LIKE {t.table}) ON COMMIT DELETE ROWS")
            with src.cursor.copy(f"COPY (SELECT {cols} FROM {t.table} WHERE {in_source[0].format(key=key)} "
                                 f"ORDER BY {t.pk} FOR UPDATE) TO STDOUT (FORMAT BINARY)", in_source[1]) as reader, \
                    dst.cursor.copy(f"COPY {into} ({cols}) FROM STDIN (FORMAT BINARY)") as writer:
                pipe(reader, writer)

    def insert_staged(self, dst, only: list | None) -> None:
        """Insert staged rows missing from the target (all, or those of the parents ``only``)."""
        for t, key in self.parts():
            cols = ", ".join(t.cols)
            filt = f" WHERE {key} = ANY(%s)" if only is not None else ""
            dst.execute(f"INSERT INTO {t.table} ({cols}) SELECT {cols} FROM {self.stages[t.table]}{filt} "
                        f"ON CONFLICT ({t.pk}) DO NOTHING", [only] if only is not None else [])

    def compare(self, src, dst, in_source, in_target) -> tuple | None:
        """(rows, child_rows, bytes, digests) when the digests of both servers agree, else None. The two
        servers digest at the same time."""
        source, target = at_once(lambda: self.digests(src.cursor, in_source),
                                 lambda: self.digests(dst.cursor, in_target))
        if source != target:
            return None
        rows, nbytes, _ = source[0]
        return (rows, sum(c[0] for c in source[1:]), nbytes + sum(c[1] for c in source[1:]),
                [str(d) for _, _, d in source])

    def mend(self, src, dst, in_source, attempt: int) -> int:
        """Find the parents whose rows differ; re-copy them from the staging tables (the source is
        authoritative) on the first attempt, keep them in the source on the second."""
        t = self.parent
        staged = (f"{{key}} IN (SELECT {t.pk} FROM {self.stages[t.table]})", [])
        differ = self.row_digests(src, in_source) ^ self.row_digests(dst, staged)
        bad = sorted({k for k, _ in differ})
        for c, fk in self.children:
            dst.execute(f"DELETE FROM {c.table} WHERE {fk} = ANY(%s)", [bad])
        dst.execute(f"DELETE FROM {t.table} WHERE {t.pk} = ANY(%s)", [bad])
        if attempt == 0:
            self.insert_staged(dst, bad)
        else:
            src.execute(f"DELETE FROM {self.keys} WHERE pk = ANY(%s)", [bad])
            dst.execute(f"DELETE FROM {self.stages[t.table]} WHERE {t.pk} = ANY(%s)", [bad])
        return len(bad)

    def digests(self, cursor, selected: tuple[str, list]) -> list[tuple]:
        """(rows, bytes, digest) of the parents and of each child table, in one statement: the count, the
        length of the rows' text (every column) and, for a digest that needs no sort, the exact sums of two
        64-bit hashes of each row's text (``hashtextextended``, two seeds). ``OFFSET 0`` keeps the text of
        a row computed once."""
        parts = [f"SELECT {n} AS part, count(*), coalesce(sum(octet_length(t)), 0), "
                 f"coalesce(sum(hashtextextended(t, 0)), 0) || ':' || coalesce(sum(hashtextextended(t, 1)), 0) "
                 f"FROM (SELECT x::text AS t FROM (SELECT {', '.join(t.cols)} FROM {t.table} "
                 f"WHERE {selected[0].format(key=key)}) x OFFSET 0) y"
                 for n, (t, key) in enumerate(self.parts())]
        cursor.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) d ORDER BY part", selected[1] * len(parts))
        return [tuple(row[1:]) for row in cursor.fetchall()]

    def row_digests(self, cursor, selected: tuple[str, list]) -> set:
        """{(parent key, digest of the parent row or of one child table's rows)} for a drill-down."""
        out = set()
        for n, (t, key) in enumerate(self.parts()):
            cursor.execute(f"SELECT x.{key}, md5(string_agg(md5(x::text), '' ORDER BY x.{t.pk})) FROM "
                           f"(SELECT {', '.join(t.cols)} FROM {t.table} WHERE {selected[0].format(key=key)}) x "
                           f"GROUP BY x.{key}", selected[1])
            out.update((k, f"{n}:{d}") for k, d in cursor.fetchall())
        return out


def session_settings(cursor) -> list:
    """The session settings that shape row text; the target adopts the source's for the batch. (The
    source's batch settings are set on the way.)"""
    cursor.execute("SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
                   "current_setting('IntervalStyle'), current_setting('extra_float_digits'), "
                   f"current_setting('bytea_output'), {QUICK}")
    return list(cursor.fetchone())[:5]


def pipe(reader, writer) -> None:
    """Stream COPY data to ``writer`` in large writes."""
    buffer = bytearray()
    for data in reader:
        buffer += data
        if len(buffer) >= PIPE_WRITE_BYTES:
            writer.write(buffer)
            buffer = bytearray()
    if buffer:
        writer.write(buffer)
