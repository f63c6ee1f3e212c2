"""System checks (tiering/checks.py): every id fires on a bad configuration, with message and
hint, and stays silent on a good one; the real project checks clean.

Bad models are built in an isolated app registry (``isolate_apps``) and handed to the check
through a crafted ``Registry``, so the real project is never touched.
"""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import models
from django.test.utils import isolate_apps, override_settings

from tiering import move
from tiering.checks import check_aliases, check_settings, check_tier_tables, check_tiered_models, foreign_key_errors
from tiering.mixins import TieredSaveMixin
from tiering.models import Direction
from tiering.policies import AccessPolicy, HybridPolicy, TimePolicy
from tiering.query import TieredManager
from tiering.registry import Registry, TieredModel, registry

DAY = timedelta(days=1)


def tiered_of(model) -> TieredModel:
    """The registry entry the app registry would build from ``model.Tiering``."""
    declaration = model.Tiering
    return TieredModel(model=model, policy=getattr(declaration, "policy", None),
                       related=list(getattr(declaration, "related", []) or []))


def run(*tiered_models) -> list[checks.CheckMessage]:
    reg = Registry()
    for model in tiered_models:
        reg._by_model[model] = tiered_of(model)
    return check_tiered_models(registry=reg)


def only(messages, check_id):
    found = [m for m in messages if m.id == check_id]
    assert found, f"{check_id} not reported; got {[(m.id, m.msg) for m in messages]}"
    return found


def assert_message(message, *, level, contains, hint):
    assert message.level == level
    for text in contains:
        assert text in message.msg, message.msg
    assert message.hint and hint in message.hint, message.hint


def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


# ----------------------------------------------------------------------- good configuration
@isolate_apps("orders")
def test_a_correct_tiered_model_and_child_check_clean():
    class Parcel(TieredSaveMixin, models.Model):
        sent_at = models.DateTimeField(db_index=True)
        weight = models.IntegerField(default=0)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("sent_at", older_than=30 * DAY)
            related = ["scans"]

    class Scan(TieredSaveMixin, models.Model):
        parcel = models.ForeignKey(Parcel, on_delete=models.CASCADE, related_name="scans")  # moves with it

        class Meta:
            app_label = "orders"

    assert run(Parcel) == []


@isolate_apps("orders")
def test_w002_names_a_tiered_model_and_a_child_that_save_the_django_way():
    class Crate(models.Model):  # no TieredSaveMixin, nor has its child
        packed_at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("packed_at", older_than=30 * DAY)
            related = ["items"]

    class Item(models.Model):
        crate = models.ForeignKey(Crate, on_delete=models.CASCADE, related_name="items")

        class Meta:
            app_label = "orders"

    messages = run(Crate)
    assert [(m.id, m.obj, m.level) for m in messages] == [("tiering.W002", Crate, checks.WARNING),
                                                           ("tiering.W002", Item, checks.WARNING)]
    assert_message(messages[0], level=checks.WARNING, contains=["orders.Crate", "second copy of the row"],
                   hint="TieredSaveMixin")


def test_the_real_registry_checks_clean():
    assert len(registry) >= 3
    assert check_tiered_models() == []
    assert check_aliases() == []


@pytest.mark.django_db(databases="__all__")
def test_manage_py_check_is_clean_on_the_real_project():
    out, err = io.StringIO(), io.StringIO()
    call_command("check", "--database", "default", "--database", "cold", stdout=out, stderr=err)
    assert "no issues" in out.getvalue()
    assert "tiering." not in out.getvalue() + err.getvalue()
    assert err.getvalue() == ""


def test_manage_py_check_fails_on_a_bad_setting():
    from django.core.management.base import SystemCheckError

    with override_settings(TIERING={**django_settings.TIERING, "COLD": "nowhere"}):
        with pytest.raises(SystemCheckError, match="tiering.E001"):
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


# ----------------------------------------------------------------------- settings checks
def test_e001_cold_alias_not_in_databases():
    with override_settings(TIERING={**django_settings.TIERING, "COLD": "nowhere"}):
        (message,) = only(check_aliases(), "tiering.E001")
    assert_message(message, level=checks.ERROR, contains=["TIERING['COLD']", "'nowhere'", "not in DATABASES"],
                   hint="Add 'nowhere' to DATABASES")


