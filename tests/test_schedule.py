"""manage.py tiering_schedule: PeriodicTask rows per tiered model, idempotent, enable/disable."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from orders.models import Order
from tiering.registry import registry
from tiering.schedule import ARCHIVE_TASK, schedule_name

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("tiering_schedule", *args, stdout=out)
    return out.getvalue()


def snapshot():
    return sorted(
        (t.name, t.task, t.args, t.enabled, str(t.crontab), t.crontab.timezone.key if t.crontab else None)
        for t in PeriodicTask.objects.select_related("crontab")
    )


def test_creates_one_task_per_tiered_model_with_default_crontab(settings):
    settings.TIME_ZONE = "Europe/Paris"
    out = run()
    labels = [t.label for t in registry]
    assert len(labels) >= 3 and f"{len(labels)} created" in out
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("crontab")}
    assert set(tasks) == {schedule_name(label) for label in labels}
    for label in labels:
        task = tasks[schedule_name(label)]
        assert task.task == ARCHIVE_TASK and json.loads(task.args) == [label] and task.enabled
        cron = task.crontab
        assert ((cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week)
                == ("0", "2", "*", "*", "*"))
        assert cron.timezone.key == "Europe/Paris"


def test_idempotent_and_corrects_drift():
    run()
    before = snapshot()
    assert f"{len(registry)} unchanged" in run()
    assert snapshot() == before and CrontabSchedule.objects.count() == 1
    task = PeriodicTask.objects.get(name=schedule_name("orders.Order"))
    task.args = json.dumps(["accounts.Customer"])
    task.save()
    assert "1 updated" in run()
    assert snapshot() == before


def test_model_override_and_settings_schedule(settings, monkeypatch):
    settings.TIERING = {**settings.TIERING, "SCHEDULE": "15 4 * * *"}
    monkeypatch.setattr(registry.get(Order), "schedule", "30 3 * * 1")
    run()
    order = PeriodicTask.objects.get(name=schedule_name("orders.Order")).crontab
    customer = PeriodicTask.objects.get(name=schedule_name("accounts.Customer")).crontab
    assert (order.minute, order.hour, order.day_of_week) == ("30", "3", "1")
    assert (customer.minute, customer.hour, customer.day_of_week) == ("15", "4", "*")


def test_disable_enable_survive_resync():
    run()
    assert "1 disabled" in run("--disable", "--model", "orders.order")
    assert not PeriodicTask.objects.get(name=schedule_name("orders.Order")).enabled
    run()  # a redeploy's resync keeps the pause
    assert not PeriodicTask.objects.get(name=schedule_name("orders.Order")).enabled
    listing = run("--list")
    assert ("disabled  tiering: archive orders.Order" in listing
            and "enabled   tiering: archive orders.Payment" in listing)
    run("--enable")
    assert PeriodicTask.objects.filter(enabled=True).count() == len(registry)


def test_dry_run_changes_nothing():
    out = run("--dry-run")
    assert "would be created" in out and not PeriodicTask.objects.exists()
    run()
    before = snapshot()
    run("--disable", "--dry-run")
    assert snapshot() == before


def test_stale_schedule_of_an_untiered_model_is_removed():
    run()
    PeriodicTask.objects.create(name=schedule_name("orders.Gone"), task=ARCHIVE_TASK, args='["orders.Gone"]',
                                crontab=CrontabSchedule.objects.first())
    other = PeriodicTask.objects.create(name="someone else's", task="x.y", crontab=CrontabSchedule.objects.first())
    assert "1 removed" in run()
    assert not PeriodicTask.objects.filter(name=schedule_name("orders.Gone")).exists()
    assert PeriodicTask.objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize(
    "args, schedule, message",
    [
        (["--model", "orders.Nope"], None, "Unknown model 'orders.Nope'"),
        (["--model", "orders.OrderLine"], None, "is not tiered"),
        ([], "0 2 * *", "must have 5 fields"),
        ([], "61 2 * * *", "is invalid"),
        (["--enable", "--model", "orders.Order"], None, "run manage.py tiering_schedule first"),
    ],
)
def test_bad_input_is_one_line_error_and_changes_nothing(settings, args, schedule, message):
    if schedule:
        settings.TIERING = {**settings.TIERING, "SCHEDULE": schedule}
    with pytest.raises(CommandError, match=message) as info:
        run(*args)
    assert "\n" not in str(info.value)
    assert not PeriodicTask.objects.exists() and not CrontabSchedule.objects.exists()


def test_verbosity_zero_is_silent():
    assert run("-v0") == ""
    assert PeriodicTask.objects.count() == len(registry)
