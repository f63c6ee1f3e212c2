"""The admin leaves a cold row where it is: no admin page promotes it back to hot or touches its access
field, unless TIERING['ADMIN_PROMOTES_ON_VIEW'] lets the change page read it as the application does.
The rows: a cold customer (AccessPolicy with promote_on_access) with a hot and a cold order, and a cold
payment (a hybrid policy that tracks access without promoting)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment
from tests.admin.world import superuser_client
from tests.dashboard_helpers import ADMIN_ORDER_PERMS, MOVER_PERMS, PASSWORD, count, csrf_token, make_user
from tiering.access import tracker
from tiering.models import MigrationRun

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
# The read path is the same whether the cold PostgreSQL tier is another database or a schema of the hot
# one (tests/move covers the schema pair's own move path): these many page-level tests run on one pair of each.
TIER_PAIRS = ["sqlite", "postgresql"]

OLD = timezone.now().replace(microsecond=0) - timedelta(days=400)
CUSTOMER, HOT_ORDER, COLD_ORDER, PAYMENT = 7, 11, 12, 21


@pytest.fixture
def cold_rows(tiers):
    Customer.objects.using(tiers.cold).create(pk=CUSTOMER, email="cold@example.com", name="Cold", last_seen=OLD,
                                              created_at=OLD)
    Order.objects.using(tiers.hot).create(pk=HOT_ORDER, customer_id=CUSTOMER, created_at=timezone.now(), total=5)
    Order.objects.using(tiers.cold).create(pk=COLD_ORDER, customer_id=CUSTOMER, created_at=OLD, total=9)
    OrderLine.objects.using(tiers.cold).create(order_id=COLD_ORDER, sku="SKU-COLD", price=Decimal("9.00"))
    Payment.objects.using(tiers.cold).create(pk=PAYMENT, order_id=COLD_ORDER, amount=9, created_at=OLD,
                                             last_accessed=OLD)
    return tiers


def where(tiers, table: str, pk: int, field: str) -> dict[str, object]:
    """{alias: the access field's value} of every tier that holds the row, read with raw SQL."""
    found = {}
    for alias in (tiers.hot, tiers.cold):
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT {field} FROM {table} WHERE id = %s", [pk])
            row = cursor.fetchone()
        if row:
            found[alias] = row[0]
    return found


def customer(tiers):
    return where(tiers, "accounts_customer", CUSTOMER, "last_seen")


def payment(tiers):
    return where(tiers, "orders_payment", PAYMENT, "last_accessed")


def form_of(model, pk):
    """The POST data of the row's admin change form as the page renders it."""
    return {
        "accounts.Customer": {"email": "cold@example.com", "name": "Renamed", "last_seen_0": OLD.strftime("%Y-%m-%d"),
                              "last_seen_1": OLD.strftime("%H:%M:%S"), "created_at_0": OLD.strftime("%Y-%m-%d"),
                              "created_at_1": OLD.strftime("%H:%M:%S")},
        "orders.Order": {"customer": str(CUSTOMER), "created_at_0": OLD.strftime("%Y-%m-%d"),
                         "created_at_1": OLD.strftime("%H:%M:%S"), "status": "paid", "total": "9.00", "note": "",
                         "lines-TOTAL_FORMS": "0", "lines-INITIAL_FORMS": "0", "lines-MIN_NUM_FORMS": "0",
                         "lines-MAX_NUM_FORMS": "1000"},
    }[model._meta.label]


def aware(stamp: datetime) -> datetime:
    """A timestamp read with raw SQL: SQLite gives it naive (in UTC)."""
    return stamp.replace(tzinfo=UTC) if timezone.is_naive(stamp) else stamp


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


# each admin path a user takes over the cold customer, its orders and the cold payment
def changelists(client):
    for name in ("accounts_customer", "orders_order", "orders_payment"):
        # (Order's search goes through its customer: tests/admin/test_changelist.py)
        for query in ("", "?tier=cold", "?_facets=True", "?created_at__year=" + str(OLD.year),
                      *(("?q=cold",) if name == "accounts_customer" else ())):
            assert client.get(url(f"{name}_changelist") + query).status_code == 200


def change_pages(client):
    for name, pk in (("accounts_customer", CUSTOMER), ("orders_order", COLD_ORDER), ("orders_order", HOT_ORDER),
                     ("orders_payment", PAYMENT)):
        page = client.get(url(f"{name}_change", pk))
        assert page.status_code == 200
        if name == "orders_order":  # the raw id widget names the cold customer
            assert "Cold &lt;cold@example.com&gt;" in page.content.decode()


def saves(client):
    response = client.post(url("accounts_customer_change", CUSTOMER), {**form_of(Customer, CUSTOMER), "_save": "1"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    response = client.post(url("orders_order_change", COLD_ORDER), {**form_of(Order, COLD_ORDER), "_save": "1"})
    assert response.status_code == 302, response.content.decode()[-2000:]


def history_pages(client):
    for name, pk in (("accounts_customer", CUSTOMER), ("orders_payment", PAYMENT)):
        assert client.get(url(f"{name}_history", pk)).status_code == 200


def delete_confirmations(client):
    for name, pk in (("accounts_customer", CUSTOMER), ("orders_payment", PAYMENT)):
        assert client.get(url(f"{name}_delete", pk)).status_code == 200


def action_confirmations(client):
    for name, pk in (("accounts_customer", CUSTOMER), ("orders_payment", PAYMENT)):
        for action in ("restore_to_hot", "move_to_cold", "delete_selected"):
            page = client.post(url(f"{name}_changelist"), {"action": action, ACTION_CHECKBOX_NAME: [str(pk)]})
            assert page.status_code == 200 and "csrfmiddlewaretoken" in page.content.decode(), action


PATHS = [changelists, change_pages, saves, history_pages, delete_confirmations, action_confirmations]


@pytest.mark.parametrize("promotes", [False, True], ids=["default", "ADMIN_PROMOTES_ON_VIEW"])
@pytest.mark.parametrize("path", [p for p in PATHS if p is not change_pages], ids=lambda p: p.__name__)
def test_no_admin_page_but_the_change_page_moves_or_touches_a_cold_row(cold_rows, settings, path, promotes):
    settings.TIERING = {**settings.TIERING, "ADMIN_PROMOTES_ON_VIEW": promotes}
    before = customer(cold_rows), payment(cold_rows)
    assert list(before[0]) == [cold_rows.cold] and list(before[1]) == [cold_rows.cold]
    path(superuser_client())
    tracker.flush()
    assert (customer(cold_rows), payment(cold_rows)) == before
    assert count(cold_rows.hot, "orders_order", "id = %s", [COLD_ORDER]) == 0
    assert MigrationRun.objects.count() == 0


def test_the_change_page_leaves_a_cold_row_by_default(cold_rows):
    before = customer(cold_rows), payment(cold_rows)
    change_pages(superuser_client())
    tracker.flush()
    assert (customer(cold_rows), payment(cold_rows)) == before
    assert MigrationRun.objects.count() == 0


def test_admin_promotes_on_view_reads_the_change_page_as_the_application_does(cold_rows, settings):
    settings.TIERING = {**settings.TIERING, "ADMIN_PROMOTES_ON_VIEW": True}
    client = superuser_client()
    started = timezone.now() - timedelta(seconds=1)
    page = client.get(url("accounts_customer_change", CUSTOMER))
    assert page.status_code == 200
    assert page.context["original"]._state.db == cold_rows.hot  # the page shows the promoted row
    (alias, last_seen), = customer(cold_rows).items()
    assert alias == cold_rows.hot and aware(last_seen) >= started  # the mover marks a restored row used
    # the payment's policy tracks access without promoting: it stays cold, its access is recorded
    assert client.get(url("orders_payment_change", PAYMENT)).status_code == 200
    tracker.flush()
    (alias, accessed), = payment(cold_rows).items()
    assert alias == cold_rows.cold and aware(accessed) >= started
    # the order's customer (now hot) and its cold order: an order is not promoted (a TimePolicy)
    assert client.get(url("orders_order_change", COLD_ORDER)).status_code == 200
    assert count(cold_rows.cold, "orders_order", "id = %s", [COLD_ORDER]) == 1


def test_saving_an_order_keeps_its_cold_customer_cold(cold_rows):
    """The order form validates the key to the cold customer without promoting it, and saves in cold."""
    client = superuser_client()
    before = customer(cold_rows)
    response = client.post(url("orders_order_change", COLD_ORDER),
                           {**form_of(Order, COLD_ORDER), "note": "edited", "_save": "1"})
    assert response.status_code == 302
    assert Order.objects.cold().get(pk=COLD_ORDER).note == "edited"
    assert customer(cold_rows) == before
    missing = client.post(url("orders_order_change", COLD_ORDER), {**form_of(Order, COLD_ORDER), "customer": "999"})
    assert missing.status_code == 200 and "customer" in missing.context["adminform"].form.errors


def test_the_delete_page_of_a_cold_order_lists_its_cold_lines_and_deletes_them(cold_rows):
    client = superuser_client()
    page = client.get(url("orders_order_delete", COLD_ORDER))
    assert page.status_code == 200
    assert "SKU-COLD" in page.content.decode()
    response = client.post(url("orders_order_delete", COLD_ORDER), {"post": "yes"})
    assert response.status_code == 302
    assert count(cold_rows.cold, "orders_order", "id = %s", [COLD_ORDER]) == 0
    assert count(cold_rows.cold, "orders_orderline", "order_id = %s", [COLD_ORDER]) == 0
    assert count(cold_rows.hot, "orders_order", "id = %s", [HOT_ORDER]) == 1


# ----------------------------------------------------------------------------- actions and their permission
def test_staff_without_move_data_gets_no_move_action(cold_rows):
    make_user("editor", perms=ADMIN_ORDER_PERMS)
    client = Client()
    assert client.login(username="editor", password=PASSWORD)
    page = client.get(url("accounts_customer_changelist"))
    form = page.context["action_form"]  # None when the user may run no action at all
    choices = [value for value, _label in form.fields["action"].choices] if form else []
    assert "move_to_cold" not in choices and "restore_to_hot" not in choices
    response = client.post(url("accounts_customer_changelist"),
                           {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: [str(CUSTOMER)], "confirm": "yes"})
    assert response.status_code == 200 and 'id="move-confirmation"' not in response.content.decode()  # ignored
    assert list(customer(cold_rows)) == [cold_rows.cold] and MigrationRun.objects.count() == 0


def test_superuser_gets_the_move_actions_and_they_move_through_the_ledger(cold_rows):
    client = superuser_client()
    page = client.get(url("accounts_customer_changelist"))
    choices = [value for value, _label in page.context["action_form"].fields["action"].choices]
    assert {"move_to_cold", "restore_to_hot", "delete_selected"} <= set(choices)
    confirm = client.post(url("accounts_customer_changelist"),
                          {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: [str(CUSTOMER)]})
    assert '<strong class="source-count">1</strong>' in confirm.content.decode()
    assert MigrationRun.objects.count() == 0
    client.post(url("accounts_customer_changelist"), {"action": "restore_to_hot", ACTION_CHECKBOX_NAME: [str(CUSTOMER)],
                                                      "confirm": "yes", "csrfmiddlewaretoken": csrf_token(
                                                          confirm.content.decode())})
    assert list(customer(cold_rows)) == [cold_rows.hot]
    assert MigrationRun.objects.get().rows == 1


def test_move_to_cold_of_all_the_cold_filtered_rows_moves_no_hot_row(cold_rows):
    """"Select all" on the list filtered to cold, then "Move to cold": the hot orders are not selected."""
    make_user("mover", perms=ADMIN_ORDER_PERMS + MOVER_PERMS)
    client = Client()
    assert client.login(username="mover", password=PASSWORD)
    Order.objects.using(cold_rows.hot).create(pk=13, customer_id=CUSTOMER, created_at=OLD, total=1)  # eligible
    changelist = url("orders_order_changelist") + "?tier=cold"
    form = {"action": "move_to_cold", ACTION_CHECKBOX_NAME: [str(COLD_ORDER)], "select_across": "1"}
    page = client.post(changelist, form)
    html = page.content.decode()
    assert '<strong class="selected-count">1</strong>' in html and '<strong class="source-count">0</strong>' in html
    client.post(changelist, {**form, "confirm": "yes"})
    assert count(cold_rows.hot, "orders_order", "id IN (11, 13)") == 2
    assert MigrationRun.objects.count() == 0


def test_delete_selected_across_tiers_lists_and_deletes_each_rows_lines(cold_rows):
    OrderLine.objects.using(cold_rows.hot).create(order_id=HOT_ORDER, sku="SKU-HOT", price=Decimal("5.00"))
    client = superuser_client()
    changelist = url("orders_order_changelist")
    selected = {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(HOT_ORDER), str(COLD_ORDER)]}
    page = client.post(changelist, selected)
    html = page.content.decode()
    assert "SKU-HOT" in html and "SKU-COLD" in html
    assert dict(page.context["model_count"]) == {"orders": 2, "order lines": 2}
    assert client.post(changelist, {**selected, "post": "yes"}).status_code == 302
    for alias in (cold_rows.hot, cold_rows.cold):
        assert count(alias, "orders_order", "id IN (11, 12)") == 0
        assert count(alias, "orders_orderline", "order_id IN (11, 12)") == 0
    assert list(customer(cold_rows)) == [cold_rows.cold]  # the customer is neither deleted nor moved
