"""The ``shop`` fixture: the same customers and orders in the tiered models and in their one-table oracle, with
part of each tiered model moved to cold by the real engine (``migrate_cold``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order
from tests.conftest import Tiers
from tests.ecosystem.models import PlainCustomer, PlainOrder

NAMES = ["Ann", "Bob", "Ann", "Cy", "Bob", "Dee", "Ann", "Eve", "Cy", "Fay"]  # ties in customer__name
DOMAINS = ["alpha.example", "Beta.example", "gamma.example"]  # mixed case: icontains must ignore it
# Order dates, several orders on each instant (ties); Order's policy moves those older than 90 days.
ORDER_DAYS = [1, 5, 5.5, 20, 45, 80, 95, 120, 150, 200, 260, 300, 365, 400, 500]
NOTES = [None, "", "gift wrap", "deliver to alpha dock", "Leave at door", "call first"]
STATUSES = ["new", "paid", "shipped", "cancelled"]


@dataclass(frozen=True)
class Shop:
    tiers: Tiers
    now: datetime
    hot_customers: set[int]
    cold_customers: set[int]
    hot_orders: set[int]
    cold_orders: set[int]


def one_tier(model, alias: str) -> QuerySet:
    return QuerySet(model).using(alias)  # a plain queryset: no tiered behaviour


def values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.fixture
def shop(tiers) -> Shop:
    """10 customers (the even ids idle: cold) and 60 orders (36 older than 90 days: cold), every order of a
    hot customer or a cold one on either side; NULL and empty notes, ties in dates, statuses, totals, names."""
    now = timezone.now()
    for pk in range(1, 11):
        idle = pk % 2 == 0
        customer = Customer.objects.create(
            pk=pk,
            email=f"{NAMES[pk - 1].lower()}{pk}@{DOMAINS[pk % 3]}",
            name=NAMES[pk - 1],
            last_seen=now - (timedelta(days=30 + 10 * pk) if idle else timedelta(hours=pk)),
            created_at=now - timedelta(days=100 * (pk % 3)),
        )
        PlainCustomer.objects.create(**values(customer))
    for pk in range(1, 61):
        order = Order.objects.create(
            pk=pk,
            customer_id=(7 * pk) % 10 + 1,
            created_at=now - timedelta(days=ORDER_DAYS[pk % len(ORDER_DAYS)]),
            status=STATUSES[pk % 4],
            total=Decimal(5 * ((13 * pk) % 9)) + Decimal("0.50"),
            note=NOTES[pk % len(NOTES)],
        )
        PlainOrder.objects.create(**values(order))
    for label in ("accounts.Customer", "orders.Order"):
        call_command("migrate_cold", "--model", label, "--no-input", stdout=StringIO(), stderr=StringIO())
    shop = Shop(
        tiers, now,
        *(set(one_tier(Customer, alias).values_list("pk", flat=True)) for alias in (tiers.hot, tiers.cold)),
        *(set(one_tier(Order, alias).values_list("pk", flat=True)) for alias in (tiers.hot, tiers.cold)),
    )
    # What the tests rely on: the oracle is one table, in hot only; the engine moved what the policies call cold;
    # relations cross the tiers.
    for model in (PlainCustomer, PlainOrder):
        assert model._meta.db_table not in connections[tiers.cold].introspection.table_names()
        assert one_tier(model, tiers.hot).count() == (10 if model is PlainCustomer else 60)
    assert shop.cold_customers == {2, 4, 6, 8, 10} and shop.hot_customers == {1, 3, 5, 7, 9}
    assert len(shop.cold_orders) == 36 and len(shop.hot_orders) == 24 and not shop.hot_orders & shop.cold_orders
    for alias in (tiers.hot, tiers.cold):
        customers = set(one_tier(Order, alias).values_list("customer_id", flat=True))
        assert customers & shop.hot_customers and customers & shop.cold_customers, alias
        assert one_tier(Order, alias).filter(note__isnull=True).exists(), alias
    return shop
