"""The SQL fast paths (SQLite ATTACH, PostgreSQL COPY and INSERT, MariaDB's two): stale copies, repair, fallbacks."""
from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing, contextmanager

import pytest
from django.db import connections
from django.utils import timezone

from orders.models import Order, OrderLine
from tests.move.helpers import FAST_PATHS, Killed, assert_lines_follow_orders, content, seed_orders, snapshot
from tiering import move
from tiering.models import BatchState, Direction, MigrationBatch, MigrationRun, RunState
from tiering.move import faults, ledger
from tiering.move.paths.sqlite import SQLiteAttachPath
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "mariadb", "mariadb_db"]  # and MariaDB's one-server pair



def copy_rows(model, source: str, target: str, **filters) -> None:
    rows = list(model._base_manager.using(source).filter(**filters).values())
    model._base_manager.using(target).bulk_create([model(**row) for row in rows])


def cut_between_the_commits(tiers, recorded_keys, done_commits_with_delete: bool = False,
                            direction: str = Direction.TO_COLD) -> MigrationRun:
    """A run of another process that died after its target commit: its open batch (keys 1-10 and the
    ``recorded_keys``) has every order of that range and its lines copied into the target, and the
    source untouched."""
    crashed = MigrationRun.objects.using(tiers.hot).create(
        model_label="orders.Order", direction=direction, owner="elsewhere:1", cutoff=timezone.now(),
        done_commits_with_delete=done_commits_with_delete)
    MigrationBatch.objects.using(tiers.hot).create(run=crashed, seq=1, state=BatchState.COPYING,
                                                   pks=recorded_keys, key_low="1", key_high="10")
    source, target = (tiers.hot, tiers.cold) if direction == Direction.TO_COLD else (tiers.cold, tiers.hot)
    copy_rows(Order, source, target, pk__lte=10)
    copy_rows(OrderLine, source, target, order_id__lte=10)
    return crashed


def test_stale_copies_in_the_target_give_way_to_the_source(tiers):
    """Copies the ledger does not know (a crashed attempt, a write through such a copy) are replaced."""
    seed_orders(tiers.hot, 20, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    copy_rows(Order, tiers.hot, tiers.cold, pk__in=[3, 5])
    copy_rows(OrderLine, tiers.hot, tiers.cold, order_id__in=[3, 5])
    Order.objects.using(tiers.cold).filter(pk=3).update(note="stale copy")
    OrderLine.objects.using(tiers.cold).filter(order_id=5).update(sku="STALE")
    OrderLine.objects.using(tiers.cold).create(id=9999, order_id=3, sku="EXTRA", quantity=1, price="1.00")
    run = move.move(registry.get(Order), Direction.TO_COLD, path=FAST_PATHS[tiers.backend])
    assert run.state == RunState.SUCCEEDED and run.rows == 20 and run.child_rows == 40
    assert MigrationBatch.objects.using(tiers.hot).get(run=run).kept == 0
    after = snapshot(tiers.hot, tiers.cold)
    assert content(after) == before  # the source content won, the extra line of the stale copy is gone
    assert {tier for rows in after.values() for tier, _ in rows.values()} == {"cold"}
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_an_error_after_the_batch_committed_leaves_the_batch_done(tiers, monkeypatch):
    """Something failing after the COMMIT (here the SQLite path's WAL checkpoint) fails the run, but the
    committed batch stays DONE with its rows in the target: the failure handler must not relabel it."""
    if tiers.backend != "sqlite":
        pytest.skip("the checkpoint after the commit is the SQLite path's")
    seed_orders(tiers.hot, 20, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))

    def checkpoint_fails(path, cur):
        raise RuntimeError("after the commit")

    monkeypatch.setattr(SQLiteAttachPath, "checkpoint", checkpoint_fails)
    with pytest.raises(move.MoveError, match="after the commit"):
        move.move(registry.get(Order), Direction.TO_COLD, path="sqlite")
    batch = MigrationBatch.objects.using(tiers.hot).get()
    assert batch.state == BatchState.DONE and batch.rows == 20 and batch.error == ""
    assert MigrationRun.objects.using(tiers.hot).get().state == RunState.FAILED
    after = snapshot(tiers.hot, tiers.cold)
    assert content(after) == before and {t for rows in after.values() for t, _ in rows.values()} == {"cold"}


