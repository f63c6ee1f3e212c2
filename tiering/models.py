"""The ledger: every move is a MigrationRun made of MigrationBatches.

The ledger lives in the hot alias only. It is the history shown by the admin
and the dashboard, the record a rerun reads to repair half-done batches, and
the home of the per-model, per-direction run locks.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

MOVE_PERMISSION = "tiering.move_data"  # needed by every admin and dashboard action that moves rows


def jsonable_key(value):
    """A primary key as the ledger's JSON holds it: integers and text as they are, others (UUIDs) as text."""
    return value if isinstance(value, (int, str)) else str(value)


class Direction(models.TextChoices):
    TO_COLD = "to_cold", "hot → cold"
    TO_HOT = "to_hot", "cold → hot"


class RunState(models.TextChoices):
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    STOPPED = "stopped", "stopped (limit or max runtime)"
    DRY_RUN = "dry_run", "dry run"


class BatchState(models.TextChoices):
    COPYING = "copying", "copying"
    COPIED = "copied", "copied"
    VERIFIED = "verified", "verified"
    DONE = "done", "done"
    UNDONE = "undone", "undone (copy removed)"
    FAILED = "failed", "failed"


class MigrationRun(models.Model):
    model_label = models.CharField(max_length=200, db_index=True)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.RUNNING, db_index=True)
    trigger = models.CharField(max_length=20, default="command", help_text="command, task, admin, dashboard, promote")
    policy = models.CharField(max_length=300, blank=True)
    cutoff = models.DateTimeField(null=True, blank=True,
                                  help_text="The 'now' the policy was evaluated at, once per run.")
    selection = models.JSONField(default=dict, blank=True, help_text="Options and row selection of the run.")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    owner = models.CharField(max_length=200, blank=True, help_text="host:pid of the process that ran it")
    path = models.CharField(max_length=20, blank=True,
                            help_text="Copy path of its batches (sqlite, pg_copy, pg_insert, orm).")
    done_commits_with_delete = models.BooleanField(
        default=False, help_text="Each batch's DONE commits in the transaction of its source delete, so an open "
                                 "batch deleted nothing; the repair reads it (False: runs recorded before it existed).")
    rows = models.BigIntegerField(default=0)
    child_rows = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    batches = models.IntegerField(default=0)
    retries = models.IntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("move_data", "Can move rows between the hot and cold tiers")]

    def __str__(self) -> str:
        return f"Run {self.pk} {self.model_label} {self.direction} ({self.state})"

    @property
    def duration(self):
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.duration if self.duration > 0 else 0.0


class MigrationBatch(models.Model):
    run = models.ForeignKey(MigrationRun, on_delete=models.CASCADE, related_name="batch_set")
    seq = models.IntegerField()
    state = models.CharField(max_length=10, choices=BatchState.choices, default=BatchState.COPYING, db_index=True)
    key_low = models.CharField(max_length=100, blank=True)
    key_high = models.CharField(max_length=100, blank=True)
    pks = models.JSONField(default=list, blank=True, help_text=(
        "Keys of the batch, for repair after a crash: a list, or for integer keys {\"runs\": [[low, high], ...]} "
        "(see keys())."))
    rows = models.IntegerField(default=0)
    child_rows = models.IntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=64, blank=True)
    copy_seconds = models.FloatField(default=0)
    verify_seconds = models.FloatField(default=0)
    delete_seconds = models.FloatField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    kept = models.IntegerField(
        default=0, help_text="Rows left in the source: changed during the move or no longer eligible.")
    throttled_seconds = models.FloatField(
        default=0, help_text="Seconds the throttle waited after this batch (latency on hot, replica lag).")
    throttle_reason = models.CharField(max_length=200, blank=True, help_text="Why the throttle waited.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="tiering_batch_run_seq")]

    def __str__(self) -> str:
        return f"Batch {self.seq} of run {self.run_id} ({self.state})"

    @staticmethod
    def record_keys(keys: list) -> list | dict:
        """What ``pks`` holds for ``keys`` (in key order): integer keys as runs of consecutive values, since
        a batch of auto-increment keys is a handful of runs, not 10,000 numbers kept in hot forever."""
        if not keys or not all(type(k) is int for k in keys):
            return [jsonable_key(k) for k in keys]
        runs = [[keys[0], keys[0]]]
        for key in keys[1:]:
            if key == runs[-1][1] + 1:
                runs[-1][1] = key
            else:
                runs.append([key, key])
        return {"runs": runs}

    def keys(self) -> list:
        """The batch's keys, from either form of ``pks``."""
        if isinstance(self.pks, dict):
            return [key for low, high in self.pks["runs"] for key in range(low, high + 1)]
        return list(self.pks)


class TierLock(models.Model):
    """One row per held lock; the unique name makes taking it atomic."""

    name = models.CharField(max_length=200, unique=True)
    run = models.ForeignKey(MigrationRun, null=True, blank=True, on_delete=models.SET_NULL)
    owner = models.CharField(max_length=200)
    acquired_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} held by {self.owner}"


class RestoredRow(models.Model):
    """A hold on a row restored to hot, so that the next archive run leaves it there.

    Access policies get a fresh access mark instead; a time policy's field says
    nothing about a restore, so ``tiering.move.move(..., TO_COLD)`` skips held rows for
    the policy's period (``older_than``) after ``restored_at``.
    """

    model_label = models.CharField(max_length=200)
    object_pk = models.CharField(max_length=100)
    restored_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_label", "object_pk"], name="tiering_restored_row")]

    def __str__(self) -> str:
        return f"{self.model_label} {self.object_pk} restored {self.restored_at:%Y-%m-%d}"


class UniqueConflict(models.Model):
    """A row a restore (or promote) left in cold: a unique value of it is taken in hot by another row."""

    run = models.ForeignKey(MigrationRun, on_delete=models.CASCADE, related_name="unique_conflicts")
    model_label = models.CharField(max_length=200, help_text="The model whose unique value is taken (or a child's).")
    object_pk = models.CharField(max_length=255, help_text="Key of the row left in cold.")
    fields = models.CharField(max_length=255, help_text="The unique field(s), comma-separated.")
    holder_pk = models.CharField(max_length=255, help_text="Key of the hot row holding the value.")
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return (f"{self.model_label} {self.object_pk}: {self.fields} is taken in hot by {self.holder_pk} "
                f"(run {self.run_id})")
