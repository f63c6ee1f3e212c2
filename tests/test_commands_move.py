"""migrate_cold and restore_hot as users run them: arguments, confirmation, progress, summary, exit status.

Data moves on the real database pairs (``tiers``); terminal and exit-status
behaviour is checked on a real ``python -m django`` subprocess.
"""
from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment
from tests import triggers
from tests.factories import CustomerFactory, OldOrderFactory, OrderFactory, OrderLineFactory
from tests.move.helpers import Killed, make_payments, payment_values
from tiering.models import MigrationRun, RunState, TierLock

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

# + the mixed pair (SQLite hot, PostgreSQL cold) and MariaDB
TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg", "mariadb", "mariadb_db"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- helpers ---------------------------------------------------------------------------------

def rows(model, alias):
    return QuerySet(model).using(alias)  # one tier, no tiered behaviour


def snapshot(tiers) -> dict:
    """A checksum of every row of every tiered table in both tiers, plus the ledger size."""
    out = {}
    for alias in (tiers.hot, tiers.cold):
        for model in (Customer, Order, OrderLine, Payment):
            values = sorted(repr(row) for row in rows(model, alias).order_by("pk").values_list())
            out[f"{alias}.{model.__name__}"] = hashlib.sha256("\n".join(values).encode()).hexdigest()
    out["runs"] = MigrationRun.objects.using(tiers.hot).count()
    out["locks"] = TierLock.objects.using(tiers.hot).count()
    return out


def seed(old: int = 30, new: int = 10, lines: int = 2) -> tuple[list[Order], list[Order]]:
    customer = CustomerFactory()
    old_orders = [OldOrderFactory(customer=customer) for _ in range(old)]
    new_orders = [OrderFactory(customer=customer) for _ in range(new)]
    for order in old_orders + new_orders:
        OrderLineFactory.create_batch(lines, order=order)
    return old_orders, new_orders


def tier_of_orders(tiers) -> tuple[set, set]:
    return (set(rows(Order, tiers.hot).values_list("pk", flat=True)),
            set(rows(Order, tiers.cold).values_list("pk", flat=True)))


def assert_consistent(tiers, total_orders: int, lines_per_order: int = 2) -> None:
    """Every order in exactly one tier, and its lines in the same tier."""
    hot, cold = tier_of_orders(tiers)
    assert not hot & cold
    assert len(hot | cold) == total_orders
    for alias, pks in ((tiers.hot, hot), (tiers.cold, cold)):
        line_orders = list(rows(OrderLine, alias).values_list("order_id", flat=True))
        assert set(line_orders) == pks
        assert len(line_orders) == lines_per_order * len(pks)


def run_command(name: str, *args: str, **kwargs) -> str:
    from io import StringIO

    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


def subprocess_env(tiers) -> dict:
    env = os.environ.copy()
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", HOTCOLD_TEST_SUBPROCESS="1",
               HOTCOLD_TEST_PAIR=tiers.backend, PYTHONPATH=ROOT)
    return env


def manage(tiers, *args: str, stdin=subprocess.DEVNULL, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=subprocess_env(tiers),
                          stdin=stdin, capture_output=True, text=True, timeout=timeout)


