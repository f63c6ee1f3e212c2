"""Shared fixtures: run a test against each real backend pair."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings

PAIRS = {"sqlite": ("default", "cold"), "postgresql": ("pg_hot", "pg_cold")}


@dataclass(frozen=True)
class Tiers:
    backend: str
    hot: str
    cold: str


@pytest.fixture(params=list(PAIRS))
def tiers(request, settings):
    """Point TIERING at one real backend pair (SQLite files or PostgreSQL)."""
    backend = request.param
    hot, cold = PAIRS[backend]
    if hot not in django_settings.DATABASES:
        pytest.skip(f"PostgreSQL unavailable: {django_settings.PG_SKIP_REASON}")
    settings.TIERING = {**django_settings.TIERING, "HOT": hot, "COLD": cold}
    from tiering.access import tracker

    tracker.discard()
    yield Tiers(backend, hot, cold)
    tracker.discard()
