"""A database tiering has no backend for is refused, naming its vendor, before any row moves."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import Order
from tests.move.helpers import content, seed_orders, snapshot
from tiering import backends, move
from tiering.backends.base import BaseTierOperations
from tiering.checks import check_tier_tables
from tiering.exceptions import UnsupportedDatabase
from tiering.models import Direction, MigrationRun
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases=["default", "cold", "standin"], transaction=True)


@pytest.fixture
def standin_cold(settings):
    """Hot in SQLite, cold on the stand-in vendor (a real SQLite file Django migrates as usual)."""
    settings.TIERING = {**settings.TIERING, "HOT": "default", "COLD": "standin"}
    seed_orders("default", 20, lines=1)
    return content(snapshot("default", "standin"))


def test_the_unknown_vendor_gets_the_base_operations():
    assert type(backends.ops("standin")) is BaseTierOperations
    assert backends.ops("default").vendor == "sqlite"


@pytest.mark.parametrize("call", [
    lambda: move.move(registry.get(Order), Direction.TO_COLD),
    lambda: move.move(registry.get(Order), Direction.TO_COLD, path="orm"),
    lambda: move.start_run(registry.get(Order), Direction.TO_COLD, trigger="test", selection={}),
    lambda: move.promote(registry.get(Order), [1]),
], ids=["move", "move-orm", "start_run", "promote"])
def test_a_move_is_refused_before_any_row_moves(standin_cold, call):
    with pytest.raises(UnsupportedDatabase, match="'standin' is standin \\(Stand-in\\), which tiering has no backend"):
        call()
    assert not MigrationRun.objects.using("default").exists()  # refused before a run or a lock was written
    assert content(snapshot("default", "standin")) == standin_cold
    assert Order.objects.using("standin").count() == 0


@pytest.mark.parametrize("command", [["migrate_cold"], ["migrate_cold", "--dry-run"],
                                     ["restore_hot", "--model", "orders.Order", "--all"]])
def test_the_commands_refuse_it_in_one_line(standin_cold, command):
    with pytest.raises(CommandError) as excinfo:
        call_command(*command, "--no-input")
    message = str(excinfo.value)
    assert "\n" not in message and "standin" in message and "no backend" in message
    assert not MigrationRun.objects.using("default").exists()
    assert content(snapshot("default", "standin")) == standin_cold


def test_the_system_check_names_it(standin_cold):
    for databases in (None, ["default", "standin"]):
        [error] = check_tier_tables(databases=databases)
        assert error.id == "tiering.E012" and "standin" in error.msg


@pytest.mark.parametrize("fact", [
    lambda ops: ops.place(),
    lambda ops: ops.place_by_settings(),
    lambda ops: ops.advance_sequences([Order]),
    lambda ops: ops.locks_rows,
    lambda ops: ops.refresh_stats("orders_order"),
    lambda ops: ops.table_bytes(["orders_order"]),
], ids=["place", "place_by_settings", "advance_sequences", "locks_rows", "refresh_stats", "table_bytes"])
def test_every_fact_a_vendor_must_supply_raises(fact):
    with pytest.raises(UnsupportedDatabase, match="standin"):
        fact(backends.ops("standin"))