def manage_on_tty(tiers, *args: str, answer: str, timeout: float = 120) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as stdin/stdout/stderr; answer its prompt."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120x40 terminal
    proc = subprocess.Popen([sys.executable, "-m", "django", *args], cwd=ROOT, env=subprocess_env(tiers),
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"Type 'yes'" in output:
                os.write(master, answer.encode() + b"\n")
                answered = True
            if not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, output.decode(errors="replace")


# --- bad arguments: one-line CommandError, nothing changed -----------------------------------

BAD_ARGUMENTS = [
    ("migrate_cold", ["--model", "nosuch.Model"], "Unknown model"),
    ("migrate_cold", ["--model", "orders"], "Unknown model"),
    ("migrate_cold", ["--model", "auth.User"], "not tiered"),
    ("migrate_cold", ["--model", "orders.OrderLine"], "not tiered"),
    ("migrate_cold", ["--batch-size", "0"], "--batch-size"),
    ("migrate_cold", ["--batch-size", "-5"], "--batch-size"),
    ("migrate_cold", ["--limit", "0"], "--limit"),
    ("migrate_cold", ["--limit", "-1"], "--limit"),
    ("migrate_cold", ["--max-runtime", "-1"], "--max-runtime"),
    ("migrate_cold", ["--max-runtime", "0"], "--max-runtime"),
    ("migrate_cold", ["--sleep", "-0.5"], "--sleep"),
    ("migrate_cold", ["--batch-size", "many"], "--batch-size"),
    ("restore_hot", ["--model", "nosuch.Model", "--all"], "Unknown model"),
    ("restore_hot", ["--model", "accounts.Customer"], "one of the arguments"),
    ("restore_hot", ["--model", "orders.Order", "--pk", "1", "--all"], "not allowed with"),
    ("restore_hot", ["--model", "orders.Order", "--pk", "abc"], "--pk 'abc'"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "nosuchfield=1"], "no field 'nosuchfield'"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "created_at__nosuchlookup=1"], "nosuchlookup"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "created_at__gte=not-a-date"], "created_at__gte"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "total=abc"], "total=abc"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "total"], "field__lookup=value"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "customer__nosuch=1"], "nosuch"),
    ("restore_hot", ["--model", "orders.Order", "--filter", "created_at__range=2024-01-01"], "range"),
    ("restore_hot", ["--model", "orders.Order", "--all", "--batch-size", "0"], "--batch-size"),
    ("restore_hot", ["--model", "orders.Order", "--all", "--limit", "-3"], "--limit"),
]


@pytest.mark.parametrize("command,args,message", BAD_ARGUMENTS, ids=[" ".join([c, *a]) for c, a, _ in BAD_ARGUMENTS])
def test_bad_argument_is_one_line_command_error_and_changes_nothing(tiers, command, args, message):
    seed(old=5, new=2)
    if command == "restore_hot":  # some rows in cold, so that a restore would have work to do
        run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "2", verbosity=0)
    before = snapshot(tiers)
    with pytest.raises(CommandError) as excinfo:
        run_command(command, *args, "--no-input")
    text = str(excinfo.value)
    assert message in text
    assert "\n" not in text.strip()
    assert snapshot(tiers) == before


BAD_KEYWORDS = [("batch_size", 0), ("batch_size", "many"), ("limit", -1), ("max_runtime", 0), ("sleep", -1),
                ("sleep", True)]


@pytest.mark.parametrize("command", ["migrate_cold", "restore_hot"])
@pytest.mark.parametrize("name,value", BAD_KEYWORDS, ids=[f"{n}={v!r}" for n, v in BAD_KEYWORDS])
def test_bad_keyword_to_call_command_is_one_line_command_error_and_changes_nothing(tiers, command, name, value):
    """call_command(name, batch_size=0) passes its keywords past argparse's types: the same check applies."""
    seed(old=5, new=2)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "2", verbosity=0)
    before = snapshot(tiers)
    which = ["--model", "orders.Order", "--all"] if command == "restore_hot" else []
    with pytest.raises(CommandError) as excinfo:
        run_command(command, *which, "--no-input", **{name: value})
    assert str(excinfo.value) == f"--{name.replace('_', '-')} must be a " + {
        "batch_size": "positive integer", "limit": "positive integer", "max_runtime": "finite positive number",
        "sleep": "finite number >= 0"}[name] + f", not {value!r}."
    assert snapshot(tiers) == before


@pytest.fixture
def broken_cold_alias(tiers, settings):
    """A cold alias that exists in settings but cannot be reached."""
    alias = "unreachable_cold"
    broken = copy.deepcopy(connections.settings[tiers.cold])
    if tiers.cold_vendor == "sqlite":
        broken["NAME"] = "/nonexistent-hotcold-dir/cold.sqlite3"
        broken["TEST"] = {**broken.get("TEST", {}), "NAME": broken["NAME"]}
    else:
        broken["PORT"] = "1"
        broken["OPTIONS"] = {**broken.get("OPTIONS", {}), "connect_timeout": 2}
    connections.settings[alias] = broken
    settings.TIERING = {**settings.TIERING, "COLD": alias}
    yield alias
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def test_unreachable_cold_alias_is_command_error_and_changes_nothing(tiers, request):
    seed(old=5, new=2)  # while cold answers: a new customer's unique email is checked there (tiering.unique)
    request.getfixturevalue("broken_cold_alias")
    before = snapshot(tiers)
    for command, args in (("migrate_cold", []), ("restore_hot", ["--model", "orders.Order", "--all"])):
        with pytest.raises(CommandError, match="unreachable") as excinfo:
            run_command(command, *args, "--no-input")
        assert "\n" not in str(excinfo.value).strip()
    assert snapshot(tiers) == before


