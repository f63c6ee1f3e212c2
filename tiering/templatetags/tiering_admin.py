"""Admin template tags for tiered changelists."""
from __future__ import annotations

import copy
from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.contrib.admin.templatetags.base import InclusionAdminNode

register = template.Library()


class TierDates:
    """What the date hierarchy asks of ``cl.queryset``, answered across both tiers.

    Django's ``dates()``/``datetimes()`` order by an annotation, which a merged list cannot order by, so
    each tier answers for its own rows and the distinct values are merged here (a few per level)."""

    def __init__(self, queryset: Any) -> None:
        self.queryset = queryset

    def aggregate(self, **aggregates: Any) -> dict[str, Any]:
        return self.queryset.aggregate(**aggregates)  # Min and Max combine across tiers

    def dates(self, field_name: str, kind: str, order: str = "ASC") -> list[Any]:
        return self._merged("dates", order, field_name, kind)

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> list[Any]:
        return self._merged("datetimes", order, field_name, kind, tzinfo=tzinfo)

    def _merged(self, method: str, order: str, *args: Any, **kwargs: Any) -> list[Any]:
        if not self.queryset.is_tiered:
            return list(getattr(self.queryset, method)(*args, order=order, **kwargs))
        values = set()
        for tier in (self.queryset.hot(), self.queryset.cold()):
            values.update(getattr(tier, method)(*args, **kwargs))
        return sorted(values, reverse=order == "DESC")


def tiered_date_hierarchy(cl: Any) -> dict[str, Any] | None:
    """Django's ``date_hierarchy`` over a changelist whose queryset spans both tiers."""
    tiered = copy.copy(cl)
    tiered.queryset = TierDates(cl.queryset)
    return date_hierarchy(tiered)


@register.tag(name="tiered_date_hierarchy")
def tiered_date_hierarchy_tag(parser: Any, token: Any) -> InclusionAdminNode:
    return InclusionAdminNode(parser, token, func=tiered_date_hierarchy, template_name="date_hierarchy.html",
                              takes_context=False)
