"""The errors tiering raises, under one base class."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import NotSupportedError

if TYPE_CHECKING:
    from .models import MigrationRun


class TieringError(Exception):
    """Base class of tiering's own errors."""


class LockHeld(TieringError):
    """Another live run holds the model+direction lock."""


class MoveError(TieringError):
    """A run failed; ``run`` is the failed MigrationRun (the ledger says why), or None before one existed."""

    def __init__(self, message: str, run: MigrationRun | None = None) -> None:
        super().__init__(message)
        self.run = run


class TieringQueryError(TieringError, NotSupportedError):
    """The query cannot be answered correctly across both tiers."""


class ImproperlyTiered(TieringError, ImproperlyConfigured):
    """The tier aliases or the copy path cannot work as configured (refused before any row moves)."""


class UnsupportedDatabase(ImproperlyTiered):
    """A tier alias uses a database that tiering has no backend for."""


class ArgumentError(TieringError, ValueError):
    """An argument of a move (option, key, filter value) that cannot work: refused before any run is recorded."""


class FilterError(ArgumentError):
    """A ``field__lookup=value`` filter (or a ``--pk`` value) that does not fit the model."""
