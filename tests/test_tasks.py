"""tiering.tasks run by real Celery workers (subprocesses) over the real Redis, on the
real SQLite files and PostgreSQL databases: archive, restore, analyse, the lock,
retries after the cold database went away, beat, and parallel key ranges."""
from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from celery.result import AsyncResult
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.db import models as db_models
from django.db import utils as db_utils
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.models import Customer
from orders.models import Order, OrderLine
from tests.celery_helpers import celery_processes, queue_for  # noqa: F401  (fixture)
from tiering import move, tasks
from tiering.models import BatchState, Direction, MigrationBatch, MigrationRun, RunState
from tiering.registry import registry
from tiering.schedule import schedule_name

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
ORDER = "orders.Order"


def seed(alias: str, old: int, new: int, lines: int = 2) -> tuple[set, set]:
    """``old`` orders past the 90-day policy and ``new`` recent ones, with lines; returns their keys."""
    customer = Customer.objects.using(alias).create(email=f"c{time.monotonic_ns()}@example.com", name="C")
    now = timezone.now()
    orders = [Order(customer_id=customer.pk, created_at=now - timedelta(days=100 + i % 500), total=Decimal("9.99"),
                    note=f"old {i}") for i in range(old)]
    orders += [Order(customer_id=customer.pk, created_at=now - timedelta(days=i % 30), total=Decimal("1.50"))
               for i in range(new)]
    Order.objects.using(alias).bulk_create(orders, batch_size=1000)
    keys = list(Order.objects.using(alias).order_by("pk").values_list("pk", "created_at"))
    cutoff = now - timedelta(days=90)
    OrderLine.objects.using(alias).bulk_create(
        [OrderLine(order_id=pk, sku=f"S{pk}-{n}", quantity=n + 1, price=Decimal("2.25")) for pk, _ in keys
         for n in range(lines)], batch_size=2000)
    return {pk for pk, created in keys if created < cutoff}, {pk for pk, created in keys if created >= cutoff}


def pks(model, alias) -> set:
    return set(model._base_manager.using(alias).values_list("pk", flat=True))


def line_orders(alias) -> set:
    return set(OrderLine._base_manager.using(alias).values_list("order_id", flat=True))


def send(task, pair: str, *args, **kwargs) -> AsyncResult:
    return task.apply_async(args=args, kwargs=kwargs, queue=queue_for(pair))


def assert_tiers(tiers, cold_keys: set, hot_keys: set, lines: int = 2) -> None:
    assert pks(Order, tiers.cold) == cold_keys
    assert pks(Order, tiers.hot) == hot_keys
    assert line_orders(tiers.cold) == cold_keys and line_orders(tiers.hot) == hot_keys
    assert OrderLine._base_manager.using(tiers.cold).count() == lines * len(cold_keys)


def runs(tiers, **filters):
    return list(MigrationRun.objects.using(tiers.hot).filter(model_label=ORDER, **filters).order_by("pk"))


def test_archive_model_end_to_end(tiers, celery_processes):
    worker = celery_processes.worker(tiers.backend)
    old, new = seed(tiers.hot, old=120, new=30)
    result = send(tasks.archive_model, tiers.backend, ORDER, batch_size=50).get(timeout=60)
    assert result["status"] == RunState.SUCCEEDED and result["rows"] == 120 and result["child_rows"] == 240
    assert_tiers(tiers, old, new)
    (run,) = runs(tiers)
    assert ((run.pk, run.state, run.trigger, run.rows, run.retries)
            == (result["run"], RunState.SUCCEEDED, "task", 120, 0))
    assert run.batches >= 3 and not MigrationBatch.objects.using(tiers.hot).exclude(state=BatchState.DONE).exists()
    assert "succeeded" in worker.text()

    # restore a selection through the same engine, and analyse
    back = sorted(old)[:5]
    result = send(tasks.restore, tiers.backend, ORDER, pks=back).get(timeout=60)
    assert result["status"] == RunState.SUCCEEDED and result["rows"] == 5
    assert_tiers(tiers, old - set(back), new | set(back))
    report = send(tasks.analyse, tiers.backend, [ORDER]).get(timeout=60)
    (figures,) = report["models"]
    assert figures["model"] == ORDER and report["totals"]["cold"]["rows"] == len(old) - 5


def test_lock_held_exits_cleanly(tiers, celery_processes):
    celery_processes.worker(tiers.backend)
    old, new = seed(tiers.hot, old=20, new=5)
    holder = move.start_run(registry.by_label(ORDER), Direction.TO_COLD, trigger="test", selection={})
    try:
        result = send(tasks.archive_model, tiers.backend, ORDER).get(timeout=60)
    finally:
        move.finish_run(holder)
    assert result["status"] == "locked" and f"by run {holder.pk}" in result["detail"]
    assert_tiers(tiers, set(), old | new)