def test_e001_hot_alias_not_in_databases():
    with override_settings(TIERING={**django_settings.TIERING, "HOT": "gone"}):
        (message,) = only(check_aliases(), "tiering.E001")
    assert "TIERING['HOT']" in message.msg and "'gone'" in message.msg


def test_e002_hot_and_cold_are_the_same_alias():
    with override_settings(TIERING={**django_settings.TIERING, "HOT": "default", "COLD": "default"}):
        messages = check_aliases()
    (message,) = only(messages, "tiering.E002")
    assert_message(message, level=checks.ERROR, contains=["same alias"], hint="second database alias")
    assert "tiering.E001" not in ids(messages)


def pg_pair(settings):
    if "pg_hot" not in django_settings.DATABASES:
        pytest.skip(f"PostgreSQL unavailable: {django_settings.PG_SKIP_REASON}")
    settings.TIERING = {**django_settings.TIERING, "HOT": "pg_hot", "COLD": "pg_cold_schema"}
    return ["pg_hot", "pg_cold_schema"]


def test_e011_hot_and_cold_are_one_sqlite_file(settings, retune):
    retune("cold", NAME=str(django_settings.DATABASES["default"]["NAME"]))
    (message,) = only(check_tier_tables(), "tiering.E011")
    assert_message(message, level=checks.ERROR, contains=["reach the same tables", "same SQLite file"],
                   hint="its own schema of the hot database")


@pytest.mark.django_db(databases="__all__", transaction=True)  # retune closes connections
def test_e011_silent_for_a_cold_schema_of_the_hot_database(settings):
    both = pg_pair(settings)
    assert check_tier_tables() == [] and check_tier_tables(databases=both) == []
    assert check_tier_tables(databases=["default", "cold"]) == []  # the SQLite pair of the default settings


@pytest.mark.django_db(databases="__all__", transaction=True)  # retune closes connections
def test_e011_same_postgresql_database_and_search_path_from_the_settings(settings, retune):
    both = pg_pair(settings)
    retune("pg_cold_schema", OPTIONS={})  # the cold alias lost its search_path: the hot tables
    for databases in (None, both):
        (message,) = only(check_tier_tables(databases=databases), "tiering.E011")
        assert "'pg_hot' and 'pg_cold_schema'" in message.msg


@pytest.mark.django_db(databases="__all__", transaction=True)  # retune closes connections
def test_e011_asks_the_servers_when_the_settings_differ(settings, retune):
    """Another spelling of the host and an explicit search_path=public: the settings cannot tell,
    ``check --database`` asks both connections for their database and current_schema()."""
    both = pg_pair(settings)
    retune("pg_cold_schema", HOST="localhost", OPTIONS={"options": "-c search_path=public"})
    assert check_tier_tables() == []
    (message,) = only(check_tier_tables(databases=both), "tiering.E011")
    assert "same PostgreSQL database and schema 'public'" in message.msg
    with pytest.raises(ImproperlyConfigured, match="Refusing to move rows"):  # and the mover refuses them
        move.move(registry.by_label("orders.Order"), Direction.TO_COLD)


class OtherRouter:
    """A router that is not the tiering one."""


@pytest.mark.parametrize("routers", [[], ["tests.test_checks.OtherRouter"]])
def test_e003_router_missing(routers):
    with override_settings(DATABASE_ROUTERS=routers):
        (message,) = only(check_aliases(), "tiering.E003")
    assert_message(message, level=checks.ERROR, contains=["TieringRouter", "DATABASE_ROUTERS"],
                   hint="'tiering.router.TieringRouter'")


def test_e003_accepts_the_router_and_a_subclass():
    for routers in (["tiering.router.TieringRouter"], ["tests.router.PairedTieringRouter"]):
        with override_settings(DATABASE_ROUTERS=routers):
            assert "tiering.E003" not in ids(check_aliases())


