"""What one run knows from its start: the model, the direction, the tiers, the cutoff and the selection."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from django.db.models import Q

from .. import relations
from ..conf import tiering_settings
from ..models import Direction, MigrationRun
from ..registry import TieredModel
from . import selection


@dataclass
class MoveContext:
    tiered: TieredModel
    direction: str
    run: MigrationRun | None
    now: datetime  # the cutoff, fixed for the whole run
    where: Q = field(default_factory=Q)  # the run's own selection (keys, filter, key range)

    @property
    def model(self):
        return self.tiered.model

    @property
    def source(self) -> str:
        return tiering_settings.HOT if self.direction == Direction.TO_COLD else tiering_settings.COLD

    @property
    def target(self) -> str:
        return tiering_settings.COLD if self.direction == Direction.TO_COLD else tiering_settings.HOT

    @cached_property
    def eligible_q(self) -> Q:
        """The rows of the source this run may move (re-checked in every delete). A condition through
        another tiered model is answered on the key, its keys read once, at the start of the run."""
        q = selection.eligible_q(self.tiered, self.direction, self.now) & self.where
        return relations.freeze_q(relations.rewrite(self.model, q))

    @cached_property
    def where_sql(self) -> tuple[str, list] | None:
        """``eligible_q`` as SQL on the source table, or None when it needs joins."""
        return selection.where_sql(self.model, self.source, self.eligible_q)

    @property
    def ledger_commits_with_delete(self) -> bool:
        """Each batch's DONE commits in the source's delete transaction: to cold, the ledger lives in hot, the
        source. An open batch then never had its delete committed (see ``repair.undo_copies``); the run
        records it as ``MigrationRun.done_commits_with_delete``."""
        return self.direction == Direction.TO_COLD
