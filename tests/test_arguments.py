"""Arguments that pass argparse and would fail inside a run are refused before it is recorded (tiering.arguments,
tiering.filters); keys in neither tier fail restore_hot after the others moved; analyze_tiers and the tasks say
a failure in one line. On the real SQLite and PostgreSQL pairs."""
from __future__ import annotations

import pytest
from django.core.management import CommandError

from orders.models import Order
from tests.test_commands_move import broken_cold_alias, manage, rows, run_command, seed, snapshot  # noqa: F401
from tiering import tasks
from tiering.exceptions import ArgumentError
from tiering.models import MigrationRun

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql"]
BEYOND_INT64 = str(2**63)

REFUSED = [
    ("migrate_cold", ["--sleep", "inf"], "--sleep: must be a finite number >= 0, not 'inf'"),
    ("migrate_cold", ["--sleep", "1e400"], "--sleep"),
    ("migrate_cold", ["--max-runtime", "inf"], "--max-runtime: must be a finite positive number"),
    ("migrate_cold", ["--max-runtime", "nan"], "--max-runtime"),
    ("restore_hot", ["--all", "--sleep", "-inf"], "--sleep"),
    ("restore_hot", ["--pk", BEYOND_INT64], f"--pk '{BEYOND_INT64}': {BEYOND_INT64} is out of range for id"),
    ("restore_hot", ["--pk", "1", "--pk", "-" + BEYOND_INT64 + "0"], "out of range"),
    ("restore_hot", ["--filter", f"customer={BEYOND_INT64}"], "out of range for id"),
    ("restore_hot", ["--filter", f"pk__in=1,{BEYOND_INT64}"], "out of range"),
    ("restore_hot", ["--filter", f"created_at__year={BEYOND_INT64}"], "out of range"),
    ("restore_hot", ["--filter", "note__regex=a**"], "invalid regular expression"),
    ("restore_hot", ["--filter", "note__iregex=(unclosed"], "invalid regular expression"),
    ("restore_hot", ["--filter", "pk__in="], "--filter 'pk__in=': “” value must be an integer."),
]


@pytest.mark.parametrize("command,args,message", REFUSED, ids=[" ".join([c, *a]) for c, a, _ in REFUSED])
def test_arguments_that_would_fail_inside_a_run_are_refused_before_it_is_recorded(tiers, command, args, message):
    seed(old=4, new=1, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "2", verbosity=0)
    before = snapshot(tiers)
    which = ["--model", "orders.Order"] if command == "restore_hot" else []
    with pytest.raises(CommandError) as excinfo:
        run_command(command, *which, *args, "--no-input")
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert snapshot(tiers) == before  # no run, no lock, no row changed


