"""The stale-schedule alarm on real beat schedules and a real ledger: a scheduled model whose archive job has
not succeeded for more than twice its interval while eligible rows wait is overdue, in the signal, the
gauge, analyze_tiers and the dashboard; an idle model or a recent success is not."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from tests.dashboard_helpers import PASSWORD, VIEWER_PERMS, make_user
from tests.move.helpers import seed_orders
from tiering import move, overdue, schedule
from tiering.models import Direction, MigrationRun
from tiering.registry import registry
from tiering.signals import run_overdue

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql"]


@pytest.fixture
def signalled():
    overdue._sent.clear()
    got = []

    def receive(sender, **kwargs):
        got.append(kwargs)

    run_overdue.connect(receive, dispatch_uid="test_overdue")
    yield got
    run_overdue.disconnect(dispatch_uid="test_overdue")
    overdue._sent.clear()


def labels(found) -> list[str]:
    return [item.label for item in found]


def test_intervals_of_crontabs_and_interval_schedules(db):
    now = timezone.now()
    for expression, every in (("0 2 * * *", timedelta(days=1)), ("*/15 * * * *", timedelta(minutes=15)),
                              ("0 2 * * 1-5", timedelta(days=3))):  # the weekend counts
        cron = CrontabSchedule(**schedule.crontab_fields(expression), timezone="UTC")
        assert overdue.interval(PeriodicTask(crontab=cron), now) == every, expression
    period = IntervalSchedule(every=6, period=IntervalSchedule.HOURS)
    assert overdue.interval(PeriodicTask(interval=period), now) == timedelta(hours=6)


def test_a_daily_schedule_that_stopped_succeeding_is_overdue(tiers, signalled, settings):
    schedule.sync(["orders.Order"])  # 0 2 * * *: once a day
    assert overdue.overdue(send=True) == [] and signalled == []  # no eligible row waits: an idle model is quiet
    seed_orders(tiers.hot, 5, lines=1, old=True)
    found = overdue.overdue(send=True)
    assert labels(found) == ["orders.Order"] and found[0].last_success is None
    assert [s["model"] for s in signalled] == ["orders.Order"]
    overdue.overdue(send=True)
    assert len(signalled) == 1  # once per overdue state, not on every call

    run = move.move(registry.by_label("orders.Order"), Direction.TO_COLD)
    assert overdue.overdue() == []  # it just succeeded
    three_days_ago = timezone.now() - timedelta(days=3)
    MigrationRun.objects.using(tiers.hot).filter(pk=run.pk).update(finished_at=three_days_ago)
    assert overdue.overdue() == []  # nothing eligible waits since: the job had nothing to do
    seed_orders(tiers.hot, 5, lines=1, old=True, start_pk=6)
    found = overdue.overdue(send=True)
    assert labels(found) == ["orders.Order"] and found[0].last_success == three_days_ago
    assert len(signalled) == 2 and signalled[1]["last_success"] == three_days_ago

    out = StringIO()
    call_command("analyze_tiers", model=["orders.Order"], stdout=out, verbosity=0)
    assert "warning: orders.Order: archive run overdue, last succeeded" in out.getvalue()
    make_user("viewer", perms=VIEWER_PERMS)
    client = Client()
    assert client.login(username="viewer", password=PASSWORD)
    page = client.get(reverse("tiering:dashboard")).content.decode()
    assert 'id="overdue-ordersorder"' in page and "runs every 1 day" in page
    assert len(signalled) == 2

    from tiering import metrics

    metrics.refresh(force=True)
    assert metrics.OVERDUE.labels("orders.Order")._value.get() == 1

    PeriodicTask.objects.filter(name=schedule.schedule_name("orders.Order")).update(enabled=False)
    assert overdue.overdue() == []  # a paused schedule is not expected to run
