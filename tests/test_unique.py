"""Unique values hold across both tiers (tiering.unique): writes, forms, restores and analyze_tiers."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django import forms
from django.core.management import CommandError, call_command
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from tests.dashboard_helpers import VIEWER_PERMS
from tests.test_pages import login
from tiering import move
from tiering.models import Direction, MigrationRun, UniqueConflict
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "mariadb", "mariadb_db"]  # + MariaDB

CUSTOMER = "accounts.Customer"


def cold_customer(hot: str, email: str = "ann@example.com", pk: int = 1) -> Customer:
    """A customer gone cold: created idle in hot, then archived by the mover."""
    Customer.objects.using(hot).create(pk=pk, email=email, name="Ann", last_seen=timezone.now() - timedelta(days=90))
    move.move(registry.by_label(CUSTOMER), Direction.TO_COLD)
    return Customer.objects.cold().get(pk=pk)


def usurp(hot: str) -> None:
    """Ann's email taken in hot past the check, as raw SQL (or data from before the check) would: a plain
    QuerySet's bulk_create, not the tiered manager's."""
    models.QuerySet(Customer).using(hot).bulk_create([Customer(pk=7, email="ann@example.com", name="Usurper")])


def emails(alias: str) -> list[str]:
    return list(Customer.objects.using(alias).order_by("pk").values_list("email", flat=True))


def test_create_with_a_cold_email_fails_as_one_database_would(tiers):
    cold_customer(tiers.hot)
    with pytest.raises(IntegrityError, match="cold tier holds it on key 1"):
        Customer.objects.create(email="ann@example.com", name="Another Ann")
    with pytest.raises(IntegrityError):
        Customer.objects.bulk_create([Customer(email="bob@example.com", name="Bob"),
                                      Customer(email="ann@example.com", name="Another Ann")])
    assert emails(tiers.hot) == []  # the rolled-back writes left nothing, the bulk's first row neither
    assert emails(tiers.cold) == ["ann@example.com"]
    Customer.objects.create(email="bob@example.com", name="Bob")  # other values still go in
    assert emails(tiers.hot) == ["bob@example.com"]


def test_get_or_create_answers_with_the_cold_row(tiers):
    cold_customer(tiers.hot)
    obj, created = Customer.objects.cold().get_or_create(email="ann@example.com", defaults={"name": "x"})
    assert not created and obj.pk == 1
    obj, created = Customer.objects.get_or_create(email="ann@example.com", defaults={"name": "x"})
    assert not created and obj.pk == 1
    assert Customer.objects.hot().filter(email="ann@example.com").count() <= 1  # promoted on access, not doubled


def test_updates_in_either_tier_meet_the_other_tier(tiers):
    cold_customer(tiers.hot)
    bob = Customer.objects.create(email="bob@example.com", name="Bob")
    bob.email = "ann@example.com"
    with pytest.raises(IntegrityError):
        bob.save()
    with pytest.raises(IntegrityError):
        Customer.objects.hot().filter(pk=bob.pk).update(email="ann@example.com")
    with pytest.raises(IntegrityError):
        Customer.objects.filter(pk=bob.pk).update(email="ann@example.com")
    ann = Customer.objects.cold().get(pk=1)
    ann.email = "bob@example.com"
    with pytest.raises(IntegrityError, match="hot tier holds it"):
        ann.save()
    assert emails(tiers.hot) == ["bob@example.com"] and emails(tiers.cold) == ["ann@example.com"]
    bob.refresh_from_db()
    bob.name = "Bobby"
    bob.save()  # a save that keeps its own value is no conflict, nor one with update_fields elsewhere
    ann.email, ann.name = "ann@example.com", "Ann B"
    ann.save(update_fields=["name"])
    assert Customer.objects.cold().get(pk=1).name == "Ann B"


@pytest.mark.tier_pairs("mariadb")
def test_a_cold_write_inside_a_begun_hot_transaction_is_checked_in_hot(tiers):
    """MySQL's probes are locking reads, which need no isolation switch: a cold row saved inside a hot
    transaction already under way (ATOMIC_REQUESTS, the admin's change view) is checked as any other."""
    ann = cold_customer(tiers.hot)
    bob = Customer.objects.create(email="bob@example.com", name="Bob")
    with transaction.atomic(using=tiers.hot):
        Customer.objects.hot().count()  # hot's transaction has begun
        ann.email = "ann.b@example.com"
        ann.save()
        ann.email = "bob@example.com"
        with pytest.raises(IntegrityError, match="hot tier holds it"):
            ann.save()
    assert emails(tiers.cold) == ["ann.b@example.com"] and emails(tiers.hot) == [bob.email]


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = ["email", "name"]


def test_model_forms_see_both_tiers(tiers):
    cold_customer(tiers.hot)
    form = CustomerForm(data={"email": "ann@example.com", "name": "Other"})
    assert not form.is_valid()
    assert "email" in form.errors
    ann = Customer.objects.cold().get(pk=1)
    assert CustomerForm(data={"email": "ann@example.com", "name": "Ann C"}, instance=ann).is_valid()


def test_restore_meeting_a_hot_value_leaves_the_row_in_cold_and_fails(tiers):
    """The issue's scenario: a second customer took the email in hot (here written beside the check, as
    raw SQL or data from before the check would); restore_hot names the conflict and exits non-zero."""
    cold_customer(tiers.hot)
    cold_customer(tiers.hot, "cid@example.com", pk=2)
    usurp(tiers.hot)
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"run \d+: 1 row\(s\) stay in cold") as excinfo:
        call_command("restore_hot", "--model", CUSTOMER, "--pk", "1", "2", "--no-input",
                     stdout=io.StringIO(), stderr=err)
    assert "\n" not in str(excinfo.value)
    assert "accounts.Customer 1 stays in cold: email is taken in hot by 7" in err.getvalue()
    assert emails(tiers.cold) == ["ann@example.com"]
    assert sorted(emails(tiers.hot)) == ["ann@example.com", "cid@example.com"]  # the other row moved
    [conflict] = UniqueConflict.objects.using(tiers.hot).all()
    assert (conflict.model_label, conflict.object_pk, conflict.fields, conflict.holder_pk) == (
        CUSTOMER, "1", "email", "7")
    run = MigrationRun.objects.using(tiers.hot).get(pk=conflict.run_id)
    assert run.direction == Direction.TO_HOT and run.rows == 1
    page = login("viewer", perms=VIEWER_PERMS).get(reverse("tiering:run", args=[run.pk])).content.decode()
    assert "1 row left in cold: unique value taken in hot" in page
    assert "<td>accounts.Customer</td><td>1</td><td>email</td><td>7</td>" in page

    # analyze_tiers --check-duplicates names the value in both tiers
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 unique value"):
        call_command("analyze_tiers", "--model", CUSTOMER, "--check-duplicates", stdout=io.StringIO(), stderr=err)
    assert "accounts.Customer: the email of cold 1 is also hot 7's" in err.getvalue()


def test_promote_on_access_meeting_a_hot_value_keeps_the_cold_row(tiers):
    cold_customer(tiers.hot)
    usurp(tiers.hot)
    assert move.promote(registry.by_label(CUSTOMER), [1]) == 0
    assert emails(tiers.cold) == ["ann@example.com"]
    assert UniqueConflict.objects.using(tiers.hot).get().holder_pk == "7"


def test_unique_values_in_neither_tier_twice_pass_the_check(tiers):
    cold_customer(tiers.hot)
    Customer.objects.create(email="bob@example.com", name="Bob")
    err = io.StringIO()
    call_command("analyze_tiers", "--model", CUSTOMER, "--check-duplicates", stdout=io.StringIO(), stderr=err)
    assert "No key is in both tiers, nor any unique value." in err.getvalue()
