"""The schema gate: a real migration (tests/keyed 0002 adds ``keyed_ticket.lot``) applied to hot only.

migrate_cold refuses in one line naming the column, the migration and the command that fixes it,
moving nothing and recording nothing; the task returns the refusal; ``check --database``, analyze_tiers
and the gate's per-batch recheck see it; once cold is migrated the same run moves the rows.
"""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import QuerySet
from django.utils import timezone

from tests.keyed.models import Ticket
from tiering import move, schema
from tiering.models import Direction, MigrationRun
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg"]


@pytest.fixture
def cold_at_0001(tiers):
    """keyed 0002 applied on hot only (cold migrated back to 0001), undone after the test."""
    call_command("migrate", "keyed", "0001", database=tiers.cold, verbosity=0)
    yield tiers
    call_command("migrate", "keyed", database=tiers.cold, verbosity=0)


def old_tickets(alias: str, n: int = 3) -> None:
    QuerySet(Ticket).using(alias).bulk_create(
        [Ticket(issued_at=timezone.now() - timedelta(days=60), note=f"t{i}", lot="L") for i in range(n)])


def test_the_tiers_match_after_migrate(tiers):
    for tiered in registry:
        assert schema.drift(tiered) == {tiers.hot: [], tiers.cold: []}, tiered.label


def test_migration_applied_to_hot_only_is_refused(cold_at_0001):
    tiers = cold_at_0001
    old_tickets(tiers.hot)
    with pytest.raises(CommandError) as refused:
        call_command("migrate_cold", model=["keyed.Ticket"], interactive=False, verbosity=0)
    message = str(refused.value)
    assert "\n" not in message
    assert "migration keyed.0002_ticket_lot is not applied on alias" in message
    assert "column keyed_ticket.lot is missing on alias" in message
    assert f"run manage.py migrate --database={tiers.cold}" in message
    assert MigrationRun.objects.using(tiers.hot).count() == 0
    assert QuerySet(Ticket).using(tiers.hot).count() == 3

    # the same refusal from the engine, before the ledger (a task returns it)
    with pytest.raises(schema.SchemaDrift):
        move.move(registry.get(Ticket), Direction.TO_COLD)
    from tiering.tasks import archive_model

    result = archive_model.apply(args=["keyed.Ticket"]).get()  # the task body in this process
    assert result["status"] == "schema drift" and "keyed_ticket.lot" in result["error"]
    assert MigrationRun.objects.using(tiers.hot).count() == 0

    # the reports show it
    out = StringIO()
    call_command("analyze_tiers", model=["keyed.Ticket"], stdout=out, verbosity=0)
    assert "schema drift: column keyed_ticket.lot is missing on alias" in out.getvalue()
    with pytest.raises(Exception) as checked:
        call_command("check", databases=[tiers.hot, tiers.cold], stdout=StringIO(), stderr=StringIO())
    assert "tiering.E018" in str(checked.value) and "keyed_ticket.lot" in str(checked.value)

    call_command("migrate", "keyed", database=tiers.cold, verbosity=0)
    call_command("migrate_cold", model=["keyed.Ticket"], interactive=False, verbosity=0)
    assert sorted(QuerySet(Ticket).using(tiers.cold).values_list("lot", flat=True)) == ["L", "L", "L"]


def test_recheck_before_a_batch_sees_a_migration_applied_meanwhile(tiers):
    tiered = registry.get(Ticket)
    schema.gate(tiered)
    schema.recheck(tiered)  # nothing changed: two count queries, no refusal
    call_command("migrate", "keyed", "0001", database=tiers.cold, verbosity=0)
    try:
        with pytest.raises(schema.SchemaDrift, match="keyed_ticket.lot"):
            schema.recheck(tiered)
    finally:
        call_command("migrate", "keyed", database=tiers.cold, verbosity=0)
