"""The tiered read path, case by case, on both backends (the property test is the oracle)."""
from __future__ import annotations

import tracemalloc
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Avg, Count, Max, Min, StdDev, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order, OrderLine
from tests.factories import CustomerFactory, OrderFactory, OrderLineFactory
from tiering.query import TieringQueryError

pytestmark = pytest.mark.django_db(databases="__all__")

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "mariadb", "mariadb_db"]  # + MariaDB


def order(alias, pk, days_ago=0, **kwargs):
    kwargs.setdefault("customer_id", 1)
    return Order.objects.using(alias).create(
        pk=pk, created_at=timezone.now() - timedelta(days=days_ago), **kwargs
    )


@pytest.fixture
def split(tiers):
    """Orders 1-3 in hot (recent), 4-6 in cold (old)."""
    hot = [order(tiers.hot, pk, days_ago=pk, total=Decimal(pk)) for pk in (1, 2, 3)]
    cold = [order(tiers.cold, pk, days_ago=100 + pk, total=Decimal(pk * 10)) for pk in (4, 5, 6)]
    return hot, cold


def queries(alias):
    return CaptureQueriesContext(connections[alias])


def test_get_reads_hot_first_then_cold(tiers, split):
    with queries(tiers.hot) as h, queries(tiers.cold) as c:
        hit = Order.objects.get(pk=2)
    assert hit._state.db == tiers.hot and len(h) == 1 and len(c) == 0
    with queries(tiers.hot) as h, queries(tiers.cold) as c:
        fallback = Order.objects.get(pk=5)
    assert fallback._state.db == tiers.cold and len(h) == 1 and len(c) == 1
    with pytest.raises(Order.DoesNotExist):
        Order.objects.get(pk=99)


def test_get_multiple_within_a_tier_is_reported(tiers, split):
    with pytest.raises(Order.MultipleObjectsReturned):
        Order.objects.get(total__lt=3)  # two hot rows
    with pytest.raises(Order.MultipleObjectsReturned):
        Order.objects.get(total__gt=40)  # two cold rows


