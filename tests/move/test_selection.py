"""One definition of "eligible now": the dashboard's backlog, analyze_tiers, the dry run, the admin's count,
the parallel key split and the run itself agree, restore holds included."""
from __future__ import annotations

import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from tests.dashboard_helpers import ADMIN_ORDER_PERMS, MOVER_PERMS, PASSWORD, make_user
from tests.move.helpers import seed_orders
from tiering import analysis, move
from tiering.models import Direction, RestoredRow
from tiering.move import selection
from tiering.registry import registry
from tiering.tasks import split_key_range

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def test_after_a_restore_the_backlog_the_dry_run_and_the_run_agree(tiers):
    """Two old orders restored to hot are held there for the policy's 90 days: every count says 0 to move
    (the backlog used to count them: "backlog 2" while the dry run and the run moved nothing)."""
    tiered = registry.get(Order)
    seed_orders(tiers.hot, 30, lines=1)
    assert move.move(tiered, Direction.TO_COLD).rows == 30
    call_command("restore_hot", "--model", "orders.Order", "--pk", "3", "7", "--no-input", verbosity=0)
    assert set(Order.objects.hot().values_list("pk", flat=True)) == {3, 7}

    assert selection.eligible(tiered).count() == 0
    assert analysis.analyze(tiered).backlog_rows == 0
    assert split_key_range(tiered, 2) == []
    make_user("mover", staff=True, perms=ADMIN_ORDER_PERMS + MOVER_PERMS)
    client = Client()
    assert client.login(username="mover", password=PASSWORD)
    page = client.get(reverse("tiering:dashboard"))
    [card] = [c for c in page.context["cards"] if c["f"].model == "orders.Order"]
    assert card["f"].backlog_rows == 0
    page = client.post(reverse("admin:orders_order_changelist"),
                       {"action": "move_to_cold", ACTION_CHECKBOX_NAME: ["3", "7"], "index": 0})
    assert '<strong class="eligible-count">0</strong>' in page.content.decode()
    out = io.StringIO()
    call_command("migrate_cold", "--model", "orders.Order", "--dry-run", stdout=out)
    assert "orders.Order hot → cold: 0 rows" in out.getvalue()
    assert move.move(tiered, Direction.TO_COLD) is None
    assert set(Order.objects.hot().values_list("pk", flat=True)) == {3, 7}


def test_eligible_rows_are_the_policy_s_cold_rows_without_holds(tiers):
    tiered = registry.get(Order)
    seed_orders(tiers.hot, 10, lines=0, old=True)
    seed_orders(tiers.hot, 5, lines=0, old=False, start_pk=11)
    RestoredRow.objects.using(tiers.hot).create(model_label="orders.Order", object_pk="4", restored_at=timezone.now())
    eligible = sorted(selection.eligible(tiered).values_list("pk", flat=True))
    assert eligible == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert analysis.analyze(tiered).backlog_rows == 9
    ranges = split_key_range(tiered, 3)
    slices = [[pk for pk in eligible if (low is None or pk >= low) and (high is None or pk < high)]
              for low, high in ranges]
    assert [len(keys) for keys in slices] == [3, 3, 3] and sorted(sum(slices, [])) == eligible
    assert move.plan(tiered, Direction.TO_COLD).rows == 9
