"""Ask the tiered view and its one-table oracle the same question; they must answer alike."""
from __future__ import annotations

from urllib.parse import urlencode

from django.test import Client
from django.urls import reverse

from tests.ecosystem.models import PlainOrder
from tiering.exceptions import TieringQueryError

# (order in cold, its customer in cold): every combination
EVERY_CROSSING = {(False, False), (False, True), (True, False), (True, True)}


def url(prefix: str, name: str, query: dict | str | None = None, **kwargs) -> str:
    if isinstance(query, dict):
        query = urlencode(query, doseq=True)
    return reverse(f"{prefix}:{name}", kwargs=kwargs or None) + (f"?{query}" if query else "")


def crossings(shop, ids) -> set[tuple[bool, bool]]:
    """(order in cold, its customer in cold) for the orders ``ids``: the tiers an answer spans."""
    customers = dict(PlainOrder.objects.filter(pk__in=ids).values_list("pk", "customer_id"))
    return {(pk in shop.cold_orders, customers[pk] in shop.cold_customers) for pk in ids}


def same(client: Client, tiered_url: str) -> tuple[int, object]:
    """GET a tiered view and the oracle's same view (same path under /plain/, same query): the same status and the
    same body, links included (error messages name the model: the oracle's names are read as the tiered ones).
    Returns the oracle's status and body."""
    plain_url = tiered_url.replace("/tiered/", "/plain/", 1)
    tiered, plain = client.get(tiered_url), client.get(plain_url)
    tiered_body = tiered.content.decode().replace("/tiered/", "/plain/")
    plain_body = plain.content.decode().replace("PlainOrder", "Order").replace("PlainCustomer", "Customer")
    assert (tiered.status_code, tiered_body) == (plain.status_code, plain_body), tiered_url
    return plain.status_code, plain.json() if plain["Content-Type"].startswith("application/json") else plain_body


def walk(client: Client, tiered_url: str, link: str = "next") -> tuple[list[int], str | None]:
    """Follow ``link`` from ``tiered_url`` to the end, every page compared with the oracle's. Returns the ids in the
    order served and the URL of the last page."""
    ids: list[int] = []
    last = None
    while tiered_url:
        status, body = same(client, tiered_url)
        assert status == 200, (tiered_url, body)
        ids += [row["id"] for row in body["results"]]
        last = tiered_url
        tiered_url = body[link] and body[link].replace("/plain/", "/tiered/", 1)
    return ids, last


def refused_or_same(client: Client, tiered_url: str) -> str:
    """Ordering by a field of an independently tiered relation: a clear refusal (TieringQueryError naming the
    relation, or a 4xx response) or the oracle's answer, never another one. Says which."""
    try:
        response = client.get(tiered_url)
    except TieringQueryError as exc:
        assert "customer" in str(exc), exc
        return "refused"
    if 400 <= response.status_code < 500:
        return "4xx"
    same(client, tiered_url)
    return "same"
