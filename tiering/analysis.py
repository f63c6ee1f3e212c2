"""Figures per tiered model and tier: what sits where, what the next run moves, what it costs.

One module computes them so that ``analyze_tiers``, the admin, the dashboard
and the metrics all show the same numbers. Every figure is read directly from
the databases (row counts, bytes on disk) and the ledger (last run); nothing
is estimated except the bytes a backlog would free (backlog rows times the
average bytes per hot row) and the storage cost.

Bytes on disk cover the model's table, its indexes and its child tables
(``Tiering.related``), because those move with the rows:

* SQLite: the ``dbstat`` virtual table (exact pages per table and index); if
  SQLite was built without it, the file size (``page_count * page_size``)
  shared out by row count across the file's tables.
* PostgreSQL: ``pg_total_relation_size`` (heap, indexes and TOAST).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Count, Q
from django.utils import timezone

from . import backends, unique
from .conf import tiering_settings
from .models import MigrationBatch, MigrationRun, RunState
from .move import selection
from .registry import TieredModel, registry

JSON_SCHEMA = "hotcold.analyze_tiers/1"
GB = 10**9  # prices are per decimal gigabyte and month

# Upper edges (in days) of the age histogram buckets; the last bucket is open.
AGE_EDGES_DAYS: tuple[int, ...] = (1, 7, 30, 90, 180, 365)


@dataclass
class TierFigures:
    tier: str  # "hot" or "cold"
    alias: str
    vendor: str
    rows: int
    child_rows: int
    bytes: int
    bytes_method: str  # "dbstat", "page_share" or "pg_total_relation_size"
    monthly_cost: float


@dataclass
class Bucket:
    label: str
    min_age_days: float | None
    max_age_days: float | None
    hot: int
    cold: int


@dataclass
class Histogram:
    field: str
    buckets: list[Bucket]


@dataclass
class ModelFigures:
    model: str
    policy: str
    hot: TierFigures
    cold: TierFigures
    backlog_rows: int | None = None
    backlog_bytes: int | None = None
    histograms: list[Histogram] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    saving_monthly: float = 0.0

    @property
    def total_rows(self) -> int:
        return self.hot.rows + self.cold.rows

    @property
    def cold_share(self) -> float:
        """Fraction of the rows that live in cold (0 when the model is empty)."""
        return self.cold.rows / self.total_rows if self.total_rows else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "policy": self.policy,
            "tiers": {"hot": asdict(self.hot), "cold": asdict(self.cold)},
            "backlog": {"rows": self.backlog_rows, "bytes": self.backlog_bytes},
            "histograms": [asdict(h) for h in self.histograms],
            "last_run": self.last_run,
            "cost": {
                "hot_monthly": self.hot.monthly_cost,
                "cold_monthly": self.cold.monthly_cost,
                "total_monthly": self.hot.monthly_cost + self.cold.monthly_cost,
                "saving_monthly": self.saving_monthly,
            },
        }


# ------------------------------------------------------------------ bytes
def _tables(tiered: TieredModel) -> list[str]:
    return [tiered.model._meta.db_table] + [c.model._meta.db_table for c in tiered.children]


def table_bytes(alias: str, tables: Iterable[str]) -> tuple[int, str]:
    """Bytes on disk of ``tables`` (with their indexes) in ``alias``, and the method used."""
    return backends.ops(alias).table_bytes(list(tables))


# ------------------------------------------------------------------ figures
def price(tier: str) -> float:
    return float((tiering_settings.COST_PER_GB_MONTH or {}).get(tier, 0.0))


def tier_figures(tiered: TieredModel, tier: str) -> TierFigures:
    """Rows, child rows and bytes of one model in one tier (``"hot"`` or ``"cold"``)."""
    alias = tiering_settings.HOT if tier == "hot" else tiering_settings.COLD
    rows = tiered.model._base_manager.using(alias).count()
    child_rows = sum(c.model._base_manager.using(alias).count() for c in tiered.children)
    size, method = table_bytes(alias, _tables(tiered))
    return TierFigures(
        tier=tier,
        alias=alias,
        vendor=connections[alias].vendor,
        rows=rows,
        child_rows=child_rows,
        bytes=size,
        bytes_method=method,
        monthly_cost=size / GB * price(tier),
    )


def histogram(tiered: TieredModel, field_name: str, now: datetime) -> Histogram:
    """Rows per age bucket of ``field_name`` in each tier (one query per tier)."""
    edges = [now - timedelta(days=d) for d in AGE_EDGES_DAYS]
    lookups: dict[str, Count] = {}
    specs: list[tuple[str, float | None, float | None]] = []
    lower_days = 0
    for i, days in enumerate(AGE_EDGES_DAYS):
        q = Q(**{f"{field_name}__gte": edges[i]})
        if i:
            q &= Q(**{f"{field_name}__lt": edges[i - 1]})
        lookups[f"b{i}"] = Count("pk", filter=q)
        specs.append((f"{lower_days}-{days}d" if i else f"<{days}d", lower_days, days))
        lower_days = days
    lookups[f"b{len(edges)}"] = Count("pk", filter=Q(**{f"{field_name}__lt": edges[-1]}))
    specs.append((f">={lower_days}d", lower_days, None))
    lookups["null"] = Count("pk", filter=Q(**{f"{field_name}__isnull": True}))
    specs.append(("null", None, None))
    counts = {
        tier: tiered.model._base_manager.using(alias).aggregate(**lookups)
        for tier, alias in (("hot", tiering_settings.HOT), ("cold", tiering_settings.COLD))
    }
    keys = [f"b{i}" for i in range(len(edges) + 1)] + ["null"]
    buckets = [
        Bucket(label=label, min_age_days=low, max_age_days=high, hot=counts["hot"][key], cold=counts["cold"][key])
        for key, (label, low, high) in zip(keys, specs)
    ]
    return Histogram(field=field_name, buckets=buckets)


def run_summary(run: MigrationRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "direction": run.direction,
        "state": run.state,
        "trigger": run.trigger,
        "rows": run.rows,
        "child_rows": run.child_rows,
        "bytes": run.bytes,
        "batches": run.batches,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": round(run.duration, 3),
        "rows_per_second": round(run.rows_per_second, 1),
        "error": run.error,
    }


def batch_seconds(batch: MigrationBatch) -> float:
    """Wall time of a batch: finished - started, else the sum of its phases."""
    if batch.finished_at and batch.started_at:
        return max((batch.finished_at - batch.started_at).total_seconds(), 0.0)
    return batch.copy_seconds + batch.verify_seconds + batch.delete_seconds


def last_run(label: str) -> MigrationRun | None:
    """The most recent real run (dry runs excluded) of a model, from the ledger."""
    return (
        MigrationRun.objects.using(tiering_settings.HOT)
        .filter(model_label=label)
        .exclude(state=RunState.DRY_RUN)
        .order_by("-started_at", "-id")
        .first()
    )


def backlog_rows(tiered: TieredModel, now: datetime) -> int:
    """Hot rows a run to cold would move now (restore holds excluded)."""
    return selection.eligible(tiered, now).count()


def analyze(tiered: TieredModel, *, now: datetime | None = None, detail: bool = True,
            histograms: bool = True) -> ModelFigures:
    """All figures of one model; ``detail=False`` skips backlog, histograms and last run."""
    now = now or timezone.now()
    hot, cold = tier_figures(tiered, "hot"), tier_figures(tiered, "cold")
    figures = ModelFigures(
        model=tiered.label,
        policy=tiered.policy.describe() if tiered.policy else "",
        hot=hot,
        cold=cold,
        saving_monthly=cold.bytes / GB * (price("hot") - price("cold")),
    )
    if detail:
        if tiered.policy is not None:  # a model without a policy is reported by the system checks
            figures.backlog_rows = backlog_rows(tiered, now)
            per_row = hot.bytes / hot.rows if hot.rows else 0
            figures.backlog_bytes = int(figures.backlog_rows * per_row)
            if histograms:
                figures.histograms = [histogram(tiered, name, now) for name in tiered.policy.fields]
        run = last_run(tiered.label)
        figures.last_run = run_summary(run) if run else None
    return figures


def analyze_all(labels: Iterable[str] | None = None, *, now: datetime | None = None,
                detail: bool = True) -> list[ModelFigures]:
    """Figures for the named models (``app.Model``), or for every tiered model."""
    now = now or timezone.now()
    models = [registry.by_label(label) for label in labels] if labels else list(registry)
    return [analyze(tiered, now=now, detail=detail) for tiered in models]


def report(figures: list[ModelFigures], *, now: datetime | None = None) -> dict[str, Any]:
    """The stable JSON document of ``analyze_tiers --format json`` (see docs/dashboard.md)."""
    now = now or timezone.now()

    def total(tier: str) -> dict[str, Any]:
        parts = [getattr(f, tier) for f in figures]
        return {
            "rows": sum(p.rows for p in parts),
            "child_rows": sum(p.child_rows for p in parts),
            "bytes": sum(p.bytes for p in parts),
            "monthly_cost": sum(p.monthly_cost for p in parts),
        }

    return {
        "schema": JSON_SCHEMA,
        "generated_at": now.isoformat(),
        "hot_alias": tiering_settings.HOT,
        "cold_alias": tiering_settings.COLD,
        "cost_per_gb_month": {"hot": price("hot"), "cold": price("cold")},
        "models": [f.as_json() for f in figures],
        "totals": {
            "hot": total("hot"),
            "cold": total("cold"),
            "backlog_rows": sum(f.backlog_rows or 0 for f in figures),
            "backlog_bytes": sum(f.backlog_bytes or 0 for f in figures),
            "saving_monthly": sum(f.saving_monthly for f in figures),
        },
    }


def keys_in_both(tiered: TieredModel, chunk_size: int = 10_000) -> list:
    """Primary keys present in both tiers: a bug the mover must prevent, never hidden.

    Merges both tiers' keys in key order (streamed: O(rows) time and
    O(chunk) memory), so it is an operator's check, not a dashboard figure.
    """
    def keys(alias: str):
        qs = tiered.model._base_manager.using(alias).order_by("pk").values_list("pk", flat=True)
        return qs.iterator(chunk_size=chunk_size)

    hot, cold = keys(tiering_settings.HOT), keys(tiering_settings.COLD)
    both, h, c = [], next(hot, None), next(cold, None)
    while h is not None and c is not None:
        if h == c:
            both.append(h)
            h, c = next(hot, None), next(cold, None)
        elif h < c:
            h = next(hot, None)
        else:
            c = next(cold, None)
    return both


def unique_values_in_both(tiered: TieredModel, chunk_size: int = 500) -> list[tuple]:
    """Unique values held in both tiers on different keys: [(model label, fields, cold key, hot key)].

    Streams cold's rows and probes hot with one ``IN`` per unique set and
    chunk (``tiering.unique.taken``): O(cold rows) reads, indexed probes.
    """
    found = []
    for model in tiered.unit:
        sets = unique.unique_sets(model)
        if not sets:
            continue
        names = sorted({n for s in sets for n in s})
        rows = model._base_manager.using(tiering_settings.COLD).order_by("pk").values_list("pk", *names)
        chunk = []
        for pk, *values in rows.iterator(chunk_size=chunk_size):
            by_name = dict(zip(names, values))
            chunk.append((pk, {s: tuple(by_name[n] for n in s) for s in sets}))
            if len(chunk) == chunk_size:
                found += [(model._meta.label, s, k, h) for k, s, h in unique.taken(model, tiering_settings.HOT,
                                                                                  chunk, sets)]
                chunk = []
        found += [(model._meta.label, s, k, h) for k, s, h in unique.taken(model, tiering_settings.HOT, chunk, sets)]
    return found