@pytest.mark.parametrize("value", [0, -5, "100", 2.5, None])
def test_e004_bad_batch_size(value):
    with override_settings(TIERING={**django_settings.TIERING, "BATCH_SIZE": value}):
        (message,) = only(check_aliases(), "tiering.E004")
    assert_message(message, level=checks.ERROR, contains=["BATCH_SIZE", repr(value), "positive integer"],
                   hint="BATCH_SIZE")


def test_e004_other_integer_settings():
    with override_settings(TIERING={**django_settings.TIERING, "READ_CHUNK_SIZE": 0, "TOUCH_INTERVAL": -1}):
        messages = only(check_aliases(), "tiering.E004")
    assert sorted(m.msg.split("'")[1] for m in messages) == ["READ_CHUNK_SIZE", "TOUCH_INTERVAL"]


@pytest.mark.parametrize("changes, ids_", [
    ({"BATCH_SIZ": 10}, ["tiering.W003"]),
    ({"BATCH_TARGET_SECONDS": 0}, ["tiering.E014"]),
    ({"LOCK_STALE_SECONDS": "300", "TOUCH_FLUSH_SECONDS": float("inf")}, ["tiering.E014", "tiering.E014"]),
    ({"METRICS_REFRESH_SECONDS": True}, ["tiering.E014"]),
    ({"COST_PER_GB_MONTH": {"hot": 0.25}}, ["tiering.E015"]),
    ({"COST_PER_GB_MONTH": {"hot": -1, "cold": 0.02}}, ["tiering.E015"]),
    ({"CURRENCY": "€"}, ["tiering.E015"]),
    ({"CURRENCY": "usd"}, ["tiering.E015"]),
    ({"CURRENCY": None}, ["tiering.E015"]),
    ({"SCHEDULE": "0 2 * *"}, ["tiering.E016"]),
    ({"SCHEDULE": "61 2 * * *"}, ["tiering.E016"]),
    ({"ADMIN_PROMOTES_ON_VIEW": "yes"}, ["tiering.E017"]),
    ({"ADMIN_PROMOTES_ON_VIEW": 1, "RUN_IN_PROCESS": None}, ["tiering.E017", "tiering.E017"]),
], ids=["typo", "zero-seconds", "text-and-infinite-seconds", "bool-seconds", "missing-price", "negative-price",
        "currency-symbol", "currency-lower-case", "currency-none", "four-fields", "minute-61", "text-bool",
        "int-and-none-bools"])
def test_every_other_setting_is_checked(changes, ids_):
    with override_settings(TIERING={**django_settings.TIERING, **changes}):
        messages = check_settings()
    assert sorted(m.id for m in messages) == ids_
    assert all(any(name in m.msg for m in messages) for name in changes)


def test_the_default_settings_pass_and_a_typo_names_the_key():
    assert check_settings() == []
    with override_settings(TIERING={**django_settings.TIERING, "BATCH_SIZ": 10}):
        (message,) = check_settings()
    assert "'BATCH_SIZ'" in message.msg and message.hint == "Did you mean 'BATCH_SIZE'?"


# ----------------------------------------------------------------------- policy checks
@pytest.mark.parametrize(
    "policy",
    [None, "created_at", TimePolicy("stamp", older_than=90), TimePolicy("stamp", older_than=-DAY),
     AccessPolicy("stamp", idle_for=timedelta(0)),
     HybridPolicy(TimePolicy("stamp", older_than=DAY), AccessPolicy("stamp", idle_for="60 days"))],
    ids=["missing", "not-a-policy", "int-duration", "negative", "zero", "hybrid-bad-part"],
)
def test_e005_missing_or_invalid_policy(policy):
    with isolate_apps("orders"):
        class Stamped(TieredSaveMixin, models.Model):
            stamp = models.DateTimeField(db_index=True)
            objects = TieredManager()

            class Meta:
                app_label = "orders"
                base_manager_name = "objects"

            class Tiering:
                pass

        if policy is not None:
            Stamped.Tiering.policy = policy
        messages = run(Stamped)
    (message,) = only(messages, "tiering.E005")
    assert_message(message, level=checks.ERROR, contains=["orders.Stamped.Tiering.policy"], hint="TimePolicy(")
    assert message.obj is Stamped


