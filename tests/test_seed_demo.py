"""manage.py seed_demo: the requested rows, in the hot tier, spread over two years; bad
arguments change nothing; --verbosity is honoured. On SQLite and PostgreSQL."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment

pytestmark = pytest.mark.django_db(databases="__all__")
MODELS = (Customer, Order, OrderLine, Payment)


def counts(alias: str) -> dict[str, int]:
    return {m.__name__: m._base_manager.using(alias).count() for m in MODELS}


def seed(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seeds_the_requested_rows_into_hot_over_two_years(tiers):
    before_hot, before_cold = counts(tiers.hot), counts(tiers.cold)
    started = timezone.now()
    out, err = seed("--customers", "30", "--orders", "300", "--batch-size", "70", "--seed", "7",
                    "--verbosity", "0")
    assert (out, err) == ("", "")  # --verbosity 0: silent

    after = counts(tiers.hot)
    assert after["Customer"] - before_hot["Customer"] == 30
    assert after["Order"] - before_hot["Order"] == 300
    assert counts(tiers.cold) == before_cold  # nothing written to cold

    orders = Order.objects.using(tiers.hot)
    per_order = orders.annotate(n=Count("lines")).aggregate(lo=Min("n"), hi=Max("n"))
    assert 1 <= per_order["lo"] and per_order["hi"] <= 4
    lines = OrderLine.objects.using(tiers.hot)
    assert lines.count() - before_hot["OrderLine"] >= 300
    for order in orders.order_by("pk")[:25]:  # totals agree with their lines
        assert order.total == sum(line.price * line.quantity for line in lines.filter(order_id=order.pk))

    # every order belongs to a real customer; every payment to a real order, for its total
    customer_ids = set(Customer.objects.using(tiers.hot).values_list("pk", flat=True))
    assert set(orders.values_list("customer_id", flat=True)) <= customer_ids
    payments = Payment.objects.using(tiers.hot)
    paid = after["Payment"] - before_hot["Payment"]
    assert 60 <= paid <= 240  # default share 0.5 of 300
    order_totals = dict(orders.values_list("pk", "total"))
    for pay in payments:
        assert pay.amount == order_totals[pay.order_id]
        assert pay.created_at <= pay.last_accessed <= timezone.now()
    assert payments.values("order_id").distinct().count() == paid  # at most one each

    # dates spread over about two years, none in the future
    span = orders.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert started - timedelta(days=731) <= span["first"] <= started - timedelta(days=600)
    assert started - timedelta(days=120) <= span["last"] <= timezone.now()
    old = orders.filter(created_at__lt=started - timedelta(days=365)).count()
    assert 90 <= old <= 210  # about half older than a year
    cust = Customer.objects.using(tiers.hot).aggregate(first=Min("created_at"), last=Max("last_seen"))
    assert cust["first"] >= started - timedelta(days=731) and cust["last"] <= timezone.now()


def test_default_verbosity_reports_and_level_two_shows_progress(tiers):
    out, _ = seed("--customers", "3", "--orders", "10", "--payments", "1", "--seed", "1")
    assert "Seeded 3 customers, 10 orders" in out and "10 payments" in out and f"'{tiers.hot}'" in out
    assert "orders:" not in out
    out, _ = seed("--customers", "2", "--orders", "4", "--batch-size", "2", "--verbosity", "2")
    assert "customers: 2/2" in out and "orders: 2/4" in out and "orders: 4/4" in out


def test_orders_reuse_existing_customers_and_payment_share_is_honoured(tiers):
    seed("--customers", "5", "--orders", "0", "--verbosity", "0")
    before = counts(tiers.hot)
    seed("--customers", "0", "--orders", "40", "--payments", "0", "--verbosity", "0")
    after = counts(tiers.hot)
    assert after["Customer"] == before["Customer"] and after["Order"] - before["Order"] == 40
    assert after["Payment"] == before["Payment"]
    seed("--customers", "0", "--orders", "20", "--payments", "1", "--verbosity", "0")
    assert counts(tiers.hot)["Payment"] - after["Payment"] == 20


def test_repeated_runs_never_collide_on_unique_emails(tiers):
    seed("--customers", "10", "--seed", "3", "--orders", "0", "--verbosity", "0")
    seed("--customers", "10", "--seed", "3", "--orders", "0", "--verbosity", "0")
    emails = Customer.objects.using(tiers.hot).values_list("email", flat=True)
    assert len(emails) == len(set(emails)) >= 20


@pytest.mark.parametrize(
    "args, message",
    [
        (["--customers", "-1"], "--customers and --orders must be zero or more"),
        (["--orders", "-3"], "--customers and --orders must be zero or more"),
        (["--payments", "1.5"], "--payments must be between 0 and 1"),
        (["--payments", "-0.1"], "--payments must be between 0 and 1"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--customers", "0", "--orders", "5"], "--orders needs customers"),
        (["--customers", "many"], "invalid int value"),
    ],
)
def test_bad_arguments_raise_command_error_and_change_nothing(tiers, args, message):
    before = counts(tiers.hot), counts(tiers.cold)
    with pytest.raises(CommandError, match=message) as caught:
        seed(*args)
    assert "\n" not in str(caught.value)
    assert (counts(tiers.hot), counts(tiers.cold)) == before


def test_totals_are_consistent_in_the_database(tiers):
    seed("--customers", "4", "--orders", "50", "--seed", "11", "--verbosity", "0")
    orders = Order.objects.using(tiers.hot)
    line_sum = OrderLine.objects.using(tiers.hot).filter(order__in=orders.values("pk")).aggregate(
        s=Sum("quantity"))["s"]
    assert line_sum >= 50
    mismatched = [o.pk for o in orders.annotate(n=Count("lines")) if o.n == 0]
    assert mismatched == []
