"""Run one archive of orders.Order in a subprocess, for the crash test.

Usage: python tests/mover_crash_driver.py HOT COLD [BATCH_SIZE [PATH [DIRECTION]]]
with DJANGO_SETTINGS_MODULE=tests.settings, HOTCOLD_TEST_SUBPROCESS=1 and the
parent's HOTCOLD_TEST_RUN/HOTCOLD_TEST_DIR; HOTCOLD_TEST_CRASH_AT=step:n makes
the mover SIGKILL itself at the n-th ``step`` (see tiering.mover._hook).
DIRECTION is to_cold (the default: the archive) or to_hot (a restore of every
cold order). Prints the run's state and rows; exits 0 when the run succeeded.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from orders.models import Order  # noqa: E402
from tiering import mover  # noqa: E402
from tiering.models import Direction  # noqa: E402
from tiering.registry import registry  # noqa: E402

hot, cold = sys.argv[1], sys.argv[2]
batch_size = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
path = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "fast" else None  # None: the pair's fast path
direction = sys.argv[5] if len(sys.argv) > 5 else Direction.TO_COLD
settings.TIERING = {**settings.TIERING, "HOT": hot, "COLD": cold}
run = mover.move(registry.get(Order), direction, batch_size=batch_size, trigger="crash-test", path=path,
                 all_rows=direction == Direction.TO_HOT)
print(f"run {run.pk} {run.state} rows={run.rows} batches={run.batches}", flush=True)
sys.exit(0 if run.state == "succeeded" else 1)