def test_bad_arguments_fail_without_retry(tiers, celery_processes):
    celery_processes.worker(tiers.backend)
    for task, args, kwargs, error in [
        (tasks.archive_model, ["orders.Nope"], {}, "Unknown model"),
        (tasks.restore, [ORDER], {}, "exactly one of pks, filter or all_rows"),
        (tasks.restore, [ORDER], {"filter": ["nope__exact=1"]}, "nope"),
    ]:
        result = send(task, tiers.backend, *args, **kwargs)
        with pytest.raises(Exception, match=error):
            result.get(timeout=60)
        assert result.state == "FAILURE"
        assert not MigrationRun.objects.using(tiers.hot).filter(direction=Direction.TO_HOT, rows__gt=0).exists()


# --- which errors are transient: real errors from the real databases --------------------------------

def test_is_transient_classifies_real_errors(tiers):
    with pytest.raises(
        db_utils.OperationalError if tiers.vendor == "sqlite" else db_utils.ProgrammingError
    ) as bad_sql:
        with connections[tiers.hot].cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    assert not tasks.is_transient(bad_sql.value)
    customer = Customer.objects.using(tiers.hot).create(email="dup@example.com", name="d")
    with pytest.raises(db_utils.IntegrityError) as integrity:
        Customer.objects.using(tiers.hot).create(email=customer.email, name="d")
    assert not tasks.is_transient(integrity.value)
    assert not tasks.is_transient(ValueError("bad argument"))
    wrapped = move.MoveError("run 1 failed")
    wrapped.__cause__ = bad_sql.value
    assert not tasks.is_transient(wrapped)


def test_is_transient_for_unreachable_and_serialization_failure():
    if "pg_hot" not in settings.DATABASES:
        pytest.skip(f"PostgreSQL unavailable: {settings.PG_SKIP_REASON}")
    url = settings.PG.url.rsplit("/", 1)[0]
    with pytest.raises(psycopg.OperationalError) as unreachable:
        psycopg.connect(f"{url}/database_that_does_not_exist", connect_timeout=5)
    assert tasks.is_transient(unreachable.value)
    with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SerializationFailure) as serialization:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$")
        with pytest.raises(psycopg.errors.LockNotAvailable) as lock_timeout:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'lock_not_available'; END $$")
    wrapped = move.MoveError("run 2 failed")
    wrapped.__cause__ = db_utils.OperationalError("wrapped")
    wrapped.__cause__.__cause__ = serialization.value
    assert tasks.is_transient(serialization.value) and tasks.is_transient(lock_timeout.value)
    assert tasks.is_transient(wrapped)


# --- retries: the cold PostgreSQL database refuses connections, then comes back ----------------------

