"""Shared helpers of the benchmarks: throwaway database pairs, fast data, timing, printing.

A pair is two SQLite files or two PostgreSQL databases, migrated once into a
schema template and then cloned (file copy or ``CREATE DATABASE ... TEMPLATE``)
so that every measured method starts from identical data. Data is generated
inside the database (recursive CTE / generate_series), never through the ORM,
so that building a million orders takes seconds. Each measurement runs in a
child process configured by ``bench.settings`` through ``BENCH_*_URL``.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_DIR = Path(os.environ.get("HOTCOLD_BENCH_DIR", "/tmp/hotcold-bench"))
SPAN_DAYS = 730  # orders spread over two years: with the 90-day policy ~88% are cold
CUSTOMERS = 1000


@dataclass(frozen=True)
class Pair:
    backend: str  # "sqlite" or "postgresql"
    hot: str      # file path or database name
    cold: str

    def url(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{name}"
        return pg_server_url().rsplit("/", 1)[0] + f"/{name}"

    def env(self, **extra: str) -> dict[str, str]:
        env = os.environ.copy()
        env.update(BENCH_HOT_URL=self.url(self.hot), BENCH_COLD_URL=self.url(self.cold),
                   DJANGO_SETTINGS_MODULE="bench.settings", PYTHONPATH=str(ROOT), **extra)
        return env


# --- PostgreSQL -----------------------------------------------------------------------------

_PG_URL: str | None = None


def pg_server_url() -> str:
    """Start (or reuse) the throwaway cluster of tests/servers.py; its maintenance URL."""
    global _PG_URL
    if _PG_URL is None:
        sys.path.insert(0, str(ROOT))
        from tests.servers import ensure_postgres

        server = ensure_postgres()
        if not server.url:
            raise SystemExit(f"PostgreSQL unavailable: {server.reason}")
        _PG_URL = server.url
    return _PG_URL


def pg_connect(dbname: str = "postgres", autocommit: bool = True):
    import psycopg

    return psycopg.connect(pg_server_url().rsplit("/", 1)[0] + f"/{dbname}", autocommit=autocommit)


def pg_admin(sql: str) -> None:
    with pg_connect() as conn:
        conn.execute(sql)


# --- pairs ----------------------------------------------------------------------------------

def _sqlite_checkpoint(path: str) -> None:
    if os.path.exists(path):
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()


def drop(pair: Pair) -> None:
    for name in (pair.hot, pair.cold):
        if pair.backend == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(name + suffix).unlink(missing_ok=True)
        else:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_pair(backend: str, tag: str) -> Pair:
    if backend == "sqlite":
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        return Pair(backend, str(BENCH_DIR / f"{tag}_hot.sqlite3"), str(BENCH_DIR / f"{tag}_cold.sqlite3"))
    return Pair(backend, f"bench_{tag}_hot", f"bench_{tag}_cold")


def schema_template(backend: str) -> Pair:
    """A freshly migrated, empty pair to clone from."""
    pair = new_pair(backend, "template")
    drop(pair)
    if backend == "postgresql":
        for name in (pair.hot, pair.cold):
            pg_admin(f'CREATE DATABASE "{name}"')
    for alias in ("default", "cold"):
        django_command(pair, ["migrate", "--database", alias, "-v", "0"])
    return pair


def clone(source: Pair, tag: str) -> Pair:
    """An identical copy of ``source`` under new names."""
    target = new_pair(source.backend, tag)
    drop(target)
    for src, dst in ((source.hot, target.hot), (source.cold, target.cold)):
        if source.backend == "sqlite":
            _sqlite_checkpoint(src)
            shutil.copyfile(src, dst)
        else:
            pg_admin(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"')
    return target


def django_command(pair: Pair, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "django", *args], cwd=ROOT, env=pair.env(), check=True, **kwargs)


def run_child(pair: Pair, module: str, args: list[str]) -> dict:
    """Run ``python -m module args`` on ``pair``; its last stdout line is a JSON result."""
    done = subprocess.run([PYTHON, "-m", module, *args], cwd=ROOT, env=pair.env(), capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- data -----------------------------------------------------------------------------------

SQLITE_FILL = [
    """WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {customers})
       INSERT INTO accounts_customer (id, email, name, last_seen, created_at)
       SELECT i, 'customer' || i || '@example.com', 'Customer ' || i,
              strftime('%Y-%m-%d %H:%M:%S', 'now'), strftime('%Y-%m-%d %H:%M:%S', 'now', '-800 days') FROM seq""",
    """WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
       INSERT INTO orders_order (id, customer_id, created_at, status, total, note)
       SELECT i, 1 + i % {customers},
              strftime('%Y-%m-%d %H:%M:%S', 'now', '-{span} days', '+' || (i * {span} * 86400 / {n}) || ' seconds'),
              CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'cancelled' END,
              round((i % 50000) / 100.0 + 1, 2),
              CASE WHEN i % 10 = 0 THEN NULL ELSE 'order note ' || i END
       FROM seq""",
    """INSERT INTO orders_orderline (order_id, sku, quantity, price)
       SELECT o.id, 'SKU-' || ((o.id * 7 + k.k) % 100000), 1 + (o.id + k.k) % 5,
              round(((o.id * 13 + k.k) % 10000) / 100.0 + 0.5, 2)
       FROM orders_order o JOIN (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) k
         ON k.k <= 1 + o.id % 3
       ORDER BY o.id, k.k""",
]

PG_FILL = [
    """INSERT INTO accounts_customer (id, email, name, last_seen, created_at)
       SELECT i, 'customer' || i || '@example.com', 'Customer ' || i, now(), now() - interval '800 days'
       FROM generate_series(1, {customers}) i""",
    """INSERT INTO orders_order (id, customer_id, created_at, status, total, note)
       SELECT i, 1 + i % {customers},
              date_trunc('second', now() - interval '{span} days'"""
    """ + (i::float8 * {span} * 86400 / {n}) * interval '1 second'),
              (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4],
              round((i % 50000) / 100.0 + 1, 2),
              CASE WHEN i % 10 = 0 THEN NULL ELSE 'order note ' || i END
       FROM generate_series(1, {n}) i""",
    """INSERT INTO orders_orderline (order_id, sku, quantity, price)
       SELECT o.id, 'SKU-' || ((o.id * 7 + k) % 100000), 1 + (o.id + k) % 5,
              round(((o.id * 13 + k) % 10000) / 100.0 + 0.5, 2)
       FROM orders_order o CROSS JOIN generate_series(0, 3) k
       WHERE k <= 1 + o.id % 3
       ORDER BY o.id, k""",
    "SELECT setval(pg_get_serial_sequence('accounts_customer', 'id'), (SELECT max(id) FROM accounts_customer))",
    "SELECT setval(pg_get_serial_sequence('orders_order', 'id'), (SELECT max(id) FROM orders_order))",
    "SELECT setval(pg_get_serial_sequence('orders_orderline', 'id'), (SELECT max(id) FROM orders_orderline))",
]


def fill_orders(pair: Pair, n: int) -> dict:
    """Put ``n`` orders with 2-4 lines each (3 on average) and 1000 customers into hot."""
    params = {"n": n, "customers": CUSTOMERS, "span": SPAN_DAYS}
    if pair.backend == "sqlite":
        conn = sqlite3.connect(pair.hot)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            for sql in SQLITE_FILL:
                conn.execute(sql.format(**params))
        conn.execute("ANALYZE")
        lines = conn.execute("SELECT count(*) FROM orders_orderline").fetchone()[0]
        conn.close()
        _sqlite_checkpoint(pair.hot)
    else:
        with pg_connect(pair.hot, autocommit=False) as conn:
            for sql in PG_FILL:
                conn.execute(sql.format(**params))
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            lines = conn.execute("SELECT count(*) FROM orders_orderline").fetchone()[0]
    return {"orders": n, "lines": lines}


# --- timing and printing --------------------------------------------------------------------

@contextmanager
def timer():
    """``with timer() as t: ...``; ``t()`` is the elapsed seconds (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def rate(rows: float, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("nan")


def fmt_rate(value: float) -> str:
    return f"{value:,.0f} rows/s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
                               for i, cell in enumerate(row)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
