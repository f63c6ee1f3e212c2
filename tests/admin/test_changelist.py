"""Every standard changelist feature on every tiered model, through real admin pages, with rows in both
tiers, against an oracle that reads each tier on its own and filters, counts and sorts in Python."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from html import unescape
from urllib.parse import parse_qsl, quote

import pytest
from django.contrib.admin.utils import quote as admin_quote
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Customer
from orders.models import Order
from tests.admin.world import (
    MODELS,
    changelist,
    facet_links,
    hierarchy_links,
    model_admin,
    pks,
    rows,
    seed,
    sort_like,
    superuser_client,
)

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
# The read path is the same whether the cold PostgreSQL tier is another database or a schema of the hot
# one (tests/move covers the schema pair's own move path): these many page-level tests run on one pair of each.
TIER_PAIRS = ["sqlite", "postgresql"]

def label(model) -> str:
    return model._meta.label


def each_model(*marks_for_order):
    return pytest.mark.parametrize("model", [
        pytest.param(m, marks=marks_for_order if m is Order else (), id=label(m)) for m in MODELS])


@pytest.fixture
def client(tiers):
    seed(tiers)
    return superuser_client()


# ----------------------------------------------------------------------------- the oracle
def value(obj, path: str, tiers):
    """``obj``'s value at a lookup path, following a relation into whichever tier holds the related row."""
    *relations, name = path.split("__")
    for relation in relations:
        field = obj._meta.get_field(relation)
        key = getattr(obj, field.attname)
        obj = next(o for o in rows(field.related_model, tiers) if o.pk == key)
    return getattr(obj, name)


LOOKUPS = {"exact", "gte", "lt", "year", "month", "day", "startswith"}


def matches(obj, params: dict[str, str], model, tiers) -> bool:
    """Would the changelist with these query parameters list ``obj``?"""
    for key, wanted in params.items():
        if key in ("_facets", "o", "p", "all"):
            continue
        if key == "tier":
            ok = obj._state.db == (tiers.hot if wanted == "hot" else tiers.cold)
        elif key == "q":
            ok = all(any(search_hit(obj, f, bit, tiers) for f in model_admin(model).search_fields)
                     for bit in wanted.split())
        else:
            path, _, lookup = key.rpartition("__")
            if lookup not in LOOKUPS:
                path, lookup = key, "exact"
            have = value(obj, path, tiers)
            if lookup == "exact":
                ok = str(have) == wanted
            elif lookup in ("gte", "lt"):
                bound = parse_datetime(wanted) or parse_date(wanted)
                if isinstance(bound, datetime) and timezone.is_naive(bound):
                    bound = timezone.make_aware(bound)
                if not isinstance(bound, datetime):
                    have = timezone.localtime(have).date()
                ok = have >= bound if lookup == "gte" else have < bound
            elif lookup in ("year", "month", "day"):
                ok = getattr(timezone.localtime(have), lookup) == int(wanted)
            elif lookup == "startswith":
                ok = str(have).startswith(wanted)
        if not ok:
            return False
    return True


def search_hit(obj, field: str, bit: str, tiers) -> bool:
    if field.startswith("="):
        return str(value(obj, field[1:], tiers)).lower() == bit.lower()
    found = value(obj, field, tiers)
    return found is not None and bit.lower() in str(found).lower()


def expected(model, tiers, query: str) -> list:
    params = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    return [o for o in rows(model, tiers) if matches(o, params, model, tiers)]


# ----------------------------------------------------------------------------- facets
@each_model()
@pytest.mark.parametrize("query", ["", "tier=cold", "tier=hot"])
def test_every_facet_count_is_the_rows_its_choice_lists(tiers, client, model, query):
    url = changelist(model)
    page = client.get(f"{url}?_facets=True&{query}")
    assert page.status_code == 200, page.content.decode()[-3000:]
    links = facet_links(page.content.decode())
    choices = {title: n for _href, title, n in links}
    everything = rows(model, tiers)
    # the tier filter's counts ignore its own choice, as every filter's do
    assert choices["hot"] == sum(o._state.db == tiers.hot for o in everything) > 0
    assert choices["cold"] == sum(o._state.db == tiers.cold for o in everything) > 0
    filters = {spec.title for spec in page.context["cl"].filter_specs}
    assert len(filters) == len(model_admin(model).get_list_filter(None))
    for href, title, n in links:
        assert n == len(expected(model, tiers, href)), (href, title)
        listed = client.get(url + href)
        assert listed.context["cl"].result_count == n, (href, title)


