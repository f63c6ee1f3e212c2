"""Tiered models with text and UUID primary keys: the movers' non-integer key paths (the SQLite path's
batch table, the holds of restored rows compared as text) run on them."""
import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from tiering.mixins import TieredSaveMixin
from tiering.policies import TimePolicy
from tiering.query import TieredManager


class Issued(TieredSaveMixin, models.Model):
    """Issued at a time; cold 30 days later."""

    issued_at = models.DateTimeField(default=timezone.now, db_index=True)
    note = models.CharField(max_length=40, blank=True)

    objects = TieredManager()

    class Meta:
        abstract = True
        base_manager_name = "objects"

    class Tiering:
        policy = TimePolicy("issued_at", older_than=timedelta(days=30))


class Voucher(Issued):
    code = models.CharField(max_length=20, primary_key=True)


class Ticket(Issued):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    lot = models.CharField(max_length=20, blank=True, default="")  # migration 0002: the schema gate's drift
