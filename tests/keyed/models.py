"""Tiered models with text and UUID primary keys: the movers' non-integer key paths (the SQLite path's
batch table, the holds of restored rows compared as text) run on them."""
import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from tiering.policies import TimePolicy
from tiering.query import TieredManager


class Voucher(models.Model):
    code = models.CharField(max_length=20, primary_key=True)
    issued_at = models.DateTimeField(default=timezone.now, db_index=True)
    note = models.CharField(max_length=40, blank=True)

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"

    class Tiering:
        policy = TimePolicy("issued_at", older_than=timedelta(days=30))


class Ticket(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    issued_at = models.DateTimeField(default=timezone.now, db_index=True)
    note = models.CharField(max_length=40, blank=True)

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"

    class Tiering:
        policy = TimePolicy("issued_at", older_than=timedelta(days=30))
