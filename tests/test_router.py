"""TieringRouter: writes, cold saves, allow_migrate and the tables each tier really has."""
from __future__ import annotations

import pytest
from django.db import connections

from orders.models import Order
from tests.factories import OrderFactory
from tiering.router import TieringRouter

pytestmark = pytest.mark.django_db(databases="__all__")

BOTH = {"accounts_customer", "orders_order", "orders_orderline", "orders_payment"}
HOT_ONLY = {"auth_user", "django_content_type", "tiering_migrationrun", "tiering_migrationbatch"}


def test_new_rows_are_written_to_hot(tiers):
    order = OrderFactory()
    assert order._state.db == tiers.hot and not Order.objects.cold().exists()


def test_a_row_loaded_from_cold_is_saved_back_to_cold(tiers):
    OrderFactory(_using=tiers.cold, id=42)
    row = Order.objects.get(pk=42)
    assert TieringRouter().db_for_write(Order, instance=row) == tiers.cold
    row.note = "edited"
    row.save()
    assert Order.objects.cold().get(pk=42).note == "edited" and not Order.objects.hot().exists()


def test_allow_migrate(tiers):
    router = TieringRouter()
    for app, model in (("orders", "order"), ("orders", "orderline"), ("orders", "payment"), ("accounts", "customer")):
        assert router.allow_migrate(tiers.hot, app, model) is True
        assert router.allow_migrate(tiers.cold, app, model) is True
    for app, model in (("auth", "user"), ("tiering", "migrationrun"), ("contenttypes", "contenttype")):
        assert router.allow_migrate(tiers.hot, app, model) is True
        assert router.allow_migrate(tiers.cold, app, model) is False
    assert router.allow_migrate(tiers.cold, "orders", None) is False  # RunPython without a model: hot only


def test_migrated_tables_in_each_tier(tiers):
    """The test databases were built by `migrate --database=<alias>`: look at what each holds."""
    hot = set(connections[tiers.hot].introspection.table_names())
    cold = set(connections[tiers.cold].introspection.table_names())
    assert BOTH <= hot and HOT_ONLY <= hot
    assert BOTH <= cold
    assert not (HOT_ONLY & cold), HOT_ONLY & cold