def test_unknown_cold_alias_is_command_error(tiers, settings):
    seed(old=3, new=1)
    before = snapshot(tiers)
    settings.TIERING = {**settings.TIERING, "COLD": "no_such_alias"}
    with pytest.raises(CommandError, match="no_such_alias"):
        run_command("migrate_cold", "--no-input")
    settings.TIERING = {**settings.TIERING, "COLD": tiers.cold}
    assert snapshot(tiers) == before


def test_hot_and_cold_on_the_same_tables_is_command_error_and_changes_nothing(tiers, settings):
    seed(old=3, new=1)
    before = snapshot(tiers)
    settings.TIERING = {**settings.TIERING, "COLD": tiers.hot}
    for command, args in (("migrate_cold", []), ("restore_hot", ["--model", "orders.Order", "--all"])):
        with pytest.raises(CommandError, match="same tables") as excinfo:
            run_command(command, *args, "--no-input")
        assert "\n" not in str(excinfo.value).strip()
    settings.TIERING = {**settings.TIERING, "COLD": tiers.cold}
    assert snapshot(tiers) == before


# --- dry run and real runs -------------------------------------------------------------------

def test_dry_run_changes_nothing(tiers):
    seed(old=12, new=4)
    before = snapshot(tiers)
    out = run_command("migrate_cold", "--model", "orders.Order", "--dry-run")
    assert "orders.Order" in out and "12 rows" in out and "24 child rows" in out and "batches" in out
    assert "nothing moved" in out.lower()
    assert snapshot(tiers) == before

    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    before = snapshot(tiers)
    out = run_command("restore_hot", "--model", "orders.Order", "--all", "--dry-run")
    assert "12 rows" in out
    assert snapshot(tiers) == before


def test_no_input_run_moves_eligible_rows_and_prints_summary(tiers):
    old, new = seed(old=25, new=5)
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--batch-size", "10")
    hot, cold = tier_of_orders(tiers)
    assert cold == {o.pk for o in old} and hot == {o.pk for o in new}
    assert_consistent(tiers, 30)
    run = MigrationRun.objects.using(tiers.hot).get()
    assert run.rows == 25 and run.state == RunState.SUCCEEDED
    assert f"run {run.pk}" in out
    assert "25 rows" in out and "batches" in out and "rows/s" in out and "B" in out


def test_migrate_cold_without_model_archives_every_tiered_model(tiers):
    seed(old=4, new=2)
    out = run_command("migrate_cold", "--no-input")
    assert len(tier_of_orders(tiers)[1]) == 4
    labels = set(MigrationRun.objects.using(tiers.hot).values_list("model_label", flat=True))
    assert "orders.Order" in labels
    assert "orders.Order" in out


def test_verbosity_zero_prints_nothing(tiers):
    seed(old=3, new=1)
    assert run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0) == ""
    assert len(tier_of_orders(tiers)[1]) == 3


def test_limit_stops_cleanly_and_next_run_continues(tiers):
    seed(old=30, new=5)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "10", "--batch-size", "5")
    hot, cold = tier_of_orders(tiers)
    assert len(cold) == 10
    assert_consistent(tiers, 35)
    run = MigrationRun.objects.using(tiers.hot).get()
    assert run.state != RunState.FAILED and run.rows == 10
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    assert len(tier_of_orders(tiers)[1]) == 30
    assert_consistent(tiers, 35)


