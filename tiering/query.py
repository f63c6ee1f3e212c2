"""TieredQuerySet / TieredManager: read a model as if both tiers were one table.

A queryset is *tiered* while no ``.using()`` pins it to one alias. Then:

* ``get()`` reads hot first and falls back to cold;
* iterating (and slicing) merges both tiers on the ordering, with the primary
  key as tie-breaker, pushing ``LIMIT`` (and where it can, ``OFFSET``) down
  to each tier and streaming rows in chunks;
* ``count()``, ``exists()``, ``aggregate()``, ``update()`` and ``delete()``
  act on both tiers and combine the results.

``.hot()`` and ``.cold()`` pin a queryset to one tier; ``.using(alias)``
keeps its Django meaning. Merging compares values in Python, so text ordering
follows code points: give PostgreSQL aliases the C collation (SQLite already
compares text that way).
"""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import chain, groupby, islice
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.db.models import Avg, Count, F, Max, Min, Q, Sum
from django.db.models.expressions import OrderBy
from django.db.models.manager import BaseManager
from django.db.models.query import MAX_GET_RESULTS, ModelIterable, QuerySet, prefetch_related_objects

from . import backends, merge, relations, unique
from .access import tracker
from .conf import tiering_settings
from .exceptions import LockHeld, MoveError, TieringQueryError
from .move import promote
from .policies import AccessPolicy
from .registry import registry


