"""The pg_insert path: hot and cold as two schemas of one PostgreSQL database.

Every ``tiers`` test runs on this pair too (``pg_schema`` in tests/conftest.py:
round trips, concurrency, crash, commands, reads, tasks); here: the test setup really puts the cold tables
in their own schema, the path is chosen by itself, and tiers that are the same
tables are refused before anything moves.
"""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from orders.models import Order, OrderLine
from tests.conftest import PAIRS
from tests.move.helpers import TABLES, _table_hashes, content, seed_orders, snapshot
from tiering import move
from tiering.models import Direction, MigrationRun
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TIER_PAIRS = ["pg_schema"]


def hot_rows(tiers) -> dict:
    return {model: _table_hashes(tiers.hot, model) for model in TABLES}


def tables_in(schema: str) -> set[str]:
    with connections["pg_hot"].cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
        return {name for (name,) in cursor.fetchall()}


def test_the_schema_pair_has_the_cold_tables_in_their_own_schema(tiers):
    cold, public = tables_in(django_settings.COLD_SCHEMA), tables_in("public")
    assert {"orders_order", "orders_orderline", "accounts_customer", "django_migrations"} <= cold
    assert not cold & {"tiering_migrationrun", "tiering_tierlock", "auth_user"}  # hot-only tables stay in public
    assert {"orders_order", "tiering_migrationrun"} <= public
    with connections[tiers.cold].cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        assert cursor.fetchone()[0] == django_settings.COLD_SCHEMA
    seed_orders(tiers.hot, 12, lines=2)
    run = move.move(registry.get(Order), Direction.TO_COLD)
    assert run.rows == 12 and run.batches == 1
    with connections["pg_hot"].cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{django_settings.COLD_SCHEMA}".orders_orderline')
        assert cursor.fetchone()[0] == 24
        cursor.execute("SELECT count(*) FROM public.orders_order")
        assert cursor.fetchone()[0] == 0


def test_the_path_is_chosen_from_the_pair(settings):
    if "pg_hot" not in settings.DATABASES:
        pytest.skip(f"PostgreSQL unavailable: {settings.PG_SKIP_REASON}")
    for pair, expected in (("sqlite", "sqlite"), ("postgresql", "pg_copy"), ("pg_schema", "pg_insert")):
        hot, cold = PAIRS[pair]
        settings.TIERING = {**settings.TIERING, "HOT": hot, "COLD": cold}
        assert move.choose_path().name == expected, pair
        seed_orders(hot, 5)
        run = move.move(registry.get(Order), Direction.TO_COLD)
        assert run.rows == 5 and Order.objects.cold().count() == 5, pair
        if pair == "postgresql":
            with pytest.raises(ImproperlyConfigured, match="'pg_insert' needs two PostgreSQL aliases on one database"):
                move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, path="pg_insert")
            assert MigrationRun.objects.using(hot).count() == 1  # refused before a run or lock was written


def test_one_database_spelled_two_ways_is_still_one_database(tiers, retune):
    """The server is asked, not the settings: localhost and 127.0.0.1 are one server."""
    retune(tiers.cold, HOST="localhost")
    assert move.choose_path().name == "pg_insert"
    seed_orders(tiers.hot, 4)
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 4


@pytest.mark.parametrize("forced", [None, "pg_copy", "orm"])
def test_aliases_on_the_same_database_and_schema_are_refused(tiers, retune, forced):
    """Any path would copy each row onto itself, verify it and delete it: refused before any run exists."""
    seed_orders(tiers.hot, 10, lines=1)
    before = hot_rows(tiers)
    # the cold alias without its search_path: the same tables as hot, under another alias and spelling
    retune(tiers.cold, HOST="localhost", OPTIONS={})
    for call in (lambda: move.move(registry.get(Order), Direction.TO_COLD, path=forced),
                 lambda: move.start_run(registry.get(Order), Direction.TO_COLD, trigger="test", selection={}),
                 lambda: move.promote(registry.get(Order), [1])):
        with pytest.raises(ImproperlyConfigured, match="same PostgreSQL database and schema 'public'"):
            call()
    assert MigrationRun.objects.using(tiers.hot).count() == 0
    assert hot_rows(tiers) == before
    assert len(before[Order]) == 10 and len(before[OrderLine]) == 10


def test_a_cold_schema_that_does_not_exist_is_a_clear_error(tiers, retune):
    seed_orders(tiers.hot, 3)
    before = content(snapshot(tiers.hot, tiers.cold))
    retune(tiers.cold, OPTIONS={"options": "-c search_path=no_such_schema"})
    with pytest.raises(ImproperlyConfigured, match="names no existing schema; create it"):
        move.move(registry.get(Order), Direction.TO_COLD)
    assert MigrationRun.objects.using(tiers.hot).count() == 0
    assert content(snapshot(tiers.hot, "pg_cold")) == before
