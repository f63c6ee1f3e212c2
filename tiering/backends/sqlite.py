"""SQLite: a file is a place; one writer at a time, so the file lock stands in for row locks."""
from __future__ import annotations

import os
import sqlite3

from django.db import OperationalError
from django.db.models import Q
from django.db.models.functions import Cast

from .base import KEYS_PER_STATEMENT, BaseTierOperations, Place


class TierOperations(BaseTierOperations):
    vendor = "sqlite"

    def is_file(self) -> bool:
        return bool(self.connection.settings_dict["NAME"]) and not self.connection.is_in_memory_db()

    def path(self) -> str:
        return os.path.abspath(str(self.connection.settings_dict["NAME"]))

    def place(self) -> Place:
        if not self.is_file():  # every in-memory database is a database of its own
            return Place(("sqlite", "memory", self.alias), f"the in-memory SQLite database of {self.alias!r}")
        return Place(("sqlite", os.path.realpath(self.path())), f"the same SQLite file {self.path()}")

    place_by_settings = place

    def advance_sequences(self, model_list, cursor=None, schema=None) -> None:
        """Nothing to do: SQLite's next key (``AUTOINCREMENT``'s ``sqlite_sequence`` included) follows the
        largest key inserted, explicit keys too."""

    locks_rows = False  # a write transaction (BEGIN IMMEDIATE) locks the whole file
    writers_wait_for_moves = True

    @property
    def keys_per_statement(self) -> int:
        """The connection's own limit: Django's ``max_query_params`` for SQLite is the 999 of old builds."""
        self.connection.ensure_connection()
        limit = self.connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return min(KEYS_PER_STATEMENT, limit)

    def not_held_q(self, holds, model) -> Q:
        """An uncorrelated ``NOT IN``, built once per statement: SQLite runs a correlated ``NOT EXISTS`` once per
        row, even with no holds."""
        pk = model._meta.pk
        key_field = pk.target_field if pk.is_relation else pk
        return ~Q(pk__in=holds.values_list(Cast("object_pk", key_field), flat=True))

    def hold_off_writers(self, table: str) -> None:
        """A write statement takes the file's write lock (even one that changes nothing) until the commit."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.quote_name(table)} WHERE 0")

    def refresh_stats(self, table: str) -> None:
        """Nothing to do: SQLite plans without statistics until ANALYZE is run by the project."""

    def table_bytes(self, tables: list[str]) -> tuple[int, str]:
        with self.connection.cursor() as cursor:
            marks = ",".join("%s" for _ in tables)
            cursor.execute(f"SELECT name FROM sqlite_master WHERE tbl_name IN ({marks})", tables)
            names = [row[0] for row in cursor.fetchall()]
            if not names:
                return 0, "dbstat"
            try:
                marks = ",".join("%s" for _ in names)
                cursor.execute(f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks})", names)
                return int(cursor.fetchone()[0]), "dbstat"
            except OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
                return self._page_share(cursor, tables), "page_share"

    def _page_share(self, cursor, tables: list[str]) -> int:
        """The file's bytes shared out by row count over its tables (a fallback estimate)."""
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        file_bytes = pages * cursor.fetchone()[0]
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        counts = {}
        for (name,) in cursor.fetchall():
            cursor.execute(f"SELECT COUNT(*) FROM {self.quote_name(name)}")
            counts[name] = cursor.fetchone()[0]
        everything = sum(counts.values())
        ours = sum(counts.get(t, 0) for t in tables)
        return int(file_bytes * ours / everything) if everything else 0
