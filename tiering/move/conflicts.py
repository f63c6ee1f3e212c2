"""A restore (or promote) leaves in cold the rows whose unique values hot holds on another key.

Before each batch to hot, ``set_aside`` reads which of its rows (parents or
children) meet a unique value taken in hot (``tiering.unique.conflicts_in_hot``:
one batched probe per unique set), records each in the ledger
(``UniqueConflict``: the key, the field, the key of the hot row holding the
value) and returns the rest of the batch as runs of consecutive keys: the
fast paths move a key range, so a key left out splits the range. No write
can take such a value in hot after the read: the row is still in cold, and
every tiered write probes cold (``tiering.unique``).
"""
from __future__ import annotations

import logging

from ..conf import tiering_settings
from ..models import Direction, UniqueConflict, jsonable_key
from ..unique import conflicts_in_hot, unique_sets

logger = logging.getLogger("tiering.mover")


def set_aside(ctx, keys: list) -> list[list]:
    """The batch's keys without those whose rows meet a unique value taken in hot, as runs of keys."""
    if ctx.direction != Direction.TO_HOT or not any(unique_sets(m) for m in ctx.tiered.unit):
        return [keys]
    found = conflicts_in_hot(ctx.tiered, keys)
    if not found:
        return [keys]
    UniqueConflict.objects.using(tiering_settings.HOT).bulk_create([
        UniqueConflict(run=ctx.run, model_label=model._meta.label, object_pk=str(jsonable_key(pk)),
                       fields=", ".join(names), holder_pk=str(jsonable_key(holder)))
        for _, model, pk, names, holder in found])
    for parent, model, _, names, holder in found:
        logger.warning("run %s: %s %s stays in cold: its %s is taken in hot by %s %s", ctx.run.pk,
                       ctx.tiered.label, parent, ", ".join(names), model._meta.label, holder)
    left_out = {parent for parent, *_ in found}
    runs, current = [], []
    for key in keys:
        if key in left_out:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(key)
    return runs + [current] if current else runs


def described(run) -> list[str]:
    """One line per conflict a run recorded."""
    return [f"{c.model_label} {c.object_pk} stays in cold: {c.fields} is taken in hot by {c.holder_pk}"
            for c in UniqueConflict.objects.using(tiering_settings.HOT).filter(run=run)]