def test_facet_counts_of_a_choice_filter_in_both_tiers(tiers, client):
    """Order's status counts: each status has rows in both tiers, the counts add them up."""
    page = client.get(changelist(Order) + "?_facets=True")
    choices = {title: n for _href, title, n in facet_links(page.content.decode())}
    orders = rows(Order, tiers)
    for status in Order.Status:
        in_tiers = {o._state.db for o in orders if o.status == status}
        assert in_tiers == {tiers.hot, tiers.cold}
        assert choices[status.label] == sum(o.status == status for o in orders)


# ----------------------------------------------------------------------------- date hierarchy
@each_model()
def test_date_hierarchy_drills_down_year_month_day(tiers, client, model):
    url = changelist(model)
    field = model_admin(model).date_hierarchy
    everything = rows(model, tiers)

    def local(obj):
        return timezone.localtime(getattr(obj, field))

    def follow(links, part):
        """Check every link of a level; return the query of one whose rows are in both tiers."""
        both = None
        for href, _title in links:
            listed = client.get(url + href)
            objs = expected(model, tiers, href)
            assert objs and listed.context["cl"].result_count == len(objs), href
            assert sorted(map(str, pks(listed))) == sorted(str(o.pk) for o in objs)
            if {o._state.db for o in objs} == {tiers.hot, tiers.cold}:
                both = href
        assert both, f"no {part} with rows in both tiers"
        return both

    years = hierarchy_links(client.get(url).content.decode())
    assert [int(dict(parse_qsl(h[1:]))[f"{field}__year"]) for h, _ in years] == sorted({local(o).year
                                                                                       for o in everything})
    year = follow(years, "year")
    months = hierarchy_links(client.get(url + year).content.decode())
    assert [h for h, _ in months if "__month" not in h] == [], "the back link is not a choice"
    month = follow(months, "month")
    days = hierarchy_links(client.get(url + month).content.decode())
    wanted_days = sorted({local(o).day for o in expected(model, tiers, month)})
    assert [int(dict(parse_qsl(h[1:]))[f"{field}__day"]) for h, _ in days] == wanted_days
    day = follow(days, "day")
    page = client.get(url + day)
    assert page.status_code == 200 and page.context["cl"].result_count == len(expected(model, tiers, day))


# ----------------------------------------------------------------------------- sorting and pagination
@each_model()
def test_sort_by_every_column_and_page_through(tiers, client, model, monkeypatch):
    monkeypatch.setattr(model_admin(model), "list_per_page", 7)
    url = changelist(model)
    page = client.get(url)
    cl = page.context["cl"]
    everything = rows(model, tiers)
    pages = math.ceil(len(everything) / 7)
    assert cl.paginator.num_pages == pages >= 3
    html = page.content.decode()
    assert 'class="column-tier"' in html and 'class="sortable column-tier' not in html  # not sortable
    sorted_columns = 0
    for i, name in enumerate(cl.list_display):
        if cl.get_ordering_field(name) is None:
            assert name in ("action_checkbox", "tier"), name
            continue
        for sign in ("", "-"):
            listing = client.get(f"{url}?o={sign}{i}&all=")
            assert listing.context["cl"].show_all
            ordering = list(listing.context["cl"].queryset.query.order_by)
            want = [o.pk for o in sort_like(everything, ordering, model)]
            assert pks(listing) == want, (name, sign)
            for p in (2, pages):
                paged = client.get(f"{url}?o={sign}{i}&p={p}")
                assert pks(paged) == want[(p - 1) * 7:p * 7], (name, sign, p)
            sorted_columns += 1
    assert sorted_columns == 2 * (len(cl.list_display) - 2)


# ----------------------------------------------------------------------------- search and combined filters
SEARCHES = {"accounts.Customer": ["ann", "c1 Bob", "example.com"], "orders.Order": ["note 1", "7", "c03@"],
            "orders.Payment": ["R01", "bank"], "keyed.Voucher": ["V00", "n1"], "keyed.Ticket": ["t1"]}
FILTERS = {"accounts.Customer": "last_seen__gte={week_ago}", "orders.Order": "status__exact=paid",
           "orders.Payment": "method__exact=card", "keyed.Voucher": "issued_at__gte={week_ago}",
           "keyed.Ticket": "issued_at__lt={week_ago}"}


@each_model()
def test_search_alone_and_with_the_tier_filter_and_another_filter(tiers, client, model):
    url = changelist(model)
    week_ago = quote((timezone.now() - timedelta(days=7)).replace(microsecond=0).isoformat())
    other = FILTERS[label(model)].format(week_ago=week_ago)
    for term in SEARCHES[label(model)]:
        for extra in ("", "&tier=hot", "&tier=cold", f"&{other}", f"&tier=cold&{other}", f"&tier=hot&{other}"):
            query = f"?q={term}{extra}"
            listed = client.get(url + query)
            assert listed.status_code == 200, (query, listed.content.decode()[-2000:])
            objs = expected(model, tiers, query)
            assert sorted(map(str, pks(listed))) == sorted(str(o.pk) for o in objs), query
    # the search terms find rows in both tiers: the test would see a tier left out
    hits = expected(model, tiers, f"?q={SEARCHES[label(model)][0]}")
    assert {o._state.db for o in hits} == {tiers.hot, tiers.cold}


