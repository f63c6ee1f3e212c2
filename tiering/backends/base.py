"""What the engine must know about one database connection, and the refusal for a database it does not know.

Like Django's ``BaseDatabaseOperations``: each vendor module subclasses
``BaseTierOperations``; a fact a vendor must supply raises
``UnsupportedDatabase`` here, so a database without a backend is refused
before any row moves, never moved on a guess. Facts Django already reports
(``features``, ``ops``) are read from it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Cast

from ..exceptions import UnsupportedDatabase

# keys passed as query parameters to one statement, at most (a batch's keys go in chunks of this many)
KEYS_PER_STATEMENT = 10000


@dataclass(frozen=True)
class Place:
    """The tables an alias reaches: two aliases with equal keys reach the same tables."""

    key: tuple
    words: str = field(compare=False)  # the place in words, for the refusal


class BaseTierOperations:
    vendor = "unknown"

    def __init__(self, alias: str, connection) -> None:
        self.alias, self.connection = alias, connection

    def unsupported(self, fact: str):
        return UnsupportedDatabase(
            f"Database alias {self.alias!r} is {self.connection.vendor} ({self.connection.display_name}), which "
            f"tiering has no backend for ({fact} is unknown); supported: sqlite, postgresql, "
            "mysql (MySQL and MariaDB).")

    # ------------------------------------------------------------------ identity
    def place(self) -> Place:
        """What the alias's unqualified table names resolve to, asked of the database."""
        raise self.unsupported("which tables the alias reaches")

    def place_by_settings(self) -> Place:
        """``place()`` from the settings alone, without connecting (for the system check)."""
        raise self.unsupported("which tables the alias reaches")

    # ------------------------------------------------------------------ moves
    def advance_sequences(self, model_list: Iterable[type[models.Model]], cursor=None, schema: str | None = None):
        """Keep the key generators of ``model_list`` ahead of the largest key copied in."""
        raise self.unsupported("how its key sequences advance")

    def hold_off_writers(self, table: str) -> None:
        """Inside a transaction: until it ends, no other transaction writes ``table`` (``tiering.unique``
        takes it in hot after writing a unique value in cold), unless ``probe_lock`` does the same."""
        raise self.unsupported("how it holds off the writers of a table")

    probe_lock = ""  # the clause that ends tiering.unique's probes of this alias (a locking read, or none)

    @property
    def locks_rows(self) -> bool:
        """``SELECT ... FOR UPDATE`` holds the rows until the commit (else the database locks more)."""
        raise self.unsupported("how it locks rows")

    @property
    def keys_per_statement(self) -> int:
        limit = self.connection.features.max_query_params
        return min(KEYS_PER_STATEMENT, limit) if limit else KEYS_PER_STATEMENT

    def not_held_q(self, holds: models.QuerySet, model: type[models.Model]) -> Q:
        """Rows of ``model`` without a hold in ``holds`` (``RestoredRow`` keys as hot casts them to text)."""
        return ~Exists(holds.filter(object_pk=Cast(OuterRef("pk"), models.CharField())))

    def refresh_stats(self, table: str) -> None:
        """Refresh the planner's statistics of ``table`` after a bulk write."""
        raise self.unsupported("how its planner statistics are refreshed")

    @property
    def writers_wait_for_moves(self) -> bool:
        """The application's writes wait for a move batch's whole write transaction (one writer per file)."""
        raise self.unsupported("whether writers wait for a move")

    def replica_lag_seconds(self) -> float:
        """How many seconds this alias, a replica, lags behind its primary (0 when it has replayed all it
        received); asked of the replica's own connection, for the throttle's MAX_REPLICA_LAG."""
        raise self.unsupported("how a replica's lag is read")

    # ------------------------------------------------------------------ figures and reads
    def table_bytes(self, tables: list[str]) -> tuple[int, str]:
        """Bytes on disk of ``tables`` with their indexes, and the method used."""
        raise self.unsupported("how to measure a table's bytes")

    @property
    def nulls_largest(self) -> bool:
        """NULLs sort after every value in ascending order."""
        return self.connection.features.nulls_order_largest

    def quote_name(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r}>"