def test_max_runtime_stops_cleanly_between_batches(tiers):
    seed(old=30, new=5)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--batch-size", "5",
                "--sleep", "0.3", "--max-runtime", "0.2")
    moved = len(tier_of_orders(tiers)[1])
    assert 0 < moved < 30
    assert_consistent(tiers, 35)
    assert MigrationRun.objects.using(tiers.hot).get().state != RunState.FAILED


def late_order(cutoff) -> Order:
    """An order (with 2 lines) that was not yet cold at ``cutoff`` and is cold now."""
    order = OrderFactory(customer=CustomerFactory(), created_at=cutoff - timedelta(days=90) + timedelta(milliseconds=1))
    OrderLineFactory.create_batch(2, order=order)
    return order


def test_resume_finishes_a_stopped_run_with_its_cutoff(tiers):
    """--resume continues the last run that stopped early, with that run's cutoff: an order that went cold
    after it stays for the next plain run, which takes a fresh cutoff."""
    seed(old=30, new=5)
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "10", "--batch-size", "5")
    assert "stopped early (limit or max runtime); run again (--resume keeps this run's cutoff)" in out
    stopped = MigrationRun.objects.using(tiers.hot).get()
    assert stopped.state == RunState.STOPPED and stopped.rows == 10
    late = late_order(stopped.cutoff)
    refused = MigrationRun.objects.using(tiers.hot).create(  # a later run the lock refused: it did no work
        model_label="orders.Order", direction="to_cold", state=RunState.FAILED, cutoff=timezone.now(),
        error="orders.Order is already being moved hot → cold by run 1")
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--resume")
    assert f"resuming run {stopped.pk} (stopped)" in out and "20 rows" in out
    resumed = MigrationRun.objects.using(tiers.hot).latest("pk")
    assert resumed.state == RunState.SUCCEEDED and resumed.rows == 20
    assert resumed.cutoff == stopped.cutoff and resumed.selection["resumes"] == stopped.pk
    hot, cold = tier_of_orders(tiers)
    assert len(cold) == 30 and late.pk in hot
    assert_consistent(tiers, 36)
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--resume")
    assert "nothing to resume (its last run finished" in out and "Nothing to resume: nothing moved." in out
    assert MigrationRun.objects.using(tiers.hot).exclude(pk=refused.pk).count() == 2  # none recorded for nothing
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)  # a plain run: now
    assert late.pk in tier_of_orders(tiers)[1]
    assert_consistent(tiers, 36)


def test_resume_repairs_and_finishes_a_run_that_died(tiers, monkeypatch):
    """A run dies after its first batch's copy (on pg_copy after the cold commit: copies in both tiers).
    --resume repairs that batch, then moves the rest with the dead run's cutoff; every order in one tier."""
    from tiering.move import faults

    seed(old=30, new=5)
    before = snapshot(tiers)

    def killed(step):
        if step == "after_verify":
            raise Killed(step)

    monkeypatch.setattr(faults, "checkpoint", killed)
    with pytest.raises(Killed):
        run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--batch-size", "10")
    monkeypatch.undo()
    died = MigrationRun.objects.using(tiers.hot).get()
    assert died.state == RunState.FAILED and died.rows == 0
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--resume")
    assert f"resuming run {died.pk} (failed: Killed: after_verify)" in out
    resumed = MigrationRun.objects.using(tiers.hot).latest("pk")
    assert resumed.state == RunState.SUCCEEDED and resumed.rows == 30 and resumed.cutoff == died.cutoff
    assert not died.batch_set.exclude(state__in=["done", "undone"]).exists()  # repaired
    assert len(tier_of_orders(tiers)[1]) == 30
    assert_consistent(tiers, 35)
    after = snapshot(tiers)
    assert {key: after[key] for key in after if key.endswith(".Customer")} == {
        key: before[key] for key in before if key.endswith(".Customer")}


