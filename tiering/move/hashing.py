"""Content hashes of rows as the ORM reads them: the orm path's verify, and ``plan()``'s byte estimate.

One text per value, equal on every backend for equal values, so that a pair
of two vendors hashes a row the same in both tiers.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from .. import backends


def norm(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, Decimal):
        return "d" + (format(value.normalize(), "f") if value else "0")
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = value.astimezone(UTC)
        return "t" + value.isoformat()
    if isinstance(value, (date, dtime)):
        return "t" + value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x" + bytes(value).hex()
    if isinstance(value, (dict, list)):
        return "j" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, float):
        return "f" + repr(value)
    return "s" + str(value)


def row_text(row: tuple) -> str:
    return "\x1f".join(norm(v) for v in row)


def group_hashes(ctx, alias: str, pks: list, *, eligible_only: bool, lock: bool):
    """Hash each parent with all its children in ``alias``.

    Returns ``({pk: hash}, {(child_model, pk): [child keys]}, bytes)``. With
    ``eligible_only`` parents that no longer match the run's selection are left
    out; with ``lock`` the rows are locked until the transaction ends, where
    the database locks rows.
    """
    for_update = lock and backends.ops(alias).locks_rows
    parents = ctx.model._base_manager.using(alias).filter(pk__in=pks)
    if eligible_only:
        parents = parents.filter(ctx.eligible_q)
    names = [f.attname for f in ctx.model._meta.concrete_fields]
    if for_update:
        parents = parents.select_for_update()
    parts: dict[Any, list[str]] = {}
    nbytes, pk_i = 0, names.index(ctx.model._meta.pk.attname)
    for row in parents.values_list(*names):
        text = row_text(row)
        nbytes += len(text)
        parts[row[pk_i]] = [text]
    child_keys: dict[tuple, list] = {}
    for child in ctx.tiered.children:
        cnames = [f.attname for f in child.model._meta.concrete_fields]
        fk_i, pk_i = cnames.index(child.fk.attname), cnames.index(child.model._meta.pk.attname)
        qs = child.model._base_manager.using(alias).filter(**{f"{child.fk.attname}__in": pks})
        if for_update:
            qs = qs.select_for_update()
        texts: dict[Any, list[str]] = {}
        for row in qs.values_list(*cnames):
            text = row_text(row)
            nbytes += len(text)
            texts.setdefault(row[fk_i], []).append(text)
            child_keys.setdefault((child.model, row[fk_i]), []).append(row[pk_i])
        for pk, lines in texts.items():
            if pk in parts:
                parts[pk].append(child.model._meta.label + "\x1e" + "\x1d".join(sorted(lines)))
    hashes = {pk: hashlib.blake2b("\x1f".join(p).encode(), digest_size=16).hexdigest() for pk, p in parts.items()}
    return hashes, child_keys, nbytes


def batch_checksum(pairs: Iterable[tuple[Any, str]]) -> str:
    digest = hashlib.sha256()
    for pk, row_hash in pairs:
        digest.update(f"{pk}:{row_hash};".encode())
    return digest.hexdigest()