def test_batch_keys_are_recorded_as_runs_of_consecutive_integers(tiers):
    """A batch of integer keys keeps a handful of [low, high] runs in hot, not every key; keys() gives them back."""
    assert MigrationBatch.record_keys([3, 4, 5, 9, 11, 12]) == {"runs": [[3, 5], [9, 9], [11, 12]]}
    assert MigrationBatch(pks={"runs": [[3, 5], [9, 9], [11, 12]]}).keys() == [3, 4, 5, 9, 11, 12]
    assert MigrationBatch.record_keys(["b", "c"]) == ["b", "c"] == MigrationBatch(pks=["b", "c"]).keys()
    seed_orders(tiers.hot, 40, lines=1)
    Order.objects.using(tiers.hot).filter(pk__in=[7, 8, 30]).update(created_at=timezone.now())  # stay hot
    run = move.move(registry.get(Order), Direction.TO_COLD, batch_size=25, path=FAST_PATHS[tiers.backend])
    batches = MigrationBatch.objects.using(tiers.hot).filter(run=run).order_by("seq")
    assert [b.pks for b in batches] == [{"runs": [[1, 6], [9, 27]]}, {"runs": [[28, 29], [31, 40]]}]
    assert [k for b in batches for k in b.keys()] == [k for k in range(1, 41) if k not in (7, 8, 30)]


