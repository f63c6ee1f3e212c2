"""The MySQL/MariaDB facts the engine relies on, asked of the real test servers, and the collation check."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone

from orders.models import Order
from tests import servers
from tiering import backends
from tiering.checks import check_mysql_collations
from tiering.exceptions import ImproperlyTiered

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(autouse=True)
def mariadb():
    if "my_hot" not in django_settings.DATABASES:
        pytest.skip(f"MariaDB unavailable: {django_settings.MY_SKIP_REASON}")


def test_a_place_is_the_server_and_the_database(retune):
    hot, cold, cold_db = (backends.ops(alias) for alias in ("my_hot", "my_cold", "my_cold_db"))
    assert hot.same_server(cold_db) and not hot.same_server(cold)
    assert hot.place() != cold_db.place() != cold.place()
    assert backends.same_tables("my_hot", "my_cold_db") is None
    # the server's socket instead of TCP, hot's database: the very same tables, refused before anything moves
    socket = servers.ROOT / "mariadb" / "mysqld.sock"
    retune("my_cold_db", HOST="localhost", NAME=connections["my_hot"].settings_dict["NAME"],
           OPTIONS={**connections["my_hot"].settings_dict["OPTIONS"], "unix_socket": str(socket)})
    with pytest.raises(ImproperlyTiered, match="same MariaDB database"):
        backends.refuse_same_tables("my_hot", "my_cold_db")


def test_auto_increment_is_ahead_of_keys_copied_in_and_bytes_are_measured():
    Order.objects.using("my_cold").bulk_create([Order(pk=pk, customer_id=1, created_at=timezone.now())
                                                for pk in (7, 40)])
    backends.ops("my_cold").advance_sequences([Order])
    # ahead, not 41: a flush deletes rows and InnoDB keeps AUTO_INCREMENT where earlier tests left it
    assert Order.objects.using("my_cold").create(customer_id=1, created_at=timezone.now()).pk > 40
    nbytes, method = backends.ops("my_cold").table_bytes(["orders_order"])
    assert nbytes > 0 and method == "information_schema"
    assert backends.ops("my_cold").locks_rows and not backends.ops("my_cold").nulls_largest


NOTES = ["b", "B", "a", "A", "é", "e", "E", "z", "Z", "ä", "a ", "Ä", "ß", "ss", "日本"]


def test_merged_order_of_mixed_case_and_accents_is_code_point_order(settings):
    """The test databases sort text with utf8mb4_nopad_bin, so both tiers' orders and the merge agree."""
    settings.TIERING = {**django_settings.TIERING, "HOT": "my_hot", "COLD": "my_cold"}
    old = timezone.now() - timedelta(days=400)
    for i, note in enumerate(NOTES, start=1):
        Order.objects.using("my_hot" if i % 2 else "my_cold").create(pk=i, customer_id=1, created_at=old, note=note)
    assert [o.note for o in Order.objects.order_by("note", "pk")] == sorted(NOTES)
    assert [o.note for o in Order.objects.order_by("-note", "pk")][:5] == sorted(NOTES, reverse=True)[:5]
    assert check_mysql_collations(databases=["my_hot", "my_cold"]) == []


@pytest.mark.parametrize(("collation", "problem"), [("utf8mb4_general_ci", "case- or accent-insensitively"),
                                                    ("utf8mb4_bin", "pads text with spaces")])
def test_a_text_column_not_in_code_point_order_is_an_error(settings, collation, problem):
    settings.TIERING = {**django_settings.TIERING, "HOT": "my_hot", "COLD": "my_cold"}
    with connections["my_cold"].cursor() as cursor:
        cursor.execute(f"ALTER TABLE orders_order MODIFY note longtext COLLATE {collation} NULL")
    try:
        errors = check_mysql_collations(databases=["my_hot", "my_cold"])
        assert check_mysql_collations() == []  # asked of the databases only with check --database
    finally:
        with connections["my_cold"].cursor() as cursor:
            cursor.execute("ALTER TABLE orders_order MODIFY note longtext COLLATE utf8mb4_nopad_bin NULL")
    assert [e.id for e in errors] == ["tiering.E020"]
    assert "orders.Order.note in 'my_cold'" in errors[0].msg and collation in errors[0].msg
    assert problem in errors[0].msg and "utf8mb4_nopad_bin" in errors[0].hint