class TieredQuerySet(QuerySet):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # select_related() of relations to other tiered models, read by key after the rows (relations.py)
        self._related_apart: dict[str, list[str]] = {}

    def _clone(self) -> TieredQuerySet:
        clone = super()._clone()
        clone._related_apart = self._related_apart
        return clone

    # ------------------------------------------------------- relations across tiers
    def _filter_or_exclude_inplace(self, negate: bool, args: Any, kwargs: Any) -> None:
        if registry.get(self.model) is None:
            return super()._filter_or_exclude_inplace(negate, args, kwargs)
        q = relations.rewrite(self.model, Q(*args, **kwargs))
        self._query.add_q(~q if negate else q)

    def complex_filter(self, filter_obj: Any) -> TieredQuerySet:
        if isinstance(filter_obj, Q) and registry.get(self.model) is not None:
            filter_obj = relations.rewrite(self.model, filter_obj)
        return super().complex_filter(filter_obj)

    def select_related(self, *fields: Any) -> TieredQuerySet:
        if fields == (None,):
            clone = super().select_related(None)
            clone._related_apart = {}
            return clone
        if registry.get(self.model) is None:
            return super().select_related(*fields)
        joined, apart = relations.split_select_related(self.model, fields)
        clone = super().select_related(*joined) if joined or not apart else self._chain()
        clone._related_apart = {**self._related_apart, **apart}
        return clone

    def _frozen(self) -> TieredQuerySet:
        """This queryset with the related keys of its filters read once, for both tiers to use."""
        query = relations.freeze(self.query)
        if query is self.query:
            return self
        clone = self._chain()
        clone._query = query  # not the query setter: it would reset values_list()'s iterable
        return clone

    # ------------------------------------------------------------ tier choice
    def hot(self) -> TieredQuerySet:
        """Read the hot tier only."""
        return self.using(tiering_settings.HOT)

    def cold(self) -> TieredQuerySet:
        """Read the cold tier only."""
        return self.using(tiering_settings.COLD)

    @property
    def is_tiered(self) -> bool:
        """True while reads span both tiers (no ``.using()`` pinned an alias)."""
        return self._db is None and registry.get(self.model) is not None

    def _tiers(self) -> tuple[TieredQuerySet, TieredQuerySet]:
        base = self._frozen()
        return base.hot(), base.cold()

    # ------------------------------------------------------------------ get()
    def get(self, *args: Any, **kwargs: Any) -> Any:
        if not self.is_tiered:
            return super().get(*args, **kwargs)
        self._refuse_unmergeable()
        if self.query.is_sliced:
            return self._get_merged(*args, **kwargs)
        base = self._frozen()
        hot = base.hot()
        try:
            obj = hot.get(*args, **kwargs)
        except self.model.DoesNotExist:
            cold = base.cold()  # only cloned on a hot miss: a hot hit stays one clone and one query
            try:
                if self.query.select_for_update:
                    with transaction.atomic(using=cold.db):
                        obj = cold.get(*args, **kwargs)
                else:
                    obj = cold.get(*args, **kwargs)
            except self.model.DoesNotExist:
                # A row promoted to hot between the two reads is in hot now.
                obj = hot.get(*args, **kwargs)
            else:
                obj = self._on_cold_hit(obj)
                return obj
        self._record_access(obj)
        return obj

    def _get_merged(self, *args: Any, **kwargs: Any) -> Any:
        """get() of a sliced queryset (latest(), earliest()): the slice spans both tiers."""
        if args or kwargs:
            raise TypeError("Cannot filter a query once a slice has been taken.")
        rows = list(self[:MAX_GET_RESULTS])
        if len(rows) == 1:
            self._record_access(rows[0])
            return rows[0]
        if not rows:
            raise self.model.DoesNotExist(f"{self.model._meta.object_name} matching query does not exist.")
        raise self.model.MultipleObjectsReturned(
            f"get() returned more than one {self.model._meta.object_name} -- it returned "
            f"{'more than ' if len(rows) == MAX_GET_RESULTS else ''}{len(rows)}!"
        )

    def _on_cold_hit(self, obj: Any) -> Any:
        access = self._access_policy()
        if access is not None and access.promote_on_access:
            try:
                # The mover marks restored rows (access field = now), so a promoted
                # row is not eligible for cold again at the next run.
                promote(registry.get(self.model), [obj.pk])
            except LockHeld:
                pass  # a move of this model is running: serve the cold row, promote next time
            except MoveError:
                pass  # the promote failed, logged and in the ledger (its run): the cold row is still right
            else:
                try:
                    return self.hot().get(pk=obj.pk)
                except self.model.DoesNotExist:
                    return obj  # not promoted (changed meanwhile): the cold row is still right
        self._record_access(obj)
        return obj

    def update_or_create(self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any) -> tuple[Any, bool]:
        """Update the row in the tier that holds it; create new rows in hot."""
        if not self.is_tiered:
            return super().update_or_create(defaults=defaults, create_defaults=create_defaults, **kwargs)
        hot, cold = self._tiers()
        tier = cold if not hot.filter(**kwargs).exists() and cold.filter(**kwargs).exists() else hot
        return tier.update_or_create(defaults=defaults, create_defaults=create_defaults, **kwargs)

    update_or_create.alters_data = True

    def _access_policy(self) -> AccessPolicy | None:
        """The access part of the model's policy, if reads should record access."""
        policy = registry.get(self.model).policy
        return policy.access_policy() if policy else None

    def _record_access(self, obj: Any) -> None:
        access = self._access_policy()
        if access is not None:
            tracker.touch(obj, access.field)

    # -------------------------------------------------------------- iteration
    def _fetch_all(self) -> None:
        fetched = self._result_cache is None
        if fetched and self.is_tiered:
            self._result_cache = list(self._merged())
        super()._fetch_all()
        if fetched and self._related_apart and self._iterable_class is ModelIterable:
            relations.attach_related(self._result_cache, self._related_apart)

    def iterator(self, chunk_size: int | None = None) -> Iterator[Any]:
        if not self.is_tiered:
            rows = super().iterator(chunk_size=chunk_size)
            if not self._related_apart or self._iterable_class is not ModelIterable:
                return rows
            return self._chunks_with_related(rows, chunk_size or tiering_settings.READ_CHUNK_SIZE)
        chunk_size = chunk_size or tiering_settings.READ_CHUNK_SIZE
        rows = self._merged(chunk_size=chunk_size)
        if not self._prefetch_related_lookups and not self._related_apart:
            return rows
        return self._chunks_with_related(rows, chunk_size)

    def _chunks_with_related(self, rows: Iterator[Any], chunk_size: int) -> Iterator[Any]:
        """iterator() with prefetch_related() or select_related() across tiers: chunk by chunk, as Django
        prefetches."""
        while chunk := list(islice(rows, chunk_size)):
            if self.is_tiered and self._prefetch_related_lookups:
                self._prefetch_tier_by_tier(chunk)
            if self._iterable_class is ModelIterable:
                relations.attach_related(chunk, self._related_apart)
            yield from chunk

    def _prefetch_related_objects(self) -> None:
        if not self.is_tiered:
            return super()._prefetch_related_objects()
        self._prefetch_tier_by_tier(self._result_cache)
        self._prefetch_done = True

    def _prefetch_tier_by_tier(self, objs: list[Any]) -> None:
        """Related rows live in the tier of their parent: prefetch tier by tier."""
        def tier_of(obj: Any) -> str:
            return obj._state.db or ""

        for _db, group in groupby(sorted(objs, key=tier_of), key=tier_of):
            prefetch_related_objects(list(group), *self._prefetch_related_lookups)

    # ------------------------------------------------------------ aggregates
    def count(self) -> int:
        if not self.is_tiered:
            return super().count()
        if self._result_cache is not None:
            return len(self._result_cache)
        self._refuse_unmergeable()
        if self.query.distinct or self.query.is_sliced:
            return sum(1 for _ in self._merged())
        return sum(tier.count() for tier in self._tiers())

    def exists(self) -> bool:
        if not self.is_tiered:
            return super().exists()
        if self._result_cache is not None:
            return bool(self._result_cache)
        self._refuse_unmergeable()
        if self.query.is_sliced:
            return next(iter(self._merged()), None) is not None
        return any(tier.exists() for tier in self._tiers())

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if registry.get(self.model) is not None:  # also pinned: filter() answers such a Q on the key there too
            args = tuple(self._filter_on_key(agg) for agg in args)
            kwargs = {alias: self._filter_on_key(agg) for alias, agg in kwargs.items()}
        if not self.is_tiered:
            return super().aggregate(*args, **kwargs)
        self._refuse_unmergeable()
        if self.query.is_sliced or self.query.distinct:
            raise TieringQueryError(
                "aggregate() of a sliced or distinct queryset cannot be combined across tiers; "
                "use .hot() or .cold()."
            )
        for arg in args:
            try:
                kwargs[arg.default_alias] = arg
            except (AttributeError, TypeError) as exc:
                raise TypeError("Complex aggregates require an alias") from exc
        per_tier: dict[str, Any] = {}
        plan: dict[str, tuple[str, list[str]]] = {}
        for alias, agg in kwargs.items():
            kind = type(agg)
            if getattr(agg, "distinct", False) and kind not in (Min, Max):
                raise TieringQueryError(
                    f"{kind.__name__}(distinct=True) ({alias}) cannot be combined across tiers: a value "
                    "present in both tiers would count twice."
                )
            if kind in (Count, Sum, Min, Max):
                per_tier[alias] = agg
                plan[alias] = (kind.__name__, [alias])
            elif kind is Avg:
                source = agg.source_expressions  # without the filter
                per_tier[f"{alias}__sum"] = Sum(*source, filter=agg.filter)
                per_tier[f"{alias}__count"] = Count(*source, filter=agg.filter)
                plan[alias] = ("Avg", [f"{alias}__sum", f"{alias}__count"])
            else:
                raise TieringQueryError(
                    f"{kind.__name__} ({alias}) cannot be combined across tiers; "
                    "Count, Sum, Min, Max and Avg can."
                )
        results = [tier.aggregate(**per_tier) for tier in self._tiers()]
        return {alias: _combine(kind, [[r[k] for k in keys] for r in results]) for alias, (kind, keys) in plan.items()}

    def _filter_on_key(self, agg: Any) -> Any:
        """``Count(..., filter=Q(customer__name=...))`` with its filter answered on the key, as ``filter()``
        answers it (its keys read once), or refused."""
        if not isinstance(getattr(agg, "filter", None), Q):
            return agg
        relations.refuse_cross_tier_q(self.model, agg.filter)
        agg = agg.copy()
        agg.filter = relations.freeze_q(relations.rewrite(self.model, agg.filter))
        return agg

    def update(self, **kwargs: Any) -> int:
        """Update both tiers, hot first. When neither matched, hot once more (as ``get()`` reads it again): a
        row restored meanwhile was not in hot yet, then gone from cold when the restore's lock let the cold
        UPDATE through, and its hot copy commits before that. Only then: no row is ever updated twice."""
        if not self.is_tiered:
            return self._update_one_tier(kwargs)
        self._refuse_unmergeable()
        hot, cold = self._tiers()
        return hot.update(**kwargs) + cold.update(**kwargs) or hot.update(**kwargs)

    update.alters_data = True

    def _update_one_tier(self, kwargs: dict) -> int:
        """``update()`` of one tier: a unique value set here must not be held in the other tier
        (``tiering.unique``): the rows it matched are probed there after the update; other updates stay one
        statement."""
        sets = unique.sets_touching(self.model, list(kwargs))
        if not sets or unique.other_tier(self.db) is None:
            return super().update(**kwargs)
        with unique.guarded(self.model, [self.db]):
            pks = list(QuerySet.values_list(self, "pk", flat=True))
            updated = super().update(**kwargs)
            objs = list(self.model._base_manager.using(self.db).filter(pk__in=pks)) if updated else []
            unique.refuse_taken(self.model, self.db, objs, sets)
        return updated

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Rows created in bulk meet the unique values of the other tier too (``tiering.unique``)."""
        sets = unique.unique_sets(self.model)
        if not sets or unique.other_tier(self.db) is None:
            return super().bulk_create(objs, *args, **kwargs)
        objs = list(objs)
        with unique.guarded(self.model, [self.db]):
            created = super().bulk_create(objs, *args, **kwargs)
            unique.refuse_taken(self.model, self.db, created, sets, new=True)
        return created

    bulk_create.alters_data = True

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete from both tiers, hot first; when neither deleted anything, hot once more (see ``update()``:
        a row restored meanwhile would otherwise outlive its delete in hot)."""
        if not self.is_tiered:
            return super().delete()
        self._refuse_unmergeable()
        hot, cold = self._tiers()
        results = [hot.delete(), cold.delete()]
        if not any(deleted for deleted, _ in results):
            results.append(hot.delete())
        total, per_model = 0, {}
        for deleted, counts in results:
            total += deleted
            for label, n in counts.items():
                per_model[label] = per_model.get(label, 0) + n
        return total, per_model

    delete.alters_data = True
    delete.queryset_only = True

    # ---------------------------------------------------------------- merging
    def _merged(self, chunk_size: int | None = None) -> Iterator[Any]:
        """Rows of both tiers as one sequence in the queryset's order."""
        self._refuse_unmergeable()
        low, high = self.query.low_mark, self.query.high_mark
        base = self._frozen()._chain()
        base.query.clear_limits()
        base._prefetch_related_lookups = ()  # the caller prefetches tier by tier
        base._related_apart = {}  # and reads the related rows of other tiered models
        if not base.ordered:
            return self._concatenated(base, low, high, chunk_size)
        sort = base._sort_fields()
        hot, cold = (tier._ordered_by(sort) for tier in base._tiers())
        distinct = bool(self.query.distinct)
        if high is not None and high - low <= merge.SMALL_PAGE and not distinct:
            return iter(merge.Page(sort, hot, cold, low, high).rows())
        return merge.merge_streams(sort, hot, cold, low, high, chunk_size or tiering_settings.READ_CHUNK_SIZE, distinct)

    def _concatenated(
        self, base: TieredQuerySet, low: int, high: int | None, chunk_size: int | None
    ) -> Iterator[Any]:
        """Unordered: hot rows, then cold rows, with the slice pushed down."""
        hot, cold = base._tiers()
        if high is None and not low and not base.query.distinct:
            # Streaming, e.g. iterator() over a whole table: never hold a tier in memory.
            size = chunk_size or tiering_settings.READ_CHUNK_SIZE
            return chain(hot.iterator(chunk_size=size), cold.iterator(chunk_size=size))
        if base.query.distinct:
            rows = merge.unique(chain(hot.iterator(), cold.iterator()))
            return islice(rows, low, high)
        hot_rows = list(hot[low:high])
        if high is not None and len(hot_rows) == high - low:
            return iter(hot_rows)
        hot_total = low + len(hot_rows) if hot_rows or low == 0 else hot.count()
        cold_low = max(0, low - hot_total)
        cold_high = None if high is None else high - hot_total
        return iter(hot_rows + list(cold[cold_low:cold_high]))

    def _sort_fields(self) -> list[merge.SortField]:
        if self.query.extra_order_by:
            raise TieringQueryError("extra(order_by=...) cannot be merged across tiers.")
        opts = self.model._meta
        ordering = self.query.order_by or (opts.ordering if self.query.default_ordering else ())
        nulls_largest = backends.ops(tiering_settings.HOT).nulls_largest
        fields: list[merge.SortField] = []
        for item in ordering:
            name, descending, nulls_first = _parse_ordering(item)
            if name == "pk":
                name = opts.pk.name
            if "__" in name:
                raise TieringQueryError(
                    f"Ordering by {name!r} follows a relation; merged tiers can only be ordered by "
                    "the model's own fields."
                )
            try:
                field = opts.get_field(name)
            except FieldDoesNotExist:
                raise TieringQueryError(f"Ordering by {name!r} cannot be merged across tiers.") from None
            if field.is_relation:
                if field.related_model._meta.ordering:
                    raise TieringQueryError(
                        f"Ordering by {name!r} uses {field.related_model._meta.label}'s ordering; order by "
                        f"'{field.attname}' instead."
                    )
            if not self.query.standard_ordering:
                descending = not descending
                nulls_first = None if nulls_first is None else not nulls_first
            if nulls_first is None:
                nulls_first = nulls_largest == descending
            fields.append(merge.SortField(field.attname, descending, nulls_first, field.null))
        if not any(f.name == opts.pk.attname for f in fields):
            # The pk tie-breaker runs in the direction of the first field, so that an index
            # on that field (which ends in the row id) serves the whole ORDER BY, and it
            # turns with reverse(), so qs.reverse() is exactly qs backwards.
            descending = fields[0].descending if fields else not self.query.standard_ordering
            fields.append(merge.SortField(opts.pk.attname, descending, False, False))
        return fields

    def _ordered_by(self, sort: list[merge.SortField]) -> TieredQuerySet:
        clone = self._chain()
        clone.query.standard_ordering = True
        clone.query.clear_ordering(force=True)
        return clone.order_by(*(f.order_by() for f in sort))

    def _refuse_unmergeable(self) -> None:
        """Refuse queries whose per-tier answers cannot be combined into the right one."""
        query = self.query
        if query.combinator:
            raise TieringQueryError(
                f"{query.combinator}() of tiered querysets cannot be merged; combine .hot() or .cold() querysets."
            )
        if query.group_by is not None:
            raise TieringQueryError(
                "Grouped annotations (values().annotate(Count(...))) would give one group per tier; "
                "aggregate() the tiers, or read one tier with .hot()/.cold()."
            )
        if query.distinct_fields:
            raise TieringQueryError("distinct(*fields) cannot be merged across tiers.")
        relations.refuse_cross_tier(self.model, query)


