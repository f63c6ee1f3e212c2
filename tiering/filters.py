"""``field__lookup=value`` strings and ``--pk`` values turned into ORM lookups.

Shared by ``restore_hot --filter``/``--pk`` and the ``tiering.restore`` task;
a value that does not fit the model raises ``FilterError`` (one line), before
any run is recorded: integers beyond what the columns store, a regular
expression that Python or a tier's database cannot compile, and a lookup
that compiles to no rows at all (``pk__in=`` with no key) are refused too.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, FieldError, ValidationError
from django.db import DatabaseError
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.utils import timezone

from . import relations
from .arguments import check_integer
from .conf import tiering_settings
from .exceptions import ArgumentError, FilterError, TieringQueryError
from .registry import TieredModel
from .text import one_line

DATE_PART_LOOKUPS = {"year", "month", "day", "week", "week_day", "iso_week_day", "quarter", "hour", "minute",
                     "second", "iso_year"}
TEXT_LOOKUPS = {"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "regex", "iregex"}


def parse_pks(tiered: TieredModel, values: Iterable[str]) -> list[Any]:
    """Convert ``--pk`` values with the primary key field's ``to_python``; a key no column can hold is refused."""
    pk_field = tiered.model._meta.pk
    pks = []
    for value in values:
        try:
            pk = pk_field.to_python(value)
        except ValidationError as exc:
            raise FilterError(f"--pk {value!r}: {one_line('; '.join(exc.messages))}") from None
        if pk is None:
            raise FilterError(f"--pk {value!r}: not a key")
        check_integer(pk_field, pk, f"--pk {value!r}")
        pks.append(pk)
    return pks


def parse_filters(tiered: TieredModel, expressions: Iterable[str]) -> Q:
    """``field__lookup=value`` strings -> one ``Q`` (AND), validated against the model.

    Values go through the final field's ``to_python`` so dates, datetimes and
    decimals work; an unknown field, relation or lookup raises ``FilterError``.
    """
    model = tiered.model
    q = Q()
    for expression in expressions:
        key, sep, raw = expression.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FilterError(f"--filter {expression!r}: expected field__lookup=value")
        field, lookup = _field_and_lookup(model, key, expression)
        if field is not None and field.is_relation and lookup not in {"isnull"}:
            field = field.target_field  # customer=3 compares with the related key
        if (field is not None and LOOKUP_SEP not in lookup and field.get_lookup(lookup) is None
                and field.get_transform(lookup) is None):
            raise FilterError(f"--filter {expression!r}: unsupported lookup {lookup!r} for field {field.name!r}")
        try:
            value = _convert(field, lookup, raw)
            for item in value if isinstance(value, list) else [value]:
                check_integer(field if lookup not in DATE_PART_LOOKUPS else None, item, f"--filter {expression!r}")
            condition = Q(**{key: value})
            QuerySet(model=model).filter(condition).query.get_compiler(using=tiering_settings.HOT).as_sql()
            relations.refuse_cross_tier_q(model, condition)
            if lookup.rpartition(LOOKUP_SEP)[2] in {"regex", "iregex"}:
                _check_regex(model, condition, raw)
        except EmptyResultSet:
            raise FilterError(f"--filter {expression!r}: the filter matches nothing (no value to compare)") from None
        except ArgumentError:
            raise
        except ValidationError as exc:
            raise FilterError(f"--filter {expression!r}: {one_line('; '.join(exc.messages))}") from None
        except (FieldError, FieldDoesNotExist, ValueError, TypeError, TieringQueryError) as exc:
            raise FilterError(f"--filter {expression!r}: {one_line(exc)}") from None
        q &= condition
    return q


def check_lookups(tiered: TieredModel, lookups: dict) -> Q:
    """A task's ``filter`` dict as one ``Q``, held to the checks of ``parse_filters`` (its values are Python's
    already): known fields, integers the columns store, regular expressions that compile, some row possible."""
    model = tiered.model
    for key, value in lookups.items():
        what = f"filter {key}={value!r}"
        field, lookup = _field_and_lookup(model, key, f"{key}={value!r}")
        if field is not None and field.is_relation and lookup != "isnull":
            field = field.target_field
        for item in value if isinstance(value, (list, tuple, set)) else [value]:
            check_integer(field if lookup not in DATE_PART_LOOKUPS else None, item, what)
    condition = Q(**lookups)
    try:
        QuerySet(model=model).filter(condition).query.get_compiler(using=tiering_settings.HOT).as_sql()
        relations.refuse_cross_tier_q(model, condition)
        for key, value in lookups.items():
            if key.rpartition(LOOKUP_SEP)[2] in {"regex", "iregex"}:
                _check_regex(model, Q(**{key: value}), str(value))
    except EmptyResultSet:
        raise FilterError(f"filter {lookups!r}: the filter matches nothing (no value to compare)") from None
    except (FieldError, FieldDoesNotExist, ValueError, TypeError, TieringQueryError) as exc:
        raise FilterError(f"filter {lookups!r}: {one_line(exc)}") from None
    return condition


def _check_regex(model, condition: Q, raw: str) -> None:
    """A regular expression that Python or a tier's database does not compile fails here, not in a run.
    Each tier plans the lookup (EXPLAIN, no rows read): PostgreSQL compiles the pattern while planning,
    SQLite's REGEXP is Python's ``re``."""
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    for alias in (tiering_settings.HOT, tiering_settings.COLD):
        try:
            QuerySet(model=model).using(alias).filter(condition).explain()
        except DatabaseError as exc:
            raise ValueError(f"the {alias!r} database refuses it: {one_line(exc)}") from None


def _field_and_lookup(model, key: str, expression: str) -> tuple[Any, str]:
    """The last field that ``key`` names (following forward relations) and the lookup after it."""
    parts = key.split(LOOKUP_SEP)
    opts, field = model._meta, None
    for i, part in enumerate(parts):
        if part == "pk" and field is None and opts is not None:
            field = opts.pk
            continue
        if opts is not None:
            try:
                field = opts.get_field(part)
            except FieldDoesNotExist:
                if field is None:
                    raise FilterError(f"--filter {expression!r}: {model._meta.label} has no field {part!r}") from None
            else:
                if field.is_relation and i < len(parts) - 1:
                    related = field.related_model
                    opts = related._meta if related is not None else None
                    if not getattr(field, "concrete", False) or field.many_to_many or field.one_to_many:
                        raise FilterError(f"--filter {expression!r}: only fields of the model and its "
                                          "forward relations can be filtered on") from None
                else:
                    opts = None
                continue
        return field, LOOKUP_SEP.join(parts[i:])
    return field, "exact"


def _convert(field: Any, lookup: str, raw: str) -> Any:
    """A ``--filter`` value as the lookup expects it, converted by the field's ``to_python``."""
    if lookup == "isnull":
        lowered = raw.strip().lower()
        if lowered not in {"true", "false", "1", "0", "yes", "no"}:
            raise ValidationError(f"isnull expects true or false, not {raw!r}")
        return lowered in {"true", "1", "yes"}
    if lookup in {"in", "range"}:
        items = [_field_value(field, item.strip()) for item in raw.split(",")]
        if lookup == "range" and len(items) != 2:
            raise ValidationError("range expects two comma-separated values")
        return items
    if lookup in DATE_PART_LOOKUPS:
        return int(raw)
    if lookup in TEXT_LOOKUPS:
        return raw
    return _field_value(field, raw)


def _field_value(field: Any, raw: str) -> Any:
    value = field.to_python(raw)
    if isinstance(value, datetime) and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value)  # a bare date or local time means the current time zone
    return value
