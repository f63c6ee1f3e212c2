"""django-filter over tiered orders: one FilterSet with fields on the order and through its relation to the
independently tiered customer, used through DjangoFilterBackend in the DRF view and directly, every answer
compared with the same FilterSet over the one-table oracle."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.ecosystem.helpers import EVERY_CROSSING, crossings, same, url, walk
from tests.ecosystem.views import PLAIN, TIERED
from tiering.exceptions import TieringQueryError

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.urls("tests.ecosystem.urls")]
# The read path is the same whether the cold PostgreSQL tier is another database or a schema of the hot
# one (tests/move covers the schema pair's own move path): these many page-level tests run on one pair of each.
TIER_PAIRS = ["sqlite", "postgresql"]


def day(shop, days_ago: float) -> str:
    return (shop.now - timedelta(days=days_ago)).date().isoformat()


def queries(shop) -> list[dict]:
    """Valid filter data: through the customer, on the order, and combined."""
    return [
        {"email": "alpha"}, {"email": "BETA"}, {"email": "example"}, {"email": "nobody"},
        {"name": "an"}, {"name": "C"},
        {"customer": 3}, {"customer": 4},  # a hot customer, a cold one
        {"customers": [3, 4, 8]}, {"customers": [2], "email": "bob"},
        {"created_after": day(shop, 100), "created_before": day(shop, 10)}, {"created_before": day(shop, 300)},
        {"customer_since_after": day(shop, 150)}, {"customer_since_before": day(shop, 50)},
        {"total_min": "10", "total_max": "25.50"}, {"total_max": "5.50"},
        {"status": ["paid", "new"]}, {"any_status": "shipped"},
        {"no_note": "true"}, {"no_note": "false"},
        {"email": "example", "status": ["paid"], "created_after": day(shop, 400), "total_max": "30"},
        {"email": "alpha", "name": "ann", "customer_since_after": day(shop, 150)},
        {"customer": 4, "email": "cy"}, {"customer": 4, "email": "dee"},
    ]


INVALID = [{"customer": 999}, {"customer": "x"}, {"customers": [1, 999]}, {"created_after": "not-a-date"},
           {"status": "bogus"}, {"total_min": "x"}, {"any_status": "lost"}]


def test_filters_through_the_drf_view(shop, client):
    for data in queries(shop):
        ids, _last = walk(client, url("tiered", "page", data))
        for ordering in ("total", "-note", "customer"):
            walk(client, url("tiered", "page", {**data, "ordering": ordering}))
        if data in ({"email": "example"}, {"customers": [3, 4, 8]}):
            assert crossings(shop, ids) == EVERY_CROSSING, data
        if data == {"customer": 4}:  # a cold customer's orders, in both tiers
            assert crossings(shop, ids) == {(False, True), (True, True)}


def test_invalid_filter_data_is_a_400_in_the_drf_view(shop, client):
    for data in INVALID:
        status, body = same(client, url("tiered", "page", data))
        assert status == 400, (data, body)


def filtered(views, data: dict, ordering: str | None):
    """The FilterSet used directly, on a queryset already ordered (an unordered one has no order to compare)."""
    queryset = views.order.objects.order_by(ordering) if ordering else views.order.objects.all()
    filterset = views.filterset(data, queryset=queryset)
    valid = filterset.is_valid()
    qs = filterset.qs
    return valid, filterset.errors, list(qs.values_list("id", flat=True)), qs.count(), qs.exists()


@pytest.mark.parametrize("o", [None, "created_at", "-total", "note", "-note", "status,-id", "customer", "-customer"])
def test_filterset_used_directly(shop, o):
    cases = [(data, True) for data in queries(shop)] + [(data, False) for data in INVALID]
    if o is None:
        cases.append(({"o": "nosuch"}, False))
    for data, valid in cases:
        data = {**data, "o": o} if o else data
        base = None if o else "-created_at"
        answer = filtered(TIERED, data, base)
        assert answer == filtered(PLAIN, data, base), data
        assert answer[0] is valid and answer[3] == len(answer[2]), data


def test_ordering_through_the_relation_is_refused_or_right(shop):
    for o in ("email", "-email", "status,email"):
        try:
            answer = filtered(TIERED, {"o": o, "status": ["paid", "new"]}, None)
        except TieringQueryError as exc:
            assert "customer" in str(exc), exc
            continue
        assert answer == filtered(PLAIN, {"o": o, "status": ["paid", "new"]}, None)


def test_choices_include_cold_customers_and_every_status(shop):
    forms = [views.filterset().form for views in (TIERED, PLAIN)]
    customers = [[(str(value), label) for value, label in form.fields["customer"].choices] for form in forms]
    assert customers[0] == customers[1]
    assert {int(pk) for pk, _label in customers[0] if pk} == shop.hot_customers | shop.cold_customers
    statuses = [list(form.fields["any_status"].choices) for form in forms]
    assert statuses[0] == statuses[1] and len(statuses[0]) == 5  # "any" and the four statuses, each once
