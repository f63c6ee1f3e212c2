"""Two MySQL/MariaDB servers: lock the batch in the source, load or insert it into the target, verify with
a digest each server computes of its own rows.

Source transaction: ``SELECT ... FOR UPDATE`` reads and locks the batch (range + policy) and its
children, each table through a named index (FORCE INDEX: the primary key, a child's parent-key index;
why in ``paths.mysql_insert``). When the target takes ``LOAD DATA LOCAL INFILE`` (``OPTIONS:
{"local_infile": 1}`` on its alias and the server's ``local_infile``), the source reads each row as its
line of LOAD DATA text and the target loads each table's lines from a temporary file, 2-3 times as fast
(``IGNORE``: a stale copy is left alone, as is a value the target stored otherwise, for the verify to
find); else the target gets the rows as multi-row ``INSERT ... ON DUPLICATE KEY UPDATE pk = pk``
statements (a stale copy is left alone for the verify). Each server then digests the batch, both at
once: count, bytes and the exact sum of a 60-bit MD5 prefix of each row's canonical text (``QUOTE`` of
every column, so NULL, '' and 'NULL' differ). When the digests differ, the rows' MD5s name the parents
that differ; their copies are removed and written again from the rows read (the source is
authoritative), or left in the source on the second attempt. The target commits, then the source
deletes and commits (with the ledger, to cold). A crash between the two commits leaves copies the
repair removes.
"""
from __future__ import annotations

import tempfile
import time

from django.db import connections, transaction

from ... import backends
from ...models import MigrationBatch
from .. import faults, ledger
from .base import BaseCopyPath, BatchResult, at_once
from .one_connection import Table, tables_of