def _parse_ordering(item: Any) -> tuple[str, bool, bool | None]:
    if isinstance(item, str):
        if item == "?":
            raise TieringQueryError("Random ordering cannot be merged across tiers.")
        return item.lstrip("-"), item.startswith("-"), None
    if isinstance(item, F):
        return item.name, False, None
    if isinstance(item, OrderBy) and isinstance(item.expression, F):
        nulls = True if item.nulls_first else (False if item.nulls_last else None)
        return item.expression.name, item.descending, nulls
    raise TieringQueryError(f"Ordering by {item!r} cannot be merged across tiers.")


def _combine(kind: str, values: list[list[Any]]) -> Any:
    if kind == "Avg":
        total = sum((v[0] for v in values if v[0] is not None), start=0)
        count = sum(v[1] for v in values)
        if not count:
            return None
        return total / (Decimal(count) if isinstance(total, Decimal) else count)
    present = [v[0] for v in values if v[0] is not None]
    if kind == "Count":
        return sum(v[0] or 0 for v in values)
    if not present:
        return None
    if kind == "Sum":
        return sum(present[1:], start=present[0])
    return min(present) if kind == "Min" else max(present)


class TieredManager(BaseManager.from_queryset(TieredQuerySet)):
    """Default manager of a tiered model: reads both tiers, writes to hot."""

    use_in_migrations = False