def test_resume_takes_over_a_killed_run_whose_process_is_gone(tiers):
    """A run still RUNNING in the ledger whose process died (its lock names a dead pid on this host) is
    resumed: its stale lock is taken over and its cutoff kept. A live run is not resumable."""
    import socket

    from tiering import move
    from tiering.registry import registry

    seed(old=12, new=3)
    gone = subprocess.Popen(["true"])  # a pid of this host whose process has ended
    gone.wait()
    owner = f"{socket.gethostname()}:{gone.pid}"
    cutoff = timezone.now() - timedelta(minutes=5)
    killed = MigrationRun.objects.using(tiers.hot).create(model_label="orders.Order", direction="to_cold",
                                                          cutoff=cutoff, owner=owner)
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=killed, owner=owner)
    assert move.resumable_run(registry.get(Order), "to_cold") == killed
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--resume")
    assert f"resuming run {killed.pk} (running)" in out
    resumed = MigrationRun.objects.using(tiers.hot).latest("pk")
    assert resumed.rows == 12 and resumed.cutoff == cutoff and resumed.selection["resumes"] == killed.pk
    killed.refresh_from_db(using=tiers.hot)
    assert killed.state == RunState.FAILED and "interrupted" in killed.error
    assert not TierLock.objects.using(tiers.hot).exists()
    assert_consistent(tiers, 15)
    live = MigrationRun.objects.using(tiers.hot).create(model_label="orders.Order", direction="to_cold",
                                                        cutoff=cutoff, owner=f"{socket.gethostname()}:{os.getpid()}")
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=live, owner=live.owner)
    assert move.resumable_run(registry.get(Order), "to_cold") is None
    out = run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--resume")
    assert f"nothing to resume (run {live.pk} is moving it now)" in out


def test_resume_without_model_finishes_only_the_models_whose_last_run_did_not_finish(tiers):
    old_orders, _ = seed(old=12, new=2)
    CustomerFactory.create_batch(3)  # never archived: no run to resume
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "4", "--batch-size", "4")
    stopped = MigrationRun.objects.using(tiers.hot).get()
    out = run_command("migrate_cold", "--no-input", "--resume")
    assert "accounts.Customer: nothing to resume (its last run finished, or there is none)." in out
    assert "orders.Payment: nothing to resume" in out and f"resuming run {stopped.pk} (stopped)" in out
    assert MigrationRun.objects.using(tiers.hot).filter(model_label="orders.Order").count() == 2
    assert not MigrationRun.objects.using(tiers.hot).exclude(model_label="orders.Order").exists()
    assert tier_of_orders(tiers)[1] == {order.pk for order in old_orders}
    assert_consistent(tiers, 14)


def test_resume_dry_run_shows_what_the_run_had_left_and_changes_nothing(tiers):
    seed(old=20, new=5)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "5", "--batch-size", "5")
    late_order(MigrationRun.objects.using(tiers.hot).get().cutoff)
    before = snapshot(tiers)
    out = run_command("migrate_cold", "--model", "orders.Order", "--resume", "--dry-run")
    assert "orders.Order hot → cold: 15 rows (+30 child rows)" in out and "Dry run: nothing moved." in out
    assert snapshot(tiers) == before


# --- restore_hot -----------------------------------------------------------------------------

def test_restore_by_pk(tiers):
    old, _ = seed(old=10, new=2)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    wanted = {old[0].pk, old[3].pk}
    out = run_command("restore_hot", "--model", "orders.Order", "--pk", *map(str, wanted), "--no-input")
    hot, cold = tier_of_orders(tiers)
    assert wanted <= hot and not wanted & cold
    assert len(cold) == 8
    assert_consistent(tiers, 12)
    assert "2 rows" in out


def test_restore_by_filter_parses_dates_and_decimals(tiers):
    customer = CustomerFactory()
    now = timezone.now()
    specs = [(200, "10.00"), (300, "99.50"), (400, "99.49"), (500, "150.00")]
    orders = [OrderFactory(customer=customer, created_at=now - timedelta(days=days), total=Decimal(total))
              for days, total in specs]
    for order in orders:
        OrderLineFactory.create_batch(2, order=order)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    assert len(tier_of_orders(tiers)[1]) == 4
    since = (now - timedelta(days=450)).date().isoformat()
    run_command("restore_hot", "--model", "orders.Order", "--filter", f"created_at__gte={since}",
                "--filter", "total__gte=99.50", "--no-input", verbosity=0)
    hot, cold = tier_of_orders(tiers)
    assert hot == {orders[1].pk}  # 300 days and 99.50; 99.49 and the 500-day order stay cold
    assert_consistent(tiers, 4)

    run_command("restore_hot", "--model", "orders.Order", "--filter", "total__in=10.00,150.00", "--no-input",
                verbosity=0)
    assert tier_of_orders(tiers)[0] == {orders[0].pk, orders[1].pk, orders[3].pk}


