"""One lock per model and direction (a ``TierLock`` row in hot), owned by a run; stale locks are taken over.

A lock is stale when its heartbeat is older than ``LOCK_STALE_SECONDS``, its
owner is a dead process on this host, or this process gave its run up
(``abandon``: the run failed while hot was away, so nothing could close it).
Parallel range workers of one run share the run's lock.
"""
from __future__ import annotations

import logging
import os
import socket

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import tiering_settings
from ..exceptions import LockHeld, MoveError
from ..models import MigrationRun, TierLock
from ..registry import TieredModel

logger = logging.getLogger("tiering.mover")

# runs of this process that failed while the ledger was away: their locks are stale though the process lives
_abandoned: set[int] = set()


def abandon(run: MigrationRun) -> None:
    """This process gave ``run`` up without closing it (hot did not answer): its lock may be taken over."""
    _abandoned.add(run.pk)


def abandoned() -> set[int]:
    """The runs this process gave up (``abandon``): live though their heartbeat may look fresh."""
    return set(_abandoned)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_name(tiered: TieredModel, direction: str) -> str:
    return f"{tiered.label}:{direction}"


def held_lock(tiered: TieredModel, direction: str) -> TierLock | None:
    """The lock a live run holds on this model and direction (a stale lock does not count)."""
    lock = TierLock.objects.using(tiering_settings.HOT).filter(name=lock_name(tiered, direction)).first()
    if lock is None or is_stale(lock):
        return None
    return lock


def describe_holder(tiered: TieredModel, direction: str, lock: TierLock) -> str:
    age = (timezone.now() - lock.heartbeat_at).total_seconds()
    return (f"{tiered.label} is already being moved {direction.replace('_', ' ')} by run {lock.run_id} "
            f"({lock.owner}, heartbeat {age:.0f}s ago); wait for it to finish")


def acquire(tiered: TieredModel, direction: str, run: MigrationRun) -> None:
    """Take ``<label>:<direction>`` for ``run``; take over a stale lock; else raise LockHeld."""
    hot, name = tiering_settings.HOT, lock_name(tiered, direction)
    for _ in range(5):
        try:
            with transaction.atomic(using=hot):
                TierLock.objects.using(hot).create(name=name, run=run, owner=owner())
            return
        except IntegrityError:
            lock = TierLock.objects.using(hot).filter(name=name).first()
            if lock is None:
                continue
            if lock.run_id == run.pk:
                return  # a parallel worker of the same run
            if is_stale(lock):
                age = (timezone.now() - lock.heartbeat_at).total_seconds()
                logger.warning("run %s takes over the stale lock %s of %s (run %s, heartbeat %.0fs ago)",
                               run.pk, name, lock.owner, lock.run_id, age)
                TierLock.objects.using(hot).filter(pk=lock.pk, owner=lock.owner,
                                                   heartbeat_at=lock.heartbeat_at)._raw_delete(hot)
                continue
            raise LockHeld(describe_holder(tiered, direction, lock)) from None
    raise LockHeld(f"could not take the lock {name}")


def is_stale(lock: TierLock) -> bool:
    if lock.run_id in _abandoned:
        return True
    if (timezone.now() - lock.heartbeat_at).total_seconds() > tiering_settings.LOCK_STALE_SECONDS:
        return True
    host, _, pid = lock.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def heartbeat(run: MigrationRun) -> None:
    """Before each batch: refresh the run's lock, or stop if another run took it over as stale."""
    hot, now = tiering_settings.HOT, timezone.now()
    if run.trigger == "promote":
        return
    if not TierLock.objects.using(hot).filter(run=run).update(heartbeat_at=now):
        raise MoveError(f"run {run.pk} lost its lock (taken over as stale); stopping", run)
    MigrationRun.objects.using(hot).filter(pk=run.pk).update(heartbeat_at=now)
