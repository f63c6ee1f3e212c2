"""Unique values across tiers under real concurrency: writer processes race the mover and each other.

Every email exists as exactly one row throughout the first test (in hot, in flight, then in cold, then
back), so every create of one must fail whatever the interleaving; in the second, hot creates and cold
renames race for the same fresh values: each value ends up held by one row at most. Those races rarely
hit the narrow windows, so the tests after them hold one writer's transaction open at the worst instant
(written and probed, not committed) while a process writes the same value in the other tier.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from accounts.models import Customer
from tiering import move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "mariadb", "mariadb_db"]  # + MariaDB

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "unique_driver.py"
N = 60
HELD = 2.0  # seconds a test keeps its writer's transaction open once the other process is at its write


def start(tiers, stop: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "HOTCOLD_TEST_SUBPROCESS": "1",
           "UNIQUE_STOP_FILE": str(stop)}
    return subprocess.Popen([sys.executable, str(DRIVER), tiers.hot, tiers.cold, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def written(out: str) -> list[int]:
    [line] = [line for line in out.splitlines() if line.startswith("done")]
    return [int(pk) for pk in line.split()[1:]]


def all_emails(tiers) -> Counter:
    rows = [*Customer.objects.using(tiers.hot).values_list("email", flat=True),
            *Customer.objects.using(tiers.cold).values_list("email", flat=True)]
    return Counter(rows)


def seed(tiers) -> None:
    idle = timezone.now() - timedelta(days=90)
    Customer.objects.using(tiers.hot).bulk_create(
        [Customer(email=f"c{i}@example.com", name=f"c{i}", last_seen=idle) for i in range(N)])


def test_creates_of_values_in_flight_all_fail(tiers, tmp_path):
    """Two writers create existing emails while the mover archives every customer, then restores them."""
    seed(tiers)
    stop = tmp_path / "stop"
    writers = [start(tiers, stop, "create", "c", str(N)) for _ in range(2)]
    try:
        for w in writers:
            wait_ready(w)
        finish(start(tiers, stop, "move", "to_cold", "4"))
        assert Customer.objects.using(tiers.hot).count() == 0
        finish(start(tiers, stop, "move", "to_hot", "4"))
    finally:
        stop.touch()
    created = [pk for w in writers for pk in written(finish(w))]
    assert created == []
    assert all_emails(tiers) == Counter({f"c{i}@example.com": 1 for i in range(N)})


def test_hot_creates_and_cold_renames_never_share_a_value(tiers, tmp_path):
    """A create in hot and a save in cold of the same fresh value, racing: one of them wins."""
    seed(tiers)
    move.move(registry.by_label("accounts.Customer"), Direction.TO_COLD)
    stop = tmp_path / "stop"
    procs = [start(tiers, stop, role, "n", "15") for role in ("create", "rename", "create", "rename")]
    try:
        for p in procs:
            wait_ready(p)
        finish(start(tiers, stop, "move", "to_hot", "8"))  # and restores moving the renamed rows meanwhile
    finally:
        stop.touch()
    outs = [written(finish(p)) for p in procs]
    counts = all_emails(tiers)
    fresh = {email: n for email, n in counts.items() if email.startswith("n")}
    assert fresh and all(n == 1 for n in fresh.values()), fresh
    assert sum(counts.values()) == N + len(outs[0]) + len(outs[2])


def archived(tiers) -> int:
    """Seeds and archives every customer; returns a cold key."""
    seed(tiers)
    move.move(registry.by_label("accounts.Customer"), Direction.TO_COLD)
    return Customer.objects.using(tiers.cold).values_list("pk", flat=True).first()


def outcome(proc: subprocess.Popen) -> str:
    return finish(proc).splitlines()[-1]


def test_a_cold_save_of_a_value_waits_for_its_open_hot_create(tiers, tmp_path):
    """A hot create of V has written and probed cold (nothing there) but not committed; a cold row saved
    with V meanwhile must not commit beside it: hot's writers are held off until the probe of hot."""
    key = archived(tiers)
    with transaction.atomic(using=tiers.hot):
        Customer.objects.create(email="v@example.com", name="hot")
        saver = start(tiers, tmp_path / "stop", "save-one", str(key), "v@example.com")
        wait_ready(saver)
        time.sleep(HELD)
    assert outcome(saver).startswith("refused"), "a cold save committed a value an open hot create holds"
    assert all_emails(tiers)["v@example.com"] == 1


def test_a_hot_create_of_a_value_waits_for_its_open_cold_save(tiers, tmp_path):
    """A cold row saved with V has written and probed hot (nothing there) but not committed; a hot create
    of V meanwhile waits for hot's writers' hold, then its probe of cold sees V."""
    row = Customer.objects.cold().get(pk=archived(tiers))
    with transaction.atomic(using=tiers.hot), transaction.atomic(using=tiers.cold):  # cold commits first
        row.email = "v@example.com"
        row.save()
        creator = start(tiers, tmp_path / "stop", "create-one", "v@example.com")
        wait_ready(creator)
        time.sleep(HELD)
    assert outcome(creator).startswith("refused"), "a hot create committed a value an open cold save holds"
    assert all_emails(tiers)["v@example.com"] == 1


SLOW_COMMIT = f"""
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep({HELD}); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON accounts_customer DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


@pytest.mark.tier_pairs("postgresql", "pg_schema")
@pytest.mark.parametrize("write", ["save-one", "update-one"])
def test_hot_writers_wait_until_a_cold_write_has_committed(tiers, write, tmp_path):
    """A cold write's hold on hot's writers lasts until cold has committed: a deferred trigger (PostgreSQL's
    only way to stretch a commit) holds the cold commit open while a hot create of the same value runs."""
    key = archived(tiers)
    cold = connections[tiers.cold]
    with cold.cursor() as cursor:
        cursor.execute(SLOW_COMMIT)
    try:
        saver = start(tiers, tmp_path / "stop", write, str(key), "v@example.com")
        wait_ready(saver)
        deadline = time.monotonic() + 60
        while not sleeping_commit(cold):
            assert time.monotonic() < deadline and saver.poll() is None, finish(saver)
            time.sleep(0.05)
        with pytest.raises(IntegrityError, match="holds it"):
            Customer.objects.create(email="v@example.com", name="hot")
        assert outcome(saver) == "written"
    finally:
        with cold.cursor() as cursor:
            cursor.execute("DROP TRIGGER slow_commit ON accounts_customer; DROP FUNCTION slow_commit()")
    assert all_emails(tiers)["v@example.com"] == 1


def sleeping_commit(cold) -> bool:
    with cold.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()")
        return cursor.fetchone() is not None
