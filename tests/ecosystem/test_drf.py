"""Django REST framework over tiered orders, every answer compared with the same view over the one-table oracle:
page-number, limit-offset and cursor pagination walked to the end and back, OrderingFilter, SearchFilter through
the relation to the independently tiered customer, and the retrieve view."""
from __future__ import annotations

import pytest

from tests.ecosystem.helpers import EVERY_CROSSING, crossings, refused_or_same, same, url, walk
from tests.ecosystem.models import PlainOrder
from tests.ecosystem.views import PAGE_SIZE

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.urls("tests.ecosystem.urls")]
# The read path is the same whether the cold PostgreSQL tier is another database or a schema of the hot
# one (tests/move covers the schema pair's own move path): these many page-level tests run on one pair of each.
TIER_PAIRS = ["sqlite", "postgresql"]

# Each of the view's ordering fields both ways, NULLs (note) and ties (created_at, status, total, customer)
# included, a few combinations, and a name OrderingFilter drops (the view's default ordering then applies).
ORDERINGS = [
    None, "id", "-id", "created_at", "-created_at", "status", "-status", "total", "-total", "note", "-note",
    "customer", "-customer", "status,-total", "-total,created_at", "note,-id", "-status,customer,total", "nosuch",
]
# CursorPagination needs a value to compare with: no nullable field first, nor a relation (DRF's cursor holds
# str() of the related object, which does not filter the key: ValueError on the oracle as on the tiered model).
CURSOR_ORDERINGS = [o for o in ORDERINGS if o is None or o.lstrip("-").split(",")[0] not in ("note", "customer")]


def all_ids() -> list[int]:
    return sorted(PlainOrder.objects.values_list("pk", flat=True))


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_page_number_pages_in_every_ordering(shop, client, ordering):
    query = {"ordering": ordering} if ordering else {}
    ids, last = walk(client, url("tiered", "page", query))
    assert sorted(ids) == all_ids()  # every order once, on 9 pages
    assert f"page={-(-len(ids) // PAGE_SIZE)}" in last
    _status, back = same(client, last)
    assert back["count"] == len(ids)
    # previous links, from the last page to the first
    previous, _first = walk(client, last, link="previous")
    assert sorted(previous) == all_ids()


def test_page_number_sizes_and_pages_out_of_range(shop, client):
    for query, served in (({"page_size": 25, "ordering": "total"}, 60), ({"page_size": 60, "ordering": "-note"}, 60),
                          ({"page_size": 1, "ordering": "status", "page": 37}, 24)):
        ids, _last = walk(client, url("tiered", "page", query))
        assert len(ids) == len(set(ids)) == served
    for query in ({"page": 10}, {"page": 0}, {"page": "last", "ordering": "note"}, {"page": "x"}):
        status, _body = same(client, url("tiered", "page", query))
        assert status == (200 if query["page"] == "last" else 404)


@pytest.mark.parametrize("ordering", ["-created_at", "total", "note", "-status,customer,total"])
def test_limit_offset_windows(shop, client, ordering):
    ids, last = walk(client, url("tiered", "limit", {"ordering": ordering}))
    assert sorted(ids) == all_ids()
    walk(client, last, link="previous")
    # windows that start or end inside a run of ties, straddle the tiers, or pass the end
    for offset, limit in ((3, 10), (6, 2), (20, 17), (35, 3), (55, 10), (59, 1), (60, 5), (100, 7), (0, 60)):
        _status, body = same(client, url("tiered", "limit", {"ordering": ordering, "offset": offset, "limit": limit}))
        assert body["count"] == 60 and len(body["results"]) == max(0, min(limit, 60 - offset))


@pytest.mark.parametrize("ordering", CURSOR_ORDERINGS)
def test_cursor_pages_forward_and_back(shop, client, ordering):
    query = {"ordering": ordering} if ordering else {}
    forward, last = walk(client, url("tiered", "cursor", query))
    assert sorted(forward) == all_ids()
    backward, _first = walk(client, last, link="previous")  # each page compared with the oracle's
    if ordering in ("id", "-id"):
        # on a unique ordering, every page again (with ties, DRF's own previous links skip rows: the oracle's too)
        assert sorted(backward) == all_ids()


@pytest.mark.parametrize("view", ["page", "limit", "cursor"])
@pytest.mark.parametrize("ordering", ["customer__email", "-customer__email", "status,customer__email"])
def test_ordering_through_the_relation_is_refused_or_right(shop, client, view, ordering):
    refused_or_same(client, url("tiered", view, {"ordering": ordering}))


# Terms that match through the customer (email, name, across its tiers), through the order's own note, both
# (OR across search_fields), several terms (AND), a phrase, and nothing.
SEARCHES = ["alpha", "ALPHA", "beta.example", "ann", "bob", "bob5", "gift", "alpha dock", "ann alpha",
            "ann,gamma", '"leave at"', "dee6@gamma", "nobody", "@"]


@pytest.mark.parametrize("search", SEARCHES)
def test_search_through_the_customer(shop, client, search):
    ids, _last = walk(client, url("tiered", "page", {"search": search}))
    if search in ("alpha", "bob", "@"):
        # hits among hot and cold orders, each with customers in either tier
        assert crossings(shop, ids) == EVERY_CROSSING
    if search == "nobody":
        assert ids == []
    for ordering in ("total", "-note"):
        walk(client, url("tiered", "limit", {"search": search, "ordering": ordering}))
    walk(client, url("tiered", "cursor", {"search": search}))


def test_search_combined_with_filters_and_ordering(shop, client):
    for query in ({"search": "alpha", "status": "paid"}, {"search": "ann", "ordering": "-total", "page_size": 3},
                  {"search": "a", "email": "beta", "ordering": "note"}):
        ids, _last = walk(client, url("tiered", "page", query))
        assert ids


def test_retrieve_hot_cold_and_missing(shop, client):
    hot, cold = min(shop.hot_orders), min(shop.cold_orders)
    for pk, status in ((hot, 200), (cold, 200), (max(shop.hot_orders | shop.cold_orders) + 1, 404), (0, 404)):
        got, body = same(client, url("tiered", "detail", pk=pk))
        assert got == status and (status == 404 or body["id"] == pk)
