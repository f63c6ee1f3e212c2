"""Unique values across tiers under real concurrency: writer processes race the mover and each other.

Every email exists as exactly one row throughout the first test (in hot, in flight, then in cold, then
back), so every create of one must fail whatever the interleaving; in the second, hot creates and cold
renames race for the same fresh values: each value ends up held by one row at most.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import Customer
from tiering import move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "unique_driver.py"
N = 60


def start(tiers, stop: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "HOTCOLD_TEST_SUBPROCESS": "1",
           "UNIQUE_STOP_FILE": str(stop)}
    return subprocess.Popen([sys.executable, str(DRIVER), tiers.hot, tiers.cold, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def written(out: str) -> list[int]:
    [line] = [line for line in out.splitlines() if line.startswith("done")]
    return [int(pk) for pk in line.split()[1:]]


def all_emails(tiers) -> Counter:
    rows = [*Customer.objects.using(tiers.hot).values_list("email", flat=True),
            *Customer.objects.using(tiers.cold).values_list("email", flat=True)]
    return Counter(rows)


def seed(tiers) -> None:
    idle = timezone.now() - timedelta(days=90)
    Customer.objects.using(tiers.hot).bulk_create(
        [Customer(email=f"c{i}@example.com", name=f"c{i}", last_seen=idle) for i in range(N)])


def test_creates_of_values_in_flight_all_fail(tiers, tmp_path):
    """Two writers create existing emails while the mover archives every customer, then restores them."""
    seed(tiers)
    stop = tmp_path / "stop"
    writers = [start(tiers, stop, "create", "c", str(N)) for _ in range(2)]
    try:
        for w in writers:
            wait_ready(w)
        finish(start(tiers, stop, "move", "to_cold", "4"))
        assert Customer.objects.using(tiers.hot).count() == 0
        finish(start(tiers, stop, "move", "to_hot", "4"))
    finally:
        stop.touch()
    created = [pk for w in writers for pk in written(finish(w))]
    assert created == []
    assert all_emails(tiers) == Counter({f"c{i}@example.com": 1 for i in range(N)})


def test_hot_creates_and_cold_renames_never_share_a_value(tiers, tmp_path):
    """A create in hot and a save in cold of the same fresh value, racing: one of them wins."""
    seed(tiers)
    move.move(registry.by_label("accounts.Customer"), Direction.TO_COLD)
    stop = tmp_path / "stop"
    procs = [start(tiers, stop, role, "n", "15") for role in ("create", "rename", "create", "rename")]
    try:
        for p in procs:
            wait_ready(p)
        finish(start(tiers, stop, "move", "to_hot", "8"))  # and restores moving the renamed rows meanwhile
    finally:
        stop.touch()
    outs = [written(finish(p)) for p in procs]
    counts = all_emails(tiers)
    fresh = {email: n for email, n in counts.items() if email.startswith("n")}
    assert fresh and all(n == 1 for n in fresh.values()), fresh
    assert sum(counts.values()) == N + len(outs[0]) + len(outs[2])
