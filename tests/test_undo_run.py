"""Undo by run: ``restore_hot --run N`` and the run page's "Undo this run" move back exactly the rows archive
run N moved that are still cold because of it, through the same restore as every other."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import QuerySet
from django.test import Client
from django.urls import reverse

from orders.models import Order, OrderLine
from tests.dashboard_helpers import MOVER_PERMS, PASSWORD, VIEWER_PERMS, csrf_token, make_user
from tests.move.helpers import seed_orders
from tiering import move
from tiering.models import Direction, MigrationRun, RunState
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql"]  # pg_schema moves by the same restore as every restore test


def keys(model, alias) -> set:
    return set(QuerySet(model).using(alias).values_list("pk", flat=True))


@pytest.fixture
def two_runs(tiers):
    """30 old orders (2 lines each): run 1 archives 1-10, run 2 11-30; order 3 was restored since."""
    seed_orders(tiers.hot, 30, lines=2, old=True)
    seed_orders(tiers.hot, 5, lines=2, old=False, start_pk=31)
    tiered = registry.by_label("orders.Order")
    first = move.move(tiered, Direction.TO_COLD, limit=10)
    second = move.move(tiered, Direction.TO_COLD)
    move.move(tiered, Direction.TO_HOT, pks=[3])
    assert (first.rows, second.rows) == (10, 20)
    return tiers, first, second


def restore_hot(*args, **options) -> str:
    out = StringIO()
    call_command("restore_hot", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_restore_hot_run_moves_back_what_that_run_moved_and_is_still_cold(two_runs):
    tiers, first, second = two_runs
    before = MigrationRun.objects.using(tiers.hot).count()
    assert "orders.Order cold → hot: 9 rows (+18 child rows)" in restore_hot("--run", str(first.pk), "--dry-run")
    assert MigrationRun.objects.using(tiers.hot).count() == before  # the dry run recorded nothing
    restore_hot("--run", str(first.pk), "--no-input", verbosity=0)
    assert keys(Order, tiers.cold) == set(range(11, 31))  # run 2's rows stay cold
    assert keys(Order, tiers.hot) == set(range(1, 11)) | set(range(31, 36))
    assert set(QuerySet(OrderLine).using(tiers.cold).values_list("order_id", flat=True)) == set(range(11, 31))
    undo = MigrationRun.objects.using(tiers.hot).order_by("-pk").first()
    assert (undo.direction, undo.trigger, undo.rows, undo.selection["undo_run"]) == (
        Direction.TO_HOT, "command", 9, first.pk)
    with pytest.raises(CommandError, match=f"Run {first.pk} moved no row that is still cold"):
        restore_hot(run=first.pk, interactive=False)


def test_restore_hot_run_refuses_in_one_line(two_runs):
    tiers, first, _ = two_runs
    restore_run = MigrationRun.objects.using(tiers.hot).filter(direction=Direction.TO_HOT).get()
    before = MigrationRun.objects.using(tiers.hot).count()
    for options, message in (({"run": 9999}, "No run 9999 in the ledger."),
                             ({"run": restore_run.pk}, "only an archive run can be undone"),
                             ({"run": first.pk, "model": "keyed.Ticket"}, "moved orders.Order, not keyed.Ticket")):
        with pytest.raises(CommandError, match=message):
            restore_hot(interactive=False, **options)
    assert MigrationRun.objects.using(tiers.hot).count() == before


def login(username: str, perms, csrf: bool = False) -> Client:
    make_user(username, perms=perms)
    client = Client(enforce_csrf_checks=csrf)
    assert client.login(username=username, password=PASSWORD)
    return client


def test_undo_this_run_on_the_run_page(two_runs, settings):
    tiers, first, second = two_runs
    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": True}
    page, undo_url = reverse("tiering:run", args=[first.pk]), reverse("tiering:undo_run", args=[first.pk])
    viewer = login("viewer", VIEWER_PERMS)
    assert "Undo this run" not in viewer.get(page).content.decode()
    assert viewer.get(undo_url).status_code == 403 and viewer.post(undo_url).status_code == 403

    mover = login("mover", MOVER_PERMS, csrf=True)
    assert "Undo this run" in mover.get(page).content.decode()
    assert mover.get(reverse("tiering:undo_run", args=[9999])).status_code == 404
    restore_run = MigrationRun.objects.using(tiers.hot).filter(direction=Direction.TO_HOT).get()
    assert mover.get(reverse("tiering:undo_run", args=[restore_run.pk])).status_code == 409
    confirm = mover.get(undo_url)
    assert confirm.status_code == 200 and confirm.context["plan"].rows == 9
    before = MigrationRun.objects.using(tiers.hot).count()
    assert mover.post(undo_url).status_code == 403  # no CSRF token
    assert MigrationRun.objects.using(tiers.hot).count() == before and len(keys(Order, tiers.cold)) == 29

    response = mover.post(undo_url, {"csrfmiddlewaretoken": csrf_token(confirm.content.decode())})
    undo = MigrationRun.objects.using(tiers.hot).order_by("-pk").first()
    assert response.status_code == 302 and response["Location"] == reverse("tiering:run", args=[undo.pk])
    assert (undo.state, undo.trigger, undo.rows, undo.selection["undo_run"]) == (
        RunState.SUCCEEDED, "dashboard", 9, first.pk)
    assert keys(Order, tiers.cold) == set(range(11, 31))
    assert f'href="{page}"' in mover.get(response["Location"]).content.decode()  # the undo links to its run
    assert mover.get(undo_url).status_code == 409  # nothing left to undo


def test_undo_this_run_queues_the_restore_task(two_runs, settings):
    """Without RUN_IN_PROCESS the POST only queues ``tiering.restore(label, undo_run=N)`` (real Redis)."""
    if not getattr(settings, "REDIS_URL", None) or settings.REDIS_SKIP_REASON:
        pytest.skip(f"Redis unavailable: {settings.REDIS_SKIP_REASON}")
    import base64
    import json

    import redis

    from hotcold_site.celery import app

    tiers, first, _ = two_runs
    settings.TIERING = {**settings.TIERING, "RUN_IN_PROCESS": False}
    queue = app.conf.task_default_queue
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete(queue)
    before = MigrationRun.objects.using(tiers.hot).count()
    response = login("mover", MOVER_PERMS).post(reverse("tiering:undo_run", args=[first.pk]))
    messages = [json.loads(m) for m in broker.lrange(queue, 0, -1)]
    broker.delete(queue)
    assert response.status_code == 302 and response["Location"] == reverse("tiering:run", args=[first.pk])
    assert [m["headers"]["task"] for m in messages] == ["tiering.restore"]
    args, kwargs, _ = json.loads(base64.b64decode(messages[0]["body"]))
    assert (args, kwargs) == (["orders.Order"], {"undo_run": first.pk})
    assert MigrationRun.objects.using(tiers.hot).count() == before and len(keys(Order, tiers.cold)) == 29

    from tiering.tasks import restore

    result = restore.apply(args=["orders.Order"], kwargs={"undo_run": first.pk}).get()  # what a worker runs
    assert (result["status"], result["direction"], result["rows"]) == (RunState.SUCCEEDED, Direction.TO_HOT, 9)
    assert MigrationRun.objects.using(tiers.hot).get(pk=result["run"]).selection["undo_run"] == first.pk
    assert keys(Order, tiers.cold) == set(range(11, 31))
