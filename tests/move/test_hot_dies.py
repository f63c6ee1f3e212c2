"""The hot PostgreSQL server dies in the middle of migrate_cold: the command ends in one line (no traceback),
though the failed run cannot be recorded on the dead ledger; once hot is back the next run repairs the
interrupted one, records it as failed, and every row ends in exactly one tier.

Hot is a throwaway cluster of this test's own (``tests.servers.ThrowawayPostgres``), never the shared
server; cold is the shared PostgreSQL test database.
"""
from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest
from django.core.management import CommandError
from django.db import connections

from orders.models import Order
from tests.servers import ThrowawayPostgres
from tests.test_commands_move import ROOT, assert_consistent, rows, run_command, seed, subprocess_env
from tiering import move
from tiering.exceptions import MoveError
from tiering.models import BatchState, MigrationBatch, MigrationRun, RunState
from tiering.move import faults
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["postgresql"]


@pytest.fixture
def throwaway_hot(tiers, retune):
    """pg_hot re-pointed at a throwaway cluster holding a migrated copy of the hot test database."""
    try:
        cluster = ThrowawayPostgres()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")
    try:
        hot = connections[tiers.hot].settings_dict
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{hot["NAME"]}"')
        # a copy of the migrated (empty) hot test database: quicker than migrating the new one
        dump = subprocess.run([f"{cluster.bindir}/pg_dump", "-h", hot["HOST"], "-p", str(hot["PORT"]), "-U",
                               hot["USER"], "--no-owner", hot["NAME"]], check=True, capture_output=True).stdout
        subprocess.run([f"{cluster.bindir}/psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                        str(cluster.port), "-U", "postgres", "-d", hot["NAME"]], input=dump, check=True,
                       capture_output=True)
        retune(tiers.hot, HOST="127.0.0.1", PORT=str(cluster.port))
        yield cluster
    finally:
        connections[tiers.hot].close()
        cluster.remove()


def done_batches(cluster: ThrowawayPostgres, name: str) -> int:
    try:
        with psycopg.connect(cluster.url.rsplit("/", 1)[0] + f"/{name}", connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM tiering_migrationbatch WHERE state = 'done'").fetchone()[0]
    except psycopg.OperationalError:
        return 0


def test_hot_server_killed_mid_run_is_one_line_and_the_next_run_repairs(tiers, throwaway_hot, monkeypatch):
    seed(old=60, new=5, lines=1)
    env = {**subprocess_env(tiers), "HOTCOLD_TEST_PG_HOT_PORT": str(throwaway_hot.port)}
    proc = subprocess.Popen([sys.executable, "-m", "django", "migrate_cold", "--model", "orders.Order",
                             "--no-input", "--batch-size", "5", "--sleep", "0.3"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = connections[tiers.hot].settings_dict["NAME"]
    deadline = time.monotonic() + 60
    while done_batches(throwaway_hot, name) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the hot server could be killed"
    throwaway_hot.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("CommandError: orders.Order: run "), err
    assert f"the hot database (alias {tiers.hot!r}) did not answer to record the failure" in last
    assert "the next run repairs it" in last

    throwaway_hot.start()
    connections[tiers.hot].close()
    (died,) = MigrationRun.objects.using(tiers.hot).all()
    assert died.state == RunState.RUNNING  # as the dead server left it: nobody could record the failure
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input")
    assert "(succeeded)" in out
    died.refresh_from_db(using=tiers.hot)
    rerun = MigrationRun.objects.using(tiers.hot).latest("pk")
    assert died.state == RunState.FAILED and f"repaired by run {rerun.pk}" in died.error
    assert rerun.state == RunState.SUCCEEDED
    assert not MigrationBatch.objects.using(tiers.hot).exclude(state__in=[BatchState.DONE, BatchState.UNDONE]).exists()
    assert len(rows(Order, tiers.cold)) == 60
    assert_consistent(tiers, 65, lines_per_order=1)

    # In a process that lives on (a Celery worker, say) the run it gave up holds a lock of a live owner:
    # the process knows the run is dead, so its next run takes the lock over at once. This time hot dies
    # with the batch's copies committed in cold and not yet deleted from hot: the repair keeps hot's rows.
    seed(old=20, new=0, lines=1)
    verified = []

    def kill_hot(step):
        if step == "after_verify":
            verified.append(step)
            if len(verified) == 2:
                throwaway_hot.kill()

    monkeypatch.setattr(faults, "checkpoint", kill_hot)
    with pytest.raises(CommandError) as excinfo:
        run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--batch-size", "5")
    assert "did not answer to record the failure" in str(excinfo.value) and "\n" not in str(excinfo.value)
    monkeypatch.undo()
    throwaway_hot.start()
    connections[tiers.hot].close()
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input")
    assert "(succeeded)" in out
    assert not MigrationRun.objects.using(tiers.hot).filter(state=RunState.RUNNING).exists()
    assert len(rows(Order, tiers.cold)) == 80
    assert_consistent(tiers, 85, lines_per_order=1)


def test_hot_killed_mid_promote_is_one_line_and_the_next_restore_repairs(tiers, throwaway_hot, monkeypatch):
    """A promote (a cold row read and moved back on access) whose hot server dies: one line naming the
    cause, and once hot is back the next restore settles the promote's batch as for any run."""
    seed(old=10, new=0, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input")
    keys = sorted(rows(Order, tiers.cold).values_list("pk", flat=True))[:4]

    def kill_hot(step):
        if step == "after_verify":
            throwaway_hot.kill()

    monkeypatch.setattr(faults, "checkpoint", kill_hot)
    with pytest.raises(MoveError) as excinfo:
        move.promote(registry.by_label("orders.Order"), keys)
    message = str(excinfo.value)
    assert f"the hot database (alias {tiers.hot!r}) did not answer to record the failure" in message
    assert "\n" not in message
    monkeypatch.undo()
    throwaway_hot.start()
    connections[tiers.hot].close()
    (promoted,) = MigrationRun.objects.using(tiers.hot).filter(trigger="promote")
    assert promoted.state == RunState.RUNNING  # as the dead server left it
    out = run_command("restore_hot", "--model", "orders.Order", "--pk", str(keys[0]), "--no-input")
    assert "(succeeded)" in out
    promoted.refresh_from_db(using=tiers.hot)
    assert promoted.state == RunState.FAILED and "repaired by run" in promoted.error
    assert not MigrationBatch.objects.using(tiers.hot).exclude(state__in=[BatchState.DONE, BatchState.UNDONE]).exists()
    assert_consistent(tiers, 10, lines_per_order=1)