@isolate_apps("orders")
def test_e006_unknown_policy_field():
    class Ticket(TieredSaveMixin, models.Model):
        opened_at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = HybridPolicy(TimePolicy("opened_at", older_than=DAY), AccessPolicy("seen_at", idle_for=DAY))

    (message,) = only(run(Ticket), "tiering.E006")
    assert_message(message, level=checks.ERROR, contains=["unknown field 'seen_at'", "orders.Ticket"],
                   hint="DateTimeField or DateField")


@isolate_apps("orders")
def test_e006_policy_field_is_not_a_date():
    class Invoice(TieredSaveMixin, models.Model):
        number = models.CharField(max_length=20, db_index=True)
        issued = models.DateField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("number", older_than=DAY)

    (message,) = only(run(Invoice), "tiering.E006")
    assert_message(message, level=checks.ERROR, contains=["orders.Invoice.number", "not a date"],
                   hint="DateTimeField or DateField")
    Invoice.Tiering.policy = TimePolicy("issued", older_than=DAY)  # a DateField is fine
    assert run(Invoice) == []


@isolate_apps("orders")
def test_e007_policy_field_without_index():
    class Visit(TieredSaveMixin, models.Model):
        at = models.DateTimeField()
        left = models.DateTimeField()
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"
            indexes = [models.Index(fields=["left", "at"], name="visit_left_at")]  # `at` second: no help

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    (message,) = only(run(Visit), "tiering.E007")
    assert_message(message, level=checks.ERROR, contains=["orders.Visit.at", "no index"], hint="db_index=True")
    Visit.Tiering.policy = TimePolicy("left", older_than=DAY)  # first field of an index is fine
    assert run(Visit) == []


@isolate_apps("orders")
def test_e008_related_name_that_does_not_exist():
    class Basket(TieredSaveMixin, models.Model):
        made_at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("made_at", older_than=DAY)
            related = ["items"]

    class BasketItem(TieredSaveMixin, models.Model):
        basket = models.ForeignKey(Basket, on_delete=models.CASCADE, related_name="entries")

        class Meta:
            app_label = "orders"

    (message,) = only(run(Basket), "tiering.E008")
    assert_message(message, level=checks.ERROR, contains=["orders.Basket.Tiering.related", "'items'"],
                   hint="related_name of a ForeignKey")
    Basket.Tiering.related = ["entries"]
    assert run(Basket) == []


@isolate_apps("orders")
def test_e008_related_name_is_a_forward_field():
    class Shop(TieredSaveMixin, models.Model):
        class Meta:
            app_label = "orders"

    class Sale(TieredSaveMixin, models.Model):
        shop = models.ForeignKey(Shop, on_delete=models.DO_NOTHING, db_constraint=False)
        sold_at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("sold_at", older_than=DAY)
            related = ["shop"]

    (message,) = only(run(Sale), "tiering.E008")
    assert "not a reverse foreign key" in message.msg


# ----------------------------------------------------------------------- managers
@isolate_apps("orders")
def test_e009_tiered_model_without_tiered_manager():
    class Plain(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)

        class Meta:
            app_label = "orders"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    messages = run(Plain)
    (message,) = only(messages, "tiering.E009")
    assert_message(message, level=checks.ERROR, contains=["orders.Plain", "not a TieredManager"],
                   hint="objects = TieredManager()")
    assert "tiering.W001" not in ids(messages)


@isolate_apps("orders")
def test_e009_tiered_manager_declared_second():
    class Second(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)
        plain = models.Manager()
        objects = TieredManager()

        class Meta:
            app_label = "orders"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    only(run(Second), "tiering.E009")


