"""Admin template tags for tiered changelists."""
from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from typing import Any

from django import template
from django.conf import settings
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.db.models import Max, Min
from django.utils import timezone

register = template.Library()


def _same(value: Any) -> Any:
    return value


class TierDates:
    """What the date hierarchy asks of ``cl.queryset``, answered across both tiers without reading either
    whole. Django's ``dates()``/``datetimes()`` is a ``SELECT DISTINCT`` over every row (ordered by an
    annotation, which a merged list cannot be); here the first and last value bound the periods, and each
    period between them is one ``exists()`` of a range per tier, which an index on the field answers."""

    def __init__(self, queryset: Any) -> None:
        self.queryset = queryset

    def aggregate(self, **aggregates: Any) -> dict[str, Any]:
        return self.queryset.aggregate(**aggregates)  # Min and Max combine across tiers

    def dates(self, field_name: str, kind: str, order: str = "ASC") -> list[datetime.date]:
        return self._periods(field_name, kind, order, _same, _same)

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> list[Any]:
        if not settings.USE_TZ:
            return self._periods(field_name, kind, order, _same, _same)
        zone = tzinfo or timezone.get_current_timezone()
        return self._periods(field_name, kind, order, lambda v: timezone.localtime(v, zone).replace(tzinfo=None),
                             lambda v: timezone.make_aware(v, zone))

    def _periods(self, field_name: str, kind: str, order: str, local: Callable, stored: Callable) -> list[Any]:
        """The start of every period (local time) holding a row, as the field stores it (``stored``)."""
        bounds = self.queryset.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        start, last = _truncate(local(bounds["first"]), kind), local(bounds["last"])
        found = []
        while start <= last:
            end = _next(start, kind)
            if self.queryset.filter(**{f"{field_name}__gte": stored(start), f"{field_name}__lt": stored(end)}).exists():
                found.append(stored(start))
            start = end
        return found[::-1] if order == "DESC" else found


def _truncate(value: Any, kind: str) -> Any:
    value = value.replace(**{"year": {"month": 1, "day": 1}, "month": {"day": 1}, "day": {}}[kind])
    if isinstance(value, datetime.datetime):
        value = value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value


def _next(start: Any, kind: str) -> Any:
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + datetime.timedelta(days=1)


def tiered_date_hierarchy(cl: Any) -> dict[str, Any] | None:
    """Django's ``date_hierarchy`` over a changelist whose queryset spans both tiers."""
    tiered = copy.copy(cl)
    tiered.queryset = TierDates(cl.queryset)
    return date_hierarchy(tiered)


@register.tag(name="tiered_date_hierarchy")
def tiered_date_hierarchy_tag(parser: Any, token: Any) -> InclusionAdminNode:
    return InclusionAdminNode(parser, token, func=tiered_date_hierarchy, template_name="date_hierarchy.html",
                              takes_context=False)
