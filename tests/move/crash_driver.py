"""Run one ``migrate_cold`` (or ``restore_hot --all``) of orders.Order in a subprocess, for the crash test.

Usage: python tests/move/crash_driver.py HOT COLD [BATCH_SIZE [PATH [DIRECTION]]]
with DJANGO_SETTINGS_MODULE=tests.settings, HOTCOLD_TEST_SUBPROCESS=1 and the
parent's HOTCOLD_TEST_RUN/HOTCOLD_TEST_DIR; HOTCOLD_TEST_CRASH_AT=step:n makes
the mover SIGKILL itself at the n-th ``step`` (see tiering.move.faults).
PATH forces TIERING["MOVE_PATH"] ("fast": the pair's own). DIRECTION is to_cold
(the default: ``migrate_cold``) or to_hot (``restore_hot --all``). The command
runs as a user runs it (``--no-input``); prints the run's state and rows and
exits 0 when the run succeeded.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from tiering.models import Direction, MigrationRun  # noqa: E402

hot, cold = sys.argv[1], sys.argv[2]
batch_size = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
path = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "fast" else None  # None: the pair's fast path
direction = sys.argv[5] if len(sys.argv) > 5 else Direction.TO_COLD
settings.TIERING = {**settings.TIERING, "HOT": hot, "COLD": cold, "MOVE_PATH": path}
command = ["migrate_cold", "--model", "orders.Order"] if direction == Direction.TO_COLD else \
    ["restore_hot", "--model", "orders.Order", "--all"]
call_command(*command, "--no-input", "--batch-size", str(batch_size), verbosity=0)  # a failed run raises
run = MigrationRun.objects.using(hot).latest("pk")
print(f"run {run.pk} {run.state} rows={run.rows} batches={run.batches}", flush=True)
sys.exit(0 if run.state == "succeeded" else 1)
