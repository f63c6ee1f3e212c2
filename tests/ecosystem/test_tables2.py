"""django-tables2 over tiered orders: the same paginated, sortable table over the tiered queryset and over the
one-table oracle, rendered by a real view (RequestConfig with ?sort= and ?page=), compared page by page, row by
row and as HTML, in every sort of every orderable column."""
from __future__ import annotations

import pytest

from tests.ecosystem.helpers import url
from tests.ecosystem.views import PAGE_SIZE
from tiering.exceptions import TieringQueryError

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.urls("tests.ecosystem.urls")]
# The read path is the same whether the cold PostgreSQL tier is another database or a schema of the hot
# one (tests/move covers the schema pair's own move path): these many page-level tests run on one pair of each.
TIER_PAIRS = ["sqlite", "postgresql"]

# every orderable column but the customer's email (a field of the independently tiered relation: see below)
SORTS = [None] + [f"{sign}{column}" for column in ("id", "customer", "created_at", "status", "total", "note")
                  for sign in ("", "-")]


def rows(response) -> list[tuple]:
    table = response.context["table"]
    return [(row.record.pk, *(str(row.get_cell(c.name)) for c in table.columns)) for row in table.paginated_rows]


def render(client, query: dict):
    """The tiered table's page and the oracle's: the same rows, cells and HTML (sort and page links included)."""
    tiered, plain = client.get(url("tiered", "table", query)), client.get(url("plain", "table", query))
    assert tiered.status_code == plain.status_code == 200, query
    assert rows(tiered) == rows(plain), query
    assert tiered.content.decode() == plain.content.decode(), query
    return tiered.context["table"]


@pytest.mark.parametrize("sort", SORTS)
def test_every_page_in_every_sort(shop, client, sort):
    query = {"sort": sort} if sort else {}
    first = render(client, query)
    pages = first.paginator.num_pages
    assert first.paginator.count == 60 and pages == -(-60 // PAGE_SIZE)
    served = [row.record.pk for row in first.paginated_rows]
    for page in range(2, pages + 1):
        served += [row.record.pk for row in render(client, {**query, "page": page}).paginated_rows]
    assert sorted(served) == sorted(shop.hot_orders | shop.cold_orders)  # each order once
    # the customer column shows the customer from whichever tier holds it
    assert {row.record.customer_id for row in first.paginated_rows} <= shop.hot_customers | shop.cold_customers


def test_per_page_and_pages_out_of_range(shop, client):
    for query in ({"per_page": 25, "sort": "-total"}, {"per_page": 60, "sort": "note"}, {"page": 99},
                  {"page": "x", "sort": "status"}, {"page": 9, "per_page": 7, "sort": "-note"}):
        render(client, query)


@pytest.mark.parametrize("sort", ["email", "-email"])
def test_sorting_by_the_customers_email_is_refused_or_right(shop, client, sort):
    try:
        render(client, {"sort": sort})
    except TieringQueryError as exc:
        assert "customer" in str(exc), exc


def test_the_table_renders_rows_of_both_tiers_with_customers_of_both_tiers(shop, client):
    """The fixture's point, seen through the table: one page (all rows) holds every combination of tiers."""
    table = render(client, {"per_page": 60, "sort": "id"})
    orders = {row.record.pk: row.record for row in table.paginated_rows}
    assert list(orders) == list(range(1, 61))
    tiers = {(pk in shop.cold_orders, orders[pk].customer_id in shop.cold_customers) for pk in orders}
    assert tiers == {(False, False), (False, True), (True, False), (True, True)}
    # select_related: each customer read from the tier that holds it, and left there
    for order in orders.values():
        cold = order.customer_id in shop.cold_customers
        assert order.customer._state.db == (shop.tiers.cold if cold else shop.tiers.hot), order