def _cold_connections(tiers, allow: bool) -> None:
    name = connections[tiers.cold].settings_dict["NAME"]
    with psycopg.connect(settings.PG.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
    connections[tiers.cold].close()


def test_retry_after_cold_database_went_away(tiers, celery_processes):
    if tiers.backend != "postgresql":
        pytest.skip("the cold database is stopped and started on PostgreSQL")
    celery_processes.worker(tiers.backend)
    old, new = seed(tiers.hot, old=80, new=20)
    _cold_connections(tiers, allow=False)
    try:
        result = send(tasks.archive_model, tiers.backend, ORDER, batch_size=20)
        deadline = time.monotonic() + 30
        while result.state != "RETRY" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert result.state == "RETRY", result.state
        assert pks(Order, tiers.hot) == old | new  # nothing left hot while cold was away
    finally:
        _cold_connections(tiers, allow=True)
    summary = result.get(timeout=90)
    assert summary["status"] == RunState.SUCCEEDED and summary["retries"] >= 1 and summary["rows"] == 80
    assert_tiers(tiers, old, new)
    *failed, done = runs(tiers)
    assert done.pk == summary["run"] and done.retries == summary["retries"]
    assert failed and all(r.state == RunState.FAILED and "accepting connections" in r.error for r in failed)
    assert not MigrationBatch.objects.using(tiers.hot).filter(state__in=[BatchState.COPYING, BatchState.COPIED,
                                                                         BatchState.VERIFIED]).exists()


# --- beat: the PeriodicTask rows of tiering_schedule, fired by a real beat ---------------------------

def test_beat_enqueues_archive_and_worker_runs_it(tiers, celery_processes):
    if tiers.backend != "sqlite":
        pytest.skip("beat is exercised once, on the SQLite pair")
    celery_processes.worker(tiers.backend)
    old, new = seed(tiers.hot, old=40, new=10)
    call_command("tiering_schedule", verbosity=0)
    assert PeriodicTask.objects.using(tiers.hot).count() == len(registry)
    # Fire the Order schedule now instead of at 02:00: same task and arguments, a 1 s interval, once.
    task = PeriodicTask.objects.using(tiers.hot).get(name=schedule_name(ORDER))
    task.crontab = None
    task.interval = IntervalSchedule.objects.using(tiers.hot).create(every=1, period=IntervalSchedule.SECONDS)
    task.one_off = True
    task.save()
    beat = celery_processes.beat(tiers.backend)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not runs(tiers, state=RunState.SUCCEEDED):
            time.sleep(0.3)
    finally:
        beat.stop()
    assert "Sending due task" in beat.text() and "tiering.archive_model" in beat.text()
    (run,) = runs(tiers)
    assert run.state == RunState.SUCCEEDED and run.trigger == "task" and run.rows == 40
    assert_tiers(tiers, old, new)


# --- scale-out: one run, key ranges over two worker processes ---------------------------------------

def test_parallel_ranges_on_two_workers(tiers, celery_processes):
    if tiers.backend != "postgresql":
        pytest.skip("parallel ranges are exercised on PostgreSQL")
    celery_processes.worker(tiers.backend, "a")
    celery_processes.worker(tiers.backend, "b")
    old, new = seed(tiers.hot, old=3000, new=400)
    started = send(tasks.archive_model_parallel, tiers.backend, ORDER, workers=4, batch_size=100).get(timeout=60)
    assert started["status"] == "started" and len(started["ranges"]) == 4
    summary = AsyncResult(started["callback"]).get(timeout=120)
    assert summary["status"] == RunState.SUCCEEDED and summary["run"] == started["run"]
    assert {r["status"] for r in summary["ranges"]} == {"done"}
    assert_tiers(tiers, old, new)
    (run,) = runs(tiers)
    batches = list(MigrationBatch.objects.using(tiers.hot).filter(run=run))
    moved = [pk for batch in batches for pk in batch.keys()]
    assert len(moved) == len(set(moved)) == run.rows == len(old) and set(moved) == old
    assert sum(b.rows for b in batches) == run.rows and len(batches) == run.batches
    assert all(b.state == BatchState.DONE for b in batches) and run.child_rows == 2 * len(old)
    seqs = sorted(b.seq for b in batches)
    assert seqs == list(range(1, len(batches) + 1))
    print("ranges ran on", sorted({r["worker"] for r in summary["ranges"]}))


def test_parallel_run_cut_short_by_its_runtime_is_stopped_not_succeeded(tiers, celery_processes):
    if tiers.backend != "postgresql":
        pytest.skip("parallel ranges are exercised on PostgreSQL")
    celery_processes.worker(tiers.backend, "a")
    old, new = seed(tiers.hot, old=600, new=50)
    started = send(tasks.archive_model_parallel, tiers.backend, ORDER, workers=2, batch_size=10,
                   max_runtime=0.001).get(timeout=60)
    summary = AsyncResult(started["callback"]).get(timeout=120)
    assert {r["status"] for r in summary["ranges"]} == {"stopped"}
    assert summary["status"] == RunState.STOPPED
    (run,) = runs(tiers)
    assert run.state == RunState.STOPPED and 0 < run.rows < len(old)
    # what did move is in cold only; the rest waits in hot for the next run
    cold = set(Order.objects.using(tiers.cold).values_list("pk", flat=True))
    hot = set(Order.objects.using(tiers.hot).values_list("pk", flat=True))
    assert not cold & hot and cold | hot == old | new


def test_restore_reports_unique_conflicts(tiers, celery_processes):
    """A restored customer whose email hot holds on another key stays cold; the task's result names it."""
    celery_processes.worker(tiers.backend)
    idle = timezone.now() - timedelta(days=90)
    Customer.objects.using(tiers.hot).create(pk=1, email="ann@example.com", name="Ann", last_seen=idle)
    move.move(registry.by_label("accounts.Customer"), Direction.TO_COLD)
    db_models.QuerySet(Customer).using(tiers.hot).bulk_create(  # past the check, as raw SQL would
        [Customer(pk=7, email="ann@example.com", name="Usurper")])
    result = send(tasks.restore, tiers.backend, "accounts.Customer", pks=[1]).get(timeout=60)
    assert result["rows"] == 0
    assert result["unique_conflicts"] == ["accounts.Customer 1 stays in cold: email is taken in hot by 7"]
    assert list(Customer.objects.using(tiers.cold).values_list("pk", flat=True)) == [1]
