"""``restore_hot --filter`` through the customer restores exactly the orders the one-table oracle's join names,
wherever each customer lives."""
from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from orders.models import Order
from tests.ecosystem.conftest import one_tier
from tests.ecosystem.models import PlainOrder

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.mark.parametrize("expression, lookup, crossing", [
    ("customer__name__in=Ann,Bob", {"customer__name__in": ["Ann", "Bob"]}, True),
    ("customer__email__icontains=BETA", {"customer__email__icontains": "BETA"}, True),
    ("customer__name__startswith=A", {"customer__name__startswith": "A"}, False),
    ("customer__last_seen__lt=2000-01-01", {"customer__last_seen__lt": datetime(2000, 1, 1, tzinfo=UTC)}, False),
])
def test_restore_by_a_filter_through_the_customer(shop, expression, lookup, crossing):
    matching = set(PlainOrder.objects.filter(**lookup).values_list("pk", flat=True))  # one table, one join
    restored = matching & shop.cold_orders
    if crossing and not (shop.tiers.vendor == "mysql" and "__icontains" in expression):  # MySQL's binary collation:
        # its i-lookups compare case-sensitively, on one table as across tiers (README, MySQL and MariaDB)
        customers = set(PlainOrder.objects.filter(pk__in=restored).values_list("customer_id", flat=True))
        assert customers & shop.hot_customers and customers & shop.cold_customers  # both kinds of crossing
    out = StringIO()
    call_command("restore_hot", "--model", "orders.Order", "--filter", expression, "--dry-run", stdout=out)
    assert f"{len(restored):,} " in out.getvalue() or not restored
    call_command("restore_hot", "--model", "orders.Order", "--filter", expression, "--no-input",
                 stdout=StringIO(), stderr=StringIO())
    hot = set(one_tier(Order, shop.tiers.hot).values_list("pk", flat=True))
    cold = set(one_tier(Order, shop.tiers.cold).values_list("pk", flat=True))
    assert hot == shop.hot_orders | restored
    assert cold == shop.cold_orders - restored
    assert not hot & cold
