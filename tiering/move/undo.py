"""Undo an archive run: which rows it moved to cold that are still cold because of it.

The ledger keeps every batch's keys (``MigrationBatch.pks``). The rows run N moved are the keys of its
DONE batches; of those, a key that a later archive run of the model moved again is left out: either N
kept it in hot (changed mid-batch) and the later run moved it, or it came back to hot and went cold
again, and in both cases it is cold because of that later run. A key restored since is not in cold and
is left out too.
"""
from __future__ import annotations

from django.db.models import Q

from ..conf import tiering_settings
from ..exceptions import TieringError
from ..models import BatchState, Direction, MigrationBatch, MigrationRun, RunState
from ..registry import TieredModel, registry
from .keys import chunks, per_statement


class NotUndoable(TieringError, ValueError):
    """The run is not an archive run that moved rows of a tiered model."""


def undoable(run: MigrationRun) -> TieredModel:
    """The run's tiered model, or NotUndoable saying in one line why the run cannot be undone."""
    if run.direction != Direction.TO_COLD:
        raise NotUndoable(f"Run {run.pk} moved rows to hot, not to cold: only an archive run can be undone.")
    if run.state in (RunState.RUNNING, RunState.DRY_RUN):
        raise NotUndoable(f"Run {run.pk} is {run.get_state_display()}: only a run that ended can be undone.")
    try:
        return registry.by_label(run.model_label)
    except LookupError:
        raise NotUndoable(f"Run {run.pk} moved {run.model_label}, which is no longer a tiered model.") from None


def keys(run: MigrationRun) -> list:
    """The keys run ``run`` moved to cold that no later archive run of its model moved again and that are
    in cold now."""
    tiered = undoable(run)
    hot = run._state.db
    batches = MigrationBatch.objects.using(hot).filter(run__model_label=run.model_label,
                                                       run__direction=Direction.TO_COLD, state=BatchState.DONE)
    moved = {key for batch in batches.filter(run=run) for key in batch.keys()}
    after = Q(run__started_at__gt=run.started_at) | Q(run__started_at=run.started_at, run__pk__gt=run.pk)
    later = batches.filter(after)
    for batch in later:
        moved.difference_update(batch.keys())
    to_python, cold = tiered.model._meta.pk.to_python, tiering_settings.COLD
    wanted, still_cold = sorted(to_python(key) for key in moved), []
    for chunk in chunks(wanted, per_statement(cold)):
        still_cold += tiered.model._base_manager.using(cold).filter(pk__in=chunk).values_list("pk", flat=True)
    return sorted(still_cold)