def test_an_extra_child_copy_alone_is_found_and_removed(tiers):
    """A target child the source does not have, next to otherwise identical copies: the batch counts the
    target's children (it held some in the batch's key range before the copy) and removes the extra one."""
    seed_orders(tiers.hot, 20, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    copy_rows(Order, tiers.hot, tiers.cold, pk=7)
    copy_rows(OrderLine, tiers.hot, tiers.cold, order_id=7)
    OrderLine.objects.using(tiers.cold).create(id=9999, order_id=7, sku="EXTRA", quantity=1, price="1.00")
    run = move.move(registry.get(Order), Direction.TO_COLD, path=FAST_PATHS[tiers.backend])
    assert run.state == RunState.SUCCEEDED and run.rows == 20 and run.child_rows == 40
    assert content(snapshot(tiers.hot, tiers.cold)) == before
    assert not OrderLine.objects.using(tiers.cold).filter(pk=9999).exists()


@pytest.mark.parametrize("recorded_keys", [[1, 2, 3, 4, 5], {"runs": [[1, 2], [4, 5]]}, []],
                         ids=["key-list", "key-runs", "range-only"])
def test_repair_uses_the_key_range_of_a_batch_cut_between_the_two_commits(tiers, recorded_keys):
    """The target committed, the source did not: every copy in the batch's key range is removed,
    including rows that became eligible after the keys were recorded (TO_COLD fast-path batches
    record the range only)."""
    seed_orders(tiers.hot, 30, lines=1)
    before = content(snapshot(tiers.hot, tiers.cold))
    crashed = cut_between_the_commits(tiers, recorded_keys)
    repair = move.move(registry.get(Order), Direction.TO_COLD, limit=0, path=FAST_PATHS[tiers.backend])
    assert repair.state == RunState.STOPPED
    batch = MigrationBatch.objects.using(tiers.hot).get(run=crashed)
    assert batch.state == BatchState.UNDONE and "10 copies removed" in batch.error
    snap = snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert content(snap) == before and {t for rows in snap.values() for t, _ in rows.values()} == {"hot"}
    assert move.move(registry.get(Order), Direction.TO_COLD).rows == 30
    assert content(snapshot(tiers.hot, tiers.cold)) == before


@pytest.mark.parametrize("recorded", ["now", "before-the-flag"])
def test_repair_after_a_crash_between_the_commits_honours_a_delete_made_meanwhile(tiers, recorded):
    """The target committed, the source did not, and before the next run the application deleted one of the
    batch's rows in hot. A run to cold records that its batches' DONE commits with their delete (every path
    does), so an open batch deleted nothing: the key gone from hot was deleted by the application, and its
    copy is removed too. A run recorded before that flag existed gets the cautious rule: a key gone from the
    source may have moved, so its copy stays."""
    seed_orders(tiers.hot, 30, lines=2)
    crashed = cut_between_the_commits(tiers, list(range(1, 11)), done_commits_with_delete=recorded == "now")
    with connections[tiers.hot].cursor() as cursor:  # the application deletes order 4 in hot
        cursor.execute("DELETE FROM orders_orderline WHERE order_id = 4")
        cursor.execute("DELETE FROM orders_order WHERE id = 4")
    repair = move.move(registry.get(Order), Direction.TO_COLD, limit=0)  # goes by the crashed run's flag
    assert repair.state == RunState.STOPPED and repair.done_commits_with_delete  # recorded for its own repair
    batch = MigrationBatch.objects.using(tiers.hot).get(run=crashed)
    snap = snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    tiers_of = {pk: tier for pk, (tier, _) in snap["orders_order"].items()}
    assert {pk for pk, tier in tiers_of.items() if tier == "hot"} == set(range(1, 31)) - {4}
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    if recorded == "now":
        assert batch.state == BatchState.UNDONE and "0 rows finished, 10 copies removed" in batch.error
        assert 4 not in tiers_of and not OrderLine.objects.using(tiers.cold).filter(order_id=4).exists()
    else:  # without the flag a deleted row lives on in cold: no rule may remove what could be a row's only copy
        assert batch.state == BatchState.DONE and "1 rows finished, 9 copies removed" in batch.error
        assert tiers_of[4] == "cold"


def test_repair_of_a_restore_cut_between_the_commits_keeps_the_application_s_writes_to_the_copies(tiers):
    """A restore died after its verified copies committed in hot, before the cold delete (on SQLite that is
    between the two files' commits of one COMMIT). The application read the copies from hot and wrote to
    them. The repair removes the cold rows and keeps the copies as written; it used to remove the copies
    and, with them, the application's writes."""
    seed_orders(tiers.cold, 30, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    crashed = cut_between_the_commits(tiers, {"runs": [[1, 10]]}, direction=Direction.TO_HOT)
    order = Order.objects.get(pk=3)  # read hot first: the copy
    assert order._state.db == tiers.hot
    order.note = "written after the crash"
    order.save()
    OrderLine.objects.using(tiers.hot).filter(order_id=4).update(sku="CHANGED")
    repair = move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, limit=0)
    assert repair.state == RunState.STOPPED
    batch = MigrationBatch.objects.using(tiers.hot).get(run=crashed)
    assert batch.state == BatchState.DONE and "10 rows finished, 10 cold rows removed" in batch.error
    snap = snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    assert {pk for pk, (tier, _) in snap["orders_order"].items() if tier == "hot"} == set(range(1, 11))
    assert Order.objects.get(pk=3).note == "written after the crash"
    assert set(OrderLine.objects.filter(order_id=4).values_list("sku", flat=True)) == {"CHANGED"}
    changed = {"orders_order": {3}, "orders_orderline": set(
        OrderLine.objects.using(tiers.hot).filter(order_id=4).values_list("pk", flat=True))}
    for table, rows in content(snap).items():  # everything else as it was
        assert {pk: v for pk, v in rows.items() if pk not in changed[table]} == {
            pk: v for pk, v in before[table].items() if pk not in changed[table]}
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    assert move.move(registry.get(Order), Direction.TO_HOT, all_rows=True).rows == 20
    assert {t for rows in snapshot(tiers.hot, tiers.cold).values() for t, _ in rows.values()} == {"hot"}


@pytest.mark.parametrize("state", [BatchState.VERIFIED, BatchState.COPYING])
def test_repair_of_a_restore_cut_between_the_commits_honours_a_delete_of_a_copy(tiers, state):
    """A restore died after its copies of orders 1-10 committed in hot, before the cold delete. Since then
    the application deleted order 4 (read from hot: the copy), and a run to cold archived order 5's copy
    again. Every path commits a restore's copies with the batch's VERIFIED mark naming them, so the repair
    knows order 4 was copied and deleted since: its cold row goes too instead of bringing it back. Order 5's
    cold row is the row a later run archived, and stays. A batch without the mark (COPYING: recorded before
    it existed) gets the cautious rule: a key missing from hot may never have been copied, its cold row stays."""
    seed_orders(tiers.cold, 30, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    crashed = cut_between_the_commits(tiers, {"runs": [[1, 10]]}, direction=Direction.TO_HOT)
    MigrationBatch.objects.using(tiers.hot).filter(run=crashed).update(state=state)
    Order.objects.get(pk=4).delete()  # the copy, with its lines (the cascade)
    assert not Order.objects.using(tiers.hot).filter(pk=4).exists()
    archived = move.move(registry.get(Order), Direction.TO_COLD, pks=[5])
    assert archived.rows == 1 and not Order.objects.using(tiers.hot).filter(pk=5).exists()
    repair = move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, limit=0)
    assert repair.state == RunState.STOPPED
    batch = MigrationBatch.objects.using(tiers.hot).get(run=crashed)
    snap = snapshot(tiers.hot, tiers.cold)  # no row in both tiers
    tiers_of = {pk: tier for pk, (tier, _) in snap["orders_order"].items()}
    assert {pk for pk, tier in tiers_of.items() if tier == "hot"} == set(range(1, 11)) - {4, 5}
    assert tiers_of[5] == "cold"  # archived again since the crash: never removed as a stale original
    assert_lines_follow_orders(tiers.hot, tiers.cold)
    if state == BatchState.VERIFIED:
        assert batch.state == BatchState.DONE and "8 rows finished, 9 cold rows removed" in batch.error
        assert 4 not in tiers_of and not OrderLine.objects.using(tiers.cold).filter(order_id=4).exists()
        deleted = {"orders_order": {4}, "orders_orderline": {7, 8}}
    else:
        assert batch.state == BatchState.DONE and "8 rows finished, 8 cold rows removed" in batch.error
        assert tiers_of[4] == "cold"
        deleted = {"orders_order": set(), "orders_orderline": set()}
    for table, rows in content(snap).items():  # every other row as it was
        assert rows == {pk: v for pk, v in before[table].items() if pk not in deleted[table]}


def test_orm_path_to_cold_commits_done_with_its_delete(tiers, monkeypatch):
    """The ORM path records its DONE in the hot transaction of its deletes, as the fast paths do: a ledger
    write that fails rolls the deletes back with it, and the rows stay in hot (their copies undone)."""
    seed_orders(tiers.hot, 20, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))

    def ledger_fails(ctx, batch, result):
        raise RuntimeError("ledger write failed")

    monkeypatch.setattr(ledger, "record_done", ledger_fails)
    with pytest.raises(move.MoveError, match="ledger write failed"):
        move.move(registry.get(Order), Direction.TO_COLD, path="orm")
    run = MigrationRun.objects.using(tiers.hot).get()
    assert run.path == "orm" and run.done_commits_with_delete and run.state == RunState.FAILED
    assert MigrationBatch.objects.using(tiers.hot).get().state in (BatchState.FAILED, BatchState.UNDONE)
    after = snapshot(tiers.hot, tiers.cold)
    assert content(after) == before and {t for rows in after.values() for t, _ in rows.values()} == {"hot"}


