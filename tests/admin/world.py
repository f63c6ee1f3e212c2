"""Rows of every tiered model the admin shows, in both tiers, and the oracle the admin tests compare with:
the same rows read tier by tier (pinned, plain Django) and filtered, sorted and counted in Python."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from html import unescape

from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, Payment
from tests.dashboard_helpers import PASSWORD
from tests.keyed.models import Ticket, Voucher

# days ago; neighbours land in different tiers, so most years, months and days have rows in both
AGES = [0, 0, 1, 3, 6, 10, 29, 31, 45, 60, 95, 120, 200, 365, 400, 401, 500, 730, 800]
MODELS = [Customer, Order, Payment, Voucher, Ticket]


def seed(tiers) -> None:
    # yesterday's local noon, not now: the hour offsets then never push a row into another day, so the newest
    # day (rows 0 and 1, hot and cold) has rows in both tiers whatever the time the test runs
    noon = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)

    def when(i: int):
        return noon - timedelta(days=AGES[i % len(AGES)], hours=i % 7)

    def put(model, objs, tier_of):
        for alias in (tiers.hot, tiers.cold):
            model.objects.using(alias).bulk_create([o for i, o in enumerate(objs) if tier_of(i) == alias])

    def alternate(i):
        return tiers.cold if i % 2 else tiers.hot

    names = ["Ann", "Bob", "Cid"]
    put(Customer, [Customer(pk=i + 1, email=f"c{i:02d}@example.com", name=f"{names[i % 3]} {i}", last_seen=when(i),
                            created_at=when(i)) for i in range(19)], alternate)
    statuses = list(Order.Status.values)
    put(Order, [Order(pk=i + 1, customer_id=i % 19 + 1, created_at=when(i), status=statuses[i % 4],
                      total=Decimal(i * 3 + 1), note=None if i % 5 == 0 else f"note {i}") for i in range(40)],
        lambda i: tiers.hot if i % 3 else tiers.cold)
    put(Payment, [Payment(pk=i + 1, order_id=i + 1, amount=Decimal(i + 10), method=["card", "bank", "cash"][i % 3],
                          reference=f"R{i:03d}", created_at=when(i), last_accessed=when(i)) for i in range(20)],
        alternate)
    put(Voucher, [Voucher(code=f"V{i:03d}", issued_at=when(i), note=f"n{i % 4}") for i in range(15)], alternate)
    put(Ticket, [Ticket(id=uuid.UUID(int=i + 1), issued_at=when(i), note=f"t{i % 3}") for i in range(19)], alternate)


def rows(model, tiers) -> list:
    """Every row of ``model``, hot then cold, each read from its own tier (``_state.db`` says which)."""
    return [obj for alias in (tiers.hot, tiers.cold) for obj in model.objects.using(alias).all()]


def superuser_client() -> Client:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    return client


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def model_admin(model):
    return admin.site.get_model_admin(model)


def pks(response) -> list:
    return [obj.pk for obj in response.context["cl"].result_list]


def sort_like(objs: list, ordering: list[str], model) -> list:
    """``objs`` sorted by a queryset's ``order_by`` list, in Python (stable sorts, last key first)."""
    opts = model._meta
    for item in reversed(ordering):
        name = item.lstrip("-")
        field = opts.pk if name == "pk" else opts.get_field(name)
        objs = sorted(objs, key=lambda o, a=field.attname: getattr(o, a), reverse=item.startswith("-"))
    return objs


FACET_LINK = re.compile(r'<a href="(\?[^"]*)">([^<]*?) \((\d+)\)</a>')


def facet_links(html: str) -> list[tuple[str, str, int]]:
    """(query string, choice, count) of every filter choice that shows a count."""
    return [(unescape(href), title.strip(), int(n)) for href, title, n in FACET_LINK.findall(html)]


def hierarchy_links(html: str) -> list[tuple[str, str]]:
    """(query string, title) of the date hierarchy's choices, without the "back" link."""
    nav = re.search(r'<nav class="toplinks">(.*?)</nav>', html, re.S)
    assert nav, "no date hierarchy on the page"
    return [(unescape(href), title.strip())
            for href, title in re.findall(r'<a href="(\?[^"]*)">([^<]*)</a>', nav.group(1))]
