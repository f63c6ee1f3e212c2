"""Real Celery worker and beat processes for the tests, against the test Redis.

Each process runs ``celery -A hotcold_site ...`` with ``tests.settings`` and
``HOTCOLD_TEST_PAIR`` choosing the tier pair it moves between; it consumes the
queue ``hotcold-tests-<run>-<pair>`` (tests/settings.py), so concurrent test
runs and the two pairs never take each other's tasks. Processes are started in
their own session and stopped by process group (TERM, then KILL).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

CELERY = str(Path(sys.executable).with_name("celery"))


def queue_for(pair: str) -> str:
    return f"hotcold-tests-{settings.RUN_ID}-{pair}"


def subprocess_env(pair: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", HOTCOLD_TEST_SUBPROCESS="1", HOTCOLD_TEST_PAIR=pair,
               PYTHONUNBUFFERED="1")
    return env


class CeleryProcess:
    """One ``celery`` process with its log file."""

    def __init__(self, argv: list[str], pair: str, log: Path, ready_marker: str) -> None:
        self.argv, self.pair, self.log = argv, pair, log
        self._file = open(log, "wb")
        self.proc = subprocess.Popen(argv, env=subprocess_env(pair), stdout=self._file, stderr=subprocess.STDOUT,
                                     cwd=settings.BASE_DIR, start_new_session=True)
        self.wait_for(ready_marker, timeout=60)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{' '.join(self.argv[2:5])} not ready ({marker!r}); log:\n{self.text()[-3000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: a running task finishes
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._file.close()


class CeleryProcesses:
    """Workers (one per pair and name, started on first use) and beats, all stopped at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: dict[tuple[str, str], CeleryProcess] = {}
        self.others: list[CeleryProcess] = []

    def worker(self, pair: str, name: str = "a", concurrency: int = 1) -> CeleryProcess:
        key = (pair, name)
        if key not in self.workers:
            node = f"{name}-{pair}-{uuid.uuid4().hex[:6]}@%h"
            argv = [CELERY, "-A", "hotcold_site", "worker", "-l", "INFO", "-P", "prefork", "-c", str(concurrency),
                    "-n", node, "-Q", queue_for(pair), "--without-gossip", "--without-mingle"]
            self.workers[key] = CeleryProcess(argv, pair, self.log_dir / f"worker-{pair}-{name}.log", " ready.")
        return self.workers[key]

    def beat(self, pair: str, max_interval: float = 1) -> CeleryProcess:
        argv = [CELERY, "-A", "hotcold_site", "beat", "-l", "DEBUG", "-S",
                "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", str(max_interval),
                "--pidfile", str(self.log_dir / f"beat-{uuid.uuid4().hex[:6]}.pid")]
        beat = CeleryProcess(argv, pair, self.log_dir / f"beat-{pair}-{len(self.others)}.log", "beat: Starting")
        self.others.append(beat)
        return beat

    def stop_all(self) -> None:
        for process in [*self.others, *self.workers.values()]:
            process.stop()


@pytest.fixture(scope="module")
def celery_processes(tmp_path_factory):
    """Real ``celery`` worker/beat subprocesses, shared by a test module."""
    if settings.REDIS_SKIP_REASON:
        pytest.skip(f"Redis unavailable: {settings.REDIS_SKIP_REASON}")
    processes = CeleryProcesses(tmp_path_factory.mktemp("celery"))
    yield processes
    processes.stop_all()
