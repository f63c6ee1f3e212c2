"""Per-database facts behind one object per connection, the way Django has ``connection.ops``.

``ops(alias)`` gives the alias's ``TierOperations``; a vendor missing from
``BACKENDS`` gets the base class, which refuses every fact it would need.
"""
from __future__ import annotations

import weakref

from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from ..exceptions import ImproperlyTiered
from .base import BaseTierOperations

BACKENDS = {
    "sqlite": "tiering.backends.sqlite.TierOperations",
    "postgresql": "tiering.backends.postgresql.TierOperations",
    "mysql": "tiering.backends.mysql.TierOperations",
}

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection wrapper (one per thread) -> ops


def ops(alias: str) -> BaseTierOperations:
    """The tier operations of ``alias``'s connection in this thread."""
    connection = connections[alias]
    found = _cache.get(connection)
    if found is None or found.alias != alias:
        path = BACKENDS.get(connection.vendor)
        found = (import_string(path) if path else BaseTierOperations)(alias, connection)
        _cache[connection] = found
    return found


def same_tables(a: str, b: str, *, by_settings: bool = False) -> str | None:
    """Why aliases ``a`` and ``b`` reach the very same tables, or None when they do not.

    Moving between them would copy each row onto itself, verify it and delete
    it: every row lost. ``by_settings``: compare the settings, without
    connecting. A database without a backend raises ``UnsupportedDatabase``.
    An alias that does not answer is taken as another database: a run then
    fails on it with its own error, recorded in the ledger.
    """
    try:
        places = [ops(x).place_by_settings() if by_settings else ops(x).place() for x in (a, b)]
    except DatabaseError:
        return None
    if places[0] == places[1]:
        return f"{a!r} and {b!r} are {places[0].words}"
    return None


def refuse_same_tables(a: str, b: str) -> None:
    reason = same_tables(a, b)
    if reason:
        raise ImproperlyTiered(f"Refusing to move rows: {reason}")
