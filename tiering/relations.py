"""Filters and ``select_related()`` through a relation to an independently tiered model, in both its tiers.

A join runs inside one database: ``Order.objects.filter(customer__email=...)``
joined in each tier would miss the orders whose customer sits in the other
tier, and ``select_related("customer")`` would drop them. So what crosses
into another tiered model is answered on the key instead:

* ``rewrite()`` turns ``customer__email__icontains=x`` into
  ``customer_id__in=KeysOf(<customers whose email contains x>)``, and a
  tiered queryset given as a value (``customer__in=Customer.objects...``)
  into the same. Conditions on one relation that a ``filter()`` ANDs go into
  one ``KeysOf``, so those on a reverse relation hold for the same related
  row, as in one database; a reverse relation gives each row once, as
  ``distinct()`` would.
* ``KeysOf`` reads the matching keys from both tiers of the related model
  when the query is compiled; ``freeze()`` reads them once for a query about
  to run against both tiers, so that both see the same keys. Integer keys
  are written into the SQL as literals (no limit on how many match), others
  are parameters, up to what one statement takes.
* ``split_select_related()`` and ``attach_related()``: ``select_related()``
  of such a relation reads the related rows by key from whichever tier holds
  them and caches them on the instances, as the join would.

What cannot be answered on the key (ordering, ``values()``, a many-to-many
or a subquery through another tiered model) is refused by
``refuse_cross_tier()``, never answered from one tier.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import models
from django.db.models import Q
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import Expression
from django.db.models.query import QuerySet
from django.db.models.sql.query import Query
from django.db.models.sql.where import WhereNode

from . import backends
from .conf import tiering_settings
from .exceptions import TieringQueryError
from .registry import registry


class KeysOf(Expression):
    """The values of ``column`` in the rows of ``queryset``, read from both tiers: the right-hand side of
    an ``__in`` lookup, compiled as the list of those keys."""

    def __init__(self, queryset: QuerySet, column: str, output_field: models.Field) -> None:
        super().__init__(output_field=output_field)
        self.queryset, self.column = queryset, column
        self.keys: list[Any] | None = None  # set by frozen()

    # Identity, not value: comparing values would read the keys. A compiled SQL cached by its WHERE (the
    # merge's probes) then lives only as long as this object, whose keys freeze() fixed.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"KeysOf({self.queryset.model._meta.label}.{self.column})"

    def read(self) -> list[Any]:
        """The keys in the hot tier, then the cold one's not seen (a row a move holds in both counts once)."""
        found: dict[Any, None] = {}
        for alias in (tiering_settings.HOT, tiering_settings.COLD):
            rows = self.queryset.using(alias).order_by().values_list(self.column, flat=True)
            found.update(dict.fromkeys(rows.iterator(chunk_size=tiering_settings.READ_CHUNK_SIZE)))
        found.pop(None, None)
        return list(found)

    def frozen(self) -> KeysOf:
        clone = copy.copy(self)
        clone.keys = self.read() if self.keys is None else self.keys
        return clone

    def resolve_expression(self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False):
        return self

    def as_sql(self, compiler, connection):
        keys = self.read() if self.keys is None else self.keys
        if not keys:
            raise EmptyResultSet
        if all(type(key) is int for key in keys):
            return ", ".join(map(str, keys)), []  # literals: no parameter limit, nothing to quote
        limit = backends.ops(connection.alias).keys_per_statement
        if len(keys) > limit:
            raise TieringQueryError(
                f"A filter through {self.queryset.model._meta.label} matches {len(keys):,} of its rows, more "
                f"keys than one statement on {connection.alias!r} takes ({limit:,}); narrow the filter."
            )
        prep = self.output_field.get_db_prep_value
        return ", ".join(["%s"] * len(keys)), [prep(key, connection, prepared=False) for key in keys]