def test_restore_all(tiers):
    seed(old=15, new=3)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    run_command("restore_hot", "--model", "orders.Order", "--all", "--no-input", "--batch-size", "4")
    hot, cold = tier_of_orders(tiers)
    assert len(hot) == 18 and not cold
    assert_consistent(tiers, 18)


def raw_rows(alias: str, model) -> list[tuple]:
    """Every row of ``model`` in ``alias`` as the database driver returns it (no ORM conversion), each value
    by its repr, in key order: a decimal's scale, a datetime's digits and zone, bytes, text as stored."""
    cols = ", ".join(connections[alias].ops.quote_name(f.column) for f in model._meta.concrete_fields)
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT {cols} FROM {model._meta.db_table} ORDER BY 1")
        return [tuple(repr(bytes(v) if isinstance(v, memoryview) else v) for v in row) for row in cursor.fetchall()]


def test_migrate_cold_then_restore_hot_all_gives_back_identical_rows(tiers):
    """The round trip through the commands: orders with lines and payments (decimals, aware datetimes,
    NULLs, unicode, JSON, binary) come back as they were, byte for byte as the driver reads them, but for
    the restore mark on the payments' access field. Through a PostgreSQL cold tier from an SQLite hot one
    (the mixed pair) JSON objects come back with jsonb's key order, so there they are compared as values."""
    seed(old=20, new=0)
    make_payments(tiers.hot)
    models_ = (Order, OrderLine, Payment)
    before = {model: raw_rows(tiers.hot, model) for model in models_}
    before_payments = payment_values(tiers.hot)
    run_command("migrate_cold", "--model", "orders.Order", "--model", "orders.Payment", "--no-input", verbosity=0)
    assert all(raw_rows(tiers.hot, model) == [] for model in models_)
    for label in ("orders.Order", "orders.Payment"):
        run_command("restore_hot", "--model", label, "--all", "--no-input", verbosity=0)
    assert all(raw_rows(tiers.cold, model) == [] for model in models_)
    after = {model: raw_rows(tiers.hot, model) for model in models_}
    assert after[Order] == before[Order] and after[OrderLine] == before[OrderLine]
    access = [f.attname for f in Payment._meta.concrete_fields].index("last_accessed")
    if tiers.vendor == tiers.cold_vendor:
        payments, expected = after[Payment], before[Payment]
    else:
        payments, expected = payment_values(tiers.hot), before_payments
    assert [row[:access] + row[access + 1:] for row in payments] == [
        row[:access] + row[access + 1:] for row in expected]
    assert all(timezone.now() - restored[access] < timedelta(minutes=5) for restored in payment_values(tiers.hot))


def test_restore_help_says_how_rows_stay_hot():
    from tiering.management.commands.restore_hot import Command

    text = Command().create_parser("manage.py", "restore_hot").format_help()
    assert "RESTORE_MARK_HELP" not in text
    assert "next" in text.lower()


# --- terminal, confirmation and exit status (real subprocesses) ------------------------------

def test_confirmation_refused_without_tty(tiers):
    seed(old=5, new=2)
    before = snapshot(tiers)
    done = manage(tiers, "migrate_cold", "--model", "orders.Order")
    assert done.returncode != 0
    assert "CommandError" in done.stderr and "--no-input" in done.stderr
    assert snapshot(tiers) == before