def test_a_regex_the_database_rejects_is_refused_before_the_run(tiers):
    """Python compiles a named group; PostgreSQL's regular expressions have none and refuse it when planning."""
    seed(old=4, new=1, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    before = snapshot(tiers)
    args = ["--model", "orders.Order", "--filter", "note__regex=(?P<n>old)", "--no-input"]
    if tiers.vendor == "sqlite":  # SQLite's REGEXP is Python's: the filter works
        run_command("restore_hot", *args, verbosity=0)
        assert len(rows(Order, tiers.hot)) == 1
        return
    with pytest.raises(CommandError, match=r"note__regex=\(\?P<n>old\).*refuses it: invalid regular expression"):
        run_command("restore_hot", *args)
    assert snapshot(tiers) == before


def test_restore_names_keys_in_neither_tier_and_fails_after_moving_the_others(tiers):
    old, new = seed(old=4, new=2, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    missing = [max(o.pk for o in old + new) + 1000, max(o.pk for o in old + new) + 1001]
    with pytest.raises(CommandError) as excinfo:
        out = run_command("restore_hot", "--model", "orders.Order", "--pk", str(old[0].pk), str(new[0].pk),
                          *map(str, missing), "--no-input")
    assert str(excinfo.value) == (f"Not all of the request was met: orders.Order: 2 keys ({missing[0]}, "
                                  f"{missing[1]}) are in neither tier")
    assert old[0].pk in set(rows(Order, tiers.hot).values_list("pk", flat=True))  # the found key moved
    assert MigrationRun.objects.using(tiers.hot).filter(direction="to_hot", rows=1).count() == 1
    out = run_command("restore_hot", "--model", "orders.Order", "--pk", str(old[0].pk), str(new[0].pk), "--no-input")
    assert f"orders.Order: 2 keys ({old[0].pk}, {new[0].pk}) are already hot." in out
    assert "nothing to move" in out


def test_restore_with_a_missing_key_exits_non_zero_on_the_command_line(tiers):
    if tiers.backend != "sqlite":
        pytest.skip("the exit status is the command's, the same on every pair")
    old, _ = seed(old=2, new=1, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    done = manage(tiers, "restore_hot", "--model", "orders.Order", "--pk", str(old[0].pk), "999999", "--no-input")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("CommandError: Not all of the request was met: orders.Order: "
                                                    "1 key (999999) is in neither tier")
    assert old[0].pk in set(rows(Order, tiers.hot).values_list("pk", flat=True))


def test_analyze_tiers_with_an_unreachable_alias_is_one_line(tiers, request):
    seed(old=2, new=1, lines=1)  # while cold answers: a new customer's unique email is checked there
    broken_cold_alias = request.getfixturevalue("broken_cold_alias")
    with pytest.raises(CommandError) as excinfo:
        run_command("analyze_tiers")
    text = str(excinfo.value)
    assert text.startswith(f"The cold database (alias {broken_cold_alias!r}) does not answer: ") and "\n" not in text


def test_analyze_tiers_with_an_alias_missing_from_databases_is_one_line(tiers, settings):
    settings.TIERING = {**settings.TIERING, "COLD": "no_such_alias"}
    with pytest.raises(CommandError, match="no_such_alias") as excinfo:
        run_command("analyze_tiers")
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("task,args,kwargs,message", [
    (tasks.archive_model, ["orders.Order"], {"sleep": float("inf")}, "--sleep must be a finite number >= 0"),
    (tasks.archive_model, ["orders.Order"], {"batch_size": 0}, "--batch-size"),
    (tasks.restore, ["orders.Order"], {"pks": [BEYOND_INT64]}, "out of range"),
    (tasks.restore, ["orders.Order"], {"filter": ["note__regex=a**"]}, "invalid regular expression"),
    (tasks.restore, ["orders.Order"], {"filter": {"pk__in": []}}, "the filter matches nothing"),
    (tasks.restore, ["orders.Order"], {"filter": {"customer_id": 2**63}}, "out of range"),
    (tasks.restore, ["orders.Order"], {"filter": {"nosuch": 1}}, "nosuch"),
    (tasks.restore, ["orders.Order"], {"all_rows": True, "limit": float("nan")}, "--limit"),
    (tasks.archive_model_parallel, ["orders.Order"], {"max_runtime": float("inf")}, "--max-runtime"),
], ids=["sleep inf", "batch_size 0", "pk beyond int64", "bad regex", "empty in", "dict beyond int64", "dict no field",
       "limit nan", "parallel inf"])
def test_task_arguments_are_refused_before_a_run_is_recorded(tiers, task, args, kwargs, message):
    """The task function itself (eagerly, no worker): a ValueError the worker does not retry, no run."""
    seed(old=3, new=1, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", "--limit", "1", verbosity=0)
    before = snapshot(tiers)
    result = task.apply(args=args, kwargs=kwargs)
    assert result.failed() and isinstance(result.result, ArgumentError)
    assert message in str(result.result) and "\n" not in str(result.result)
    assert not tasks.is_transient(result.result)
    assert snapshot(tiers) == before


def test_restore_task_names_keys_in_neither_tier(tiers):
    old, _ = seed(old=3, new=1, lines=1)
    run_command("migrate_cold", "--model", "orders.Order", "--no-input", verbosity=0)
    result = tasks.restore.apply(args=["orders.Order"], kwargs={"pks": [old[0].pk, 999999]}).get()
    assert result["rows"] == 1 and result["not_found"] == [999999]
    result = tasks.restore.apply(args=["orders.Order"], kwargs={"pks": [999998]}).get()
    assert result["status"] == "nothing to move" and result["not_found"] == [999998]
