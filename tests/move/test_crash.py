"""Crash safety: SIGKILL ``migrate_cold`` (and ``restore_hot``) at random instants and named steps,
rerun, and check that every row is in exactly one tier with its content unchanged."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orders.models import Order, OrderLine
from tests.move.helpers import assert_lines_follow_orders, content, seed_orders, snapshot
from tiering import move
from tiering.models import BatchState, Direction, MigrationBatch, MigrationRun, RunState, TierLock
from tiering.registry import registry

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.slow]

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg", "mariadb", "mariadb_db"]  # + mixed, MariaDB

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "crash_driver.py"
ORDERS = 200_000
# MariaDB: fewer orders than PostgreSQL (its snapshots are slower), enough that the timed kills land mid-way
ORDERS_ON = {"mariadb": 100_000, "mariadb_db": 100_000}
ROUNDS = 22
STEPS = ["after_copy", "after_verify", "mid_delete", "after_delete_before_ledger"]


def start_driver(tiers, crash_at: str | None, batch_size: int, path: str,
                 direction: str = Direction.TO_COLD) -> subprocess.Popen:
    env = os.environ.copy()
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", HOTCOLD_TEST_SUBPROCESS="1")
    env.pop("HOTCOLD_TEST_CRASH_AT", None)
    if crash_at:
        env["HOTCOLD_TEST_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, str(DRIVER), tiers.hot, tiers.cold, str(batch_size),
                             path, direction], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_instants_then_rerun(tiers, path):
    if path == "orm" and tiers.backend in ("pg_schema", "mariadb_db"):
        pytest.skip("the orm path on one PostgreSQL server is the postgresql case's; this pair's own is pg_insert")
    rng = random.Random(5)
    t0 = time.monotonic()
    orders = ORDERS_ON.get(tiers.backend, ORDERS)
    seed_orders(tiers.hot, orders, lines=1)
    seeded = time.monotonic() - t0
    before = content(snapshot(tiers.hot, tiers.cold))
    assert len(before["orders_order"]) == orders
    kills, moved = 0, []
    for round_no in range(ROUNDS):
        # half the rounds die at a named step, the others at a random instant
        named = round_no % 2 == 0
        crash_at = f"{rng.choice(STEPS)}:{rng.randint(1, 4)}" if named else None
        # small batches: the SQL fast paths move ~100k rows/s, so large ones would finish before the kills
        proc = start_driver(tiers, crash_at, batch_size=rng.choice([10, 20, 40]), path=path)
        if named:
            proc.wait(timeout=120)
        else:
            time.sleep(rng.uniform(0.8, 2.2))  # Django start-up takes ~0.6 s
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        out, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, f"round {round_no}: driver failed:\n{out}\n{err[-3000:]}"
        # the next run repairs first: limit=0 repairs and stops before the first batch
        repair = move.move(registry.get(Order), Direction.TO_COLD, limit=0, trigger="crash-test-repair")
        assert repair.state == RunState.STOPPED
        snap = snapshot(tiers.hot, tiers.cold)  # asserts no row in both tiers
        assert content(snap) == before, f"round {round_no} ({crash_at or 'timed kill'}): content changed"
        moved.append(sum(1 for tier, _ in snap["orders_order"].values() if tier == "cold"))
    assert kills >= 20
    assert 0 < moved[-1] < orders, f"the kills should land mid-way: orders in cold per round {moved}"
    proc = start_driver(tiers, None, batch_size=2000, path=path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"final run failed:\n{out}\n{err[-3000:]}"
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before
    assert {tier for rows in snap.values() for tier, _ in rows.values()} == {"cold"}
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    assert not MigrationBatch.objects.using(tiers.hot).filter(
        state__in=[BatchState.COPYING, BatchState.COPIED, BatchState.VERIFIED, BatchState.FAILED]).exists()
    assert not MigrationRun.objects.using(tiers.hot).filter(state=RunState.RUNNING).exists()
    assert not TierLock.objects.using(tiers.hot).exists()
    assert Order.objects.cold().count() == orders
    print(f"\n[crash] {tiers.backend} {path}: seeded {orders} orders + lines in {seeded:.1f}s, {kills} kills, "
          f"total {time.monotonic() - t0:.0f}s; orders in cold after each round: {moved}")


def test_a_restore_killed_after_its_hot_commit_keeps_what_the_application_wrote_meanwhile(tiers, path):
    """SIGKILL a restore after its first batch's copies committed in hot, before the cold delete. Until the
    next run those rows are in both tiers and the application reads and writes the hot copies, and deletes
    one; the next restore must keep those writes (the cold rows go, not the copies), must not bring the
    deleted row back from cold, and must leave every row in one tier."""
    if tiers.backend not in ("postgresql", "mariadb") and (path != "orm" or tiers.backend in ("pg_schema",
                                                                                              "mariadb_db")):
        pytest.skip("this pair's path commits both tiers in one COMMIT (no step between them to stop at); "
                    "test_repair_of_a_restore_cut_between_the_commits_... covers its repair")
    seed_orders(tiers.hot, 60, lines=2)
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 60
    before = content(snapshot(tiers.hot, tiers.cold))
    # pg_copy, mysql_bulk: after_verify is after the hot commit; orm: after_copy is after the copies' commit
    proc = start_driver(tiers, "after_copy:1" if path == "orm" else "after_verify:1", 20, path, Direction.TO_HOT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the restore was not killed:\n{out}\n{err[-3000:]}"
    in_both = set(Order.objects.using(tiers.hot).values_list("pk", flat=True)) & set(
        Order.objects.using(tiers.cold).values_list("pk", flat=True))
    assert in_both == set(range(1, 21))
    killed = MigrationBatch.objects.using(tiers.hot).get(run__direction=Direction.TO_HOT, seq=1)
    assert killed.state == BatchState.VERIFIED and killed.keys() == list(range(1, 21))  # committed with the copies
    order = Order.objects.get(pk=5)  # the application reads hot first: the copy
    order.note = "written after the crash"
    order.save()
    OrderLine.objects.using(tiers.hot).filter(order_id=6).update(sku="CHANGED")
    changed = {"orders_order": {5, 7}, "orders_orderline": set(
        OrderLine.objects.using(tiers.hot).filter(order_id__in=[6, 7]).values_list("pk", flat=True))}
    Order.objects.get(pk=7).delete()  # the copy and its lines
    run = move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, path=path)
    assert run.state == RunState.SUCCEEDED and run.rows == 40
    snap = snapshot(tiers.hot, tiers.cold)  # asserts no row in both tiers
    assert {tier for rows in snap.values() for tier, _ in rows.values()} == {"hot"}
    assert Order.objects.get(pk=5).note == "written after the crash"
    assert set(OrderLine.objects.filter(order_id=6).values_list("sku", flat=True)) == {"CHANGED"}
    assert 7 not in snap["orders_order"] and not OrderLine.objects.filter(order_id=7).exists()  # deleted: gone
    for table, rows in content(snap).items():
        assert {pk: v for pk, v in rows.items() if pk not in changed[table]} == {
            pk: v for pk, v in before[table].items() if pk not in changed[table]}
    repaired = MigrationBatch.objects.using(tiers.hot).get(pk=killed.pk)
    assert repaired.state == BatchState.DONE and "19 rows finished, 20 cold rows removed" in repaired.error
    assert_lines_follow_orders(tiers.hot, tiers.cold)
