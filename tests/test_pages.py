"""The pages read as finished: plurals, thousands separators, the currency, time zones, the next run from
the crontab itself, "Run now" disabled when nothing would move, and no ledger run for a run with nothing to do.

Every test renders the real page (Django's test client) or runs the real command and reads its text.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.dashboard_helpers import ADMIN_ORDER_PERMS, MOVER_PERMS, PASSWORD, VIEWER_PERMS, make_user, order_counts
from tests.move.helpers import seed_orders
from tiering import move, schedule
from tiering.models import Direction, MigrationRun, RunState
from tiering.registry import registry

ALL_DBS = pytest.mark.django_db(databases="__all__", transaction=True)


def login(username: str, perms=()) -> Client:
    make_user(username, staff=True, perms=perms)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def card_html(html: str, label: str) -> str:
    """The <article> of one model's card."""
    slug = label.lower().replace(".", "")
    match = re.search(rf'<article class="card" id="card-{slug}">(.*?)</article>', html, re.S)
    assert match, f"no card for {label}"
    return match.group(1)


def text(html: str) -> str:
    """Tags dropped, whitespace collapsed: what a reader sees."""
    return re.sub(r" ([.,])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", html).split()))


def ledger_run(rows: int, *, batches: int = 1, days_ago: float = 0, **fields) -> MigrationRun:
    started = timezone.now() - timedelta(days=days_ago)
    return MigrationRun.objects.create(
        model_label="orders.Order", direction=Direction.TO_COLD, state=RunState.SUCCEEDED, trigger="task",
        rows=rows, batches=batches, started_at=started, finished_at=started + timedelta(seconds=2), **fields)


