"""The application keeps writing while the mover runs; a tier goes away mid-run."""
from __future__ import annotations

import random
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from orders.models import Order, OrderLine
from tests.move.helpers import assert_lines_follow_orders, content, seed_orders, snapshot
from tiering import move
from tiering.models import BatchState, Direction, MigrationBatch, RunState
from tiering.move import faults
from tiering.move.paths.orm import OrmPath
from tiering.registry import registry
from tiering.signals import batch_done

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg", "mariadb", "mariadb_db"]  # + mixed, MariaDB

N = 3000


class Writer(threading.Thread):
    """Updates, re-dates (no longer eligible), inserts orders and adds lines, recording what it did."""

    def __init__(self, hot: str) -> None:
        super().__init__(daemon=True)
        self.hot, self.stop, self.error = hot, threading.Event(), None
        self.writing = threading.Event()  # set after the first writes: the move starts once they happen
        self.notes: dict[int, str] = {}
        self.recent: set[int] = set()
        self.new_orders: list[int] = []
        self.new_lines: list[int] = []
        self.writes = 0

    def run(self) -> None:
        rng = random.Random(7)
        try:
            i = 0
            while not self.stop.is_set():
                i += 1
                pk = rng.randrange(1, N + 1)
                kind = rng.random()
                if kind < 0.6:  # an update through the tiered manager: wherever the row is
                    note = f"w{i}"
                    if Order.objects.filter(pk=pk).update(note=note):
                        self.notes[pk] = note
                elif kind < 0.7:  # re-dated: no longer eligible, must stay hot
                    if Order.objects.hot().filter(pk=pk).update(created_at=timezone.now()):
                        self.recent.add(pk)
                elif kind < 0.85:
                    with transaction.atomic(using=self.hot):  # an order with its line, as the app would
                        order = Order.objects.create(customer_id=1, created_at=timezone.now() - timedelta(days=400))
                        OrderLine.objects.using(self.hot).create(order=order, sku="NEW", price=Decimal("1.50"))
                    self.new_orders.append(order.pk)
                else:  # a line for an order that may be on its way to cold
                    try:
                        line = OrderLine.objects.using(self.hot).create(order_id=pk, sku="ADD", price=Decimal("2.00"))
                        self.new_lines.append(line.pk)
                    except IntegrityError:
                        pass  # the order already moved: the application sees the error, nothing is lost
                self.writes += 1
                if self.writes == 10:
                    self.writing.set()
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            connections.close_all()


def test_concurrent_writers_lose_nothing(tiers, path):
    seed_orders(tiers.hot, N, lines=2)
    writer = Writer(tiers.hot)
    writer.start()
    try:  # the writer's start-up (its connection) must not take the move's window: the move waits for it
        assert writer.writing.wait(30), writer.error
        run = move.move(registry.get(Order), Direction.TO_COLD, path=path, batch_size=40, sleep=0.005)
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert run.state == RunState.SUCCEEDED
    assert writer.writes > 50
    snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    notes = dict(Order.objects.filter(pk__in=list(writer.notes)).values_list("pk", "note"))
    lost = {pk: (note, notes.get(pk)) for pk, note in writer.notes.items() if notes.get(pk) != note}
    assert not lost, f"lost updates: {list(lost.items())[:5]}"
    assert set(Order.objects.hot().values_list("pk", flat=True)) >= writer.recent
    assert Order.objects.filter(pk__in=writer.new_orders).count() == len(writer.new_orders)
    assert OrderLine.objects.using(tiers.hot).filter(pk__in=writer.new_lines).count() + \
        OrderLine.objects.using(tiers.cold).filter(pk__in=writer.new_lines).count() == len(writer.new_lines)
    kept = sum(MigrationBatch.objects.using(tiers.hot).filter(run=run).values_list("kept", flat=True))
    print(f"\n[concurrency] {tiers.backend} {path}: {writer.writes} writes, {kept} rows kept in hot by the re-check")


