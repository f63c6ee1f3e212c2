"""The merge of both tiers' rows into one sequence in the queryset's order.

Each tier is read in the merged order with its sort keys (``Rows``); a
bounded page reads as few rows and queries as it can (``Page``); longer
reads stream both tiers through a k-way merge (``merge_streams``). A row a
move in flight holds in both tiers is read once.
"""
from __future__ import annotations

import heapq
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from functools import total_ordering
from itertools import islice
from typing import Any

from django.db import connections
from django.db.models import F
from django.db.models.expressions import OrderBy
from django.db.models.query import (
    FlatValuesListIterable,
    ModelIterable,
    NamedValuesListIterable,
    QuerySet,
    ValuesIterable,
    ValuesListIterable,
)

from . import relations

# Pages up to this many rows are fetched in one query per tier.
SMALL_PAGE = 2000
_HIDDEN = "_tiering_key_"


@total_ordering
class _Desc:
    """Invert the comparison of a value, for descending sort keys."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value


@dataclass(frozen=True)
class SortField:
    name: str  # attname on instances
    descending: bool
    nulls_first: bool  # effective placement of NULLs in the output
    nullable: bool

    def order_by(self) -> OrderBy:
        # NULL placement is only spelled out for nullable fields, so that an
        # index on a NOT NULL field keeps serving the ORDER BY.
        explicit = {} if not self.nullable else (
            {"nulls_first": True} if self.nulls_first else {"nulls_last": True}
        )
        return OrderBy(F(self.name), descending=self.descending, **explicit)

    def key(self, value: Any) -> tuple:
        if value is None:
            return (0,) if self.nulls_first else (2,)
        return (1, _Desc(value) if self.descending else value)


# ------------------------------------------------------------------ row access
class Rows:
    """Fetch a tier's rows together with their sort keys, whatever the iterable."""

    def __init__(self, qs: QuerySet, sort: list[SortField]) -> None:
        self.sort = sort
        self.kind = qs._iterable_class
        self.qs = qs
        self.hidden = 0
        if self.kind is ModelIterable:
            self.qs = _load_sort_fields(qs, sort)
        else:
            self.qs = qs.annotate(**{f"{_HIDDEN}{i}": F(f.name) for i, f in enumerate(sort)})
            self.hidden = len(sort)
            if self.kind in (FlatValuesListIterable, NamedValuesListIterable):
                self.names = list(qs._fields) or [
                    *qs.query.extra_select, *qs.query.values_select, *qs.query.annotation_select
                ]
                self.qs._iterable_class = ValuesListIterable
        if self.kind is NamedValuesListIterable:
            self.row_class = namedtuple("Row", self.names, rename=True)

    def key(self, row: Any) -> tuple:
        if self.kind is ModelIterable:
            values = [getattr(row, f.name) for f in self.sort]
        elif self.kind is ValuesIterable:
            values = [row[f"{_HIDDEN}{i}"] for i in range(self.hidden)]
        else:
            values = row[-self.hidden:]
        return tuple(f.key(v) for f, v in zip(self.sort, values))

    def clean(self, row: Any) -> Any:
        if self.kind is ModelIterable:
            return row
        if self.kind is ValuesIterable:
            for i in range(self.hidden):
                del row[f"{_HIDDEN}{i}"]
            return row
        row = row[: -self.hidden]
        if self.kind is FlatValuesListIterable:
            return row[0]
        if self.kind is NamedValuesListIterable:
            return self.row_class(*row)
        return row

    def keyed(self, rows: Any) -> Iterator[tuple[tuple, Any]]:
        for row in rows:
            yield self.key(row), row

    def head_key(self, offset: int = 0, reverse: bool = False) -> tuple | None:
        """The sort key at ``offset`` (or of the last row with ``reverse``), one small query."""
        shape = _probe_shape(self.qs, self.sort, offset, reverse)
        probe = PROBES.get(shape) if shape is not None else None
        if probe is None:
            qs = self.qs.reverse() if reverse else self.qs
            qs = qs.values_list(*(f.name for f in self.sort))[offset : offset + 1]
            if shape is None:
                rows = list(qs)
                return tuple(f.key(v) for f, v in zip(self.sort, rows[0])) if rows else None
            compiler = qs.query.get_compiler(using=qs.db)
            probe = (compiler, *compiler.as_sql())
            if len(PROBES) >= 256:
                PROBES.clear()
            PROBES[shape] = probe
        compiler, sql, params = probe
        with connections[shape[0]].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        row = next(compiler.results_iter([[row]], tuple_expected=True))
        return tuple(f.key(v) for f, v in zip(self.sort, row))


# Compiled probe queries by shape: Django's compiler is most of a probe's cost,
# and a merged page probes the other tier once per request.
PROBES: dict[tuple, tuple] = {}


def _probe_shape(qs: QuerySet, sort: list[SortField], offset: int, reverse: bool) -> tuple | None:
    """A cache key that fixes the probe's SQL and parameters, or None when unsure.

    Only single-table queries qualify; their SQL is determined by the alias, the
    model, the ordering and the WHERE tree (Django makes lookups hashable by value).
    """
    query = qs.query
    if (
        len(query.alias_map) > 1
        or query.annotations
        or query.extra
        or query.extra_tables
        or query.distinct
        or query.group_by is not None
        or query.combinator
        or query.where.contains_aggregate
        or relations.has_keys(query.where)  # keys read for this query only: not worth keeping
    ):
        return None
    try:
        shape = (qs.db, qs.model, tuple(sort), offset, reverse, query.select_for_update, query.where)
        hash(shape)
    except TypeError:
        return None
    return shape


