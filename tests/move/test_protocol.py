"""The mover on real SQLite files and real PostgreSQL: round trips, every copy path,
locks, dry run, sequences, restore marks and promote."""
from __future__ import annotations

import os
import sqlite3
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment
from tests.keyed.models import Ticket, Voucher
from tests.move.helpers import (
    FAST_PATHS,
    assert_lines_follow_orders,
    content,
    make_payments,
    payment_values,
    seed_orders,
    snapshot,
)
from tiering import move
from tiering.models import BatchState, Direction, MigrationBatch, MigrationRun, RestoredRow, RunState, TierLock
from tiering.move import batch
from tiering.registry import registry
from tiering.signals import batch_done, run_finished

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg", "mariadb", "mariadb_db"]  # + mixed, MariaDB


def test_round_trip_is_identical(tiers, path):
    seed_orders(tiers.hot, 300, lines=3)
    make_payments(tiers.hot)
    before_orders = content(snapshot(tiers.hot, tiers.cold))
    before_payments = payment_values(tiers.hot)
    payment = registry.get(Payment)
    order = registry.get(Order)

    run = move.move(order, Direction.TO_COLD, path=path, batch_size=128)
    assert run.state == RunState.SUCCEEDED and run.rows == 300 and run.child_rows == 900
    move.move(payment, Direction.TO_COLD, path=path)
    assert Order.objects.hot().count() == 0 and OrderLine.objects.using(tiers.hot).count() == 0
    assert payment_values(tiers.cold) == before_payments  # byte for byte, in the other database
    assert payment_values(tiers.hot) == []

    run = move.move(order, Direction.TO_HOT, all_rows=True, path=path)
    assert run.rows == 300 and run.state == RunState.SUCCEEDED
    move.move(payment, Direction.TO_HOT, all_rows=True, path=path)
    after = snapshot(tiers.hot, tiers.cold)
    assert content(after) == before_orders
    assert {tier for rows in after.values() for tier, _ in rows.values()} == {"hot"}
    restored = payment_values(tiers.hot)
    access = [f.attname for f in Payment._meta.concrete_fields].index("last_accessed")
    # identical except the restore mark on the access field
    assert [r[:access] + r[access + 1:] for r in restored] == [r[:access] + r[access + 1:] for r in before_payments]
    assert all(timezone.now() - r[access] < timedelta(minutes=5) for r in restored)
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    batches = MigrationBatch.objects.using(tiers.hot).filter(run__model_label="orders.Order")
    assert batches.exclude(state=BatchState.DONE).count() == 0
    assert all(len(b.checksum) == 64 for b in batches)


def test_restored_time_policy_rows_are_held(tiers):
    seed_orders(tiers.hot, 20)
    order = registry.get(Order)
    move.move(order, Direction.TO_COLD)
    move.move(order, Direction.TO_HOT, pks=[1, 2, 3])
    assert RestoredRow.objects.using(tiers.hot).filter(model_label="orders.Order").count() == 3
    assert move.plan(order, Direction.TO_COLD).rows == 0
    runs = MigrationRun.objects.using(tiers.hot).count()
    assert move.move(order, Direction.TO_COLD) is None  # nothing to do: no run recorded
    assert MigrationRun.objects.using(tiers.hot).count() == runs
    assert sorted(Order.objects.hot().values_list("pk", flat=True)) == [1, 2, 3]
    # once the hold period is over they are eligible again
    later = timezone.now() + timedelta(days=91)
    assert move.move(order, Direction.TO_COLD, now=later).rows == 3


@pytest.mark.parametrize("model", [Voucher, Ticket], ids=["text", "uuid"])
def test_text_and_uuid_keys_move_and_are_held(tiers, path, model):
    """Keys that are not integers, on every path: the SQLite path keeps them in a batch table of their own
    (integer keys get an INTEGER PRIMARY KEY one), and the holds of restored rows compare them as the
    database casts them to text (a UUID is 32 hex digits on SQLite)."""
    now = timezone.now()
    keys = [f"V-{i:02d}" for i in range(20)] if model is Voucher else sorted(uuid.uuid4() for _ in range(20))
    model.objects.using(tiers.hot).bulk_create(
        [model(pk=key, issued_at=now - timedelta(days=60 if i < 15 else 1), note=f"n{i}")
         for i, key in enumerate(keys)])
    tiered = registry.get(model)

    def tier_keys():
        return ({str(k) for k in model.objects.using(alias).values_list("pk", flat=True)}
                for alias in (tiers.hot, tiers.cold))

    run = move.move(tiered, Direction.TO_COLD, path=path)
    assert (run.state, run.rows, run.path) == (RunState.SUCCEEDED, 15, path)
    assert tuple(tier_keys()) == ({str(k) for k in keys[15:]}, {str(k) for k in keys[:15]})
    assert move.move(tiered, Direction.TO_HOT, pks=keys[:3], path=path).rows == 3
    assert move.plan(tiered, Direction.TO_COLD).rows == 0
    assert move.move(tiered, Direction.TO_COLD, path=path) is None  # held: not sent straight back
    assert tuple(tier_keys()) == ({str(k) for k in keys[:3] + keys[15:]}, {str(k) for k in keys[3:15]})
    later = now + timedelta(days=31)  # the holds are over and the new rows are old
    assert move.move(tiered, Direction.TO_COLD, path=path, now=later).rows == 8
    assert tuple(tier_keys()) == (set(), {str(k) for k in keys})