class MySQLBulkPath(BaseCopyPath):
    name = "mysql_bulk"
    needs = "two MySQL/MariaDB aliases"
    vendor = "mysql"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.parent, self.children = tables_of(ctx)
        ops = backends.ops(ctx.source)
        self.hints = {c.table: force_index(ops.index_on(child.model._meta.db_table, child.fk.column))
                      for (c, _), child in zip(self.children, ctx.tiered.children)}
        self.loads = backends.ops(ctx.target).loads_local_files()  # 2-3x the rows/s of multi-row INSERTs

    def parts(self) -> list[tuple[Table, str]]:
        """(table, the column holding its parent key) of the parent and each child."""
        return [(self.parent, self.parent.pk)] + self.children

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        ctx, t = self.ctx, self.parent
        where, params = ctx.where_sql
        with transaction.atomic(using=ctx.source), connections[ctx.source].cursor() as src:
            t0 = time.monotonic()
            src.execute(f"SELECT {self.read(t, t.pk)} FROM {t.table} FORCE INDEX (PRIMARY) WHERE {t.table}.{t.pk} "
                        f">= %s AND {t.table}.{t.pk} <= %s AND ({where}) ORDER BY {t.pk} FOR UPDATE",
                        [keys[0], keys[-1], *params])
            rows = {t.table: src.fetchall()}
            pk_at = self.key_at(t, t.pk)
            batch_keys = [r[pk_at] for r in rows[t.table]]
            if not batch_keys:  # nothing eligible is left in the range
                return self.finish(src, batch, keys, batch_keys, [], 0, time.monotonic() - t0, 0.0)
            for c, fk in self.children:
                src.execute(f"SELECT {self.read(c, fk)} FROM {c.table}{self.hints[c.table]} "
                            f"WHERE {fk} IN ({marks(batch_keys)}) ORDER BY {fk}, {c.pk} FOR UPDATE", batch_keys)
                rows[c.table] = src.fetchall()
            with transaction.atomic(using=ctx.target), connections[ctx.target].cursor() as dst:
                self.insert(dst, rows, None)
                backends.ops(ctx.target).advance_sequences(ctx.tiered.unit)
                copy_seconds = time.monotonic() - t0
                faults.checkpoint("after_copy")
                t0 = time.monotonic()
                kept = 0
                state = {"keys": batch_keys}
                digests, kept = self.verify_with_retries(
                    lambda: self.compare(src, dst, state["keys"]),
                    lambda attempt: self.mend(src, dst, rows, state, attempt))
                batch_keys = state["keys"]
                verify_seconds = time.monotonic() - t0
                moved: list = []
                if not ctx.ledger_commits_with_delete:  # to hot: the copies commit with their mark
                    moved = batch_keys
                    ledger.record_copied(batch, moved)
            faults.checkpoint("after_verify")  # the target has committed: a crash here leaves copies for the repair
            return self.finish(src, batch, keys, batch_keys, digests, kept, copy_seconds, verify_seconds, moved)

    def finish(self, src, batch, keys, batch_keys, digests, kept, copy_seconds, verify_seconds, moved=()):
        """Step 3 and the ledger: delete the verified rows still eligible from the source."""
        ctx, t = self.ctx, self.parent
        where, params = ctx.where_sql
        rows, child_rows, nbytes = ((digests[0][0], sum(d[0] for d in digests[1:]), sum(d[1] for d in digests))
                                    if digests else (0, 0, 0))
        t0 = time.monotonic()
        if batch_keys:
            self.checked_delete(
                src, batch, [(f"DELETE {c.table} FROM {c.table}{self.hints[c.table]} WHERE {fk} IN "
                              f"({marks(batch_keys)})", batch_keys) for c, fk in self.children],
                (f"DELETE {t.table} FROM {t.table} FORCE INDEX (PRIMARY) WHERE {t.table}.{t.pk} IN "
                 f"({marks(batch_keys)}) AND ({where})",
                 [*batch_keys, *params]), rows, child_rows)
        faults.checkpoint("after_delete_before_ledger")
        result = BatchResult(rows, child_rows, nbytes, "", kept, copy_seconds, verify_seconds,
                             time.monotonic() - t0, moved=list(moved))
        result.checksum = ledger.summary_checksum(ctx, keys[0], keys[-1], result, *(str(d[2]) for d in digests))
        if ctx.ledger_commits_with_delete:  # in the source transaction, where the ledger lives (hot)
            ledger.record_done(ctx, batch, result)
            result.recorded = True
        return result

    def read(self, t: Table, key: str) -> str:
        """The source's select list for the rows of ``t``: their columns, or, to be loaded, (the parent key
        ``key``, the row's line of LOAD DATA text)."""
        return f"{key}, {load_line(t)}" if self.loads else ", ".join(t.cols)

    def key_at(self, t: Table, key: str) -> int:
        """Where a row read by ``read()`` holds ``key``."""
        return 0 if self.loads else t.cols.index(key)

    def insert(self, dst, rows: dict, only: set | None) -> None:
        """Insert the rows read (all, or those of the parents ``only``); a key in the target already keeps
        its row."""
        for t, key in self.parts():
            data = rows[t.table]
            if only is not None:
                at = self.key_at(t, key)
                data = [r for r in data if r[at] in only]
            if not data:
                continue
            if self.loads:
                with tempfile.NamedTemporaryFile(prefix="tiering-", suffix=".tsv") as lines:
                    lines.write(b"\n".join(line for _, line in data) + b"\n")
                    lines.flush()
                    dst.execute(f"LOAD DATA LOCAL INFILE %s IGNORE INTO TABLE {t.table} CHARACTER SET binary "
                                f"({', '.join(t.cols)})", [lines.name])
            else:
                dst.executemany(f"INSERT INTO {t.table} ({', '.join(t.cols)}) VALUES ({marks(t.cols)}) "
                                f"ON DUPLICATE KEY UPDATE {t.pk} = {t.table}.{t.pk}", data)

    def compare(self, src, dst, batch_keys: list) -> list | None:
        """[(rows, bytes, digest)] of the parents and each child table when both servers agree, else None. The
        two servers digest at the same time."""
        source, target = at_once(lambda: self.digests(src.cursor, batch_keys),
                                 lambda: self.digests(dst.cursor, batch_keys))
        return source if source == target else None

    def mend(self, src, dst, rows: dict, state: dict, attempt: int) -> int:
        """Remove the copies of the parents whose rows differ; insert them again from the rows read on the
        first attempt, keep them in the source on the second."""
        batch_keys = state["keys"]
        bad = sorted({k for _, k, _ in self.row_digests(src, batch_keys) ^ self.row_digests(dst, batch_keys)})
        for t, key in reversed(self.parts()):
            dst.execute(f"DELETE FROM {t.table} WHERE {key} IN ({marks(bad)})", bad)
        if attempt == 0:
            self.insert(dst, rows, set(bad))
        else:
            gone = set(bad)
            state["keys"] = [k for k in batch_keys if k not in gone]
        return len(bad)

    def digests(self, cursor, batch_keys: list) -> list[tuple]:
        if not batch_keys:
            return [(0, 0, 0) for _ in self.parts()]
        out = []
        for t, key in self.parts():
            cursor.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(r)), 0), COALESCE(SUM(CAST(CONV(LEFT(MD5(r), 15), "
                           f"16, 10) AS UNSIGNED)), 0) FROM (SELECT {row_text(t)} AS r FROM {t.table} "
                           f"WHERE {key} IN ({marks(batch_keys)})) x", batch_keys)
            n, nbytes, digest = cursor.fetchone()
            out.append((n, int(nbytes), int(digest)))
        return out

    def row_digests(self, cursor, batch_keys: list) -> set:
        """{(table, parent key, MD5 of the row with its own key)} for the drill-down."""
        out = set()
        for n, (t, key) in enumerate(self.parts() if batch_keys else []):
            cursor.execute(f"SELECT {key}, MD5({row_text(t)}) FROM {t.table} WHERE {key} IN ({marks(batch_keys)})",
                           batch_keys)
            out.update((n, k, d) for k, d in cursor.fetchall())
        return out


def row_text(t: Table) -> str:
    """A row's canonical text on either server: every column QUOTEd (NULL unquoted), comma-separated, as
    bytes (the columns' collations may differ: MariaDB's JSON is utf8mb4_bin beside nopad_bin text)."""
    return "CONCAT_WS(',', " + ", ".join(f"CAST(QUOTE({c}) AS BINARY)" for c in t.cols) + ")"


def load_line(t: Table) -> str:
    """A row as a line of LOAD DATA's default format: the bytes of every column's text, tab-separated, with
    backslash, tab and newline escaped and NULL as backslash-N (read back as the same values, which the
    verify checks). Characters by code (CHAR(92) is the backslash): the SQL means the same whatever the
    server's ``NO_BACKSLASH_ESCAPES``."""
    fields = []
    for c in t.cols:
        text = f"CAST({c} AS BINARY)"
        for code, escape in ((92, "CHAR(92)"), (9, "'t'"), (10, "'n'")):
            text = f"REPLACE({text}, CHAR({code}), CONCAT(CHAR(92), {escape}))"
        fields.append(f"IFNULL({text}, CONCAT(CHAR(92), 'N'))")
    return f"CONCAT_WS(CHAR(9), {', '.join(fields)})"


def force_index(name: str | None) -> str:
    return f" FORCE INDEX ({name})" if name else ""


def marks(values) -> str:
    return ", ".join(["%s"] * len(values))