def test_no_tty_with_no_input_moves_and_logs_plain_lines(tiers):
    seed(old=6, new=2)
    done = manage(tiers, "migrate_cold", "--model", "orders.Order", "--no-input", "-v", "2", "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout  # no progress bar off a terminal
    assert "orders.Order: 2/6 rows in 1 batches" in done.stdout  # a plain line per batch at -v 2
    assert "rows/s" in done.stdout and "%|" not in done.stdout
    assert len(tier_of_orders(tiers)[1]) == 6


def test_tty_confirmation_yes_moves_with_progress_bar(tiers):
    seed(old=6, new=2)
    code, output = manage_on_tty(tiers, "migrate_cold", "--model", "orders.Order", "--batch-size", "2",
                                 answer="yes")
    assert code == 0, output
    assert "6 rows" in output  # the plan shown before the question
    assert "%|" in output and " rows/s" in output  # the tqdm bar: percentage, rate, ETA
    assert "<" in output.split("%|", 1)[1]
    run = MigrationRun.objects.using(tiers.hot).get()
    assert f"run {run.pk} (succeeded)" in output  # the summary
    assert len(tier_of_orders(tiers)[1]) == 6


def test_tty_confirmation_no_changes_nothing(tiers):
    seed(old=6, new=2)
    before = snapshot(tiers)
    code, output = manage_on_tty(tiers, "migrate_cold", "--model", "orders.Order", answer="no")
    assert code != 0
    assert "Cancelled" in output
    assert snapshot(tiers) == before


@pytest.fixture
def cold_refuses_orders(tiers):
    """A trigger in the cold database that rejects every order: the next run fails mid-way."""
    with triggers.refusing(tiers.cold, "orders_order", "INSERT", "cold refuses orders"):
        yield


def test_failed_run_is_command_error_with_run_id(tiers, cold_refuses_orders):
    seed(old=5, new=2)
    with pytest.raises(CommandError) as excinfo:
        run_command("migrate_cold", "--model", "orders.Order", "--no-input")
    run = MigrationRun.objects.using(tiers.hot).get()
    assert run.state == RunState.FAILED
    assert f"run {run.pk} failed" in str(excinfo.value)
    assert len(rows(Order, tiers.hot)) == 7  # nothing deleted from hot


def test_failed_run_exits_non_zero(tiers, cold_refuses_orders):
    seed(old=5, new=2)
    done = manage(tiers, "migrate_cold", "--model", "orders.Order", "--no-input")
    assert done.returncode != 0
    run = MigrationRun.objects.using(tiers.hot).get()
    assert f"run {run.pk} failed" in done.stderr
    assert len(rows(Order, tiers.hot)) == 7


def test_lock_held_by_live_run_is_command_error_and_changes_nothing(tiers):
    seed(old=5, new=2)
    holder = MigrationRun.objects.using(tiers.hot).create(model_label="orders.Order", direction="to_cold",
                                                            owner=f"elsewhere:{os.getpid()}")
    TierLock.objects.using(tiers.hot).create(name="orders.Order:to_cold", run=holder, owner=f"elsewhere:{os.getpid()}")
    before = snapshot(tiers)
    with pytest.raises(CommandError, match=f"already being moved .* by run {holder.pk}") as excinfo:
        run_command("migrate_cold", "--model", "orders.Order", "--no-input")
    assert "\n" not in str(excinfo.value).strip()
    assert snapshot(tiers) == before


def test_restored_rows_are_not_sent_straight_back(tiers):
    old, _ = seed(old=6, new=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    run_command("restore_hot", "--model", "orders.Order", "--pk", str(old[0].pk), "--no-input", verbosity=0)
    out = run_command("migrate_cold", "--model", "orders.Order", "--dry-run")
    assert "0 rows" in out
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    assert old[0].pk in tier_of_orders(tiers)[0]
    assert_consistent(tiers, 7)


def test_bad_model_on_the_command_line_is_one_line_and_non_zero(tiers):
    seed(old=2, new=1)
    before = snapshot(tiers)
    done = manage(tiers, "restore_hot", "--model", "orders.Nope", "--all", "--no-input")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["CommandError: Unknown model 'orders.Nope': use app_label.ModelName"]
    assert snapshot(tiers) == before


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--limit", "-3"], ["--sleep", "soon"], ["--bogus"]])
def test_bad_option_values_on_the_command_line_are_one_line_and_non_zero(tiers, args):
    """argparse's usage dump is not a one-line error: option errors are CommandErrors too."""
    seed(old=2, new=1)
    before = snapshot(tiers)
    done = manage(tiers, "migrate_cold", "--no-input", *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: ")
    assert snapshot(tiers) == before
