"""The copy paths, one module each, chosen the way Django loads ``ENGINE``: the first that fits the pair.

``TIERING["MOVE_PATH"]`` forces one, by name or by dotted path to a
``BaseCopyPath`` subclass; a forced path that does not fit the pair is
refused before any run exists.
"""
from __future__ import annotations

from django.utils.module_loading import import_string

from ...exceptions import ImproperlyTiered
from .base import BaseCopyPath, BatchResult

__all__ = ["DEFAULT_PATHS", "BaseCopyPath", "BatchResult", "choose", "load", "names"]

# in the order they are tried; the orm path takes any pair
DEFAULT_PATHS = [
    "tiering.move.paths.sqlite.SQLiteAttachPath",
    "tiering.move.paths.pg_schema.PgSchemaPath",
    "tiering.move.paths.pg_copy.PgCopyPath",
    "tiering.move.paths.mysql_insert.MySQLInsertPath",
    "tiering.move.paths.mysql_bulk.MySQLBulkPath",
    "tiering.move.paths.orm.OrmPath",
]


def names() -> list[str]:
    return [import_string(path).name for path in DEFAULT_PATHS]


def load(name: str) -> type[BaseCopyPath]:
    """The path class called ``name`` (what the ledger records), or at the dotted path ``name``."""
    for path in DEFAULT_PATHS:
        cls = import_string(path)
        if cls.name == name:
            return cls
    if "." in name:
        try:
            cls = import_string(name)
        except ImportError as exc:
            raise ImproperlyTiered(f"Move path {name!r} cannot be imported: {exc}") from None
        if isinstance(cls, type) and issubclass(cls, BaseCopyPath):
            return cls
    raise ImproperlyTiered(f"Unknown move path {name!r}; choose one of {', '.join(names())} "
                           "or the dotted path of a BaseCopyPath subclass")


def choose(hot: str, cold: str, forced: str | None = None) -> type[BaseCopyPath]:
    """The forced path if it fits the pair, else the first default path that does."""
    if forced:
        cls = load(forced)
        if not cls.fits(hot, cold):
            raise ImproperlyTiered(f"path {cls.name!r} needs {cls.needs}, not {hot}/{cold}")
        return cls
    for path in DEFAULT_PATHS:
        cls = import_string(path)
        if cls.fits(hot, cold):
            return cls
    raise ImproperlyTiered(f"No move path fits {hot}/{cold}")  # the orm path fits every pair
