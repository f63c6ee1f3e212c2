"""Which rows a run may move: the one definition of "eligible now", and the run's own selection.

Eligible to go cold: the policy says cold at the cutoff and no restore holds
the row (``RestoredRow``, for policies with a hold period). The mover, its
plan, ``analyze_tiers``, the dashboard's backlog, the admin's move pages and
the parallel key split all count with ``eligible_q``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .. import backends
from ..conf import tiering_settings
from ..exceptions import MoveError
from ..models import Direction, RestoredRow, jsonable_key
from ..registry import TieredModel


def eligible_q(tiered: TieredModel, direction: str, now: datetime) -> Q:
    """To cold: the policy's cold rows at ``now`` without a live restore hold. To hot: every row (the
    run's own selection narrows it)."""
    if direction != Direction.TO_COLD:
        return Q()
    if tiered.policy is None:
        raise MoveError(f"{tiered.label} has no tiering policy")
    q = tiered.policy.cold_q(now)
    period = tiered.policy.hold_period()
    if period is not None:
        hot = tiering_settings.HOT
        holds = RestoredRow.objects.using(hot).filter(model_label=tiered.label, restored_at__gte=now - period)
        q &= backends.ops(hot).not_held_q(holds, tiered.model)
    return q


def eligible(tiered: TieredModel, now: datetime | None = None) -> models.QuerySet:
    """The hot rows of ``tiered`` that a run to cold would move now (the backlog)."""
    now = now or timezone.now()
    return models.QuerySet(tiered.model, using=tiering_settings.HOT).filter(
        eligible_q(tiered, Direction.TO_COLD, now))


def where_sql(model, alias: str, q: Q) -> tuple[str, list] | None:
    """``q`` as SQL on ``model``'s table in ``alias`` (columns as "table"."column"); None if it needs joins."""
    query = model._base_manager.using(alias).filter(q).query
    if len(query.alias_map) > 1:
        return None
    compiler = query.get_compiler(using=alias)
    try:
        sql, params = compiler.compile(query.where)
    except FullResultSet:
        return "1 = 1", []
    except EmptyResultSet:
        return "1 = 0", []
    return sql or "1 = 1", list(params)


@dataclass(frozen=True)
class Selection:
    """The rows a caller asks for: keys, a filter, everything, and for parallel workers a key range."""

    pks: Iterable[Any] | None = None
    where: Q | dict | None = None
    all_rows: bool = False
    key_range: tuple[Any, Any] | None = None

    def __post_init__(self) -> None:
        if self.pks is not None:  # any iterable of keys, read once
            object.__setattr__(self, "pks", list(self.pks))

    def check(self, direction: str, limit: int | None, batch_size: int | None) -> None:
        """Bad arguments raise ValueError before anything is written."""
        if direction not in Direction.values:
            raise ValueError(f"Unknown direction {direction!r}; use Direction.TO_COLD or Direction.TO_HOT")
        if direction == Direction.TO_HOT and self.pks is None and self.where is None and not self.all_rows:
            raise ValueError("A move to hot needs pks, where or all_rows=True")
        for name, value, least in (("limit", limit, 0), ("batch_size", batch_size, 1)):
            if value is not None and value < least:
                raise ValueError(f"{name} must be positive, not {value}")

    def q(self) -> Q:
        q = Q()
        if self.pks is not None:
            q &= Q(pk__in=self.pks)
        if self.where is not None:
            q &= self.where if isinstance(self.where, Q) else Q(**self.where)
        if self.key_range is not None:
            low, high = self.key_range
            if low is not None:
                q &= Q(pk__gte=low)
            if high is not None:
                q &= Q(pk__lt=high)
        return q

    def describe(self, limit: int | None, batch_size: int | None) -> dict:
        """The selection as the ledger records it (``MigrationRun.selection``)."""
        out: dict[str, Any] = {}
        if self.pks is not None:
            out["pks"] = [jsonable_key(p) for p in self.pks[:1000]]
        if self.where is not None:
            out["where"] = str(self.where)
        for key, value in (("all_rows", self.all_rows or None), ("limit", limit), ("batch_size", batch_size),
                           ("key_range", [jsonable_key(v) for v in self.key_range] if self.key_range else None)):
            if value is not None:
                out[key] = value
        return out