# ------------------------------------------------------------------ the next run, from the crontab itself
@pytest.mark.django_db
@pytest.mark.parametrize("expression, zone, now, expected", [
    # the dashboard used to say 01:59 for this one
    ("0 2 * * *", "UTC", datetime(2026, 12, 2, 1, 59, 30, tzinfo=UTC), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)),
    ("0 2 * * *", "UTC", datetime(2026, 12, 2, 13, 4, tzinfo=UTC), datetime(2026, 12, 3, 2, 0, tzinfo=UTC)),
    ("0 2 * * *", "UTC", datetime(2026, 12, 2, 2, 0, 0, tzinfo=UTC), datetime(2026, 12, 3, 2, 0, tzinfo=UTC)),
    # 02:00 CET is 01:00 UTC
    ("0 2 * * *", "Europe/Paris", datetime(2026, 12, 2, 13, 4, tzinfo=UTC), datetime(2026, 12, 3, 1, 0, tzinfo=UTC)),
    # 01:30 EST: 02:00 EST is still today, 07:00 UTC
    ("0 2 * * *", "America/New_York", datetime(2026, 12, 2, 6, 30, tzinfo=UTC),
     datetime(2026, 12, 2, 7, 0, tzinfo=UTC)),
    # 15:37:12 IST (+05:30): 15:45 IST
    ("*/15 * * * *", "Asia/Kolkata", datetime(2026, 12, 2, 10, 7, 12, tzinfo=UTC),
     datetime(2026, 12, 2, 10, 15, tzinfo=UTC)),
    # Wednesday 11:00 AEDT (+11): Monday 2026-12-07 03:30 AEDT
    ("30 3 * * 1", "Australia/Sydney", datetime(2026, 12, 2, 0, 0, tzinfo=UTC),
     datetime(2026, 12, 6, 16, 30, tzinfo=UTC)),
    ("0 0 1 * *", "UTC", datetime(2026, 12, 2, 9, 0, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
    # Paris moves to summer time in the night of 2026-03-29: 04:00 CEST is 02:00 UTC, not 03:00
    ("0 4 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC)),
], ids=["one-minute-before", "later-today", "at-the-minute", "paris", "new-york", "every-15-min-kolkata",
        "mondays-sydney", "first-of-month", "across-dst"])
def test_next_run_is_the_crontab_s_next_match_in_its_zone(settings, expression, zone, now, expected):
    settings.TIME_ZONE = zone  # the zone sync() gives the crontab
    settings.TIERING = {**settings.TIERING, "SCHEDULE": expression}
    schedule.sync(["orders.Order"])
    found = schedule.next_runs(now)
    assert found["orders.order"].at == expected
    assert found["orders.order"].schedule == f"{expression} ({zone})"
    assert set(found) == {"orders.order"}  # only the synced model has a schedule


@pytest.mark.django_db
def test_next_run_takes_the_soonest_enabled_schedule_of_a_model(settings):
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    settings.TIME_ZONE = "UTC"
    schedule.sync(["orders.Order"])  # 0 2 * * *
    hourly = CrontabSchedule.objects.create(minute="30", hour="*", timezone="UTC")
    PeriodicTask.objects.create(name="extra", task=schedule.ARCHIVE_TASK, crontab=hourly,
                                kwargs='{"label": "orders.Order"}')
    paused = CrontabSchedule.objects.create(minute="5", hour="*", timezone="UTC")
    PeriodicTask.objects.create(name="paused", task=schedule.ARCHIVE_TASK, crontab=paused, args='["orders.Order"]',
                                enabled=False)
    now = datetime(2026, 12, 2, 13, 4, tzinfo=UTC)
    assert schedule.next_runs(now)["orders.order"].at == datetime(2026, 12, 2, 13, 30, tzinfo=UTC)


@pytest.mark.django_db
def test_an_interval_schedule_runs_next_from_its_last_run():
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_6h = IntervalSchedule.objects.create(every=6, period=IntervalSchedule.HOURS)
    now = datetime(2026, 12, 2, 13, 4, tzinfo=UTC)
    PeriodicTask.objects.create(name="six-hourly", task=schedule.ARCHIVE_TASK, interval=every_6h,
                                args='["orders.Order"]', last_run_at=datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    found = schedule.next_runs(now)["orders.order"]
    assert found.at == datetime(2026, 12, 2, 18, 0, tzinfo=UTC) and found.schedule == "every 6 hours"


@ALL_DBS
def test_dashboard_shows_the_next_run_in_the_current_time_zone(tiers, settings):
    settings.TIME_ZONE = "Europe/Paris"
    schedule.sync(["orders.Order"])  # 0 2 * * * in Europe/Paris
    client = login("viewer", perms=VIEWER_PERMS)
    html = client.get(reverse("tiering:dashboard")).content.decode()
    local = datetime.now(ZoneInfo("Europe/Paris"))
    day = local.date() if local.hour < 2 else local.date() + timedelta(days=1)
    expected = datetime(day.year, day.month, day.day, 2, 0, tzinfo=ZoneInfo("Europe/Paris"))
    card = text(card_html(html, "orders.Order"))
    assert f"Next scheduled run: {expected:%Y-%m-%d} 02:00 {expected:%Z} · 0 2 * * * (Europe/Paris)." in card
    assert f'<time datetime="{expected.isoformat()}">' in html
    assert "times in Europe/Paris" in text(html)
    assert "Next scheduled run: none scheduled." in text(card_html(html, "accounts.Customer"))


@ALL_DBS
def test_next_run_shown_in_another_zone_than_the_crontab_s(tiers, settings):
    """A crontab kept in New York, a page in Tokyo: 02:00 EST is 16:00 JST."""
    settings.TIME_ZONE = "America/New_York"
    schedule.sync(["orders.Order"])
    settings.TIME_ZONE = "Asia/Tokyo"
    client = login("viewer", perms=VIEWER_PERMS)
    card = text(card_html(client.get(reverse("tiering:dashboard")).content.decode(), "orders.Order"))
    assert re.search(r"Next scheduled run: \d{4}-\d\d-\d\d 16:00 JST · 0 2 \* \* \* \(America/New_York\)\.", card)


@ALL_DBS
def test_without_django_celery_beat_the_next_run_is_unknown(tiers, settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_celery_beat"]
    assert schedule.next_runs(timezone.now()) is None
    client = login("viewer", perms=VIEWER_PERMS)
    card = text(card_html(client.get(reverse("tiering:dashboard")).content.decode(), "orders.Order"))
    assert "Next scheduled run: unknown (django-celery-beat is not installed)." in card


# ------------------------------------------------------------------ plurals, separators, zones, currency
@ALL_DBS
def test_counts_are_grouped_and_pluralised(tiers, settings):
    settings.TIME_ZONE = "UTC"
    seed_orders(tiers.hot, 1234, lines=0, old=False)
    seed_orders(tiers.cold, 1, lines=1, old=True, start_pk=2000)
    ledger_run(1, days_ago=1)
    last = ledger_run(1234, batches=2)
    client = login("viewer", perms=VIEWER_PERMS)
    html = client.get(reverse("tiering:dashboard")).content.decode()
    card = card_html(html, "orders.Order")
    assert '<td class="hot-rows">1,234</td>' in card and '<td class="cold-rows">1</td>' in card
    assert 'aria-label="1,234 hot rows, 1 cold row"' in card
    assert f"Last run: #{last.pk} succeeded, 1,234 rows." in text(card)
    assert '<td class="rows">1,234</td>' in html and '<td class="rows">1</td>' in html
    assert "1,235 rows moved over the last 14 days" in html
    assert "peak 1,234 rows a day" in html
    assert ": 1 row to cold, 0 rows to hot</title>" in html and ": 1,234 rows to cold, 0 rows to hot</title>" in html
    empty = card_html(html, "accounts.Customer")
    assert 'aria-label="0 hot rows, 0 cold rows"' in empty and "Last run: never." in text(empty)
    page = client.get(reverse("tiering:run", args=[last.pk])).content.decode()
    assert '<td class="rows">1,234</td>' in page


@ALL_DBS
def test_run_page_counts_its_batches(tiers):
    seed_orders(tiers.hot, 25, lines=1, old=True)
    three = move.move(registry.by_label("orders.Order"), Direction.TO_COLD, batch_size=10)
    seed_orders(tiers.hot, 5, lines=1, old=True, start_pk=100)
    one = move.move(registry.by_label("orders.Order"), Direction.TO_COLD, batch_size=10)
    client = login("viewer", perms=VIEWER_PERMS)
    page = text(client.get(reverse("tiering:run", args=[three.pk])).content.decode())
    assert three.batches == 3 and re.search(r"\b3 batches\b", page)
    page = text(client.get(reverse("tiering:run", args=[one.pk])).content.decode())
    # word bounds: the summary's "rows/s 271 batches 1" holds "1 batches" too
    assert one.batches == 1 and re.search(r"\b1 batch\b", page) and not re.search(r"\b1 batches\b", page)


@ALL_DBS
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Los_Angeles"])
def test_timestamps_show_the_current_time_zone(tiers, settings, zone):
    settings.TIME_ZONE = zone
    run = ledger_run(3, cutoff=timezone.now() - timedelta(hours=1))
    run.refresh_from_db()
    client = login("viewer", perms=VIEWER_PERMS)
    local = run.started_at.astimezone(ZoneInfo(zone))
    shown = f"{local:%Y-%m-%d %H:%M:%S %Z}"
    assert shown in client.get(reverse("tiering:dashboard")).content.decode()
    page = client.get(reverse("tiering:run", args=[run.pk])).content.decode()
    assert f'<td class="started"><time datetime="{local.isoformat()}">{shown}</time></td>' in page
    assert f"{run.cutoff.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S %Z}" in page
    assert f"Times in {zone}." in text(page)


@ALL_DBS
def test_cost_figures_carry_the_currency(tiers, settings):
    settings.TIERING = {**settings.TIERING, "CURRENCY": "EUR", "COST_PER_GB_MONTH": {"hot": 1234.5, "cold": 0.02}}
    seed_orders(tiers.hot, 40, lines=1, old=True)
    move.move(registry.by_label("orders.Order"), Direction.TO_COLD, limit=20)
    client = login("viewer", perms=VIEWER_PERMS)
    response = client.get(reverse("tiering:dashboard"))
    html = response.content.decode()
    assert "storage at 1,234.50 EUR (hot) and 0.02 EUR (cold) per GB and month" in text(html)
    [card] = [c for c in response.context["cards"] if c["f"].model == "orders.Order"]
    assert card["f"].saving_monthly > 0
    assert re.search(r"Saving so far: \d[\d,]*\.\d+ EUR a month\.", text(card_html(html, "orders.Order")))
    assert re.search(r'<td class="hot-cost">\d[\d,]*\.\d+ EUR</td>', html)
    assert "$" not in text(card_html(html, "orders.Order"))
    out = StringIO()
    call_command("analyze_tiers", "--model", "orders.Order", stdout=out)
    assert "EUR/month" in out.getvalue()


@ALL_DBS
def test_admin_summary_groups_its_counts(tiers):
    seed_orders(tiers.hot, 1234, lines=0, old=False)
    seed_orders(tiers.cold, 1, lines=0, old=True, start_pk=2000)
    client = login("admin-viewer", perms=ADMIN_ORDER_PERMS)
    html = client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert '<td class="tier-hot-rows">1,234</td>' in html and '<td class="tier-cold-rows">1</td>' in html


# ------------------------------------------------------------------ nothing to move
@pytest.fixture
def only_young(tiers):
    """Ten orders, none old enough to move."""
    seed_orders(tiers.hot, 10, lines=1, old=False)
    return tiers


@ALL_DBS
def test_run_now_is_disabled_with_its_reason_when_nothing_would_move(only_young, settings):
    seed_orders(only_young.hot, 3, lines=1, old=True, start_pk=100)
    move.move(registry.by_label("orders.Order"), Direction.TO_COLD)  # the backlog is now empty
    client = login("mover", perms=MOVER_PERMS)
    html = client.get(reverse("tiering:dashboard")).content.decode()
    card = card_html(html, "orders.Order")
    assert reverse("tiering:run_now", args=["orders.Order"]) not in card
    assert re.search(r'<button type="button" class="button run-now" disabled[^>]*>Run now</button>', card)
    assert "Nothing to move: no hot row is eligible under the policy now." in text(card)
    page = client.get(reverse("tiering:run_now", args=["orders.Order"])).content.decode()
    assert '<td class="plan-rows">0</td>' in page
    assert re.search(r'<button type="submit" class="button" id="confirm-run" disabled', page)
    assert "Nothing to move" in text(page)


@ALL_DBS
def test_run_now_is_offered_when_rows_would_move(only_young):
    seed_orders(only_young.hot, 3, lines=1, old=True, start_pk=100)
    client = login("mover", perms=MOVER_PERMS)
    card = card_html(client.get(reverse("tiering:dashboard")).content.decode(), "orders.Order")
    assert f'href="{reverse("tiering:run_now", args=["orders.Order"])}"' in card and "disabled" not in card
    page = client.get(reverse("tiering:run_now", args=["orders.Order"])).content.decode()
    assert '<td class="plan-rows">3</td>' in page and "disabled" not in page


@ALL_DBS
@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "celery"])
def test_run_now_post_with_nothing_to_move_records_and_queues_nothing(only_young, settings, in_process):
    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": in_process}
    client = login("mover", perms=MOVER_PERMS)
    before = order_counts(only_young)
    response = client.post(reverse("tiering:run_now", args=["orders.Order"]), follow=True)
    assert response.redirect_chain == [(reverse("tiering:dashboard"), 302)]
    assert "Nothing to move: no row of orders.Order is eligible under its policy now" in response.content.decode()
    assert MigrationRun.objects.count() == 0
    assert order_counts(only_young) == before


@ALL_DBS
def test_run_now_still_needs_the_move_permission(only_young):
    client = login("viewer", perms=VIEWER_PERMS)
    assert "Run now" not in client.get(reverse("tiering:dashboard")).content.decode()
    assert client.get(reverse("tiering:run_now", args=["orders.Order"])).status_code == 403
    assert client.post(reverse("tiering:run_now", args=["orders.Order"])).status_code == 403


@ALL_DBS
def test_run_now_message_is_pluralised(only_young, settings):
    seed_orders(only_young.hot, 1, lines=1, old=True, start_pk=100)
    client = login("mover", perms=MOVER_PERMS)
    response = client.post(reverse("tiering:run_now", args=["orders.Order"]), follow=True)
    run = MigrationRun.objects.get()
    assert f"Run #{run.pk} of orders.Order: succeeded, 1 row moved." in response.content.decode()


@ALL_DBS
def test_migrate_cold_with_nothing_to_move_says_so_in_one_line_and_records_no_run(only_young):
    out = StringIO()
    call_command("migrate_cold", "--model", "orders.Order", "--no-input", stdout=out)
    assert out.getvalue().splitlines() == ["orders.Order hot → cold: nothing to move."]
    out = StringIO()
    call_command("migrate_cold", "--no-input", stdout=out)  # every tiered model: one line each
    lines = out.getvalue().splitlines()
    assert lines == [f"{t.label} hot → cold: nothing to move." for t in registry]
    assert MigrationRun.objects.count() == 0


@ALL_DBS
def test_a_run_that_settles_an_interrupted_one_is_recorded(only_young):
    """Nothing eligible, but an earlier run was left RUNNING without its lock: the next run closes it."""
    died = MigrationRun.objects.create(model_label="orders.Order", direction=Direction.TO_COLD, owner="gone:1",
                                       heartbeat_at=timezone.now() - timedelta(hours=1))
    assert move.has_work(registry.by_label("orders.Order"), Direction.TO_COLD)
    run = move.move(registry.by_label("orders.Order"), Direction.TO_COLD)
    assert run is not None and run.rows == 0
    died.refresh_from_db()
    assert died.state == RunState.FAILED and f"repaired by run {run.pk}" in died.error
    assert move.move(registry.by_label("orders.Order"), Direction.TO_COLD) is None  # now settled: nothing to do
    assert MigrationRun.objects.count() == 2


@ALL_DBS
def test_archive_task_with_nothing_to_move_records_no_run(only_young):
    from tiering import tasks

    result = tasks.archive_model.apply(args=["orders.Order"]).get()
    assert result["status"] == "nothing to move" and result["run"] is None
    parallel = tasks.archive_model_parallel.apply(args=["orders.Order"], kwargs={"workers": 2}).get()
    assert parallel["status"] == "nothing to move" and parallel["ranges"] == []
    assert MigrationRun.objects.count() == 0


@ALL_DBS
def test_admin_move_of_rows_not_eligible_records_no_run(only_young):
    client = login("admin-mover", perms=ADMIN_ORDER_PERMS + MOVER_PERMS)
    response = client.post(reverse("admin:orders_order_changelist"), {
        "action": "move_to_cold", ACTION_CHECKBOX_NAME: ["1", "2"], "index": 0, "confirm": "yes"}, follow=True)
    assert "Nothing to move: no selected row is eligible under the policy now." in response.content.decode()
    assert MigrationRun.objects.count() == 0


@ALL_DBS
def test_admin_confirmation_pluralises_its_dry_run(tiers):
    seed_orders(tiers.hot, 1, lines=1, old=True)
    client = login("admin-mover", perms=ADMIN_ORDER_PERMS + MOVER_PERMS)
    html = client.post(reverse("admin:orders_order_changelist"),
                       {"action": "move_to_cold", ACTION_CHECKBOX_NAME: ["1"], "index": 0}).content.decode()
    dry_run = text(re.search(r'<li class="dry-run">(.*?)</li>', html, re.S).group(1))
    assert re.fullmatch(r"Dry run: 1 row, 1 related row, about [\d.]+ (B|KiB|MiB), in 1 batch\.", dry_run), dry_run