def test_selection_with_a_join_moves_on_the_orm_path(tiers):
    seed_orders(tiers.hot, 10, lines=2)
    move.move(registry.get(Order), Direction.TO_COLD)
    sku = OrderLine.objects.using(tiers.cold).get(pk=7).sku
    run = move.move(registry.get(Order), Direction.TO_HOT, where={"lines__sku": sku})
    assert run.rows == 1 and run.child_rows == 2 and run.path == "orm"
    assert list(Order.objects.hot().values_list("pk", flat=True)) == [4]
    assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_fast_path_matches_the_orm_path_byte_for_byte(tiers):
    """Both directions on the fast path leave the same rows as the portable path would."""
    seed_orders(tiers.hot, 200, lines=3)
    before = content(snapshot(tiers.hot, tiers.cold))
    order = registry.get(Order)
    assert move.move(order, Direction.TO_COLD, path=FAST_PATHS[tiers.backend], batch_size=64).rows == 200
    assert content(snapshot(tiers.hot, tiers.cold)) == before
    run = move.move(order, Direction.TO_HOT, all_rows=True, path=FAST_PATHS[tiers.backend], batch_size=64)
    assert run.rows == 200 and run.child_rows == 600
    snap = snapshot(tiers.hot, tiers.cold)
    assert content(snap) == before and {t for rows in snap.values() for t, _ in rows.values()} == {"hot"}
    assert all(len(b.checksum) == 64 for b in MigrationBatch.objects.using(tiers.hot).filter(run=run))
    with connections[tiers.hot].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tiering_restoredrow WHERE model_label = 'orders.Order'")
        assert cursor.fetchone()[0] == 200  # restored rows are held in hot


