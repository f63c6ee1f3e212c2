from datetime import timedelta

from django.db import models
from django.utils import timezone

from tiering.mixins import TieredSaveMixin
from tiering.policies import AccessPolicy
from tiering.query import TieredManager


class Customer(TieredSaveMixin, models.Model):
    """A customer account: idle accounts go cold, and come back when used."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    last_seen = models.DateTimeField(db_index=True, default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"

    class Tiering:
        policy = AccessPolicy("last_seen", idle_for=timedelta(days=30), promote_on_access=True)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
