"""The throttle waits while what the application would see is over its limit, and resumes once it falls:
against a real lock holder on hot that makes the probe wait (as a long write transaction makes the
application wait), and against a real PostgreSQL streaming replica whose replay is paused. Behaviour is
asserted (waited, why, smaller batches, every row moved), never times."""
from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
from django.db import connections
from django.urls import reverse
from django.utils.html import escape

from orders.models import Order
from tests.move.helpers import seed_orders
from tests.servers import PG_REPLICA_PORT, ensure_pg_replica
from tiering import backends, move
from tiering.models import Direction, MigrationBatch, RunState
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TIER_PAIRS = ["sqlite", "postgresql"]
ROWS = 3000


def _settings(settings, **throttle):
    settings.TIERING = {**settings.TIERING, "THROTTLE": {"PROBE_INTERVAL": 0.005, "WINDOW": 20, **throttle}}


def _dsn(alias: str, port: int | None = None) -> str:
    s = connections[alias].settings_dict
    return f"host={s['HOST']} port={port or s['PORT']} user={s['USER']} dbname={s['NAME']}"


class LockHolder:
    """Another client of hot that holds a lock the probe needs: SQLite's write lock (what an insert waits for
    while a batch writes), PostgreSQL's table lock on orders."""

    def __init__(self, alias: str) -> None:
        self.alias, self.conn, self.lock = alias, None, threading.Lock()

    def take(self) -> None:
        if connections[self.alias].vendor == "sqlite":
            self.conn = sqlite3.connect(connections[self.alias].settings_dict["NAME"], isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg.connect(_dsn(self.alias))
            self.conn.execute("LOCK TABLE orders_order IN ACCESS EXCLUSIVE MODE")
        # let go in any case, a while after the run should have waited: a throttle that does not wait fails
        # the test (its next batch waits for the lock, then sees none of the waits asserted) instead of hanging
        threading.Timer(4, self.release).start()
        time.sleep(0.5)  # the probe thread is blocked behind it by now (its timings are every 5 ms)

    def release(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.rollback()
                self.conn.close()
                self.conn = None


def test_latency_over_the_limit_shrinks_the_batch_and_pauses_until_it_falls(tiers, settings, admin_client):
    seed_orders(tiers.hot, ROWS)
    _settings(settings, MAX_LATENCY_RATIO=5)
    holder, seen = LockHolder(tiers.hot), []

    def progress(p):
        seen.append(p)
        if p.waiting:
            holder.release()  # the latency falls: the run must resume
        elif p.batches == 1:
            holder.take()

    try:
        run = move.move(registry.get(Order), Direction.TO_COLD, all_rows=True, batch_size=500,
                        progress=progress)
    finally:
        holder.release()
    assert run.state == RunState.SUCCEEDED and run.rows == ROWS
    assert Order.objects.using(tiers.hot).count() == 0 and Order.objects.using(tiers.cold).count() == ROWS
    waits = [p.waiting for p in seen if p.waiting]
    assert waits and "probe p99" in waits[0] and "next batch <= 250 rows" in waits[0]
    batches = list(MigrationBatch.objects.using(tiers.hot).filter(run=run).order_by("seq"))
    assert batches[0].throttled_seconds > 0 and "probe p99" in batches[0].throttle_reason
    assert batches[0].rows == 500 and batches[1].rows <= 250  # a shorter write transaction after the wait
    page = admin_client.get(reverse("tiering:run", args=[run.pk])).content.decode()
    total = sum(b.throttled_seconds for b in batches)
    assert f'<td class="throttled">{total:.2f}</td>' in page  # the run's total
    assert f'title="{escape(batches[0].throttle_reason)}">{batches[0].throttled_seconds:.3f}</td>' in page


def test_no_throttle_without_limits(tiers, settings):
    seed_orders(tiers.hot, 200)
    run = move.move(registry.get(Order), Direction.TO_COLD, all_rows=True)
    assert run.rows == 200
    assert not MigrationBatch.objects.using(tiers.hot).filter(run=run, throttled_seconds__gt=0).exists()


@pytest.fixture
def replica(tiers, settings):
    """An alias on the test database of the streaming replica of the test cluster, replay running."""
    if tiers.vendor != "postgresql":
        pytest.skip("a streaming replica is PostgreSQL's")
    server = ensure_pg_replica()
    if server.url is None:
        pytest.skip(server.reason)
    alias = "pg_replica"
    # a connection of this thread that is not in DATABASES: Django's test case allows it (it is read only)
    connections[alias] = type(connections[tiers.hot])(
        {**connections[tiers.hot].settings_dict, "PORT": PG_REPLICA_PORT}, alias)
    replay("resume")
    yield alias
    replay("resume")
    connections[alias].close()
    del connections[alias]


def replay(what: str) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={PG_REPLICA_PORT} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"SELECT pg_wal_replay_{what}()")


def _wait_for(condition, what: str) -> None:
    for _ in range(600):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_replica_lag_over_the_limit_pauses_until_the_replica_catches_up(tiers, settings, replica):
    seed_orders(tiers.hot, ROWS)
    _settings(settings, REPLICA=replica, MAX_REPLICA_LAG=0.5)
    lag = backends.ops(replica).replica_lag_seconds
    _wait_for(lambda: lag() <= 0.5 and Order.objects.using(replica).count() == ROWS, "the replica to catch up")
    replay("pause")
    Order.objects.using(tiers.hot).filter(pk=1).update(note="after the pause")
    _wait_for(lambda: lag() > 0.5, "the replica to lag")  # real lag: received, not replayed
    seen = []

    def progress(p):
        seen.append((p, lag()))
        if p.waiting:
            replay("resume")

    run = move.move(registry.get(Order), Direction.TO_COLD, all_rows=True, batch_size=1000,
                    progress=progress)
    assert run.state == RunState.SUCCEEDED and run.rows == ROWS
    waits = [(p.waiting, at) for p, at in seen if p.waiting]
    assert waits and "lags" in waits[0][0] and waits[0][1] > 0.5  # waited while it lagged
    first = MigrationBatch.objects.using(tiers.hot).get(run=run, seq=1)
    assert first.throttled_seconds > 0 and "replica 'pg_replica' lagged" in first.throttle_reason
