"""TieredSaveMixin: saving an instance whose row moved after it was loaded updates the row where it is now,
instead of Django's fallback INSERT of a second copy in the old tier."""
from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import Order, OrderLine
from tests.move.helpers import assert_lines_follow_orders, seed_orders, snapshot
from tiering import move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg"]


def tier_of(model, pk, tiers) -> list[str]:
    return [alias for alias in (tiers.hot, tiers.cold) if model._base_manager.using(alias).filter(pk=pk).exists()]


def test_saving_an_instance_archived_since_it_was_loaded_updates_the_cold_row(tiers):
    seed_orders(tiers.hot, 10, lines=2)
    order = Order.objects.get(pk=3)
    line = OrderLine.objects.using(tiers.hot).get(pk=5)  # order 3's first line
    assert order._state.db == tiers.hot and line.order_id == 3
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 10
    order.note = "written after the archive"
    order.save()
    line.sku = "CHANGED"
    line.save()
    assert tier_of(Order, 3, tiers) == [tiers.cold] and tier_of(OrderLine, 5, tiers) == [tiers.cold]
    snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert Order.objects.get(pk=3).note == "written after the archive"
    assert OrderLine.objects.using(tiers.cold).get(pk=5).sku == "CHANGED"
    assert order._state.db == tiers.cold and line._state.db == tiers.cold  # the instances follow their rows
    assert [line.pk for line in order.lines.all()] == [5, 6]  # read from the tier the order is in
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_saving_an_instance_restored_since_it_was_loaded_updates_the_hot_row(tiers):
    seed_orders(tiers.hot, 10, lines=1)
    move.move(registry.get(Order), Direction.TO_COLD)
    order = Order.objects.get(pk=4)
    assert order._state.db == tiers.cold
    move.move(registry.get(Order), Direction.TO_HOT, pks=[4])
    order.total = Decimal("99.95")
    order.save(update_fields=["total"])
    assert tier_of(Order, 4, tiers) == [tiers.hot]
    snapshot(tiers.hot, tiers.cold)
    assert Order.objects.get(pk=4).total == Decimal("99.95") and order._state.db == tiers.hot


def test_a_saved_row_that_is_gone_from_both_tiers_is_inserted_as_django_does(tiers):
    """Deleted meanwhile, not moved: Django's UPDATE-then-INSERT stands (the instance is written back)."""
    seed_orders(tiers.hot, 3, lines=0)
    order = Order.objects.get(pk=2)
    Order.objects.filter(pk=2).delete()
    order.save()
    assert tier_of(Order, 2, tiers) == [tiers.hot]


def test_a_new_instance_with_a_key_is_not_sent_to_the_other_tier(tiers):
    """``_state.adding``: Django's own save (an UPDATE of that key in hot, else an INSERT there), even when
    the key exists in cold: the mixin redirects only instances that were loaded from a tier."""
    seed_orders(tiers.cold, 3, lines=0)
    before = Order.objects.using(tiers.cold).get(pk=2).note
    Order(pk=2, customer_id=1, note="new").save()
    assert Order.objects.using(tiers.hot).get(pk=2).note == "new"
    assert Order.objects.using(tiers.cold).get(pk=2).note == before

