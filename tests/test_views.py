"""The /tiering/ pages: permissions, 404s, CSRF, GET moves nothing, "Run now" moves through the engine."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from orders.models import Order
from tests.dashboard_helpers import (
    MOVER_PERMS,
    PASSWORD,
    VIEWER_PERMS,
    count,
    csrf_token,
    make_user,
    order_counts,
)
from tests.move.helpers import seed_orders
from tiering import move
from tiering.models import Direction, MigrationRun, RunState
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def seeded(tiers):
    """30 old orders (eligible) and 10 young ones in hot, 5 in cold; 2 lines each."""
    seed_orders(tiers.hot, 30, lines=2, old=True)
    seed_orders(tiers.hot, 10, lines=2, old=False, start_pk=31)
    seed_orders(tiers.cold, 5, lines=2, old=True, start_pk=41)
    return tiers


def login(username: str, perms=(), staff=True, csrf=False) -> Client:
    make_user(username, staff=staff, perms=perms)
    client = Client(enforce_csrf_checks=csrf)
    assert client.login(username=username, password=PASSWORD)
    return client


def a_run(tiers) -> MigrationRun:
    return move.move(registry.by_label("orders.Order"), Direction.TO_COLD, limit=5, trigger="command")


def urls(run_pk: int) -> list[str]:
    return [
        reverse("tiering:dashboard"),
        reverse("tiering:run", args=[run_pk]),
        reverse("tiering:run_now", args=["orders.Order"]),
    ]


def test_anonymous_is_sent_to_login(seeded):
    run = a_run(seeded)
    client = Client()
    for url in urls(run.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login") + "?next="), url
    response = client.post(reverse("tiering:run_now", args=["orders.Order"]))
    assert response.status_code == 302
    assert MigrationRun.objects.count() == 1


@pytest.mark.parametrize("staff, perms", [(False, MOVER_PERMS), (True, ())], ids=["not-staff", "staff-no-perm"])
def test_without_permission_403(seeded, staff, perms):
    run = a_run(seeded)
    client = login("someone", perms=perms, staff=staff)
    before = order_counts(seeded)
    for url in urls(run.pk):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("tiering:run_now", args=["orders.Order"])).status_code == 403
    assert order_counts(seeded) == before
    assert MigrationRun.objects.count() == 1


def test_viewer_sees_pages_but_cannot_run(seeded):
    run = a_run(seeded)
    client = login("viewer", perms=VIEWER_PERMS)
    page = client.get(reverse("tiering:dashboard"))
    assert page.status_code == 200
    assert b"Run now" not in page.content
    assert client.get(reverse("tiering:run", args=[run.pk])).status_code == 200
    assert client.get(reverse("tiering:run_now", args=["orders.Order"])).status_code == 403
    assert client.post(reverse("tiering:run_now", args=["orders.Order"])).status_code == 403
    assert MigrationRun.objects.count() == 1


def test_dashboard_shows_the_tiers(seeded):
    run = a_run(seeded)  # 5 old orders (and their 10 lines) moved to cold
    client = login("mover", perms=MOVER_PERMS)
    response = client.get(reverse("tiering:dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    card = next(c for c in response.context["cards"] if c["f"].model == "orders.Order")
    assert card["f"].hot.rows == count(seeded.hot, "orders_order") == 35
    assert card["f"].cold.rows == count(seeded.cold, "orders_order") == 10
    assert card["f"].cold.child_rows == count(seeded.cold, "orders_orderline") == 20
    assert card["f"].backlog_rows == 25
    # the bar: hot and cold widths in proportion to the rows
    assert card["bar"]["hot"] == round(300 * 35 / 45, 1)
    assert '<svg class="bar"' in html and 'class="cold"' in html
    assert f'href="{reverse("tiering:run", args=[run.pk])}"' in html
    assert 'id="recent-runs"' in html and "Run now" in html
    chart = response.context["chart"]
    assert chart["total"] == run.rows == 5
    assert '<svg class="chart"' in html
    assert "none scheduled" in html
    assert "<script" not in html  # readable without JavaScript


def test_dashboard_shows_next_scheduled_run(seeded):
    from tiering import schedule

    schedule.sync(["orders.Order"])
    client = login("mover", perms=MOVER_PERMS)
    response = client.get(reverse("tiering:dashboard"))
    card = next(c for c in response.context["cards"] if c["f"].model == "orders.Order")
    assert card["next_run"] is not None
    assert card["next_run"].at.strftime("%Y-%m-%d %H:%M") in response.content.decode()  # TIME_ZONE is UTC


def test_run_page_lists_batches(seeded):
    run = move.move(registry.by_label("orders.Order"), Direction.TO_COLD, batch_size=10, trigger="command")
    client = login("viewer", perms=VIEWER_PERMS)
    response = client.get(reverse("tiering:run", args=[run.pk]))
    assert response.status_code == 200
    batches = response.context["batches"]
    assert len(batches) == run.batches == 3
    assert sum(b["batch"].rows for b in batches) == run.rows == 30
    assert response.content.decode().count('<tr class="state-done">') == 3


def test_bad_ids_and_labels_404(seeded):
    client = login("mover", perms=MOVER_PERMS)
    assert client.get(reverse("tiering:run", args=[999999])).status_code == 404
    assert client.get("/tiering/runs/abc/").status_code == 404
    for label in ("nope.Nothing", "auth.User", "orders.OrderLine", "garbage"):
        url = reverse("tiering:run_now", args=[label])
        assert client.get(url).status_code == 404, label
        assert client.post(url).status_code == 404, label
    assert MigrationRun.objects.count() == 0


def test_gets_move_nothing(seeded):
    run = a_run(seeded)
    client = login("mover", perms=MOVER_PERMS)
    before, runs = order_counts(seeded), MigrationRun.objects.count()
    for url in urls(run.pk):
        assert client.get(url).status_code == 200, url
    assert order_counts(seeded) == before
    assert MigrationRun.objects.count() == runs


def test_run_now_confirmation_shows_the_dry_run(seeded):
    client = login("mover", perms=MOVER_PERMS)
    response = client.get(reverse("tiering:run_now", args=["orders.order"]))  # label is case-insensitive
    assert response.status_code == 200
    plan = response.context["plan"]
    assert (plan.rows, plan.child_rows) == (30, 60)
    assert '<td class="plan-rows">30</td>' in response.content.decode()
    assert MigrationRun.objects.count() == 0


def test_run_now_post_needs_csrf(seeded):
    client = login("mover", perms=MOVER_PERMS, csrf=True)
    url = reverse("tiering:run_now", args=["orders.Order"])
    before = order_counts(seeded)
    assert client.post(url).status_code == 403
    assert client.post(url, {"csrfmiddlewaretoken": "forged" * 6}).status_code == 403
    assert order_counts(seeded) == before
    assert MigrationRun.objects.count() == 0


def test_run_now_moves_in_process(seeded, settings):
    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": True}
    client = login("mover", perms=MOVER_PERMS, csrf=True)
    url = reverse("tiering:run_now", args=["orders.Order"])
    token = csrf_token(client.get(url).content.decode())
    response = client.post(url, {"csrfmiddlewaretoken": token})
    run = MigrationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("tiering:run", args=[run.pk])
    assert (run.state, run.trigger, run.rows, run.child_rows) == (RunState.SUCCEEDED, "dashboard", 30, 60)
    assert order_counts(seeded) == {"hot": 10, "cold": 35, "hot_lines": 20, "cold_lines": 70}
    page = client.get(response["Location"])
    assert f"{run.rows} rows moved" in page.content.decode()


def test_run_now_lock_held_moves_nothing(seeded, settings):
    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": True}
    tiered = registry.by_label("orders.Order")
    held = move.start_run(tiered, Direction.TO_COLD, trigger="command", selection={})
    client = login("mover", perms=MOVER_PERMS)
    before = order_counts(seeded)
    response = client.post(reverse("tiering:run_now", args=["orders.Order"]), follow=True)
    assert response.status_code == 200
    assert "Not started" in response.content.decode()
    assert order_counts(seeded) == before
    move.finish_run(held, RunState.SUCCEEDED)


def test_run_now_enqueues_the_celery_task(seeded, settings):
    """Without RUN_IN_PROCESS the POST only queues ``archive_model`` on the broker (real Redis)."""
    if not getattr(settings, "REDIS_URL", None) or settings.REDIS_SKIP_REASON:
        pytest.skip(f"Redis unavailable: {settings.REDIS_SKIP_REASON}")
    import json

    import redis

    from hotcold_site.celery import app

    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": False}
    queue = app.conf.task_default_queue
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete(queue)
    client = login("mover", perms=MOVER_PERMS)
    before = order_counts(seeded)
    response = client.post(reverse("tiering:run_now", args=["orders.Order"]))
    assert response.status_code == 302 and response["Location"] == reverse("tiering:dashboard")
    messages = [json.loads(m) for m in broker.lrange(queue, 0, -1)]
    broker.delete(queue)
    assert [m["headers"]["task"] for m in messages] == ["tiering.archive_model"]
    assert json.loads(__import__("base64").b64decode(messages[0]["body"]))[0] == ["orders.Order"]
    assert order_counts(seeded) == before  # a worker would move them; the web request did not
    assert Order.objects.hot().count() == 40


def test_failed_runs_show_their_error(seeded):
    from django.utils import timezone

    failed = MigrationRun.objects.create(
        model_label="orders.Order", direction=Direction.TO_COLD, state=RunState.FAILED, trigger="task",
        finished_at=timezone.now(), error="OperationalError: the cold database is away\ntraceback...",
    )
    client = login("viewer", perms=VIEWER_PERMS)
    html = client.get(reverse("tiering:dashboard")).content.decode()
    assert '<tr class="state-failed">' in html
    assert "OperationalError: the cold database is away" in html
    page = client.get(reverse("tiering:run", args=[failed.pk])).content.decode()
    assert "the cold database is away" in page and "No batches." in page
