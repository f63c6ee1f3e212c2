"""Restored rows get a fresh mark, so the next run to cold does not send them straight back.

The access field of an access (or hybrid) policy is set to now; a policy
with a hold period (``Policy.hold_period``) gets a ``RestoredRow`` hold in
hot, which ``selection.eligible_q`` honours for that period.
"""
from __future__ import annotations

from django.db import models, transaction
from django.db.models.functions import Cast
from django.utils import timezone

from .. import backends
from ..conf import tiering_settings
from ..models import RestoredRow
from . import keys


def mark_restored(ctx, pks: list) -> None:
    if not pks:
        return
    policy, now = ctx.tiered.policy, timezone.now()
    access = policy.access_policy() if policy else None
    if access is not None:
        for chunk in keys.chunks(pks, keys.per_statement(ctx.target)):
            ctx.model._base_manager.using(ctx.target).filter(pk__in=chunk).update(**{access.field: now})
    if policy is not None and policy.hold_period() is not None:
        hot = tiering_settings.HOT
        with transaction.atomic(using=hot):
            for chunk in keys.chunks(pks, keys.per_statement(hot)):
                # the key as hot casts it to text, as not_held_q compares it (a UUID is hex on SQLite)
                labels = list(ctx.model._base_manager.using(hot).filter(pk__in=chunk)
                              .values_list(Cast("pk", models.CharField()), flat=True))
                RestoredRow.objects.using(hot).filter(model_label=ctx.tiered.label, object_pk__in=labels).update(
                    restored_at=now)
                existing = set(RestoredRow.objects.using(hot).filter(
                    model_label=ctx.tiered.label, object_pk__in=labels).values_list("object_pk", flat=True))
                RestoredRow.objects.using(hot).bulk_create(
                    [RestoredRow(model_label=ctx.tiered.label, object_pk=k, restored_at=now)
                     for k in labels if k not in existing])


def refresh_hold_stats(ctx) -> None:
    """After a restore wrote holds: the next run to cold plans its exclusion of held rows on fresh figures."""
    if ctx.tiered.policy is not None and ctx.tiered.policy.hold_period() is not None:
        backends.ops(tiering_settings.HOT).refresh_stats(RestoredRow._meta.db_table)