# -------------------------------------------------------------------- rewrite
@dataclass
class _Crossing:
    """One condition (or several ANDed on one relation) answered as ``key__in=KeysOf(...)``."""

    key: str  # the local column's lookup path, e.g. "customer_id" or "lines__product_id"
    related: type[models.Model]
    column: str  # the column of the related rows that ``key`` equals
    output_field: models.Field
    conditions: Q | None = None  # on the related rows; or
    queryset: QuerySet | None = None  # a queryset the caller gave
    negate: bool = False
    group: tuple | None = None  # conditions of one group share a related row

    def as_q(self) -> Q:
        qs = self.queryset
        if qs is None:
            qs = QuerySet(self.related).filter(rewrite(self.related, self.conditions))
        on_key = Q(**{f"{self.key}__in": KeysOf(qs, self.column, self.output_field)})
        return ~on_key if self.negate else on_key


def rewrite(model: type[models.Model], q: Q) -> Q:
    """``q`` with every condition through another tiered model answered on the key (see the module)."""
    if not _may_cross(model, q) or registry.get(model) is None and registry.parent_of(model) is None:
        return q
    return _rewrite_node(model, q)


def _may_cross(model, q: Q) -> bool:
    """A fast no for the usual filter: no part names a relation and no value is a queryset."""
    starts = _relation_names(model)
    for child in q.children:
        if isinstance(child, Q):
            if _may_cross(model, child):
                return True
        elif isinstance(child, tuple):
            key, value = child
            if key.split(LOOKUP_SEP, 1)[0] in starts or isinstance(value, QuerySet | Query):
                return True
    return False


@cache
def _relation_names(model: type[models.Model]) -> frozenset[str]:
    names = set()
    for field in model._meta.get_fields():
        if field.is_relation:
            names.add(field.name)
            names.add(getattr(field, "attname", field.name))
    return frozenset(names)


def _rewrite_node(model, q: Q) -> Q:
    node = Q()
    node.connector, node.negated = q.connector, q.negated
    groups: dict[tuple, _Crossing] = {}
    out: list[Any] = []
    for child in q.children:
        if isinstance(child, Q):
            out.append(_rewrite_node(model, child))
            continue
        crossing = _crossing(model, *child) if isinstance(child, tuple) else None
        if crossing is None:
            out.append(child)  # expressions such as Exists(...) stay: refuse_cross_tier() checks them
            continue
        if q.connector == Q.AND and crossing.group is not None:
            if crossing.group in groups:
                groups[crossing.group].conditions &= crossing.conditions
                continue
            groups[crossing.group] = crossing
        out.append(crossing)
    node.children = [child.as_q() if isinstance(child, _Crossing) else child for child in out]
    return node


def _unit(model) -> list:
    tiered = registry.get(model) or registry.parent_of(model)
    return tiered.unit if tiered is not None else [model]


def _is_field(opts, name: str) -> bool:
    if name == "pk":
        return True
    try:
        opts.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _crossing(model, key: str, value: Any) -> _Crossing | None:
    """How ``key=value`` is answered on the key, or None when it stays inside ``model``'s tier."""
    parts = key.split(LOOKUP_SEP)
    opts, path = model._meta, []
    for i, part in enumerate(parts):
        if not _is_field(opts, part):
            return _queryset_value(opts.model, path, "pk", parts[i:], value)
        field = opts.pk if part == "pk" else opts.get_field(part)
        rest = parts[i + 1:]
        if not field.is_relation:
            return _queryset_value(opts.model, path, field.attname, rest, value)
        related = field.related_model
        if registry.get(related) is not None and (related is opts.model or related not in _unit(model)):
            return _through(field, related, path, rest, value)
        if related not in _unit(model):
            return None  # a table outside the unit: Django's join, which refuse_cross_tier() checks
        path.append(field.name)
        opts = related._meta
    return None