def _load_sort_fields(qs: QuerySet, sort: list[SortField]) -> QuerySet:
    """Undo only()/defer() for the sort fields: reading a deferred key costs a query per row."""
    names, defer = qs.query.deferred_loading
    if defer and not names:
        return qs
    opts = qs.model._meta
    sort_names = {opts.get_field(f.name).name for f in sort}
    qs = qs._chain()
    if defer:
        qs.query.deferred_loading = (frozenset(names) - sort_names, True)
    else:
        qs.query.deferred_loading = (frozenset(names) | sort_names, False)
    return qs


class Page:
    """One bounded slice ``[low:high]`` of the merge, in as few queries as we can.

    Usual case: one tier's rows in the slice all come before the other tier's
    first row (time-based tiers split by date do), so the slice is read from
    that tier alone with the database's own OFFSET. Otherwise the slice is
    merged from both tiers; a deep offset then first merges keys only.
    """

    def __init__(self, sort: list[SortField], hot: QuerySet, cold: QuerySet, low: int, high: int) -> None:
        self.sort, self.low, self.high = sort, low, high
        self.tiers = [Rows(hot, sort), Rows(cold, sort)]

    def rows(self) -> list[Any]:
        low, high = self.low, self.high
        if high <= low:
            return []
        # Fast path, two queries: read the slice from the tier that came first last time
        # for this ordering and check it ends before the other tier's first row.
        memo = (self.tiers[0].qs.model, tuple(self.sort))
        guess = _FIRST_TIER.get(memo, 0)
        a, b = self.tiers[guess], self.tiers[1 - guess]
        page = list(a.qs[low:high])
        if len(page) == high - low:
            b_head = b.head_key()
            if b_head is None or a.key(page[-1]) < b_head:
                return [a.clean(r) for r in page]
        heads = [t.head_key() for t in self.tiers]
        if heads[1] is None or heads[0] is None:
            only = self.tiers[0] if heads[1] is None else self.tiers[1]
            return [only.clean(r) for r in only.qs[low:high]]
        first, second = (0, 1) if heads[0] <= heads[1] else (1, 0)
        _FIRST_TIER[memo] = first
        b_head = heads[second]
        if first != guess:
            a, b = self.tiers[first], self.tiers[second]
            page = list(a.qs[low:high])
        if page and len(page) == high - low and a.key(page[-1]) < b_head:
            return [a.clean(r) for r in page]
        if len(page) < high - low and a.head_key(reverse=True) < b_head:
            a_total = low + len(page) if page else a.qs.count()
            rest = list(b.qs[max(0, low - a_total) : high - a_total])
            return [a.clean(r) for r in page] + [b.clean(r) for r in rest]
        return self._interleaved()

    def _interleaved(self) -> list[Any]:
        low, high = self.low, self.high
        starts = self._split_at(low) if low else (0, 0)
        streams = [t.keyed(t.qs[s : s + high - low]) for t, s in zip(self.tiers, starts)]
        merged = _dedupe(heapq.merge(*streams, key=lambda kv: kv[0]))
        # Both tiers fetch the same shape of row, so either one can clean it.
        return [self.tiers[0].clean(row) for _key, row in islice(merged, high - low)]

    def _split_at(self, low: int) -> tuple[int, int]:
        """How many of the first ``low`` merged rows come from each tier (keys only)."""
        names = [f.name for f in self.sort]

        def tagged(tier: Rows, i: int) -> Iterator[tuple[tuple, int]]:
            # A function, not a nested generator expression: each stream keeps its own ``i``.
            for row in tier.qs.values_list(*names)[:low].iterator(chunk_size=5000):
                yield tuple(f.key(v) for f, v in zip(self.sort, row)), i

        streams = [tagged(t, i) for i, t in enumerate(self.tiers)]
        counts = [0, 0]
        previous = None
        taken = 0
        for key, i in heapq.merge(*streams, key=lambda kv: kv[0]):
            if key == previous:
                counts[i] += 1  # the same row in both tiers (a move in flight) counts once
                continue
            if taken == low:
                break
            previous = key
            counts[i] += 1
            taken += 1
        return counts[0], counts[1]


# (model, sort fields) -> index of the tier whose rows came first last time (0 hot, 1 cold).
_FIRST_TIER: dict[tuple, int] = {}


def _dedupe(merged: Iterator[tuple[tuple, Any]]) -> Iterator[tuple[tuple, Any]]:
    """Drop the second copy of a row that a move in flight holds in both tiers."""
    previous = object()
    for key, row in merged:
        if key == previous:
            continue
        previous = key
        yield key, row


def merge_streams(
    sort: list[SortField],
    hot: QuerySet,
    cold: QuerySet,
    low: int,
    high: int | None,
    chunk_size: int,
    distinct: bool,
) -> Iterator[Any]:
    tiers = [Rows(hot, sort), Rows(cold, sort)]
    limited = [t.qs if high is None or distinct else t.qs[:high] for t in tiers]
    streams = [t.keyed(qs.iterator(chunk_size=chunk_size)) for t, qs in zip(tiers, limited)]
    merged = (row for _key, row in _dedupe(heapq.merge(*streams, key=lambda kv: kv[0])))
    cleaned = (tiers[0].clean(row) for row in merged)
    if distinct:
        cleaned = unique(cleaned)
    return islice(cleaned, low, high)


def unique(rows: Iterator[Any]) -> Iterator[Any]:
    seen: set = set()
    for row in rows:
        marker = tuple(row.items()) if isinstance(row, dict) else row
        if marker in seen:
            continue
        seen.add(marker)
        yield row
