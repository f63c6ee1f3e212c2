"""Copy, verify and delete of a batch as plain SQL over both tiers seen from one connection.

The ``sqlite`` path (the source file ATTACHed), the ``pg_insert`` path
(two schemas of one database) and the ``mysql_insert`` path (two databases of
one MySQL server) run these statements in one transaction; the
``Statements`` fields are the few words in which the two databases differ.
The batch's parent keys are in the temp table ``keys``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

from ...models import MigrationBatch
from .. import faults, ledger
from .base import BaseCopyPath, BatchResult


@dataclass
class Table:
    table: str      # quoted table name (also the alias the compiled policy uses)
    pk: str         # quoted primary key column
    cols: list      # quoted concrete columns
    db_types: list  # their column types on the run's source


def table_of(model, alias: str) -> Table:
    conn = connections[alias]
    qn, fields = conn.ops.quote_name, model._meta.concrete_fields
    return Table(qn(model._meta.db_table), qn(model._meta.pk.column), [qn(f.column) for f in fields],
                 [f.db_type(conn) for f in fields])


def tables_of(ctx) -> tuple[Table, list[tuple[Table, str]]]:
    """The parent's table and (table, quoted parent key column) of each child, on the run's source."""
    qn = connections[ctx.source].ops.quote_name
    return (table_of(ctx.model, ctx.source),
            [(table_of(c.model, ctx.source), qn(c.fk.column)) for c in ctx.tiered.children])


@dataclass(frozen=True)
class Statements:
    src: str        # prefix of the source's tables, with its dot
    dst: str        # prefix of the target's tables
    keys: str       # temp table of the batch's parent keys
    bad: str        # temp table of the parent keys whose copy (or a child's) differs
    member: str     # "<column> {member}": membership in the temp table {keys}, in the form searched fastest
    same: str       # null-safe equality
    source_bytes: Callable[[Table], str]  # aggregate SQL of the payload bytes of the source rows ``s``
    # the clause after an INSERT that leaves a row alone whose key (table, quoted key column) is there already
    keep_existing: Callable[[str, str], str] = lambda table, pk: "ON CONFLICT DO NOTHING"
    # the null-safe equality of text columns (db type has char, text or json) when ``same`` ignores case
    # or trailing spaces there: a format with {d} and {s}
    same_text: str | None = None

    @property
    def in_batch(self) -> str:
        return self.member.format(keys=self.keys)

    def rows_in(self, prefix: str, t: Table, key: str, keys: str, alias: str) -> tuple[str, str]:
        """(FROM clause, WHERE condition) of the rows ``alias`` of ``prefix`` + ``t`` whose ``key`` is in the
        temp table ``keys``."""
        return f"{prefix}{t.table} AS {alias}", f"{alias}.{key} {self.member.format(keys=keys)}"

    def delete_in(self, prefix: str, t: Table, key: str, keys: str) -> str:
        """The DELETE of the rows of ``prefix`` + ``t`` whose ``key`` is in the temp table ``keys``."""
        return f"DELETE FROM {prefix}{t.table} WHERE {key} {self.member.format(keys=keys)}"

    def copy(self, cur, parent: Table, children: list, keys: str) -> None:
        """Copy the parents whose key is in the temp table ``keys``, then their children; a key already in
        the target is left alone (the verify compares it)."""
        for t, key in [(parent, parent.pk)] + children:
            cols = ", ".join(t.cols)
            cur.execute(f"INSERT INTO {self.dst}{t.table} ({cols}) SELECT {cols} FROM {self.src}{t.table} "
                        f"WHERE {key} {self.member.format(keys=keys)} {self.keep_existing(self.dst + t.table, t.pk)}")

    def children_in_target(self, cur, children: list, low: Any, high: Any) -> bool:
        """Before the copy: does the target hold a child of any parent key in ``low``..``high``? One index
        probe per child table; when it holds none, every target child of the batch is one the copy writes."""
        for c, fk in children:
            cur.execute(f"SELECT 1 FROM {self.dst}{c.table} WHERE {fk} >= %s AND {fk} <= %s LIMIT 1", [low, high])
            if cur.fetchone():
                return True
        return False

    def compare_batch(self, cur, parent: Table, children: list, count_target: bool) -> tuple | None:
        """(rows, child_rows, bytes) of the batch when every copy is identical, else None. ``count_target``:
        the target held children of the key range before the copy, so an extra one is a mismatch too."""
        rows, matched, nbytes = self._compare(cur, parent, parent.pk)
        ok = rows == matched
        child_rows = 0
        for c, fk in children:
            n, m, b = self._compare(cur, c, fk)
            ok = ok and n == m
            if count_target:
                cur.execute("SELECT count(*) FROM {} WHERE {}".format(*self.rows_in(self.dst, c, fk, self.keys, "d")))
                ok = ok and n == cur.fetchone()[0]
            child_rows, nbytes = child_rows + n, nbytes + b
        return (rows, child_rows, nbytes) if ok else None

    def mend(self, cur, parent: Table, children: list, attempt: int) -> int:
        """Remove the differing copies; copy them again (first attempt) or keep them out of the batch."""
        bad = self._bad_keys(cur, parent, children)
        for c, fk in children:
            cur.execute(self.delete_in(self.dst, c, fk, self.bad))
        cur.execute(self.delete_in(self.dst, parent, parent.pk, self.bad))
        if attempt == 0:
            self.copy(cur, parent, children, self.bad)
        else:
            cur.execute(f"DELETE FROM {self.keys} WHERE pk {self.member.format(keys=self.bad)}")
        return bad

    def batch_keys(self, cur) -> list:
        """The keys the batch moved, in key order."""
        cur.execute(f"SELECT pk FROM {self.keys} ORDER BY pk")
        return [r[0] for r in cur.fetchall()]

    def deletes(self, parent: Table, children: list, where: tuple[str, list]):
        """The children's and the parents' delete statements, the parents' with the policy ``where``."""
        sql, params = where
        return ([(f"DELETE FROM {self.src}{c.table} WHERE {fk} {self.in_batch}", None) for c, fk in children],
                (f"DELETE FROM {self.src}{parent.table} WHERE {parent.table}.{parent.pk} {self.in_batch} "
                 f"AND ({sql})", params))

    def _compare(self, cur, t: Table, key: str) -> tuple[int, int, int]:
        """(source rows, rows with an identical target row, source bytes) of the batch's rows of ``t``, whose
        ``key`` is in ``keys``."""
        rows, where = self.rows_in(self.src, t, key, self.keys, "s")
        cur.execute(f"SELECT count(*), count(d.{t.pk}), {self.source_bytes(t)} FROM {rows} "
                    f"LEFT JOIN {self.dst}{t.table} AS d ON d.{t.pk} = s.{t.pk}{self._same(t)} WHERE {where}")
        n, m, b = cur.fetchone()
        return n, m, int(b)

    def _bad_keys(self, cur, parent: Table, children: list) -> int:
        """Fill ``bad`` with the parents whose copy (or a child's) differs; return how many."""
        cur.execute(f"DELETE FROM {self.bad}")
        for t, key, fk in [(parent, parent.pk, parent.pk)] + [(c, c.pk, fk) for c, fk in children]:
            keep = self.keep_existing(self.bad, "pk")
            rows, where = self.rows_in(self.src, t, fk, self.keys, "s")
            cur.execute(f"INSERT INTO {self.bad} (pk) SELECT s.{fk} FROM {rows} "
                        f"LEFT JOIN {self.dst}{t.table} AS d ON d.{key} = s.{key}{self._same(t)} "
                        f"WHERE {where} AND d.{key} IS NULL {keep}")
            if t is not parent:  # children in the target that the source does not have
                rows, where = self.rows_in(self.dst, t, fk, self.keys, "d")
                cur.execute(f"INSERT INTO {self.bad} (pk) SELECT d.{fk} FROM {rows} "
                            f"WHERE {where} AND NOT EXISTS (SELECT 1 FROM {self.src}{t.table} AS s "
                            f"WHERE s.{key} = d.{key} AND s.{fk} {self.same} d.{fk}) {keep}")
        cur.execute(f"SELECT count(*) FROM {self.bad}")
        return cur.fetchone()[0]

    def _same(self, t: Table) -> str:
        """`` AND`` the target row ``d`` equals the source row ``s`` in every column but the key."""
        out = []
        for c, db_type in zip(t.cols, t.db_types):
            if c == t.pk:
                continue
            text = self.same_text and any(w in (db_type or "").lower() for w in ("char", "text", "json"))
            out.append(self.same_text.format(d=f"d.{c}", s=f"s.{c}") if text else f"d.{c} {self.same} s.{c}")
        return "".join(f" AND {x}" for x in out)


class OneConnectionPath(BaseCopyPath):
    """A path whose batch is one transaction over both tiers; subclasses open it and copy."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.parent, self.children = tables_of(ctx)

    def verify_and_delete(self, sql: Statements, cur, batch: MigrationBatch, keys: list, copy_seconds: float,
                          count_target: bool) -> BatchResult:
        """Steps 2 and 3 after the path's copy, timed, with their fault checkpoints."""
        parent, children = self.parent, self.children
        t0 = time.monotonic()
        (rows, child_rows, nbytes), kept = self.verify_with_retries(
            lambda: sql.compare_batch(cur, parent, children, count_target),
            lambda attempt: sql.mend(cur, parent, children, attempt))
        verify_seconds = time.monotonic() - t0
        faults.checkpoint("after_verify")
        t0 = time.monotonic()
        self.checked_delete(cur, batch, *sql.deletes(parent, children, self.ctx.where_sql), rows, child_rows)
        faults.checkpoint("after_delete_before_ledger")
        result = BatchResult(rows, child_rows, nbytes, "", kept, copy_seconds, verify_seconds, time.monotonic() - t0)
        result.checksum = ledger.summary_checksum(self.ctx, keys[0], keys[-1], result)
        return result
