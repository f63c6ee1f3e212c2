"""PostgreSQL: a place is a server, a database and the schema of the search_path; sequences; row locks."""
from __future__ import annotations

import re

from django.db import DatabaseError, models

from ..exceptions import ImproperlyTiered
from .base import BaseTierOperations, Place


class TierOperations(BaseTierOperations):
    vendor = "postgresql"

    def __init__(self, alias: str, connection) -> None:
        super().__init__(alias, connection)
        self._place: tuple | None = None  # (the driver connection it was asked on, its answer)

    def _server_place(self) -> tuple:
        """(server, database, schema), asked once per driver connection: two spellings of one host are one
        database. The server is told apart by its start time and port."""
        conn = self.connection
        conn.ensure_connection()
        if self._place is not None and self._place[0] is conn.connection:
            return self._place[1]
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()::text || ' port ' || current_setting('port'), "
                           "current_database(), current_schema()")
            answer = tuple(cursor.fetchone())
        self._place = (conn.connection, answer)
        return answer

    def place(self) -> Place:
        server, database, _ = self._server_place()
        schema = self.schema()
        return Place(("postgresql", server, database, schema),
                     f"the same PostgreSQL database and schema {schema!r}: give the cold alias its own schema "
                     "(OPTIONS={'options': '-c search_path=cold'})")

    def place_by_settings(self) -> Place:
        s = self.connection.settings_dict
        search_path = re.search(r"search_path\s*=\s*(\S+)", str((s.get("OPTIONS") or {}).get("options", "")))
        search_path = search_path.group(1) if search_path else None
        key = tuple(str(s.get(k) or "") for k in ("HOST", "PORT", "NAME", "USER"))
        return Place(("postgresql", *key, search_path),
                     f"the same PostgreSQL database {s.get('NAME')!r} with the same search_path "
                     f"({search_path or 'the default'})")

    def same_database(self, other: BaseTierOperations) -> bool:
        """Both aliases reach one database of one server (perhaps in two schemas). An alias that does not
        answer is taken as another database: the run then fails on it with its own error, in the ledger."""
        if not isinstance(other, TierOperations):
            return False
        try:
            return self._server_place()[:2] == other._server_place()[:2]
        except DatabaseError:
            return False

    def schema(self) -> str:
        schema = self._server_place()[2]
        if schema is None:
            raise ImproperlyTiered(f"The search_path of database alias {self.alias!r} names no existing schema; "
                                   "create it (CREATE SCHEMA cold) and run migrate --database for that alias")
        return schema

    def advance_sequences(self, model_list, cursor=None, schema=None) -> None:
        """``setval`` each serial key's sequence to the largest key when it is behind. ``cursor`` and
        ``schema``: a transaction's own cursor (its uncommitted copies are visible there) and the schema."""
        if cursor is None:
            with self.connection.cursor() as cursor:
                return self.advance_sequences(model_list, cursor, schema)
        prefix = self.quote_name(schema) + "." if schema else ""
        for model in model_list:
            pk = model._meta.pk
            if not isinstance(pk, models.AutoField):
                continue
            table = prefix + self.quote_name(model._meta.db_table)
            cursor.execute(
                f"SELECT setval(s.seq, m.top) FROM (SELECT pg_get_serial_sequence(%s, %s) AS seq) s, "
                f"(SELECT MAX({self.quote_name(pk.column)}) AS top FROM {table}) m "
                "WHERE s.seq IS NOT NULL AND m.top IS NOT NULL "
                "AND m.top > COALESCE(pg_sequence_last_value(s.seq::regclass), 0)",
                [table, pk.column])

    locks_rows = True
    writers_wait_for_moves = False  # row locks: the application's inserts do not wait for a batch

    def replica_lag_seconds(self) -> float:
        """Since the last transaction replayed, while WAL received is not replayed yet (an idle primary
        sends nothing: no lag then, however old the last transaction)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
                           "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
                           "ELSE COALESCE(GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())), 0) "
                           "END")
            lag = cursor.fetchone()[0]
        if lag is None:
            raise ImproperlyTiered(f"Database alias {self.alias!r} is not a replica (pg_is_in_recovery() is false): "
                                   "TIERING['THROTTLE']['REPLICA'] must name a streaming replica of hot")
        return float(lag)

    # not_held_q: the base's NOT EXISTS, which PostgreSQL plans as an anti-join (its NOT IN becomes a
    # per-row subplan once the holds outgrow work_mem)

    def hold_off_writers(self, table: str) -> None:
        """SHARE conflicts with the ROW EXCLUSIVE of INSERT/UPDATE/DELETE, not with readers nor itself."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {self.quote_name(table)} IN SHARE MODE")

    def refresh_stats(self, table: str) -> None:
        """ANALYZE now: the next run plans on the table before autovacuum may have looked at it."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {self.quote_name(table)}")

    def table_bytes(self, tables: list[str]) -> tuple[int, str]:
        total = 0
        with self.connection.cursor() as cursor:
            for table in tables:
                cursor.execute("SELECT pg_total_relation_size(to_regclass(%s))", [self.quote_name(table)])
                total += cursor.fetchone()[0] or 0
        return total, "pg_total_relation_size"
