"""Tiering policies answer one question: which rows of a model are cold?

A policy turns one timezone-aware ``now`` into a ``Q`` for the eligible rows.
The mover computes ``now`` once per run so that every batch of a run uses the
same cutoff. Rows whose policy field is NULL are never eligible.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from django.db.models import Model, Q
from django.utils import timezone


class Policy:
    """Base class; subclasses define ``fields`` and ``cold_q``."""

    promote_on_access: bool = False

    @property
    def fields(self) -> list[str]:
        raise NotImplementedError

    def cold_q(self, now: datetime) -> Q:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def access_policy(self) -> AccessPolicy | None:
        """The access part of the policy, if reads should record access."""
        return None

    def hold_period(self) -> timedelta | None:
        """How long a restored row is held in hot (a ``RestoredRow``), or None: a policy whose rows a
        restore does not make hot again by itself (a time policy) holds them; an access policy needs no
        hold, since a restore sets its access field to now."""
        return None

    def is_cold(self, instance: Model, now: datetime | None = None) -> bool:
        """Evaluate the policy on one loaded instance (no query)."""
        raise NotImplementedError


def _require_aware(now: datetime) -> datetime:
    if timezone.is_naive(now):
        raise ValueError("Tiering policies need a timezone-aware 'now'.")
    return now


class _AgePolicy(Policy):
    """Cold once ``field`` is older than ``age`` (shared by the time and access policies)."""

    field: str

    @property
    def age(self) -> timedelta:
        raise NotImplementedError

    @property
    def fields(self) -> list[str]:
        return [self.field]

    def cutoff(self, now: datetime) -> datetime:
        return _require_aware(now) - self.age

    def cold_q(self, now: datetime) -> Q:
        return Q(**{f"{self.field}__lt": self.cutoff(now)})

    def is_cold(self, instance: Model, now: datetime | None = None) -> bool:
        value = getattr(instance, self.field)
        return value is not None and value < self.cutoff(now or timezone.now())


@dataclass(frozen=True)
class TimePolicy(_AgePolicy):
    """Cold once ``field`` is older than ``older_than``."""

    field: str
    older_than: timedelta

    @property
    def age(self) -> timedelta:
        return self.older_than

    def hold_period(self) -> timedelta:
        return self.older_than

    def describe(self) -> str:
        return f"{self.field} older than {self.older_than.days} days"


@dataclass(frozen=True)
class AccessPolicy(_AgePolicy):
    """Cold once ``field`` (a last-accessed timestamp) is idle for ``idle_for``.

    Reads through the tiered manager record access on ``field``, coalesced to
    at most one write per row per ``TIERING["TOUCH_INTERVAL"]``. With
    ``promote_on_access`` a row read from cold is moved back to hot.
    """

    field: str
    idle_for: timedelta
    promote_on_access: bool = False

    @property
    def age(self) -> timedelta:
        return self.idle_for

    def access_policy(self) -> AccessPolicy:
        return self

    def describe(self) -> str:
        return f"{self.field} idle for {self.idle_for.days} days"


@dataclass(frozen=True)
class HybridPolicy(Policy):
    """Combine a time and an access policy.

    ``require="all"`` (the default, as in the reference design): cold only when
    the row is old *and* idle. ``require="any"``: cold when either holds.
    """

    time: TimePolicy
    access: AccessPolicy
    require: Literal["all", "any"] = "all"
    promote_on_access: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.require not in ("all", "any"):
            raise ValueError("HybridPolicy.require must be 'all' or 'any'.")
        object.__setattr__(self, "promote_on_access", self.access.promote_on_access)

    @property
    def fields(self) -> list[str]:
        return [self.time.field, self.access.field]

    def cold_q(self, now: datetime) -> Q:
        parts = self.time.cold_q(now), self.access.cold_q(now)
        return (parts[0] & parts[1]) if self.require == "all" else (parts[0] | parts[1])

    def is_cold(self, instance: Model, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        results = self.time.is_cold(instance, now), self.access.is_cold(instance, now)
        return all(results) if self.require == "all" else any(results)

    def access_policy(self) -> AccessPolicy:
        return self.access

    def hold_period(self) -> timedelta:
        return self.time.older_than

    def describe(self) -> str:
        joiner = " and " if self.require == "all" else " or "
        return self.time.describe() + joiner + self.access.describe()