def test_more_held_rows_than_a_statement_takes_parameters(tiers):
    """70,000 restored rows are held through a subquery on the holds, not a list of 70,000 query parameters:
    SQLite takes 32,766 per statement as built by default (Debian's build takes more; the test sets the
    default back), PostgreSQL 65,535 with server-side binding. The next runs to cold, fast and orm, move
    only the rows not held."""
    for alias in (tiers.hot, tiers.cold):
        connections[alias].ensure_connection()
        if connections[alias].vendor == "sqlite":
            connections[alias].connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    held = 70_000
    seed_orders(tiers.hot, held, lines=0)
    order = registry.get(Order)
    assert move.move(order, Direction.TO_COLD, batch_size=20_000, path=FAST_PATHS[tiers.backend]).rows == held
    assert move.move(order, Direction.TO_HOT, all_rows=True, batch_size=20_000,
                     path=FAST_PATHS[tiers.backend]).rows == held
    assert RestoredRow.objects.using(tiers.hot).filter(model_label="orders.Order").count() == held
    assert move.plan(order, Direction.TO_COLD).rows == 0
    for start_pk, path in ((held + 1, FAST_PATHS[tiers.backend]), (held + 6, "orm")):
        seed_orders(tiers.hot, 5, lines=0, start_pk=start_pk)
        run = move.move(order, Direction.TO_COLD, path=path)
        assert (run.state, run.rows, run.path) == (RunState.SUCCEEDED, 5, path)
    assert Order.objects.using(tiers.hot).count() == held and Order.objects.using(tiers.cold).count() == 10


def test_batches_shrink_when_they_overrun_the_time_target(tiers, settings):
    """Batches are sized by time: each one that takes longer than BATCH_TARGET_SECONDS makes the next one
    smaller, at most 16x per step and down to MIN_BATCH (a target no batch can meet shrinks them all)."""
    settings.TIERING = {**settings.TIERING, "BATCH_TARGET_SECONDS": 1e-9}
    seed_orders(tiers.hot, 1100, lines=0)
    run = move.move(registry.get(Order), Direction.TO_COLD)
    sizes = list(MigrationBatch.objects.using(tiers.hot).filter(run=run).order_by("seq").values_list("rows", flat=True))
    assert run.rows == 1100 and sizes[:4] == [1000, 62, batch.MIN_BATCH, batch.MIN_BATCH]


def test_orm_path_batches_stay_within_its_cap(tiers, settings):
    """The orm path passes each key of a batch as a query parameter, so its batches stop at 10,000 keys
    even when --batch-size and the time target would let them grow further."""
    settings.TIERING = {**settings.TIERING, "BATCH_TARGET_SECONDS": 1000}  # every batch grows 16x, to the cap
    seed_orders(tiers.hot, 30_000, lines=0)
    run = move.move(registry.get(Order), Direction.TO_COLD, batch_size=20_000, path="orm")
    sizes = list(MigrationBatch.objects.using(tiers.hot).filter(run=run).order_by("seq").values_list("rows", flat=True))
    assert run.rows == 30_000 and sizes == [1000, 10_000, 10_000, 9000]


def test_only_eligible_rows_move_and_children_follow(tiers):
    seed_orders(tiers.hot, 50, lines=2, old=True)
    seed_orders(tiers.hot, 30, lines=2, old=False, start_pk=51)
    run = move.move(registry.get(Order), Direction.TO_COLD, batch_size=7)
    assert run.rows == 50 and run.child_rows == 100 and run.batches >= 8
    assert set(Order.objects.hot().values_list("pk", flat=True)) == set(range(51, 81))
    assert OrderLine.objects.using(tiers.cold).count() == 100
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    snapshot(tiers.hot, tiers.cold)


def test_dry_run_plan_changes_nothing(tiers):
    seed_orders(tiers.hot, 40, lines=2)
    before = snapshot(tiers.hot, tiers.cold)
    runs = MigrationRun.objects.using(tiers.hot).count()
    plan = move.plan(registry.get(Order), Direction.TO_COLD, batch_size=15, limit=30)
    assert (plan.rows, plan.child_rows, plan.batches) == (30, 60, 2) and plan.bytes > 0
    assert snapshot(tiers.hot, tiers.cold) == before
    assert MigrationRun.objects.using(tiers.hot).count() == runs


