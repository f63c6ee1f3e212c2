"""The PostgreSQL facts the engine relies on, asked of a real server."""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connections

from orders.models import Order
from tests.move.helpers import seed_orders
from tiering import backends

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture(autouse=True)
def postgresql():
    if "pg_hot" not in django_settings.DATABASES:
        pytest.skip(f"PostgreSQL unavailable: {django_settings.PG_SKIP_REASON}")


def test_a_place_is_the_server_the_database_and_the_schema(retune):
    hot, cold, schema = (backends.ops(alias) for alias in ("pg_hot", "pg_cold", "pg_cold_schema"))
    assert hot.same_database(schema) and not hot.same_database(cold)
    assert hot.schema() == "public" and schema.schema() == django_settings.COLD_SCHEMA
    assert hot.place() != schema.place() != cold.place()
    retune("pg_cold_schema", HOST="localhost", OPTIONS={})  # another spelling of the host, hot's schema
    assert backends.ops("pg_cold_schema").place() == hot.place()


def test_sequences_move_ahead_of_keys_copied_in():
    seed_orders("pg_cold", 5, lines=0)
    with connections["pg_cold"].cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('orders_order', 'id'), 1)")
    backends.ops("pg_cold").advance_sequences([Order])
    with connections["pg_cold"].cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('orders_order', 'id'))")
        assert cursor.fetchone()[0] == 6


def test_table_bytes_and_ordering_facts():
    seed_orders("pg_hot", 50, lines=1)
    ops = backends.ops("pg_hot")
    nbytes, method = ops.table_bytes(["orders_order", "orders_orderline"])
    assert nbytes > 0 and method == "pg_total_relation_size"
    assert ops.nulls_largest is True and ops.locks_rows is True
    ops.refresh_stats("orders_order")  # ANALYZE runs
