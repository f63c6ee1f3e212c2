"""TieredModelAdmin and the ledger admin, against both real backend pairs."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from tests.dashboard_helpers import (
    ADMIN_ORDER_PERMS,
    MOVER_PERMS,
    PASSWORD,
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

CHANGELIST = "admin:orders_order_changelist"


@pytest.fixture
def seeded(tiers):
    """150 old orders in hot (ids 1-150), 20 young in hot (151-170), 60 old in cold (171-230)."""
    seed_orders(tiers.hot, 150, lines=1, old=True)
    seed_orders(tiers.hot, 20, lines=1, old=False, start_pk=151)
    seed_orders(tiers.cold, 60, lines=1, old=True, start_pk=171)
    return tiers


def client_for(username: str, perms=()) -> Client:
    make_user(username, perms=perms)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def ids_on_page(response) -> list[int]:
    return [obj.pk for obj in response.context["cl"].result_list]


def test_changelist_lists_both_tiers_paginated_without_loading_a_tier(seeded):
    client = client_for("editor", ADMIN_ORDER_PERMS)
    url = reverse(CHANGELIST) + "?o=0"  # ordered by list_display[0], id, ascending
    with CaptureQueriesContext(connections[seeded.hot]) as hot, CaptureQueriesContext(connections[seeded.cold]) as cold:
        response = client.get(url + "&p=2")
    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.result_count == cl.full_result_count == 230
    assert cl.paginator.num_pages == 3
    assert ids_on_page(response) == list(range(101, 201))  # spans hot 101-170 and cold 171-200
    tiers = [obj._state.db for obj in cl.result_list]
    assert tiers.count(seeded.cold) == 30 and tiers.count(seeded.hot) == 70
    # Every SELECT of the order table is an aggregate (the counts, the date hierarchy's MIN/MAX) or bounded by
    # LIMIT: no tier is read whole.
    selects = [q["sql"] for q in hot.captured_queries + cold.captured_queries
               if re.search(r'FROM ["`]orders_order["`]', q["sql"])]
    assert selects
    for sql in selects:
        assert re.match(r'SELECT (COUNT|MIN|MAX)\(', sql.upper()) or "LIMIT" in sql.upper(), sql
    html = response.content.decode()
    assert '<span class="tier tier-cold">cold</span>' in html and '<span class="tier tier-hot">hot</span>' in html
    # distribution summary
    assert 'id="tier-summary"' in html
    assert '<td class="tier-hot-rows">170</td>' in html and '<td class="tier-cold-rows">60</td>' in html


def test_tier_filter(seeded):
    client = client_for("editor", ADMIN_ORDER_PERMS)
    cold = client.get(reverse(CHANGELIST) + "?tier=cold&o=0")
    assert cold.context["cl"].result_count == 60
    assert ids_on_page(cold) == list(range(171, 231))
    hot = client.get(reverse(CHANGELIST) + "?tier=hot&o=-0")
    assert hot.context["cl"].result_count == 170
    assert ids_on_page(hot)[:3] == [170, 169, 168]


def test_actions_need_move_permission(seeded):
    client = client_for("editor", ADMIN_ORDER_PERMS)
    page = client.get(reverse(CHANGELIST))
    assert "move_to_cold" not in page.content.decode()
    before = order_counts(seeded)
    response = client.post(reverse(CHANGELIST),
                           {"action": "move_to_cold", ACTION_CHECKBOX_NAME: ["1", "2"], "index": 0})
    assert response.status_code in (200, 302)
    assert order_counts(seeded) == before
    assert MigrationRun.objects.count() == 0


def test_move_to_cold_confirms_then_moves(seeded):
    client = client_for("mover", ADMIN_ORDER_PERMS + MOVER_PERMS)
    # 1-3 hot and eligible, 160 hot and too young, 171 already cold
    selected = ["1", "2", "3", "160", "171"]
    response = client.post(reverse(CHANGELIST), {"action": "move_to_cold", ACTION_CHECKBOX_NAME: selected, "index": 0})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<strong class="selected-count">5</strong>' in html
    assert '<strong class="source-count">4</strong>' in html
    assert '<strong class="eligible-count">3</strong>' in html
    assert MigrationRun.objects.count() == 0  # the confirmation moved nothing
    before = order_counts(seeded)
    assert before["hot"] == 170
    token = csrf_token(html)
    form = {"action": "move_to_cold", ACTION_CHECKBOX_NAME: selected, "confirm": "yes",
            "select_across": "0", "csrfmiddlewaretoken": token}
    response = client.post(reverse(CHANGELIST), form, follow=True)
    assert response.status_code == 200
    run = MigrationRun.objects.get()
    assert (run.direction, run.trigger, run.state, run.rows) == (Direction.TO_COLD, "admin", RunState.SUCCEEDED, 3)
    assert "3 rows moved" in response.content.decode()
    for pk in (1, 2, 3, 171):
        assert count(seeded.cold, "orders_order", "id = %s", [pk]) == 1
        assert count(seeded.hot, "orders_order", "id = %s", [pk]) == 0
    assert count(seeded.hot, "orders_order", "id = 160") == 1
    assert count(seeded.cold, "orders_orderline", "order_id IN (1, 2, 3)") == 3


def test_restore_to_hot(seeded):
    client = client_for("mover", ADMIN_ORDER_PERMS + MOVER_PERMS)
    selected = ["171", "172", "5"]
    response = client.post(reverse(CHANGELIST),
                           {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: selected, "index": 0})
    assert '<strong class="source-count">2</strong>' in response.content.decode()
    assert MigrationRun.objects.count() == 0
    client.post(reverse(CHANGELIST), {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: selected, "confirm": "yes"})
    run = MigrationRun.objects.get()
    assert (run.direction, run.trigger, run.rows) == (Direction.TO_HOT, "admin", 2)
    assert count(seeded.hot, "orders_order", "id IN (171, 172)") == 2
    assert count(seeded.cold, "orders_order", "id IN (171, 172)") == 0
    assert order_counts(seeded)["hot"] == 172


def test_edit_cold_row_saves_in_cold(tiers):
    old = timezone.now() - timedelta(days=400)
    customer = Customer.objects.using(tiers.cold).create(email="cold@example.com", name="Cold", last_seen=old,
                                                         created_at=old)
    client = client_for("editor", ADMIN_ORDER_PERMS)
    url = reverse("admin:accounts_customer_change", args=[customer.pk])
    page = client.get(url)
    assert page.status_code == 200
    # Opening it neither promoted it (promote_on_access) nor touched it.
    assert count(tiers.cold, "accounts_customer") == 1 and count(tiers.hot, "accounts_customer") == 0
    form = {"email": "cold@example.com", "name": "Renamed", "last_seen_0": old.strftime("%Y-%m-%d"),
            "last_seen_1": old.strftime("%H:%M:%S"), "created_at_0": old.strftime("%Y-%m-%d"),
            "created_at_1": old.strftime("%H:%M:%S"), "_save": "Save"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Customer.objects.cold().get(pk=customer.pk).name == "Renamed"
    assert count(tiers.hot, "accounts_customer") == 0


def test_edit_cold_order_shows_its_cold_lines(seeded):
    client = client_for("editor", ADMIN_ORDER_PERMS)
    page = client.get(reverse("admin:orders_order_change", args=[171]))
    assert page.status_code == 200
    formset = page.context["inline_admin_formsets"][0].formset
    assert [line.order_id for line in formset.queryset] == [171]
    assert client.get(reverse("admin:orders_order_change", args=[99999])).status_code == 302  # "doesn't exist"


def test_ledger_admin_is_read_only_and_filterable(seeded):
    tiered = registry.by_label("orders.Order")
    run = move.move(tiered, Direction.TO_COLD, batch_size=50, trigger="command")
    move.move(tiered, Direction.TO_HOT, pks=[171], trigger="admin")
    client = client_for("viewer", ("tiering.view_migrationrun", "tiering.view_migrationbatch"))
    page = client.get(reverse("admin:tiering_migrationrun_changelist"))
    assert page.status_code == 200
    assert page.context["cl"].result_count == 2
    assert "rows/s" in page.content.decode().lower()
    filtered = client.get(reverse("admin:tiering_migrationrun_changelist")
                          + "?direction__exact=to_cold&state__exact=succeeded&model_label=orders.Order")
    assert [r.pk for r in filtered.context["cl"].result_list] == [run.pk]
    by_path = client.get(reverse("admin:tiering_migrationrun_changelist") + f"?path__exact={run.path}")
    assert run.path and by_path.context["cl"].result_count == 2  # both runs took the pair's fast path
    detail = client.get(reverse("admin:tiering_migrationrun_change", args=[run.pk]))
    assert detail.status_code == 200
    assert detail.context["has_change_permission"] is False
    assert len(re.findall(r'<tr class="[^"]*form-row', detail.content.decode())) == run.batches == 3
    assert client.get(reverse("admin:tiering_migrationrun_add")).status_code == 403
    batches = client.get(reverse("admin:tiering_migrationbatch_changelist") + "?run__direction=to_cold")
    assert batches.context["cl"].result_count == 3
    before = MigrationRun.objects.count()
    client.post(reverse("admin:tiering_migrationrun_delete", args=[run.pk]), {"post": "yes"})
    assert MigrationRun.objects.count() == before


def test_select_across_with_tier_filter(seeded):
    """"Select all 60" on the cold-filtered list restores every cold row, no more."""
    client = client_for("mover", ADMIN_ORDER_PERMS + MOVER_PERMS)
    url = reverse(CHANGELIST) + "?tier=cold"
    form = {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: ["171"], "select_across": "1", "index": 0}
    page = client.post(url, form)
    assert '<strong class="selected-count">60</strong>' in page.content.decode()
    assert MigrationRun.objects.count() == 0
    client.post(url, {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: ["171"], "select_across": "1",
                      "confirm": "yes"})
    run = MigrationRun.objects.get()
    assert run.rows == 60
    assert order_counts(seeded) == {"hot": 230, "cold": 0, "hot_lines": 230, "cold_lines": 0}
