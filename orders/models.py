from datetime import timedelta

from django.db import models
from django.utils import timezone

from tiering.mixins import TieredSaveMixin
from tiering.policies import AccessPolicy, HybridPolicy, TimePolicy
from tiering.query import TieredManager


class Order(TieredSaveMixin, models.Model):
    """An order: cold 90 days after it was placed; its lines move with it."""

    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        SHIPPED = "shipped"
        CANCELLED = "cancelled"

    customer = models.ForeignKey(
        "accounts.Customer", on_delete=models.PROTECT, db_constraint=False, related_name="orders"
    )
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    note = models.TextField(blank=True, null=True)

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"
        # (created_at, id) serves both the policy's range scans and merged lists
        # ordered by created_at with the primary key as tie-breaker.
        indexes = [models.Index(fields=["created_at", "id"], name="orders_order_created_id")]

    class Tiering:
        policy = TimePolicy("created_at", older_than=timedelta(days=90))
        related = ["lines"]

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderLine(TieredSaveMixin, models.Model):
    """A line of an order; it lives in the tier of its order."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField(default=1)
    price = models.DecimalField(max_digits=10, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class Payment(TieredSaveMixin, models.Model):
    """A payment: cold once it is both old and no longer looked at (hybrid policy)."""

    order = models.ForeignKey(Order, on_delete=models.DO_NOTHING, db_constraint=False, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    method = models.CharField(max_length=20, default="card")
    reference = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    attachment = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True, default=timezone.now)
    last_accessed = models.DateTimeField(db_index=True, default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)  # moves keep it: a move is not an update

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"

    class Tiering:
        policy = HybridPolicy(
            TimePolicy("created_at", older_than=timedelta(days=180)),
            AccessPolicy("last_accessed", idle_for=timedelta(days=60)),
            require="all",
        )

    def __str__(self) -> str:
        return f"Payment {self.pk} of order {self.order_id}"
