"""The SQLite facts the engine relies on, asked of real SQLite files."""
from __future__ import annotations

import os
import sqlite3

import pytest
from django.conf import settings as django_settings
from django.db import connections

from orders.models import Order
from tests.move.helpers import seed_orders
from tiering import backends, move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases=["default", "cold"], transaction=True)


def test_keys_per_statement_is_the_connection_s_own_limit():
    """Django's ``max_query_params`` for SQLite is the 999 of old builds; the connection knows its limit."""
    ops = backends.ops("default")
    connections["default"].ensure_connection()
    limit = connections["default"].connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    assert ops.keys_per_statement == min(10000, limit) > connections["default"].features.max_query_params


def test_a_file_is_one_place_however_it_is_spelled(retune):
    name = str(django_settings.DATABASES["default"]["NAME"])
    relative = os.path.relpath(name)
    retune("cold", NAME=relative)
    assert backends.ops("cold").place() == backends.ops("default").place()
    assert backends.same_tables("default", "cold") == f"'default' and 'cold' are the same SQLite file {name}"


def test_in_memory_databases_are_never_the_same_tables(retune):
    retune("default", NAME=":memory:")
    retune("cold", NAME=":memory:")
    assert not backends.ops("cold").is_file()
    assert backends.same_tables("default", "cold") is None


def test_keys_keep_growing_after_rows_with_higher_keys_moved_in():
    """No sequence to advance: the next key of a table follows the largest one inserted, explicit ones too."""
    seed_orders("default", 5, lines=0)
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 5
    backends.ops("cold").advance_sequences([Order])
    new = Order.objects.using("cold").create(customer_id=1, created_at=Order.objects.cold().get(pk=1).created_at,
                                             status="paid", total="1.00")
    assert new.pk > 5  # after the keys moved in (a table flushed by an earlier test may have counted further)


def test_table_bytes_and_ordering_facts():
    seed_orders("default", 50, lines=1)
    nbytes, method = backends.ops("default").table_bytes(["orders_order", "orders_orderline"])
    assert nbytes > 0 and method in ("dbstat", "page_share")
    ops = backends.ops("default")
    assert ops.nulls_largest is False and ops.locks_rows is False
