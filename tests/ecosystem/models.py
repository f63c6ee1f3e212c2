"""Plain (untiered) copies of ``accounts.Customer`` and ``orders.Order``: the same rows held in one table of
the hot alias (the router keeps untiered tables there), against which the tiered models' answers are compared."""
from django.db import models
from django.db.models.sql import Query
from django.utils import timezone

from orders.models import Order


class OracleQuery(Query):
    """Ordered as a merged tiered queryset promises (tiering/query.py, ``_sort_fields``): ties broken by the primary
    key, in the direction of the first field. Added as the SQL is compiled, whatever built the ordering (order_by(),
    reverse()); not to distinct values without the key, whose duplicates the key would keep apart."""

    def get_compiler(self, *args, **kwargs):
        keys = {"pk", self.model._meta.pk.name}
        names = [term for term in self.order_by if isinstance(term, str)]
        distinct_values = self.distinct and not self.default_cols and not keys & set(self.values_select)
        if (names and len(names) == len(self.order_by) and not distinct_values
                and not {name.lstrip("-") for name in names} & keys):
            query = self.clone()
            query.order_by = (*self.order_by, "-pk" if names[0].startswith("-") else "pk")
            return super(OracleQuery, query).get_compiler(*args, **kwargs)
        return super().get_compiler(*args, **kwargs)


class OracleQuerySet(models.QuerySet):
    def __init__(self, model=None, query=None, using=None, hints=None):
        super().__init__(model, query or OracleQuery(model), using, hints)


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
