"""Filters and select_related() through a relation to an independently tiered model, in both its tiers.

Customers and orders each live in either tier, in every combination; each answer is checked against the
same question asked of all rows in Python (the one-table oracle).
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine
from tiering.models import MigrationRun
from tiering.query import TieringQueryError

pytestmark = pytest.mark.django_db(databases="__all__")

NAMES = ["Ada", "Alan", "Anna", "Bob", "Grace", "Ådne", "Zoë", "Barbara"]


@pytest.fixture
def world(tiers):
    """8 customers (even ids hot, odd cold), 48 orders: each customer has orders in both tiers."""
    now = timezone.now()
    customers = {}
    for i, name in enumerate(NAMES, start=1):
        alias = tiers.hot if i % 2 == 0 else tiers.cold
        customers[i] = Customer.objects.using(alias).create(
            pk=i, name=name, email=f"{name.lower()}{i}@example.{'org' if i % 3 else 'com'}",
            last_seen=now - timedelta(days=1 if alias == tiers.hot else 90))
    orders = {}
    pk = 0
    for customer_id in customers:
        for n in range(6):
            pk += 1
            alias = tiers.hot if n % 2 == 0 else tiers.cold
            orders[pk] = Order.objects.using(alias).create(
                pk=pk, customer_id=customer_id, total=Decimal(pk), status="paid" if n % 3 else "new",
                created_at=now - timedelta(days=n if alias == tiers.hot else 100 + n))
            OrderLine.objects.using(alias).create(pk=pk, order_id=pk, sku=f"SKU{n}", price=Decimal(n))
    return customers, orders


def order_ids(qs):
    return sorted(qs.values_list("pk", flat=True))


def oracle(world, predicate):
    customers, orders = world
    return sorted(pk for pk, o in orders.items() if predicate(o, customers[o.customer_id]))


def test_forward_filters_answer_in_both_tiers(world, tiers):
    # as on one database: MySQL's i-lookups follow the collation, and E020 asks for a binary one
    fold = str if tiers.vendor == "mysql" else str.lower
    assert order_ids(Order.objects.filter(customer__email__icontains="ADA")) == oracle(
        world, lambda o, c: fold("ADA") in fold(c.email))
    assert order_ids(Order.objects.filter(customer__name__startswith="A")) == oracle(
        world, lambda o, c: c.name.startswith("A"))
    assert order_ids(Order.objects.filter(customer__email__endswith=".com", total__gt=20)) == oracle(
        world, lambda o, c: c.email.endswith(".com") and o.total > 20)
    assert order_ids(Order.objects.exclude(customer__name__startswith="A")) == oracle(
        world, lambda o, c: not c.name.startswith("A"))
    assert order_ids(Order.objects.filter(Q(status="new") | Q(customer__name="Bob"))) == oracle(
        world, lambda o, c: o.status == "new" or c.name == "Bob")
    assert Order.objects.filter(customer__name__startswith="A").count() == len(
        oracle(world, lambda o, c: c.name.startswith("A")))
    assert Order.objects.filter(customer__name="nobody").count() == 0
    assert not Order.objects.filter(customer__name="nobody").exists()
    assert order_ids(Order.objects.exclude(customer__name="nobody")) == oracle(world, lambda o, c: True)


def test_one_tier_of_orders_still_finds_customers_in_the_other(world, tiers):
    expected = [pk for pk in oracle(world, lambda o, c: c.name == "Bob") if world[1][pk]._state.db == tiers.cold]
    assert order_ids(Order.objects.cold().filter(customer__name="Bob")) == expected
    assert world[0][4]._state.db == tiers.hot  # Bob (4) is hot, his cold orders are found


def test_conditional_aggregates_through_the_relation(world):
    counted = Order.objects.aggregate(
        ada=Count("pk", filter=Q(customer__name="Ada")), big=Sum("total", filter=Q(customer__name__in=["Bob", "Zoë"])))
    assert counted["ada"] == len(oracle(world, lambda o, c: c.name == "Ada"))
    assert counted["big"] == sum(Decimal(pk) for pk in oracle(world, lambda o, c: c.name in ("Bob", "Zoë")))


def test_ordered_pages_and_get(world):
    qs = Order.objects.filter(customer__name__in=["Ada", "Grace"]).order_by("-total")
    expected = sorted(oracle(world, lambda o, c: c.name in ("Ada", "Grace")), key=lambda pk: -pk)
    assert [o.pk for o in qs] == expected
    assert [o.pk for o in qs[2:5]] == expected[2:5]
    assert [o.pk for o in qs.iterator(chunk_size=3)] == expected
    only = oracle(world, lambda o, c: c.name == "Zoë" and o.total == 40)
    assert Order.objects.get(customer__name="Zoë", total=40).pk == only[0]
    with pytest.raises(Order.DoesNotExist):
        Order.objects.get(customer__name="Zoë", total=1)


def test_related_keys_are_read_once_per_query(world, tiers):
    qs = Order.objects.filter(customer__name="Ada").order_by("created_at")
    with CaptureQueriesContext(connections[tiers.hot]) as hot, CaptureQueriesContext(connections[tiers.cold]) as cold:
        rows = list(qs[:3])
    assert len(rows) == 3
    captured = [*hot.captured_queries, *cold.captured_queries]
    customer_reads = [q["sql"] for q in captured if "accounts_customer" in q["sql"]]
    assert len(customer_reads) == 2  # one per tier of customers, whatever the merge asked


def test_reverse_relations_and_nesting(world):
    customers, orders = world
    paid_big = {o.customer_id for o in orders.values() if o.status == "paid" and o.total > 40}
    assert sorted(Customer.objects.filter(orders__status="paid", orders__total__gt=40).values_list(
        "pk", flat=True)) == sorted(paid_big)
    never_new_big = {c for c in customers if not any(
        o.customer_id == c and o.status == "new" and o.total > 40 for o in orders.values())}
    assert sorted(Customer.objects.exclude(orders__status="new", orders__total__gt=40).values_list(
        "pk", flat=True)) == sorted(never_new_big)
    # through a child of the other model: order lines live with their order
    assert sorted(Customer.objects.filter(orders__lines__sku="SKU5").values_list("pk", flat=True)) == sorted(customers)
    assert Customer.objects.filter(orders__isnull=True).count() == 0
    assert Customer.objects.filter(orders__isnull=False).count() == len(customers)
    # two hops: orders of customers who have an order of 48
    assert order_ids(Order.objects.filter(customer__orders__total=48)) == oracle(world, lambda o, c: c.pk == 8)


def test_a_tiered_queryset_as_value(world):
    picked = Customer.objects.filter(name__in=["Ada", "Bob"])  # Ada cold, Bob hot
    expected = oracle(world, lambda o, c: c.name in ("Ada", "Bob"))
    assert order_ids(Order.objects.filter(customer__in=picked)) == expected
    assert order_ids(Order.objects.filter(customer_id__in=picked.values("pk"))) == expected
    assert order_ids(Order.objects.filter(customer__in=picked.values_list("id", flat=True))) == expected
    # the same model's own queryset is answered tier by tier
    assert order_ids(Order.objects.filter(pk__in=Order.objects.filter(total__lt=4))) == [1, 2, 3]


def test_the_queryset_is_lazy_and_re_evaluated(world, tiers):
    qs = Order.objects.filter(customer__name="Nadia")
    assert qs.count() == 0
    Customer.objects.using(tiers.cold).create(pk=50, name="Nadia", email="n@example.org")
    Order.objects.using(tiers.hot).create(pk=500, customer_id=50)
    assert order_ids(qs.all()) == [500]


def test_select_related_reads_the_customer_from_its_tier(world, tiers):
    customers, orders = world
    rows = list(Order.objects.select_related("customer").order_by("pk"))
    assert [o.pk for o in rows] == sorted(orders)
    with CaptureQueriesContext(connections[tiers.hot]) as hot, CaptureQueriesContext(connections[tiers.cold]) as cold:
        names = [o.customer.name for o in rows]
    assert len(hot) == len(cold) == 0
    assert names == [customers[o.customer_id].name for o in rows]
    assert {o.customer._state.db for o in rows} == {tiers.hot, tiers.cold}
    one = Order.objects.select_related("customer").get(pk=2)
    assert one.customer.name == customers[one.customer_id].name
    pinned = list(Order.objects.cold().select_related("customer"))
    assert len(pinned) == sum(1 for o in orders.values() if o._state.db == tiers.cold)
    assert all(o.customer.pk == o.customer_id for o in pinned)
    streamed = list(Order.objects.select_related().iterator(chunk_size=5))
    assert {o.customer.name for o in streamed} == set(NAMES)


def test_what_cannot_be_answered_on_the_key_is_refused(world):
    with pytest.raises(TieringQueryError, match="follows a relation"):
        list(Order.objects.order_by("customer__name"))
    with pytest.raises(TieringQueryError, match="accounts.Customer"):
        list(Order.objects.values("customer__email"))
    with pytest.raises(TieringQueryError, match="accounts.Customer"):
        Order.objects.filter(Exists(Customer.objects.filter(pk=OuterRef("customer_id"), name="Ada"))).count()
    with pytest.raises(TieringQueryError, match="accounts.Customer"):
        list(Order.objects.filter(customer__in=Customer.objects.filter(name="Ada")[:1]))


def test_restore_hot_filter_through_the_customer_restores_exactly_the_matching_orders(world, tiers):
    customers, orders = world
    expected = oracle(world, lambda o, c: c.name.startswith("A"))
    cold_expected = [pk for pk in expected if orders[pk]._state.db == tiers.cold]
    assert cold_expected and any(customers[orders[pk].customer_id]._state.db == tiers.hot for pk in cold_expected)
    call_command("restore_hot", "--model", "orders.Order", "--filter", "customer__name__startswith=A",
                 "--dry-run", verbosity=0)
    call_command("restore_hot", "--model", "orders.Order", "--filter", "customer__name__startswith=A",
                 "--no-input", verbosity=0)
    assert order_ids(Order.objects.cold().filter(customer__name__startswith="A")) == []
    hot_ids = set(Order.objects.hot().values_list("pk", flat=True))
    assert set(expected) <= hot_ids
    untouched = [pk for pk, o in orders.items() if o._state.db == tiers.cold and pk not in expected]
    assert order_ids(Order.objects.cold()) == sorted(untouched)
    run = MigrationRun.objects.using(tiers.hot).latest("pk")
    assert run.rows == len(cold_expected)
    # their lines came along
    assert OrderLine.objects.using(tiers.hot).filter(order_id__in=cold_expected).count() == len(cold_expected)


def test_restore_hot_filter_that_cannot_be_answered_is_one_line(world):
    with pytest.raises(CommandError, match="--filter 'customer__orders__nosuch=1'"):
        call_command("restore_hot", "--model", "orders.Order", "--filter", "customer__orders__nosuch=1",
                     "--no-input", verbosity=0)
