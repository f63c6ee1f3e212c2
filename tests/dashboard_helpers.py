"""Helpers for the dashboard, admin, analysis and metrics tests: users and direct counts."""
from __future__ import annotations

import re

from django.contrib.auth.models import Permission, User
from django.db import connections

from orders.models import Order

PASSWORD = "pw-for-tests-only"


def make_user(username: str, *, staff: bool = True, perms: tuple[str, ...] = ()) -> User:
    """A user in the hot alias (where the router keeps auth), with ``app.codename`` perms."""
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


VIEWER_PERMS = ("tiering.view_migrationrun",)
MOVER_PERMS = ("tiering.view_migrationrun", "tiering.move_data")
ADMIN_ORDER_PERMS = ("orders.view_order", "orders.change_order", "orders.view_orderline", "orders.change_orderline",
                     "accounts.view_customer", "accounts.change_customer")


def count(alias: str, table: str, where: str = "", params: list | None = None) -> int:
    """COUNT(*) straight from one database, bypassing the ORM and the router."""
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else ""), params or [])
        return cursor.fetchone()[0]


def order_counts(tiers) -> dict[str, int]:
    return {
        "hot": count(tiers.hot, "orders_order"),
        "cold": count(tiers.cold, "orders_order"),
        "hot_lines": count(tiers.hot, "orders_orderline"),
        "cold_lines": count(tiers.cold, "orders_orderline"),
    }


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def old_order_pks(alias: str) -> list[int]:
    return list(Order.objects.using(alias).order_by("pk").values_list("pk", flat=True))