def test_hot_cold_and_using_read_one_tier(tiers, split):
    assert sorted(Order.objects.hot().values_list("pk", flat=True)) == [1, 2, 3]
    assert sorted(Order.objects.cold().values_list("pk", flat=True)) == [4, 5, 6]
    assert sorted(Order.objects.using(tiers.cold).values_list("pk", flat=True)) == [4, 5, 6]
    assert Order.objects.using(tiers.cold).filter(pk=1).count() == 0
    assert sorted(Order.objects.values_list("pk", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_count_exists_aggregate_over_both_tiers(tiers, split):
    assert Order.objects.count() == 6
    assert Order.objects.filter(total__gt=30).exists()  # only in cold
    assert not Order.objects.filter(total__gt=1000).exists()
    result = Order.objects.aggregate(
        n=Count("id"), s=Sum("total"), lo=Min("total"), hi=Max("total"), avg=Avg("total")
    )
    assert result == {"n": 6, "s": Decimal("156"), "lo": Decimal("1"), "hi": Decimal("60"), "avg": Decimal("26")}
    # 3 hot rows (sum 6) and 2 cold rows (sum 90): 96 / 5, not the mean of the tier means (23.5).
    assert Order.objects.exclude(pk=6).aggregate(avg=Avg("total"))["avg"] == Decimal("19.2")
    assert Order.objects.filter(total__gt=100).aggregate(a=Avg("total"), s=Sum("total")) == {"a": None, "s": None}


def test_aggregates_that_cannot_be_combined_are_refused(tiers, split):
    with pytest.raises(TieringQueryError, match="StdDev"):
        Order.objects.aggregate(StdDev("total"))
    with pytest.raises(TieringQueryError, match="distinct"):
        Order.objects.aggregate(Count("total", distinct=True))
    with pytest.raises(TieringQueryError, match="distinct"):
        Order.objects.aggregate(Sum("total", distinct=True))
    with pytest.raises(TieringQueryError, match="Grouped"):
        list(Order.objects.values("status").annotate(n=Count("id")))
    with pytest.raises(TieringQueryError, match="union"):
        list(Order.objects.filter(pk=1).union(Order.objects.filter(pk=5)))
    # One tier answers whatever Django answers.
    assert Order.objects.hot().aggregate(n=Count("total", distinct=True)) == {"n": 3}


def test_update_and_delete_act_on_both_tiers(tiers, split):
    OrderLine.objects.using(tiers.cold).create(order_id=5, sku="A", price=1)
    OrderLine.objects.using(tiers.hot).create(order_id=2, sku="B", price=1)
    assert Order.objects.filter(total__in=[2, 50]).update(status="shipped") == 2
    assert Order.objects.hot().get(pk=2).status == "shipped"
    assert Order.objects.cold().get(pk=5).status == "shipped"
    deleted, per_model = Order.objects.filter(pk__in=[2, 5]).delete()
    assert deleted == 4 and per_model == {"orders.Order": 2, "orders.OrderLine": 2}
    assert not OrderLine.objects.using(tiers.cold).exists() and not OrderLine.objects.using(tiers.hot).exists()
    assert Order.objects.count() == 4


def test_in_bulk_first_last_latest_earliest(tiers, split):
    found = Order.objects.in_bulk([1, 5, 99])
    assert set(found) == {1, 5} and found[5]._state.db == tiers.cold
    assert set(Order.objects.in_bulk()) == {1, 2, 3, 4, 5, 6}
    assert Order.objects.order_by("created_at").first().pk == 6  # oldest, in cold
    assert Order.objects.order_by("created_at").last().pk == 1
    assert Order.objects.first().pk == 1 and Order.objects.last().pk == 6
    assert Order.objects.earliest("created_at").pk == 6
    assert Order.objects.latest("created_at").pk == 1


def test_slices_cross_the_tier_boundary(tiers, split):
    newest_first = Order.objects.order_by("-created_at")
    assert [o.pk for o in newest_first[2:5]] == [3, 4, 5]
    assert newest_first[3].pk == 4
    assert list(newest_first.values_list("pk", flat=True)[1:]) == [2, 3, 4, 5, 6]
    assert list(newest_first.reverse().values_list("pk", flat=True)[:2]) == [6, 5]


def test_row_in_both_tiers_during_a_move_is_listed_once(tiers, split):
    copy = Order.objects.using(tiers.cold).get(pk=4)
    copy.save(using=tiers.hot, force_insert=True)
    assert list(Order.objects.order_by("-created_at").values_list("pk", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_only_and_defer_do_not_read_keys_row_by_row(tiers, split):
    with queries(tiers.hot) as h, queries(tiers.cold) as c:
        rows = list(Order.objects.only("id").order_by("-created_at"))
    assert [o.pk for o in rows] == [1, 2, 3, 4, 5, 6]
    assert len(h) + len(c) <= 8


def _peak(rows: int) -> int:
    """Peak traced memory of streaming every row, ordered (merged) and unordered."""
    def stream() -> int:
        seen = 0
        for _ in Order.objects.order_by("created_at").iterator(chunk_size=200):
            seen += 1
        for _ in Order.objects.iterator(chunk_size=200):  # unordered: hot then cold, streamed
            seen += 1
        return seen

    stream()  # warm up: first-use allocations (cursors, caches) are not per-row memory
    tracemalloc.start()
    try:
        assert stream() == 2 * rows
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _seed(tiers, start: int, n: int) -> None:
    now = timezone.now()
    rows = [Order(pk=start + i, customer_id=1, created_at=now - timedelta(minutes=start + i), note="x" * 200)
            for i in range(n)]
    Order.objects.using(tiers.hot).bulk_create(rows[: n // 8])
    Order.objects.using(tiers.cold).bulk_create(rows[n // 8 :])


def test_iterator_memory_stays_flat_as_rows_grow(tiers):
    if tiers.vendor == "mysql":
        pytest.skip("mysqlclient holds a whole result client-side: Django's iterator() does not stream on MySQL")
    _seed(tiers, 1, 2000)
    small = _peak(2000)
    _seed(tiers, 10_000, 6000)  # now 4x the rows
    large = _peak(8000)
    assert Order.objects.count() == 8000
    assert large < small * 1.5, (small, large)


def test_prefetch_related_lines_reads_each_tier(tiers, split):
    OrderLine.objects.using(tiers.hot).create(order_id=1, sku="H", price=1)
    OrderLine.objects.using(tiers.cold).create(order_id=4, sku="C1", price=1)
    OrderLine.objects.using(tiers.cold).create(order_id=4, sku="C2", price=1)
    rows = list(Order.objects.order_by("pk").prefetch_related("lines"))
    with queries(tiers.hot) as h, queries(tiers.cold) as c:
        skus = {o.pk: sorted(line.sku for line in o.lines.all()) for o in rows}
    assert len(h) == len(c) == 0
    assert skus == {1: ["H"], 2: [], 3: [], 4: ["C1", "C2"], 5: [], 6: []}
    streamed = {o.pk: len(o.lines.all()) for o in Order.objects.prefetch_related("lines").iterator(chunk_size=2)}
    assert streamed == {1: 1, 2: 0, 3: 0, 4: 2, 5: 0, 6: 0}


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_foreign_key_to_a_cold_customer_resolves(tiers):
    # Customer promotes on access, and a promotion commits in both tiers: transaction=True.
    customer = CustomerFactory(_using=tiers.cold, last_seen=timezone.now())
    hot_order = OrderFactory(customer=customer)
    assert hot_order._state.db == tiers.hot
    fresh = Order.objects.get(pk=hot_order.pk)
    assert fresh.customer.email == customer.email
    assert [o.customer.pk for o in Order.objects.filter(pk=hot_order.pk).prefetch_related("customer")] == [customer.pk]


def test_reverse_relation_reads_the_parent_tier(tiers):
    cold_order = OrderFactory(_using=tiers.cold, id=1000)  # ids are per database: keep them apart
    OrderLineFactory(order=cold_order, sku="COLD")
    hot_order = OrderFactory()
    OrderLineFactory(order=hot_order, sku="HOT")
    loaded = Order.objects.get(pk=cold_order.pk)
    with queries(tiers.hot) as h, queries(tiers.cold) as c:
        assert [line.sku for line in loaded.lines.all()] == ["COLD"]
    assert len(h) == 0 and len(c) == 1
    assert [line.sku for line in Order.objects.get(pk=hot_order.pk).lines.all()] == ["HOT"]


def test_a_join_to_a_child_stays_a_join(tiers, split):
    """Children live with their parent; joins to other tiered models are tests/test_relations.py's."""
    OrderLine.objects.using(tiers.cold).create(order_id=4, sku="S", price=1)
    assert list(Order.objects.filter(lines__sku="S").values_list("pk", flat=True)) == [4]


def test_filter_on_a_foreign_key_column_is_not_a_join(tiers, split):
    """customer_id__in compares the column: no join, no read of the customers."""
    customer_ids = set(Order.objects.hot().values_list("customer_id", flat=True)[:1]) | set(
        Order.objects.cold().values_list("customer_id", flat=True)[:1]
    )
    expected = sorted(
        pk
        for alias in (tiers.hot, tiers.cold)
        for pk in Order.objects.using(alias).filter(customer_id__in=customer_ids).values_list("pk", flat=True)
    )
    assert expected
    assert sorted(o.pk for o in Order.objects.filter(customer_id__in=customer_ids)) == expected
    assert Order.objects.filter(customer__in=customer_ids).count() == len(expected)


def test_children_of_a_cold_parent_are_written_to_cold(tiers):
    cold_order = OrderFactory(_using=tiers.cold)
    line = OrderLine(order=cold_order, sku="X", price=Decimal("1.00"))
    line.save()
    assert line._state.db == tiers.cold
    cold_order.lines.create(sku="Y", price=Decimal("2.00"))
    assert sorted(OrderLine.objects.using(tiers.cold).values_list("sku", flat=True)) == ["X", "Y"]
    assert not OrderLine.objects.using(tiers.hot).exists()


def test_saving_a_cold_row_writes_it_back_to_cold(tiers, split):
    row = Order.objects.get(pk=5)
    row.status = "cancelled"
    row.save()
    assert Order.objects.cold().get(pk=5).status == "cancelled"
    assert not Order.objects.hot().filter(pk=5).exists()


def test_update_or_create_updates_the_tier_that_holds_the_row(tiers, split):
    obj, created = Order.objects.update_or_create(pk=5, defaults={"status": "paid"})
    assert not created and obj._state.db == tiers.cold
    assert Order.objects.cold().get(pk=5).status == "paid" and not Order.objects.hot().filter(pk=5).exists()
    obj, created = Order.objects.update_or_create(pk=50, defaults={"customer_id": 1})
    assert created and obj._state.db == tiers.hot


def test_probe_cache_keys_on_filter_values(tiers):
    """Compiled probes are reused per query shape; a different filter value is a different shape."""
    from tiering import merge

    for pk, status, days in [(1, "new", 1), (2, "paid", 2), (3, "new", 3)]:
        order(tiers.hot, pk, days_ago=days, status=status)
    for pk, status, days in [(4, "paid", 100), (5, "new", 101)]:
        order(tiers.cold, pk, days_ago=days, status=status)
    merge.PROBES.clear()
    shapes = []
    for _ in range(2):  # the second round reads the cached probes
        for status, expected in (("new", [1, 3, 5]), ("paid", [2, 4])):
            page = Order.objects.filter(status=status).order_by("-created_at")[:10]
            assert [o.pk for o in page] == expected
        shapes.append(set(merge.PROBES))
    assert shapes[0] and shapes[1] == shapes[0]
    assert {shape[-1] for shape in shapes[0]} and len({shape[-1] for shape in shapes[0]}) == 2  # one WHERE per status