def test_limit_and_signals(tiers):
    seed_orders(tiers.hot, 30)
    seen = []
    batch_done.connect(lambda **kw: seen.append(kw["batch"].rows), weak=False, dispatch_uid="t1")
    run_finished.connect(lambda **kw: seen.append(kw["run"].state), weak=False, dispatch_uid="t2")
    progress = []
    try:
        run = move.move(registry.get(Order), Direction.TO_COLD, limit=12, batch_size=5, progress=progress.append)
    finally:
        batch_done.disconnect(dispatch_uid="t1")
        run_finished.disconnect(dispatch_uid="t2")
    assert run.state == RunState.STOPPED and run.rows == 12
    assert seen == [5, 5, 2, RunState.STOPPED]
    assert progress[-1].rows == 12 and progress[-1].total_estimate == 12


def test_second_run_raises_lock_held_and_stale_lock_is_taken_over(tiers):
    seed_orders(tiers.hot, 10)
    order = registry.get(Order)
    first = move.start_run(order, Direction.TO_COLD, trigger="test", selection={})
    with pytest.raises(move.LockHeld, match="already being moved"):
        move.move(order, Direction.TO_COLD)
    # a parallel worker of the same run shares the lock
    move.move(order, Direction.TO_COLD, run=first, key_range=(1, 6))
    assert Order.objects.cold().count() == 5
    move.finish_run(first)
    assert not TierLock.objects.using(tiers.hot).exists()
    # a lock of a dead process on this host, and one with an old heartbeat, are taken over
    dead = MigrationRun.objects.using(tiers.hot).create(model_label="orders.Order", direction=Direction.TO_COLD)
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=dead,
                                             owner=f"{os.uname().nodename}:999999")
    import socket
    TierLock.objects.using(tiers.hot).filter(run=dead).update(owner=f"{socket.gethostname()}:999999")
    assert move.move(order, Direction.TO_COLD).rows == 5
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=dead, owner="elsewhere:1",
                                             heartbeat_at=timezone.now() - timedelta(hours=1))
    assert move.move(order, Direction.TO_COLD).state == RunState.SUCCEEDED
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=dead, owner="elsewhere:1")
    with pytest.raises(move.LockHeld):
        move.move(order, Direction.TO_COLD)


def test_pg_target_sequences_are_advanced(tiers, path):
    """PostgreSQL's sequences and MySQL's AUTO_INCREMENT are ahead of the keys copied in."""
    if tiers.cold_vendor not in ("postgresql", "mysql"):
        pytest.skip("sequences are a PostgreSQL and MySQL matter")
    seed_orders(tiers.hot, 25, lines=2)
    move.move(registry.get(Order), Direction.TO_COLD, path=path)
    new = Order.objects.using(tiers.cold).create(customer_id=1, created_at=timezone.now())
    line = OrderLine.objects.using(tiers.cold).create(order=new, sku="S", price=Decimal("1.00"))
    assert new.pk > 25 and line.pk > 50


def test_promote_moves_a_cold_customer_back_even_while_a_run_holds_the_lock(tiers):
    old = timezone.now() - timedelta(days=90)
    for i in range(3):
        Customer.objects.using(tiers.hot).create(email=f"c{i}@x.org", name=f"C{i}", last_seen=old)
    customer = registry.get(Customer)
    move.move(customer, Direction.TO_COLD)
    assert Customer.objects.cold().count() == 3
    holder = move.start_run(customer, Direction.TO_HOT, trigger="test", selection={})
    try:
        found = Customer.objects.get(email="c1@x.org")  # cold hit -> promote
    finally:
        move.finish_run(holder)
    assert found._state.db == tiers.hot
    assert timezone.now() - found.last_seen < timedelta(minutes=5)
    assert Customer.objects.cold().count() == 2 and Customer.objects.hot().count() == 1


def test_rows_per_second_per_path(tiers, path, capsys):
    """A quick throughput figure per path (printed, never asserted)."""
    seed_orders(tiers.hot, 5000, lines=2)
    t0 = time.monotonic()
    run = move.move(registry.get(Order), Direction.TO_COLD, path=path)
    seconds = time.monotonic() - t0
    assert run.rows == 5000
    with capsys.disabled():
        print(f"\n[mover] {tiers.backend} {path}: {run.rows} orders + {run.child_rows} lines in {seconds:.2f}s = "
              f"{(run.rows + run.child_rows) / seconds:,.0f} rows/s ({run.batches} batches)")
