"""Promote on access and coalesced access tracking, on both backends."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine
from tests import triggers
from tests.factories import CustomerFactory, OrderFactory, OrderLineFactory
from tiering.access import tracker
from tiering.models import MigrationRun, RunState
from tiering.move import promote
from tiering.registry import registry


def updates(ctx) -> int:
    return sum(1 for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE"))


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_get_of_a_cold_customer_promotes_it(tiers):
    idle = timezone.now() - timedelta(days=60)
    CustomerFactory(_using=tiers.cold, id=500, email="idle@example.com", last_seen=idle)
    found = Customer.objects.get(email="idle@example.com")
    assert found._state.db == tiers.hot
    assert Customer.objects.hot().filter(pk=500).exists()
    assert not Customer.objects.cold().filter(pk=500).exists()
    # The access is recorded at once, or the next archive run would send it back.
    assert Customer.objects.hot().get(pk=500).last_seen > timezone.now() - timedelta(minutes=1)


@pytest.fixture
def cold_keeps_customers(tiers):
    """The cold database refuses to delete a customer: a promote fails at its delete."""
    with triggers.refusing(tiers.cold, "accounts_customer", "DELETE", "cold keeps customers"):
        yield


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_a_promote_that_fails_serves_the_cold_row_and_records_the_failure(tiers, cold_keeps_customers):
    idle = timezone.now() - timedelta(days=60)
    CustomerFactory(_using=tiers.cold, id=500, email="idle@example.com", last_seen=idle)
    found = Customer.objects.get(email="idle@example.com")  # the read answers; the promote's failure is the ledger's
    assert (found.pk, found._state.db) == (500, tiers.cold)
    run = MigrationRun.objects.using(tiers.hot).get(trigger="promote")
    assert run.state == RunState.FAILED and "cold keeps customers" in run.error
    assert [c.pk for c in Customer.objects.filter(pk=500).order_by("pk")] == [500]  # a copy left in hot: read once
    triggers.drop(tiers.cold, "accounts_customer")
    call_command("restore_hot", "--model", "accounts.Customer", "--pk", "500", "--no-input", stdout=io.StringIO())
    assert list(Customer.objects.hot().values_list("pk", flat=True)) == [500]  # the next restore settles it
    assert not Customer.objects.cold().exists()


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_promoting_an_order_brings_its_lines(tiers):
    order = OrderFactory(_using=tiers.cold, id=700, created_at=timezone.now() - timedelta(days=200))
    OrderLineFactory.create_batch(3, order=order)
    assert promote(registry.get(Order), [700]) == 1
    assert Order.objects.hot().filter(pk=700).exists() and not Order.objects.cold().filter(pk=700).exists()
    assert OrderLine.objects.using(tiers.hot).filter(order_id=700).count() == 3
    assert not OrderLine.objects.using(tiers.cold).filter(order_id=700).exists()


@pytest.mark.django_db(databases="__all__")
def test_repeated_gets_cause_at_most_one_update(tiers, settings):
    settings.TIERING = {**settings.TIERING, "TOUCH_INTERVAL": 300, "TOUCH_FLUSH_SECONDS": 3600}
    CustomerFactory(id=1, last_seen=timezone.now() - timedelta(days=2))
    with CaptureQueriesContext(connections[tiers.hot]) as ctx:
        for _ in range(20):
            Customer.objects.get(pk=1)
        assert updates(ctx) == 0 and tracker.pending() == 1  # buffered, not written per read
        tracker.flush()
        for _ in range(20):
            Customer.objects.get(pk=1)  # fresh now: nothing more to write
        tracker.flush()
    assert updates(ctx) == 1
    assert Customer.objects.hot().get(pk=1).last_seen > timezone.now() - timedelta(minutes=1)


@pytest.mark.django_db(databases="__all__")
def test_touches_of_many_rows_are_one_update(tiers, settings):
    settings.TIERING = {**settings.TIERING, "TOUCH_FLUSH_SECONDS": 3600}
    stale = timezone.now() - timedelta(days=3)
    for i in range(1, 31):
        CustomerFactory(id=i, last_seen=stale)
    with CaptureQueriesContext(connections[tiers.hot]) as ctx:
        for i in range(1, 31):
            Customer.objects.get(pk=i)
        assert tracker.flush() == 30
    assert updates(ctx) == 1
    assert not Customer.objects.hot().filter(last_seen__lt=timezone.now() - timedelta(days=1)).exists()


@pytest.mark.django_db(databases="__all__")
def test_a_full_buffer_flushes(tiers, settings):
    settings.TIERING = {**settings.TIERING, "TOUCH_BUFFER_SIZE": 5, "TOUCH_FLUSH_SECONDS": 3600}
    for i in range(1, 6):
        CustomerFactory(id=i, last_seen=timezone.now() - timedelta(days=3))
    for i in range(1, 5):
        Customer.objects.get(pk=i)
    assert tracker.pending() == 4
    Customer.objects.get(pk=5)
    assert tracker.pending() == 0
    assert Customer.objects.hot().filter(last_seen__gt=timezone.now() - timedelta(minutes=1)).count() == 5


@pytest.mark.django_db(databases="__all__")
def test_touches_are_flushed_at_request_end(tiers, settings, client):
    settings.TIERING = {**settings.TIERING, "TOUCH_FLUSH_SECONDS": 3600}
    CustomerFactory(id=9, last_seen=timezone.now() - timedelta(days=3))
    Customer.objects.get(pk=9)
    assert tracker.pending() == 1
    client.get("/no-such-page-for-the-touch-test/")  # any request ends with request_finished
    assert tracker.pending() == 0
    assert Customer.objects.hot().get(pk=9).last_seen > timezone.now() - timedelta(minutes=1)
