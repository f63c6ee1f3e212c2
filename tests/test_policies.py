"""The policies answer which rows are cold, and how long a restored row is held in hot."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.models import Order
from tiering.policies import AccessPolicy, HybridPolicy, Policy, TimePolicy

NOW = timezone.now()
TIME = TimePolicy("created_at", older_than=timedelta(days=90))
ACCESS = AccessPolicy("last_accessed", idle_for=timedelta(days=30))


def test_hold_periods():
    """A restore sets an access field to now, which keeps the row hot by itself; a time part needs a hold."""
    assert TIME.hold_period() == timedelta(days=90)
    assert ACCESS.hold_period() is None
    assert HybridPolicy(TIME, ACCESS).hold_period() == timedelta(days=90)
    assert HybridPolicy(TIME, ACCESS, require="any").hold_period() == timedelta(days=90)
    assert Policy().hold_period() is None  # a project's own policy holds nothing unless it says so


def test_cold_q_and_is_cold_agree():
    old, young = Order(created_at=NOW - timedelta(days=91)), Order(created_at=NOW - timedelta(days=89))
    assert TIME.is_cold(old, NOW) and not TIME.is_cold(young, NOW)
    assert TIME.cold_q(NOW).children == [("created_at__lt", NOW - timedelta(days=90))]
    assert not TIME.is_cold(Order(created_at=None), NOW)  # NULL is never cold


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        TIME.cold_q(NOW.replace(tzinfo=None))


def test_hybrid_combines_its_parts():
    both, either = HybridPolicy(TIME, ACCESS), HybridPolicy(TIME, ACCESS, require="any")
    assert both.fields == ["created_at", "last_accessed"] and both.access_policy() is ACCESS
    assert str(both.cold_q(NOW)).count("AND") and str(either.cold_q(NOW)).count("OR")
    with pytest.raises(ValueError, match="'all' or 'any'"):
        HybridPolicy(TIME, ACCESS, require="some")
