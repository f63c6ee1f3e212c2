"""The SQL fast paths (SQLite ATTACH, PostgreSQL COPY): stale copies, repair by key range, fallbacks."""
from __future__ import annotations

import pytest
from django.db import connections
from django.utils import timezone

from orders.models import Order, OrderLine
from tests.mover_helpers import assert_lines_follow_orders, content, seed_orders, snapshot
from tiering import mover
from tiering.models import BatchState, Direction, MigrationBatch, MigrationRun, RunState
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

FAST = {"sqlite": "sqlite", "postgresql": "pg_copy", "pg_schema": "pg_insert"}


def copy_rows(model, source: str, target: str, **filters) -> None:
    rows = list(model._base_manager.using(source).filter(**filters).values())
    model._base_manager.using(target).bulk_create([model(**row) for row in rows])


def test_stale_copies_in_the_target_give_way_to_the_source(tiers):
    """Copies the ledger does not know (a crashed attempt, a write through such a copy) are replaced."""
    seed_orders(tiers.hot, 20, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    copy_rows(Order, tiers.hot, tiers.cold, pk__in=[3, 5])
    copy_rows(OrderLine, tiers.hot, tiers.cold, order_id__in=[3, 5])
    Order.objects.using(tiers.cold).filter(pk=3).update(note="stale copy")
    OrderLine.objects.using(tiers.cold).filter(order_id=5).update(sku="STALE")
    OrderLine.objects.using(tiers.cold).create(id=9999, order_id=3, sku="EXTRA", quantity=1, price="1.00")
    run = mover.move(registry.get(Order), Direction.TO_COLD, path=FAST[tiers.backend])
    assert run.state == RunState.SUCCEEDED and run.rows == 20 and run.child_rows == 40
    assert MigrationBatch.objects.using(tiers.hot).get(run=run).kept == 0
    after = snapshot(tiers.hot, tiers.cold)
    assert content(after) == before  # the source content won, the extra line of the stale copy is gone
    assert {tier for rows in after.values() for tier, _ in rows.values()} == {"cold"}
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_repair_uses_the_key_range_of_a_batch_cut_between_the_two_commits(tiers):
    """The target committed, the source did not: every copy in the batch's key range is removed,
    including rows that became eligible after the keys were recorded."""
    seed_orders(tiers.hot, 30, lines=1)
    before = content(snapshot(tiers.hot, tiers.cold))
    crashed = MigrationRun.objects.using(tiers.hot).create(
        model_label="orders.Order", direction=Direction.TO_COLD, owner="elsewhere:1", cutoff=timezone.now())
    MigrationBatch.objects.using(tiers.hot).create(run=crashed, seq=1, state=BatchState.COPYING,
                                                   pks=[1, 2, 3, 4, 5], key_low="1", key_high="10")
    copy_rows(Order, tiers.hot, tiers.cold, pk__lte=10)
    copy_rows(OrderLine, tiers.hot, tiers.cold, order_id__lte=10)
    repair = mover.move(registry.get(Order), Direction.TO_COLD, limit=0, path=FAST[tiers.backend])
    assert repair.state == RunState.STOPPED
    batch = MigrationBatch.objects.using(tiers.hot).get(run=crashed)
    assert batch.state == BatchState.UNDONE and "10 copies removed" in batch.error
    snap = snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert content(snap) == before and {t for rows in snap.values() for t, _ in rows.values()} == {"hot"}
    assert mover.move(registry.get(Order), Direction.TO_COLD).rows == 30
    assert content(snapshot(tiers.hot, tiers.cold)) == before


def test_selection_with_a_join_moves_on_the_orm_path(tiers):
    seed_orders(tiers.hot, 10, lines=2)
    mover.move(registry.get(Order), Direction.TO_COLD)
    sku = OrderLine.objects.using(tiers.cold).get(pk=7).sku
    run = mover.move(registry.get(Order), Direction.TO_HOT, where={"lines__sku": sku})
    assert run.rows == 1 and run.child_rows == 2
    assert list(Order.objects.hot().values_list("pk", flat=True)) == [4]
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_fast_path_matches_the_orm_path_byte_for_byte(tiers):
    """Both directions on the fast path leave the same rows as the portable path would."""
    seed_orders(tiers.hot, 200, lines=3)
    before = content(snapshot(tiers.hot, tiers.cold))
    order = registry.get(Order)
    assert mover.move(order, Direction.TO_COLD, path=FAST[tiers.backend], batch_size=64).rows == 200
    assert content(snapshot(tiers.hot, tiers.cold)) == before
    run = mover.move(order, Direction.TO_HOT, all_rows=True, path=FAST[tiers.backend], batch_size=64)
    assert run.rows == 200 and run.child_rows == 600
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before and {t for rows in snap.values() for t, _ in rows.values()} == {"hot"}
    assert all(len(b.checksum) == 64 for b in MigrationBatch.objects.using(tiers.hot).filter(run=run))
    with connections[tiers.hot].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tiering_restoredrow WHERE model_label = 'orders.Order'")
        assert cursor.fetchone()[0] == 200  # restored rows are held in hot
