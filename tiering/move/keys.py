"""Keys passed as query parameters, in chunks each database takes in one statement."""
from __future__ import annotations

from collections.abc import Iterator

from .. import backends


def per_statement(*aliases: str) -> int:
    """How many keys one statement may carry on every one of ``aliases``."""
    return min(backends.ops(alias).keys_per_statement for alias in aliases)


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def present(model, alias: str, pks: list) -> set:
    """Which of ``pks`` are rows of ``model`` in ``alias`` (a chunk of keys per statement)."""
    found = set()
    for chunk in chunks(pks, per_statement(alias)):
        found.update(model._base_manager.using(alias).filter(pk__in=chunk).values_list("pk", flat=True))
    return found