def _through(field, related, path: list[str], rest: list[str], value: Any) -> _Crossing | None:
    """``rest=value`` on the rows that ``field`` leads to, answered on the key."""
    if field.many_to_many:
        return None  # refused by refuse_cross_tier()
    if field.concrete:  # forward: customer -> the customer's key
        target = field.target_field
        key, column = field.attname, target.attname
    else:  # reverse: orders -> the key the orders point at
        target = field.field.target_field
        key, column = target.attname, field.field.attname
    key = LOOKUP_SEP.join([*path, key])
    group = (key, field.name)
    related_opts = related._meta
    if rest and _is_field(related_opts, rest[0]):
        own_key = rest[0] in (target.name, target.attname) or rest[0] == "pk" and target.primary_key
        if field.concrete and own_key and not any(_is_field(related_opts, part) for part in rest[1:]):
            return None  # customer__id__gt=...: Django compares the column itself, no join
        return _Crossing(key, related, column, target, conditions=Q(**{LOOKUP_SEP.join(rest): value}), group=group)
    lookup = LOOKUP_SEP.join(rest) or "exact"
    if isinstance(value, QuerySet | Query):
        return _given_queryset(key, value, lookup, target)
    if field.concrete:
        return None  # customer=..., customer__in=[...], customer__isnull=...: the column itself
    if lookup == "isnull":  # no related row (True) / some related row (False)
        conditions = Q(**{f"{field.field.name}__isnull": False})
        return _Crossing(key, related, column, target, conditions=conditions, negate=bool(value))
    return _Crossing(key, related, column, target, conditions=Q(**{f"pk__{lookup}": value}), group=group)


def _queryset_value(model, path: list[str], attname: str, rest: list[str], value: Any) -> _Crossing | None:
    """``pk__in=<a queryset of another tiered model>``: that queryset's keys from both tiers."""
    if not isinstance(value, QuerySet | Query) or registry.get(value.model) is None:
        return None
    if value.model in _unit(model):
        return None  # the same unit: each tier's subquery answers for its own rows
    field = model._meta.pk if attname == "pk" else model._meta.get_field(attname)
    return _given_queryset(LOOKUP_SEP.join([*path, field.attname]), value, LOOKUP_SEP.join(rest) or "exact", field)


def _given_queryset(key: str, value: QuerySet | Query, lookup: str, output_field) -> _Crossing | None:
    """A queryset the caller gave as the value of ``key__in``: read its keys from both tiers, unless it is
    pinned to one alias (then Django's meaning holds) or per-tier answers would not add up (refused)."""
    if not isinstance(value, QuerySet) or value._db is not None or lookup != "in":
        return None
    query = value.query
    if query.is_sliced or query.combinator or query.group_by is not None or query.distinct_fields:
        return None
    selected = [*query.values_select, *query.annotation_select] or [value.model._meta.pk.attname]
    if len(selected) != 1:
        return None
    return _Crossing(key, value.model, selected[0], output_field, queryset=value)


# --------------------------------------------------------------------- freeze
def freeze(query: Query) -> Query:
    """``query`` with its ``KeysOf`` read once (a clone), or ``query`` itself when it has none."""
    if not has_keys(query.where):
        return query
    clone = query.clone()
    clone.where = _frozen(query.where)
    return clone


def freeze_q(q: Q) -> Q:
    """``q`` (from ``rewrite()``) with its ``KeysOf`` read now: a move fixes its selection at its start."""
    node = copy.copy(q)
    node.children = [
        freeze_q(child) if isinstance(child, Q)
        else (child[0], child[1].frozen()) if isinstance(child, tuple) and isinstance(child[1], KeysOf)
        else child
        for child in q.children
    ]
    return node


def has_keys(node: WhereNode) -> bool:
    """Whether a WHERE tree holds a ``KeysOf``."""
    for child in node.children:
        if isinstance(child, WhereNode):
            if has_keys(child):
                return True
        elif isinstance(getattr(child, "rhs", None), KeysOf):
            return True
    return False


def _frozen(node: WhereNode) -> WhereNode:
    clone = node.create(connector=node.connector, negated=node.negated)
    for child in node.children:
        if isinstance(child, WhereNode):
            child = _frozen(child)
        elif isinstance(getattr(child, "rhs", None), KeysOf):
            child = copy.copy(child)
            child.rhs = child.rhs.frozen()
        clone.children.append(child)
    return clone


