"""The interface every copy path implements: steps 3-6 of the protocol for one batch of one pair of tiers.

A path's ``move_batch(batch, keys)``:

1. copies the parents, then their children, leaving alone keys already in
   the target (a retried batch neither fails nor duplicates);
2. verifies the copies against the source; a mismatch is copied again once,
   then left in the source with its copy removed (``verify_with_retries``);
3. deletes from the source with the policy re-checked (``checked_delete``);
4. to hot, commits the copies together with ``ledger.record_copied``; to
   cold, commits DONE with the delete where the ledger shares the source's
   transaction (``BatchResult.recorded``);
5. calls ``faults.checkpoint`` at after_copy, after_verify, mid_delete and
   after_delete_before_ledger.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from ... import backends
from ...exceptions import MoveError
from ...models import MigrationBatch
from .. import faults

logger = logging.getLogger("tiering.mover")


@dataclass
class BatchResult:
    """What a batch moved, for the ledger."""

    rows: int
    child_rows: int
    bytes: int
    checksum: str
    kept: int  # rows changed or no longer eligible, left in the source
    copy_seconds: float = 0.0
    verify_seconds: float = 0.0
    delete_seconds: float = 0.0
    moved: list = field(default_factory=list)  # to hot: the keys whose copies committed (restore marks)
    recorded: bool = False  # DONE is in the ledger already, written in the path's own transaction


class BaseCopyPath:
    name: str = ""  # what MigrationRun.path records
    needs: str = ""  # the pair it takes, in words, for the refusal of a forced path
    vendor: str | None = None  # both tiers must be of this vendor
    max_batch: int | None = None  # the most keys one batch may carry
    sql_where = True  # the eligibility must compile to SQL on the source table (else the orm path moves it)

    @classmethod
    def fits(cls, hot: str, cold: str) -> bool:
        """Can this path move between these two aliases?"""
        return backends.ops(hot).vendor == backends.ops(cold).vendor == cls.vendor and cls.fits_pair(hot, cold)

    @classmethod
    def fits_pair(cls, hot: str, cold: str) -> bool:
        return True

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def move_batch(self, batch: MigrationBatch, keys: list) -> BatchResult:
        raise NotImplementedError("subclasses of BaseCopyPath must provide move_batch()")

    def close(self) -> None:
        """The run's last batch is done."""

    # ------------------------------------------------------------------ the shared steps
    def verify_with_retries(self, compare: Callable[[], tuple | None],
                            mend: Callable[[int], int] | None) -> tuple[tuple, int]:
        """Step 2: ``compare()`` gives the batch's totals, or None when copies differ; ``mend(attempt)``
        removes the differing copies, copies them again on the first attempt and leaves them in the
        source on the second, and returns how many there were. Returns (totals, rows kept in the source).
        Without ``mend`` (nothing stale was copied over) a difference fails the batch."""
        kept = 0
        for attempt in range(3):
            totals = compare()
            if totals is not None:
                return totals, kept
            if attempt == 2 or mend is None:
                break
            bad = mend(attempt)
            logger.warning("run %s: %s rows of the batch differ in %s; %s", self.ctx.run.pk, bad, self.ctx.target,
                           "copying them again from the source" if attempt == 0 else "they stay in the source")
            if attempt == 1:
                kept += bad
        raise MoveError(f"run {self.ctx.run.pk}: the batch still differs in {self.ctx.target} after removing "
                        "the mismatches", self.ctx.run)

    def checked_delete(self, cursor, batch: MigrationBatch, children: list[tuple[str, list | None]],
                       parents: tuple[str, list], rows: int, child_rows: int) -> None:
        """Step 3: delete the children, then the parents still eligible (the policy is in the parents'
        statement); counts that differ from the verified ones raise, rolling the batch back."""
        deleted_children = 0
        for sql, params in children:
            cursor.execute(sql, params)
            deleted_children += cursor.rowcount
        faults.checkpoint("mid_delete")
        cursor.execute(*parents)
        if cursor.rowcount != rows or deleted_children != child_rows:
            raise MoveError(f"batch {batch.seq}: deleted {cursor.rowcount} rows and {deleted_children} children, "
                            f"verified {rows} and {child_rows}; rolled back", self.ctx.run)


def at_once(on_source: Callable[[], Any], on_target: Callable[[], Any]) -> tuple[Any, Any]:
    """Run ``on_source`` in a thread while ``on_target`` runs here, for two servers to work at the same time
    (the drivers wait for a server without the GIL); their results. ``on_source`` must use the driver's
    cursor: Django's connections belong to their thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(on_source)
        target = on_target()
        return pending.result(), target


def temp_table_name(alias: str, prefix: str, table: str) -> str:
    """A quoted name for a temp table of ``table``, within the database's identifier length."""
    ops = connections[alias].ops
    return ops.quote_name(f"{prefix}_{table}"[:ops.max_name_length() or None])