def assert_failed_mid_run_and_the_next_run_finishes(tiers, path: str, run, before: dict, error: str, *,
                                                    moved: int, total: int) -> None:
    """After a run to cold that failed mid-way on a broken cold tier: the ledger says why (the run, and the
    batch that met it: FAILED with its copy left for the repair, or UNDONE), the batches done stay done and
    nothing else left hot; the next run repairs that batch and finishes the job."""
    run.refresh_from_db(using=tiers.hot)
    assert run.state == RunState.FAILED and re.search(error, run.error), run.error
    failed = MigrationBatch.objects.using(tiers.hot).exclude(state=BatchState.DONE).get(run=run)
    assert failed.state in (BatchState.FAILED, BatchState.UNDONE) and re.search(error, failed.error)
    assert sum(b.rows for b in MigrationBatch.objects.using(tiers.hot).filter(run=run, state=BatchState.DONE)) == moved
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before
    assert sum(1 for tier, _ in snap["orders_order"].values() if tier == "hot") == total - moved
    again = move.move(registry.get(Order), Direction.TO_COLD, path=path, batch_size=50)
    assert again.state == RunState.SUCCEEDED and again.rows == total - moved
    if failed.state == BatchState.FAILED:
        failed.refresh_from_db(using=tiers.hot)
        assert failed.state == BatchState.UNDONE and f"repaired by run {again.pk}" in failed.error
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before and {t for rows in snap.values() for t, _ in rows.values()} == {"cold"}
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_cold_unreachable_mid_run_fails_cleanly_and_next_run_resumes(tiers, path):
    seed_orders(tiers.hot, 500, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    cold = connections[tiers.cold]
    saved = dict(cold.settings_dict)
    seen = []

    # pg_insert moves a batch on the hot connection alone (cold is a schema of the same database):
    # there the cold tier goes away by losing its schema
    schema_gone = path == "pg_insert"
    # mysql_insert likewise moves on the hot connection (cold is another database of the server): its table goes
    table_gone = path == "mysql_insert"
    error = "ProgrammingError" if schema_gone or table_gone else "OperationalError"
    cold_db = connections[tiers.cold].settings_dict["NAME"]

    def break_cold(batch, **kwargs):
        seen.append(batch.seq)
        if len(seen) == 3:  # point the cold alias somewhere unreachable
            cold.close()
            if schema_gone:
                with connections[tiers.hot].cursor() as cursor:
                    cursor.execute("ALTER SCHEMA cold RENAME TO cold_gone")
            elif table_gone:
                with connections[tiers.hot].cursor() as cursor:
                    cursor.execute(f"RENAME TABLE `{cold_db}`.orders_order TO `{cold_db}`.orders_order_gone")
            elif cold.vendor == "sqlite":
                cold.settings_dict["NAME"] = "/nonexistent/dir/cold.sqlite3"
            else:
                cold.settings_dict["PORT"] = "1"

    batch_done.connect(break_cold, weak=False, dispatch_uid="break_cold")
    try:
        with pytest.raises(move.MoveError) as info:
            move.move(registry.get(Order), Direction.TO_COLD, path=path, batch_size=50)
    finally:
        batch_done.disconnect(dispatch_uid="break_cold")
        cold.close()
        cold.settings_dict.clear()
        cold.settings_dict.update(saved)
        if schema_gone and len(seen) >= 3:
            with connections[tiers.hot].cursor() as cursor:
                cursor.execute("ALTER SCHEMA cold_gone RENAME TO cold")
        if table_gone and len(seen) >= 3:
            with connections[tiers.hot].cursor() as cursor:
                cursor.execute(f"RENAME TABLE `{cold_db}`.orders_order_gone TO `{cold_db}`.orders_order")
    assert_failed_mid_run_and_the_next_run_finishes(tiers, path, info.value.run, before, error, moved=150, total=500)


def test_cold_turning_read_only_mid_run_fails_cleanly_and_next_run_resumes(tiers, path):
    """After two batches the mover's own cold connection becomes read-only (a failover to a standby, a
    full disk remounted read-only): the run fails with the database's error, the batches done stay done,
    nothing else leaves hot, the ledger says what happened, and the next run finishes the job."""
    if path in ("pg_insert", "mysql_insert"):
        pytest.skip(f"{path} moves on the hot connection: one server cannot be read-only for one tier only")
    seed_orders(tiers.hot, 300, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    cold = connections[tiers.cold]
    seen = []

    def cold_read_only(batch, **kwargs):
        seen.append(batch.seq)
        if len(seen) == 2:
            with cold.cursor() as cursor:  # every later transaction of this session is read-only
                cursor.execute({"sqlite": "PRAGMA query_only = ON", "mysql": "SET SESSION TRANSACTION READ ONLY"}.get(
                    cold.vendor, "SET default_transaction_read_only = on"))

    batch_done.connect(cold_read_only, weak=False, dispatch_uid="cold_read_only")
    try:
        with pytest.raises(move.MoveError) as info:
            move.move(registry.get(Order), Direction.TO_COLD, path=path, batch_size=50)
    finally:
        batch_done.disconnect(dispatch_uid="cold_read_only")
        cold.close()  # the next connection is writable again
    assert_failed_mid_run_and_the_next_run_finishes(tiers, path, info.value.run, before, "readonly|read-only|READ ONLY",
                                                    moved=100, total=300)


def test_read_only_cold_sqlite_fails_and_deletes_nothing(tiers):
    if tiers.cold_vendor != "sqlite":
        pytest.skip("a read-only database file is an SQLite matter")
    seed_orders(tiers.hot, 100, lines=1)
    before = content(snapshot(tiers.hot, tiers.cold))
    cold = connections[tiers.cold]
    saved = dict(cold.settings_dict)
    cold.close()
    cold.settings_dict["NAME"] = f"file:{saved['NAME']}?mode=ro"
    cold.settings_dict["OPTIONS"] = {**saved["OPTIONS"], "uri": True}
    try:
        with pytest.raises(move.MoveError, match="readonly|read-only|attempt to write"):
            move.move(registry.get(Order), Direction.TO_COLD, path="orm", batch_size=30)
    finally:
        cold.close()
        cold.settings_dict.clear()
        cold.settings_dict.update(saved)
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before
    assert {tier for rows in snap.values() for tier, _ in rows.values()} == {"hot"}
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 100


@pytest.mark.parametrize("write", ["update", "delete"])
def test_a_write_racing_a_restore_reaches_the_restored_row(tiers, path, write, monkeypatch):
    """The application updates (or deletes) an order through the tiered manager while a restore of it has
    copied it but not committed. Hot does not show the copy yet; cold's row is locked by the restore
    (PostgreSQL paths) and gone once the write gets through. The write must still land, on the restored row
    in hot."""
    seed_orders(tiers.hot, 20, lines=1)
    move.move(registry.get(Order), Direction.TO_COLD, path=path)
    real_hook, result = faults.checkpoint, {}

    def application_update():
        try:
            orders = Order.objects.filter(pk=3)
            result["written"] = (orders.update(note="updated during the restore") if write == "update"
                                 else orders.delete()[1].get("orders.Order", 0))
        except Exception as exc:  # reported by the test
            result["error"] = exc
        finally:
            connections.close_all()

    def update_during_the_copy(step):
        if step == "after_copy" and "thread" not in result:
            result["thread"] = threading.Thread(target=application_update, daemon=True)
            result["thread"].start()
            result["thread"].join(0.5)  # its hot UPDATE is done (nothing there yet), its cold one waits or is done
        real_hook(step)

    monkeypatch.setattr(faults, "checkpoint", update_during_the_copy)
    run = move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, path=path)
    result["thread"].join(30)
    assert "error" not in result, result["error"]
    # the orm path commits its copies before its verify: for that while the row is in both tiers and the
    # write reaches both alike (the verify then finds the updated copies equal; a deleted one stays out)
    assert result["written"] == (2 if path == "orm" else 1)
    snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert not Order.objects.cold().exists()
    if write == "update":
        assert run.rows == 20 and Order.objects.hot().get(pk=3).note == "updated during the restore"
    else:
        assert (not Order.objects.filter(pk=3).exists()
                and not OrderLine.objects.using(tiers.hot).filter(order_id=3).exists())
        assert Order.objects.hot().count() == 19


def test_write_between_copy_and_verify_is_kept_on_either_side(tiers, path, monkeypatch):
    """An application write lands after the copy: on the source row (it stays) or on the copy
    (read from the target tier; the copy becomes the row). Either way the write survives.
    The fast paths have no such window (copy, verify and delete share one locked transaction):
    see tests/move/paths/test_fast_paths.py."""
    if path != "orm":
        pytest.skip("the fast paths copy, verify and delete under one lock: no window between copy and verify")
    seed_orders(tiers.hot, 10, lines=1)
    real_copy = OrmPath.copy

    def copy_then_write(path, batch, pks):
        result = real_copy(path, batch, pks)
        Order.objects.using(tiers.cold).filter(pk=3).update(note="changed in the copy")
        Order.objects.using(tiers.hot).filter(pk=4).update(note="changed in the source")
        return result

    monkeypatch.setattr(OrmPath, "copy", copy_then_write)
    run = move.move(registry.get(Order), Direction.TO_COLD, path=path)
    assert run.rows == 9 and MigrationBatch.objects.using(tiers.hot).get(run=run).kept == 1
    snapshot(tiers.hot, tiers.cold)
    assert Order.objects.cold().get(pk=3).note == "changed in the copy"
    assert Order.objects.hot().get(pk=4).note == "changed in the source"
    assert list(Order.objects.hot().values_list("pk", flat=True)) == [4]
    assert_lines_follow_orders(tiers.hot, tiers.cold)
