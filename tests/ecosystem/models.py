"""Plain (untiered) copies of ``accounts.Customer`` and ``orders.Order``: the same rows held in one table of
the hot alias (the router keeps untiered tables there), against which the tiered models' answers are compared."""
from django.db import models
from django.utils import timezone

from orders.models import Order


class OracleQuerySet(models.QuerySet):
    """Ordered as a merged tiered queryset promises: ties broken by the primary key, in the direction of the first
    field (tiering/query.py, ``_sort_fields``). Not on distinct querysets, whose values a key would split."""

    def order_by(self, *field_names):
        names = [f for f in field_names if isinstance(f, str)]
        if names and len(names) == len(field_names) and not self.query.distinct:
            if not {n.lstrip("-") for n in names} & {"pk", "id"}:
                field_names = (*field_names, "-pk" if names[0].startswith("-") else "pk")
        return super().order_by(*field_names)


class PlainCustomer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    last_seen = models.DateTimeField(db_index=True, default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OracleQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class PlainOrder(models.Model):
    customer = models.ForeignKey(PlainCustomer, on_delete=models.PROTECT, related_name="orders")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=20, choices=Order.Status.choices, default=Order.Status.NEW)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    note = models.TextField(blank=True, null=True)

    objects = OracleQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Order {self.pk}"