@isolate_apps("orders")
def test_w001_base_manager_not_tiered():
    class Loose(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    messages = run(Loose)
    assert ids(messages) == ["tiering.W001"]
    assert_message(messages[0], level=checks.WARNING, contains=["orders.Loose", "base manager"],
                   hint="base_manager_name = 'objects'")


# ----------------------------------------------------------------------- foreign keys
@isolate_apps("orders")
def test_e010_fk_from_tiered_model_keeps_constraint():
    class Shopper(TieredSaveMixin, models.Model):
        seen = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = AccessPolicy("seen", idle_for=DAY)

    class Cart(TieredSaveMixin, models.Model):
        shopper = models.ForeignKey(Shopper, on_delete=models.CASCADE)  # db_constraint=True
        at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    messages = run(Shopper, Cart)
    (message,) = only(messages, "tiering.E010")
    assert_message(message, level=checks.ERROR, contains=["orders.Cart.shopper", "orders.Shopper"],
                   hint="db_constraint=False")
    assert message.obj is Cart._meta.get_field("shopper")


@isolate_apps("orders")
def test_e010_fk_from_a_child_keeps_constraint_but_its_parent_fk_may():
    class Warehouse(TieredSaveMixin, models.Model):
        class Meta:
            app_label = "orders"

    class Shipment(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)
            related = ["legs"]

    class Leg(TieredSaveMixin, models.Model):
        shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="legs")  # moves along
        warehouse = models.OneToOneField(Warehouse, on_delete=models.CASCADE)  # hot-only target

        class Meta:
            app_label = "orders"

    (message,) = only(run(Shipment), "tiering.E010")
    assert_message(message, level=checks.ERROR, contains=["orders.Leg.warehouse", "orders.Warehouse"],
                   hint="db_constraint=False")
    Leg._meta.get_field("warehouse").db_constraint = False
    assert run(Shipment) == []


@isolate_apps("orders")
def test_e010_fk_from_a_hot_only_model_to_a_tiered_model_keeps_constraint():
    """The mover deletes moved rows with raw deletes: a constrained FK from a row that stays
    in hot would make every such delete fail (or, worse, be cascaded by hand)."""
    class Booking(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)
            related = ["seats"]

    class Seat(TieredSaveMixin, models.Model):
        booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="seats")

        class Meta:
            app_label = "orders"

    class Review(TieredSaveMixin, models.Model):  # not tiered: stays in hot
        seat = models.ForeignKey(Seat, on_delete=models.CASCADE)

        class Meta:
            app_label = "orders"

    (message,) = only(run(Booking), "tiering.E010")
    assert_message(message, level=checks.ERROR, contains=["orders.Review.seat", "orders.Seat"],
                   hint="db_constraint=False")
    # the mover asks the same question before it switches off SQLite's foreign key checks for a batch
    assert [m.id for m in foreign_key_errors(tiered_of(Booking), [tiered_of(Booking)])] == ["tiering.E010"]
    Review._meta.get_field("seat").db_constraint = False
    assert run(Booking) == []
    assert foreign_key_errors(tiered_of(Booking), [tiered_of(Booking)]) == []


@isolate_apps("orders")
def test_e010_many_to_many_table_keeps_constraints_to_a_tiered_model_on_either_side():
    """The auto-created table of a many-to-many field stays in hot: with its database constraints a moved row
    would leave it pointing at nothing (and the SQLite path must keep foreign key checks on)."""
    class Label(TieredSaveMixin, models.Model):
        class Meta:
            app_label = "orders"

    class Parcel(TieredSaveMixin, models.Model):
        at = models.DateTimeField(db_index=True)
        labels = models.ManyToManyField(Label, related_name="parcels")
        objects = TieredManager()

        class Meta:
            app_label = "orders"
            base_manager_name = "objects"

        class Tiering:
            policy = TimePolicy("at", older_than=DAY)

    class Courier(TieredSaveMixin, models.Model):
        parcels = models.ManyToManyField(Parcel, related_name="couriers")

        class Meta:
            app_label = "orders"

    messages = only(run(Parcel), "tiering.E010")
    assert sorted(m.obj for m in messages) == sorted([Parcel._meta.get_field("labels"),
                                                      Courier._meta.get_field("parcels")])
    assert_message(messages[0], level=checks.ERROR, contains=["orders.Parcel", "_labels"],
                   hint="ManyToManyField with db_constraint=False")
    assert [m.id for m in foreign_key_errors(tiered_of(Parcel), [tiered_of(Parcel)])] == ["tiering.E010"] * 2
    Parcel._meta.get_field("labels").remote_field.db_constraint = False
    Courier._meta.get_field("parcels").remote_field.db_constraint = False
    assert run(Parcel) == []