# ------------------------------------------------------------- select_related
def split_select_related(model, fields: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``select_related(*fields)`` -> (what Django joins, {relation to another tiered model: its own
    select_related()}). ``fields`` empty means every non-null forward relation, as in Django."""
    fields = list(fields) or [f.name for f in model._meta.concrete_fields if f.is_relation and not f.null]
    joined, apart = [], {}
    for name in fields:
        first, _, nested = name.partition(LOOKUP_SEP)
        try:
            field = model._meta.get_field(first)
        except FieldDoesNotExist:
            joined.append(name)  # Django's own error
            continue
        related = field.related_model
        if field.is_relation and registry.get(related) is not None and field.concrete:
            apart.setdefault(first, [])
            if nested:
                apart[first].append(nested)
        else:
            joined.append(name)
    return joined, apart


def attach_related(objs: list[Any], apart: dict[str, list[str]]) -> None:
    """Set each instance's related object (for ``apart`` from ``split_select_related``) from whichever tier
    holds it, one ``in_bulk()`` per relation. A key that matches no row is left unset, so reading it
    raises ``DoesNotExist`` as it would without select_related()."""
    if not objs or not apart:
        return
    model = type(objs[0])
    for name, nested in apart.items():
        field = model._meta.get_field(name)
        keys = {getattr(obj, field.attname) for obj in objs} - {None}
        related = field.related_model._default_manager.all()
        if nested:
            related = related.select_related(*nested)
        found = related.in_bulk(keys, field_name=field.target_field.name) if keys else {}
        for obj in objs:
            key = getattr(obj, field.attname)
            if key is None:
                field.set_cached_value(obj, None)
            elif key in found:
                field.set_cached_value(obj, found[key])


# --------------------------------------------------------------------- refuse
def refuse_cross_tier(model, query: Query) -> None:
    """Refuse a query on ``model``'s tiers that still joins or subqueries another tiered model's table:
    rows whose partner sits in the other tier would be missed."""
    allowed = {m._meta.db_table for m in _unit(model)}
    # A join Django set up and then trimmed (customer_id__in=...) keeps an alias with no references:
    # only aliases still referenced reach the SQL.
    tables = {join.table_name for alias, join in query.alias_map.items() if query.alias_refcount.get(alias, 0) > 0}
    tables |= _select_related_tables(model, query.select_related)
    tables |= _subquery_tables(query.where)
    for table in tables - allowed:
        for candidate in registry:
            if candidate.model._meta.db_table == table:
                raise TieringQueryError(
                    f"This query joins {candidate.label}, which is tiered on its own: rows whose "
                    f"{candidate.label} is in the other tier would be missed. Filter through the relation "
                    "(customer__email=... is answered in both tiers), use prefetch_related(), or read one "
                    "tier with .hot()/.cold()."
                )


def refuse_cross_tier_q(model, q: Q) -> None:
    """``refuse_cross_tier()`` for a selection given as a Q (a move's ``where``, a ``--filter``)."""
    refuse_cross_tier(model, QuerySet(model).filter(rewrite(model, q)).query)


def _subquery_tables(expression: Any) -> set[str]:
    """Tables of the subqueries inside a WHERE tree (``Exists(...)``, ``__in=<queryset>``)."""
    tables: set[str] = set()
    if isinstance(expression, Query):
        tables.add(expression.model._meta.db_table)
        tables |= {join.table_name for join in expression.alias_map.values()}
        return tables | _subquery_tables(expression.where)
    children = getattr(expression, "children", None)
    if children is None and hasattr(expression, "get_source_expressions"):
        children = [*expression.get_source_expressions(), getattr(expression, "rhs", None),
                    getattr(expression, "query", None)]
    for child in children or ():
        if child is not None and not isinstance(child, KeysOf | str | int):
            tables |= _subquery_tables(child)
    return tables


def _select_related_tables(model: Any, select_related: Any) -> set[str]:
    """Tables that select_related() will join (they are not in alias_map until compiled)."""
    if not select_related:
        return set()
    tables: set[str] = set()
    if select_related is True:
        for field in model._meta.concrete_fields:
            if field.is_relation and not field.null:
                tables.add(field.related_model._meta.db_table)
        return tables
    for name, nested in select_related.items():
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        related = field.related_model
        if related is None:
            continue
        tables.add(related._meta.db_table)
        if isinstance(nested, dict):
            tables |= _select_related_tables(related, nested)
    return tables
