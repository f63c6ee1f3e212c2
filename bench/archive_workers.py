"""Scale-out of archiving over Celery workers: the speedup of N worker processes over one.

    .venv/bin/python -m bench.archive_workers --rows 200000 --workers 2 --workers 4

On PostgreSQL (the pair of bench/common.py, data built in the database) it
measures, each on a fresh clone of the same data and with real ``celery -A
hotcold_site worker`` processes on a real Redis (a Redis database of its own):

- one worker: ``tiering.archive_model`` on a worker with one process;
- N workers:  ``tiering.archive_model_parallel(workers=N)`` on a worker with N
              processes: one ledger run, N key ranges moved at once.

Time is wall time from sending the task to its (chord) result, worker start-up
excluded; the ledger's run duration is printed too. It prints figures and the
speedup; it never asserts anything about time. Every process shares the
machine's cores with PostgreSQL, so the speedup is bounded by them.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BENCH_DIR,
    ROOT,
    Pair,
    clone,
    drop,
    fill_orders,
    fmt_rate,
    pg_connect,
    rate,
    ratio,
    schema_template,
    table,
    timer,
)

CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_DB = int(os.environ.get("HOTCOLD_BENCH_REDIS_DB", 7))


def redis_url() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.servers import ensure_redis

    server = ensure_redis()
    if not server.url:
        raise SystemExit(f"Redis unavailable: {server.reason}")
    return server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


def start_worker(pair: Pair, url: str, processes: int, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    proc = subprocess.Popen(
        [CELERY, "-A", "hotcold_site", "worker", "-l", "INFO", "-P", "prefork", "-c", str(processes),
         "-n", f"bench-{os.getpid()}-{processes}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=pair.env(REDIS_URL=url), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def ledger(pair: Pair, run_id: int) -> dict:
    with pg_connect(pair.hot) as conn:
        state, rows, child_rows, batches, seconds = conn.execute(
            "SELECT state, rows, child_rows, batches, extract(epoch FROM finished_at - started_at) "
            "FROM tiering_migrationrun WHERE id = %s", [run_id]).fetchone()
        left = conn.execute("SELECT count(*) FROM orders_order WHERE created_at < now() - interval '90 days'"
                            ).fetchone()[0]
    return {"state": state, "rows": rows, "child_rows": child_rows, "batches": batches,
            "ledger_seconds": float(seconds), "eligible_left_hot": left}


def measure(data: Pair, url: str, processes: int, batch_size: int | None) -> dict:
    """Archive a clone of ``data`` with ``processes`` worker processes; wall time and ledger figures."""
    import redis
    from celery import Celery

    redis.Redis.from_url(url).flushdb()  # this bench's own Redis database: no stale tasks or results
    app = Celery("bench", broker=url, backend=url)
    pair = clone(data, f"workers_{processes}")
    worker = start_worker(pair, url, processes, BENCH_DIR / f"worker-{processes}.log")
    try:
        options = {"batch_size": batch_size} if batch_size else {}
        with timer() as elapsed:
            if processes == 1:
                result = app.send_task("tiering.archive_model", args=["orders.Order"], kwargs=options).get(timeout=3600)
            else:
                started = app.send_task("tiering.archive_model_parallel", args=["orders.Order"],
                                        kwargs={"workers": processes, **options}).get(timeout=600)
                result = app.AsyncResult(started["callback"]).get(timeout=3600)
        figures = {"seconds": elapsed(), "run": result["run"], **ledger(pair, result["run"])}
    finally:
        stop_worker(worker)
        drop(pair)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Orders to build (2-4 lines each).")
    parser.add_argument("--workers", type=int, action="append",
                        help="Worker processes of the parallel mode (repeatable); default 2.")
    parser.add_argument("--batch-size", type=int, help="Batch size cap (default TIERING BATCH_SIZE).")
    args = parser.parse_args(argv)
    counts = sorted({n for n in (args.workers or [2]) if n > 1})
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url = redis_url()
    print(f"archive workers bench: postgresql, {args.rows:,} orders, 1 vs {counts} worker processes, "
          f"{os.cpu_count()} CPUs, redis {url}", flush=True)
    template = schema_template("postgresql")
    data = clone(template, f"workers_data_{args.rows}")
    try:
        with timer() as build:
            built = fill_orders(data, args.rows)
        print(f"built {built['orders']:,} orders + {built['lines']:,} lines in {build():.1f}s", flush=True)
        results = {}
        for processes in [1, *counts]:
            results[processes] = r = measure(data, url, processes, args.batch_size)
            print(f"{processes} worker process(es): run {r['run']} {r['state']}, {r['rows']:,} orders + "
                  f"{r['child_rows']:,} lines in {r['batches']} batches, {r['seconds']:.2f}s wall "
                  f"({r['ledger_seconds']:.2f}s in the ledger): {fmt_rate(rate(r['rows'], r['seconds']))}; "
                  f"eligible left in hot: {r['eligible_left_hot']}", flush=True)
    finally:
        drop(data)
        drop(template)
    base = results[1]
    rows = [["worker processes", "seconds", "orders/s", "speedup"]]
    for processes, r in results.items():
        rows.append([str(processes), f"{r['seconds']:.2f}", f"{rate(r['rows'], r['seconds']):,.0f}",
                     ratio(base["seconds"], r["seconds"])])
    print("\n== postgresql: archive orders.Order, one worker vs key ranges over N workers ==")
    print(table(rows))


if __name__ == "__main__":
    main()
