"""Crash points for the SIGKILL tests: ``HOTCOLD_TEST_CRASH_AT=step:n`` kills the process at the n-th ``step``.

Steps: after_copy, after_verify (on pg_copy after the target commit, the
source's delete run and not committed), mid_delete, after_delete_before_ledger.
Only in a test subprocess (``HOTCOLD_TEST_SUBPROCESS=1``); tests in-process
patch ``checkpoint``.
"""
from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def checkpoint(step: str) -> None:
    spec = os.environ.get("HOTCOLD_TEST_CRASH_AT")
    if not spec or os.environ.get("HOTCOLD_TEST_SUBPROCESS") != "1":
        return
    name, _, count = spec.partition(":")
    if name != step:
        return
    _counts[step] = _counts.get(step, 0) + 1
    if _counts[step] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
