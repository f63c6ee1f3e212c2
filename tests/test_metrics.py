"""/metrics after a move: counters from the signals, cached tier gauges, DB wrappers per alias."""
from __future__ import annotations

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard_helpers import count
from tests.move.helpers import seed_orders
from tiering import metrics, move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def scrape(client: Client | None = None, **headers) -> dict[tuple[str, tuple], float]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def fresh_gauges():
    metrics.invalidate()
    yield
    metrics.invalidate()


def test_scrape_after_move_shows_moved_rows_and_gauges(tiers, fresh_gauges):
    seed_orders(tiers.hot, 60, lines=2, old=True)
    seed_orders(tiers.hot, 15, lines=2, old=False, start_pk=61)
    before = scrape()
    labels = {"model": "orders.Order", "direction": "to_cold"}
    run = move.move(registry.by_label("orders.Order"), Direction.TO_COLD, batch_size=25, trigger="command")
    after = scrape()
    assert (value(after, "tiering_rows_moved_total", **labels)
            - value(before, "tiering_rows_moved_total", **labels)) == run.rows == 60
    assert (value(after, "tiering_child_rows_moved_total", **labels)
            - value(before, "tiering_child_rows_moved_total", **labels)) == 120
    assert (value(after, "tiering_batches_total", **labels)
            - value(before, "tiering_batches_total", **labels)) == run.batches == 3
    assert (value(after, "tiering_batch_duration_seconds_count", **labels)
            - value(before, "tiering_batch_duration_seconds_count", **labels)) == 3
    runs = {"model": "orders.Order", "direction": "to_cold", "state": "succeeded"}
    assert value(after, "tiering_runs_total", **runs) - value(before, "tiering_runs_total", **runs) == 1
    # gauges: recomputed after the run, equal to direct counts
    assert value(after, "tiering_tier_rows", model="orders.Order", tier="hot") == count(tiers.hot, "orders_order") == 15
    assert (value(after, "tiering_tier_rows", model="orders.Order", tier="cold")
            == count(tiers.cold, "orders_order") == 60)
    assert (value(after, "tiering_tier_child_rows", model="orders.Order", tier="cold")
            == count(tiers.cold, "orders_orderline"))
    assert value(after, "tiering_tier_bytes", model="orders.Order", tier="cold") > 0
    run.refresh_from_db()
    assert (value(after, "tiering_last_success_timestamp_seconds", **labels)
            == pytest.approx(run.finished_at.timestamp()))
    # django-prometheus database wrappers count queries per alias
    if tiers.backend == "sqlite":  # the test settings wrap the SQLite aliases; PostgreSQL test URLs are plain
        for alias in (tiers.hot, tiers.cold):
            assert value(after, "django_db_execute_total", alias=alias, vendor="sqlite") > 0


def test_gauges_are_cached_not_counted_per_scrape(tiers, fresh_gauges, settings):
    seed_orders(tiers.hot, 10, lines=1, old=True)
    scrape()
    with CaptureQueriesContext(connections[tiers.hot]) as hot:
        samples = scrape()
    assert not [q for q in hot.captured_queries if "orders_order" in q["sql"]]
    assert value(samples, "tiering_tier_rows", model="orders.Order", tier="hot") == 10
    seed_orders(tiers.hot, 5, lines=1, old=True, start_pk=11)
    assert value(scrape(), "tiering_tier_rows", model="orders.Order", tier="hot") == 10  # still cached
    settings.TIERING = {**settings.TIERING, "METRICS_REFRESH_SECONDS": 0}
    assert value(scrape(), "tiering_tier_rows", model="orders.Order", tier="hot") == 15


def test_verification_failures_counted(tiers, fresh_gauges):
    from tiering.models import MigrationBatch, MigrationRun
    from tiering.signals import batch_done

    run = MigrationRun.objects.create(model_label="orders.Order", direction=Direction.TO_COLD)
    batch = MigrationBatch.objects.create(run=run, seq=1, rows=8, kept=2)
    labels = {"model": "orders.Order", "direction": "to_cold"}
    before = value(scrape(), "tiering_verification_failures_total", **labels)
    batch_done.send(sender=MigrationBatch, run=run, batch=batch)
    assert value(scrape(), "tiering_verification_failures_total", **labels) - before == 2


def test_metrics_token(tiers, settings, fresh_gauges):
    settings.PROMETHEUS_METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert "tiering_tier_rows" in Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").content.decode()