def test_a_target_that_alters_rows_as_they_are_written_deletes_nothing_from_the_source(tiers):
    """The verify reads the target back: a trigger there that rewrites rows (a stand-in for a target that
    does not store what it is sent) keeps every row in the source, and no copy is left in the target."""
    seed_orders(tiers.hot, 12, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    with every_fifth_line_altered_on_insert(tiers.cold, tiers.backend):
        try:
            run = move.move(registry.get(Order), Direction.TO_COLD, path=FAST_PATHS[tiers.backend])
        except move.MoveError as exc:  # PostgreSQL: a batch copied straight in that differs fails whole
            run = exc.run
            assert run.state == RunState.FAILED and "still differs" in run.error
        else:  # one-transaction paths: the parents whose lines differ are copied again, then stay in the source
            assert run.state == RunState.SUCCEEDED and run.rows < 12
        altered = set(OrderLine.objects.using(tiers.hot).filter(id__in=[5, 10, 15, 20]).values_list("order_id",
                                                                                                   flat=True))
        assert altered and not Order.objects.using(tiers.cold).filter(pk__in=altered).exists()
        assert not OrderLine.objects.using(tiers.cold).filter(sku="ALTERED").exists()
        snap = snapshot(tiers.hot, tiers.cold)
        assert content(snap) == before  # every row once, as it was
        assert_lines_follow_orders(tiers.hot, tiers.cold)


def test_a_restore_on_the_orm_path_commits_in_hot_only_copies_that_match_cold(tiers, monkeypatch):
    """The orm path commits a batch's copies before its verify, and a restore's copies in hot are the rows
    from that commit on (the repair keeps them). So they are compared with cold before they commit: a hot
    that rewrites rows as they are written gets none of them, even when the run dies right after the copy."""
    if tiers.backend == "pg_schema":
        pytest.skip("the orm path on one PostgreSQL server is the postgresql case's")
    seed_orders(tiers.cold, 12, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    altered = set(OrderLine.objects.using(tiers.cold).filter(id__in=[5, 10, 15, 20]).values_list("order_id",
                                                                                                flat=True))

    def killed_after_the_copy(step):
        if step == "after_copy":
            raise Killed(step)

    with every_fifth_line_altered_on_insert(tiers.hot, tiers.backend):
        monkeypatch.setattr(faults, "checkpoint", killed_after_the_copy)
        with pytest.raises(Killed):
            move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, path="orm")
        monkeypatch.undo()
        hot_now = set(Order.objects.using(tiers.hot).values_list("pk", flat=True))
        assert hot_now == set(range(1, 13)) - altered  # the matching copies committed, the altered did not
        assert not OrderLine.objects.using(tiers.hot).filter(sku="ALTERED").exists()
        run = move.move(registry.get(Order), Direction.TO_HOT, all_rows=True, path="orm")
        assert run.state == RunState.SUCCEEDED and run.rows == 0
        assert MigrationBatch.objects.using(tiers.hot).get(run=run).kept == len(altered)
    snap = snapshot(tiers.hot, tiers.cold)  # the repair settled the copies; the altered rows stay in cold
    assert content(snap) == before
    assert {pk for pk, (tier, _) in snap["orders_order"].items() if tier == "cold"} == altered
    assert_lines_follow_orders(tiers.hot, tiers.cold)


@contextmanager
def every_fifth_line_altered_on_insert(alias: str, backend: str):
    """A trigger in ``alias`` that rewrites the sku of order lines whose id is a multiple of 5 as they are
    inserted: a stand-in for a target that does not store what it is sent."""
    with connections[alias].cursor() as cur:
        if backend == "sqlite":
            cur.execute("CREATE TRIGGER tiering_test_alter AFTER INSERT ON orders_orderline WHEN NEW.id % 5 = 0 "
                        "BEGIN UPDATE orders_orderline SET sku = 'ALTERED' WHERE id = NEW.id; END")
        elif connections[alias].vendor == "mysql":
            cur.execute("CREATE TRIGGER tiering_test_alter BEFORE INSERT ON orders_orderline FOR EACH ROW "
                        "BEGIN IF NEW.id % 5 = 0 THEN SET NEW.sku = 'ALTERED'; END IF; END")
        else:
            cur.execute("CREATE FUNCTION tiering_test_alter() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN IF NEW.id % 5 = 0 THEN NEW.sku := 'ALTERED'; END IF; RETURN NEW; END $$")
            cur.execute("CREATE TRIGGER tiering_test_alter BEFORE INSERT ON orders_orderline "
                        "FOR EACH ROW EXECUTE FUNCTION tiering_test_alter()")
    try:
        yield
    finally:
        with connections[alias].cursor() as cur:
            mysql = connections[alias].vendor == "mysql"
            cur.execute("DROP TRIGGER tiering_test_alter" + ("" if backend == "sqlite" or mysql else
                                                             " ON orders_orderline"))
            if backend != "sqlite" and not mysql:
                cur.execute("DROP FUNCTION tiering_test_alter()")


def test_sqlite_batch_switches_foreign_key_checks_off_only_for_itself(settings):
    """E010 holds for orders.Order, so its SQLite batches skip SQLite's row-by-row foreign key checks
    (the mover keeps parent/child order itself); the connection gets them back after the batch."""
    settings.TIERING = {**settings.TIERING, "HOT": "default", "COLD": "cold"}
    seed_orders("default", 30, lines=2)
    seen = []

    def record(execute, sql, params, many, context):
        if sql.startswith("INSERT INTO main."):
            with connections["cold"].cursor() as cur:
                seen.append(cur.execute("PRAGMA foreign_keys").fetchone()[0])
        return execute(sql, params, many, context)

    with connections["cold"].execute_wrapper(record):
        run = move.move(registry.get(Order), Direction.TO_COLD, path="sqlite", batch_size=10)
    assert run.rows == 30 and seen and set(seen) == {0}
    with connections["cold"].cursor() as cur:
        assert cur.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert cur.execute("PRAGMA foreign_key_check").fetchall() == []
    assert_lines_follow_orders("default", "cold")


def test_sqlite_batch_bytes_count_text_by_its_bytes_and_numbers_as_eight(settings):
    """The ledger's bytes on the SQLite path class columns by type affinity (cheap); they must equal
    a value-by-value measure of what moved, unicode text included."""
    settings.TIERING = {**settings.TIERING, "HOT": "default", "COLD": "cold"}
    seed_orders("default", 25, lines=3)
    Order.objects.using("default").filter(pk=2).update(note="naïve ✓ ünïcode")
    qn = connections["default"].ops.quote_name

    def measured(model) -> float:  # value by value: numbers 8, text and blobs their bytes
        size = " + ".join(f"CASE WHEN typeof({qn(f.column)}) IN ('integer', 'real') THEN 8 "
                          f"ELSE ifnull(length(CAST({qn(f.column)} AS BLOB)), 0) END"
                          for f in model._meta.concrete_fields)
        with connections["default"].cursor() as cur:
            return cur.execute(f"SELECT total({size}) FROM {qn(model._meta.db_table)}").fetchone()[0]

    expected = measured(Order) + measured(OrderLine)
    run = move.move(registry.get(Order), Direction.TO_COLD, path="sqlite")
    assert run.rows == 25 and run.bytes == expected > 25 * 8


def test_sqlite_batch_syncs_the_target_fully_and_hands_back_the_connection_settings(settings, tmp_path):
    """In WAL mode the two files commit one by one, target first: at each batch commit the target runs
    ``synchronous = FULL`` (its copy is on disk before the source's delete is written, so a power loss
    cannot keep the delete and lose the copy). The mover checkpoints by itself during the batch; the
    connection gets NORMAL and auto-checkpoints back, and no frame is left in the cold file's WAL."""
    settings.TIERING = {**settings.TIERING, "HOT": "default", "COLD": "cold"}
    seed_orders("default", 30, lines=2)
    seen = []

    def record(execute, sql, params, many, context):
        if sql == "COMMIT":
            raw = connections["cold"].connection
            seen.append((raw.execute("PRAGMA main.synchronous").fetchone()[0],
                         raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]))
        return execute(sql, params, many, context)

    with connections["cold"].cursor() as cur:
        before = (cur.execute("PRAGMA main.synchronous").fetchone()[0],
                  cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert before[0] < 2 and before[1] > 0  # the site's NORMAL, SQLite's auto-checkpoint
    with connections["cold"].execute_wrapper(record):
        run = move.move(registry.get(Order), Direction.TO_COLD, path="sqlite", batch_size=10)
    assert run.rows == 30 and seen and set(seen) == {(2, 0)}
    with connections["cold"].cursor() as cur:
        assert (cur.execute("PRAGMA main.synchronous").fetchone()[0],
                cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == before
    # the run ends with a checkpoint: the cold database file alone, without its WAL, holds every moved row
    bare = tmp_path / "cold-file-only.sqlite3"
    shutil.copyfile(connections["cold"].settings_dict["NAME"], bare)
    with closing(sqlite3.connect(bare)) as copy:
        assert copy.execute("SELECT count(*) FROM orders_order").fetchone()[0] == 30
        assert copy.execute("SELECT count(*) FROM orders_orderline").fetchone()[0] == 60
    assert_lines_follow_orders("default", "cold")


def test_pg_copy_target_commits_durably_on_a_server_that_does_not(tiers):
    """The target's commit must be on disk before the source deletes: on a server running
    ``synchronous_commit = off`` (the test cluster does) the batch's target transaction runs 'local'.
    A trigger on the target records the setting the copy was written under."""
    if tiers.backend != "postgresql":
        pytest.skip("the two-commit COPY path is the PostgreSQL pair's")
    seed_orders(tiers.hot, 15, lines=1)
    with connections[tiers.cold].cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone()[0] == "off"
        cur.execute("CREATE TABLE tiering_test_seen (setting text)")
        cur.execute("CREATE FUNCTION tiering_test_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "INSERT INTO tiering_test_seen VALUES (current_setting('synchronous_commit')); RETURN NULL; "
                    "END $$")
        cur.execute("CREATE TRIGGER tiering_test_seen AFTER INSERT ON orders_order FOR EACH STATEMENT "
                    "EXECUTE FUNCTION tiering_test_seen()")
    try:
        run = move.move(registry.get(Order), Direction.TO_COLD, path="pg_copy", batch_size=5)
        assert run.rows == 15
        with connections[tiers.cold].cursor() as cur:
            cur.execute("SELECT setting, count(*) FROM tiering_test_seen GROUP BY setting")
            assert cur.fetchall() == [("local", 3)]
            cur.execute("SHOW synchronous_commit")
            assert cur.fetchone()[0] == "off"  # SET LOCAL: the connection's own setting is untouched
    finally:
        with connections[tiers.cold].cursor() as cur:
            cur.execute("DROP TRIGGER tiering_test_seen ON orders_order")
            cur.execute("DROP FUNCTION tiering_test_seen()")
            cur.execute("DROP TABLE tiering_test_seen")


def test_pg_copy_digests_read_both_servers_alike_whatever_their_session_time_zones(tiers):
    """Each server digests its rows' text, and timestamptz text follows the session's TimeZone: the target
    reads with the source's settings, so tiers whose sessions differ still agree (and the rows move)."""
    if tiers.backend != "postgresql":
        pytest.skip("the server-side digests are the PostgreSQL pair's")
    seed_orders(tiers.hot, 12, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    zones = {tiers.hot: "America/St_Johns", tiers.cold: "Asia/Kathmandu"}
    try:
        for alias, zone in zones.items():
            with connections[alias].cursor() as cur:
                cur.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        run = move.move(registry.get(Order), Direction.TO_COLD, path="pg_copy")
    finally:
        for alias in zones:
            connections[alias].close()  # a fresh connection gets Django's own time zone back
    assert run.state == RunState.SUCCEEDED and run.rows == 12 and run.child_rows == 24
    assert content(snapshot(tiers.hot, tiers.cold)) == before


@contextmanager
def orders_trigger(alias: str, body: str, *, at_commit: bool = False):
    """A PL/pgSQL row trigger on ``alias``'s orders running ``body`` before each insert, or (``at_commit``)
    a constraint trigger deferred to the COMMIT: a target that stores or commits otherwise than asked."""
    with connections[alias].cursor() as cur:
        cur.execute(f"CREATE FUNCTION tiering_test_trigger() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN {body} END $$")
        kind = "CONSTRAINT TRIGGER tiering_test_trigger AFTER" if at_commit else "TRIGGER tiering_test_trigger BEFORE"
        deferred = "DEFERRABLE INITIALLY DEFERRED " if at_commit else ""
        cur.execute(f"CREATE {kind} INSERT ON orders_order {deferred}FOR EACH ROW "
                    "EXECUTE FUNCTION tiering_test_trigger()")
    try:
        yield
    finally:
        with connections[alias].cursor() as cur:
            cur.execute("DROP TRIGGER tiering_test_trigger ON orders_order")
            cur.execute("DROP FUNCTION tiering_test_trigger()")


def test_pg_copy_verify_tells_an_empty_string_from_null(tiers):
    """A target that stores '' for NULL (a trigger stands in for it) differs in the rows' text: nothing
    is deleted from the source and no copy is left in the target."""
    if tiers.backend != "postgresql":
        pytest.skip("the server-side digests are the PostgreSQL pair's")
    seed_orders(tiers.hot, 9, lines=1)  # orders 1, 4 and 7 have no note
    before = content(snapshot(tiers.hot, tiers.cold))
    with orders_trigger(tiers.cold, "NEW.note := coalesce(NEW.note, ''); RETURN NEW;"), \
            pytest.raises(move.MoveError, match="still differs"):
        move.move(registry.get(Order), Direction.TO_COLD, path="pg_copy")
    assert not Order.objects.using(tiers.cold).exists()
    assert content(snapshot(tiers.hot, tiers.cold)) == before


def test_pg_copy_verify_tells_values_swapped_between_rows(tiers):
    """The digests sum a hash of each row's text, in no order: a target that swaps two orders' notes (the
    same values and bytes, each under the other's key) still differs, and nothing moves."""
    if tiers.backend != "postgresql":
        pytest.skip("the server-side digests are the PostgreSQL pair's")
    seed_orders(tiers.hot, 6, lines=1)  # orders 2 and 3 have notes of the same length
    before = content(snapshot(tiers.hot, tiers.cold))
    swap = "IF NEW.id IN (2, 3) THEN NEW.note := replace(NEW.note, 'note ' || NEW.id, 'note ' || (5 - NEW.id)); END IF;"
    with orders_trigger(tiers.cold, swap + " RETURN NEW;"), pytest.raises(move.MoveError, match="still differs"):
        move.move(registry.get(Order), Direction.TO_COLD, path="pg_copy")
    assert not Order.objects.using(tiers.cold).exists()
    assert content(snapshot(tiers.hot, tiers.cold)) == before


def test_pg_copy_target_whose_commit_fails_keeps_every_row_in_the_source(tiers):
    """The source deletes the batch while the target commits: a target commit that fails (a deferred
    constraint trigger refusing at COMMIT) rolls that delete back: every row stays in the source and nothing
    is left in the target."""
    if tiers.backend != "postgresql":
        pytest.skip("the two-commit COPY path is the PostgreSQL pair's")
    seed_orders(tiers.hot, 12, lines=2)
    before = content(snapshot(tiers.hot, tiers.cold))
    with orders_trigger(tiers.cold, "RAISE EXCEPTION 'cold refuses at commit';", at_commit=True), \
            pytest.raises(move.MoveError, match="cold refuses at commit") as excinfo:
        move.move(registry.get(Order), Direction.TO_COLD, path="pg_copy")
    assert excinfo.value.run.state == RunState.FAILED
    assert not Order.objects.using(tiers.cold).exists() and not OrderLine.objects.using(tiers.cold).exists()
    assert content(snapshot(tiers.hot, tiers.cold)) == before


@pytest.mark.parametrize("local_infile", [1, 0])
def test_mysql_bulk_loads_or_inserts_text_with_the_load_format_s_own_characters_unchanged(tiers, local_infile):
    """mysql_bulk loads a batch with LOAD DATA LOCAL INFILE when the target's alias asks for it (OPTIONS
    ``local_infile``), and inserts it otherwise: text holding the format's own characters (tab, newline,
    backslash, a literal backslash-N), '' and NULL arrive unchanged either way."""
    if tiers.backend != "mariadb":
        pytest.skip("the two-server MariaDB path's")
    cold = connections[tiers.cold]
    options = cold.settings_dict["OPTIONS"]
    saved = options.get("local_infile")
    options["local_infile"] = local_infile
    cold.close()  # the client asks for LOAD DATA LOCAL when it connects
    statements = []
    try:
        seed_orders(tiers.hot, 12, lines=2)
        notes = {1: "tab\there", 2: "new\nline", 3: "back\\slash", 4: "\\N", 5: "", 6: None, 7: "cr\r\nlf",
                 8: "ünïcødé ✓ 𝄞", 9: "\\\t\\n"}
        for pk, note in notes.items():
            Order.objects.using(tiers.hot).filter(pk=pk).update(note=note)
        before = content(snapshot(tiers.hot, tiers.cold))
        with connections[tiers.cold].execute_wrapper(lambda run, sql, *args: statements.append(sql) or run(sql, *args)):
            run = move.move(registry.get(Order), Direction.TO_COLD, path="mysql_bulk")
        assert run.state == RunState.SUCCEEDED and run.rows == 12 and run.child_rows == 24
        assert content(snapshot(tiers.hot, tiers.cold)) == before
        assert dict(Order.objects.using(tiers.cold).filter(pk__in=notes).values_list("pk", "note")) == notes
        assert any(sql.startswith("LOAD DATA LOCAL INFILE") for sql in statements) == bool(local_infile)
    finally:
        if saved is None:
            options.pop("local_infile", None)
        else:
            options["local_infile"] = saved
        cold.close()
