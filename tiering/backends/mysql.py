"""MySQL and MariaDB: a place is a server (host, port, data directory) and a database; InnoDB row locks.

A schema is a database in MySQL, so two aliases on one server may be two databases that one connection
reaches with qualified names (the ``mysql_insert`` path).
"""
from __future__ import annotations

from django.db import DatabaseError

from .base import BaseTierOperations, Place


class TierOperations(BaseTierOperations):
    vendor = "mysql"

    def __init__(self, alias: str, connection) -> None:
        super().__init__(alias, connection)
        self._place: tuple | None = None  # (the driver connection it was asked on, its answer)

    def _server_place(self) -> tuple:
        """(server, database, whether the server allows ``LOAD DATA LOCAL``), asked once per driver
        connection: two spellings of one host are one server, told apart from another on the same host by
        its port and data directory."""
        conn = self.connection
        conn.ensure_connection()
        if self._place is not None and self._place[0] is conn.connection:
            return self._place[1]
        with conn.cursor() as cursor:
            cursor.execute("SELECT CONCAT(@@hostname, ' port ', @@port, ' ', @@datadir), DATABASE(), @@local_infile")
            answer = tuple(cursor.fetchone())
        self._place = (conn.connection, answer)
        return answer

    def place(self) -> Place:
        server, database, _ = self._server_place()
        return Place(("mysql", server, database),
                     f"the same {self.connection.display_name} database {database!r}: give the cold alias a "
                     "database of its own (NAME)")

    def place_by_settings(self) -> Place:
        s = self.connection.settings_dict
        key = tuple(str(s.get(k) or "") for k in ("HOST", "PORT", "NAME"))  # a database is not per user here
        return Place(("mysql", *key), f"the same {self.connection.display_name} database {s.get('NAME')!r} "
                                      f"on {s.get('HOST') or 'localhost'}:{s.get('PORT') or 3306}")

    def same_server(self, other: BaseTierOperations) -> bool:
        """Both aliases reach one server, so one connection reaches both databases. An alias that does not
        answer is taken as another server: the run then fails on it with its own error, in the ledger."""
        if not isinstance(other, TierOperations):
            return False
        try:
            return self._server_place()[0] == other._server_place()[0]
        except DatabaseError:
            return False

    def database(self) -> str:
        return self._server_place()[1]

    def loads_local_files(self) -> bool:
        """Can this alias take ``LOAD DATA LOCAL INFILE``? The client must ask for it (``OPTIONS:
        {"local_infile": 1}``, mysqlclient's flag, off by default) and the server allow it (``local_infile``)."""
        return bool(self.connection.settings_dict.get("OPTIONS", {}).get("local_infile")
                    and self._server_place()[2])

    def advance_sequences(self, model_list, cursor=None, schema=None) -> None:
        """Nothing to do: InnoDB moves a table's AUTO_INCREMENT past every explicit key inserted (and keeps
        it across restarts since MariaDB 10.2.4 and MySQL 8.0); an ``ALTER TABLE`` here would commit the
        batch's transaction half-way."""

    def hold_off_writers(self, table: str) -> None:
        """Nothing to take: InnoDB has no table lock inside a transaction (LOCK TABLES commits it), and a
        gap lock would need REPEATABLE READ, which Django's READ COMMITTED transaction may no longer
        switch to (ATOMIC_REQUESTS, the admin). The probes of both tiers are locking reads instead
        (``probe_lock``): each waits for a write of the value in flight in the other tier, so whichever
        of two writers of one value probes last sees the other's commit (both at once: a deadlock, and
        its victim rolls back)."""

    probe_lock = " LOCK IN SHARE MODE"

    locks_rows = True  # InnoDB: SELECT ... FOR UPDATE locks the rows (and gaps) it read until the commit

    def index_on(self, table: str, column: str) -> str | None:
        """The quoted name of an index of ``table`` that starts with ``column`` (InnoDB gives every foreign
        key one), or None. The copy paths name it in FORCE INDEX: see ``paths.mysql_insert``."""
        with self.connection.cursor() as cursor:
            constraints = self.connection.introspection.get_constraints(cursor, table)
        names = sorted(name for name, c in constraints.items() if c["index"] and c["columns"][:1] == [column])
        return self.connection.ops.quote_name(names[0]) if names else None

    def refresh_stats(self, table: str) -> None:
        """Nothing to do: InnoDB recalculates a table's statistics by itself once a tenth of it changed
        (``innodb_stats_auto_recalc``); ANALYZE TABLE would commit the caller's transaction."""

    def table_bytes(self, tables: list[str]) -> tuple[int, str]:
        """InnoDB's own figures (data and index pages), as information_schema reports them."""
        if not tables:
            return 0, "information_schema"
        marks = ", ".join("%s" for _ in tables)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                           f"WHERE table_schema = DATABASE() AND table_name IN ({marks})", tables)
            return int(cursor.fetchone()[0]), "information_schema"