@each_model()
def test_the_tier_filter_with_another_filter_and_facets(tiers, client, model):
    url = changelist(model)
    week_ago = quote((timezone.now() - timedelta(days=7)).replace(microsecond=0).isoformat())
    other = FILTERS[label(model)].format(week_ago=week_ago)
    for query in (f"?{other}", f"?tier=hot&{other}", f"?tier=cold&{other}", f"?tier=cold&{other}&_facets=True"):
        listed = client.get(url + query)
        assert listed.status_code == 200, query
        objs = expected(model, tiers, query)
        assert sorted(map(str, pks(listed))) == sorted(str(o.pk) for o in objs), query
        assert listed.context["cl"].result_count == len(objs)


# ----------------------------------------------------------------------------- filters through a relation
def test_facets_and_search_through_a_relation_to_another_tiered_model(tiers, client, settings):
    """Order filtered and searched on its customer's fields (tests/admin/urls.py), where an order and its
    customer are often in different tiers: every count and list agrees with the oracle."""
    settings.ROOT_URLCONF = "tests.admin.urls"
    url = "/relations-admin/orders/order/"
    orders = rows(Order, tiers)
    customers = {c.pk: c for c in rows(Customer, tiers)}
    crossing = [o for o in orders if o._state.db != customers[o.customer_id]._state.db]
    assert crossing and len(crossing) < len(orders)  # orders whose customer is in the other tier, and others

    def wanted(query):
        params = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
        initial = params.pop("customer_initial", None)
        if initial:
            params["customer__name__startswith"] = initial
        return [o for o in orders if matches(o, params, Order, tiers)]

    for query in ("?_facets=True", "?_facets=True&tier=cold", "?_facets=True&q=example.com&status__exact=paid"):
        page = client.get(url + query)
        assert page.status_code == 200, page.content.decode()[-3000:]
        links = facet_links(page.content.decode())
        assert {"A", "B", "C", "Ann 0", "hot", "cold"} <= {title for _href, title, _n in links}
        for href, title, n in links:
            assert n == len(wanted(href)), (query, href, title)
            listed = client.get(url + href)
            assert sorted(pks(listed)) == sorted(o.pk for o in wanted(href)), (query, href, title)


def test_the_related_object_column_shows_each_customer_from_its_tier(tiers, client, settings):
    """``customer`` in list_display: the admin's select_related() reads each customer from the tier that holds
    it, one read per tier of customers for the page, not one per row."""
    settings.ROOT_URLCONF = "tests.admin.urls"
    customers = {c.pk: c for c in rows(Customer, tiers)}
    orders = rows(Order, tiers)
    assert {customers[o.customer_id]._state.db for o in orders} == {tiers.hot, tiers.cold}
    with CaptureQueriesContext(connections[tiers.hot]) as hot, CaptureQueriesContext(connections[tiers.cold]) as cold:
        page = client.get("/relations-admin/orders/order/?o=1")
    assert page.status_code == 200
    listed = {o.pk: o for o in orders if o.pk in set(pks(page))}
    html = unescape(page.content.decode())
    assert listed and all(str(customers[o.customer_id]) in html for o in listed.values())
    by_key = [q for q in [*hot.captured_queries, *cold.captured_queries]
              if 'FROM "accounts_customer"' in q["sql"] and '"accounts_customer"."id" IN (' in q["sql"]]
    assert len(by_key) == 2  # one per tier (the customer__name filter's choices read the customers too)


# ----------------------------------------------------------------------------- change pages
@each_model()
def test_change_and_history_pages_of_a_hot_and_a_cold_row(tiers, client, model):
    opts = model._meta
    for alias in (tiers.hot, tiers.cold):
        obj = next(o for o in rows(model, tiers) if o._state.db == alias)
        for view in ("change", "history", "delete"):
            page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[admin_quote(obj.pk)]))
            assert page.status_code == 200, (view, alias)
            if view == "change":
                assert page.context["original"]._state.db == alias
    # the listed rows link to their change pages
    html = client.get(changelist(model) + "?tier=cold").content.decode()
    cold = next(o for o in rows(model, tiers) if o._state.db == tiers.cold)
    assert reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[admin_quote(cold.pk)]) in html
