"""Archive throughput on MariaDB: hotcold vs a naive ORM loop vs the database's own limit vs pt-archiver.

    .venv/bin/python -m bench.archive --backend mariadb --rows 100000 --repeat 3

Hot and cold are two databases of the test server of tests/servers.py (127.0.0.1:53306), built like
bench/archive.py's pairs (N orders with 2-4 lines each, ~88% older than the 90-day policy), cloned per
method so all start from identical data:

- hotcold:  ``migrate_cold --model orders.Order --no-input`` (the engine; on one server the mysql_insert path),
            timed in bench/archive.py's child after its start-up;
- naive:    bench/archive.py's ORM loop (time-boxed by --naive-seconds);
- limit:    ``INSERT ... SELECT`` of the cold orders and their lines + ``DELETE``, one transaction;
- pt:       pt-archiver with its default settings (a row per statement and per commit), time-boxed by
            --naive-seconds through its own ``--run-time``;
- pt-bulk:  pt-archiver at its fastest: ``--bulk-insert --bulk-delete --limit 1000 --txn-size 1000``.

pt-archiver moves one table per run and never a row's children, so it is run twice, lines first (those of
the cold orders, ``--where order_id IN (SELECT ...)``), then orders, and the time is the sum; it verifies
nothing. Rates count orders per second. It prints figures and ratios; it never asserts anything.
"""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from bench.common import PYTHON, ROOT, SPAN_DAYS, fmt_rate, median, rate, ratio, table, timer

METHODS = ("hotcold", "naive", "limit", "pt", "pt-bulk")
CUSTOMERS = 1000


def server():
    sys.path.insert(0, str(ROOT))
    from tests.servers import MARIADB_PORTS, ensure_mariadb

    found = ensure_mariadb()
    if not found.url:
        raise SystemExit(f"MariaDB unavailable: {found.reason}")
    return MARIADB_PORTS["mariadb"]


def connect(port: int, db: str | None = None):
    import MySQLdb

    return MySQLdb.connect(host="127.0.0.1", port=port, user="root", database=db or "mysql", charset="utf8mb4",
                           autocommit=True)


def execute(port: int, *statements: str, db: str | None = None) -> None:
    conn = connect(port, db)
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


def env(port: int, hot: str, cold: str) -> dict:
    import os

    e = os.environ.copy()
    e.update(BENCH_HOT_URL=f"mysql://root@127.0.0.1:{port}/{hot}", BENCH_COLD_URL=f"mysql://root@127.0.0.1:{port}/{cold}",
             DJANGO_SETTINGS_MODULE="bench.settings", PYTHONPATH=str(ROOT))
    return e


def template(port: int) -> tuple[str, str]:
    hot, cold = "bench_template_hot", "bench_template_cold"
    for name in (hot, cold):
        execute(port, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} COLLATE utf8mb4_nopad_bin")
    for alias in ("default", "cold"):
        subprocess.run([PYTHON, "-m", "django", "migrate", "--database", alias, "-v", "0"], cwd=ROOT,
                       env=env(port, hot, cold), check=True)
    return hot, cold


def clone(port: int, source: tuple[str, str], tag: str) -> tuple[str, str]:
    target = f"bench_{tag}_hot", f"bench_{tag}_cold"
    conn = connect(port)
    with conn.cursor() as cur:
        for src, dst in zip(source, target):
            cur.execute(f"DROP DATABASE IF EXISTS {dst}")
            cur.execute(f"CREATE DATABASE {dst} COLLATE utf8mb4_nopad_bin")
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [src])
            names = [row[0] for row in cur.fetchall()]
            cur.execute("SET foreign_key_checks = 0")
            for name in names:
                cur.execute(f"CREATE TABLE {dst}.`{name}` LIKE {src}.`{name}`")
                cur.execute(f"INSERT INTO {dst}.`{name}` SELECT * FROM {src}.`{name}`")
            cur.execute("SET foreign_key_checks = 1")
            # statistics as a long-lived table has them (a fresh copy's are computed in the background)
            cur.execute(f"ANALYZE TABLE {dst}.orders_order, {dst}.orders_orderline")
            cur.fetchall()
    conn.close()
    return target


def drop(port: int, pair: tuple[str, str]) -> None:
    execute(port, *(f"DROP DATABASE IF EXISTS {name}" for name in pair))


def fill(port: int, db: str, n: int) -> int:
    """N orders over two years with 2-4 lines each, generated in the server (MariaDB's seq_ tables)."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start = now - timedelta(days=SPAN_DAYS)
    conn = connect(port, db)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO accounts_customer (id, email, name, last_seen, created_at) SELECT seq, "
                    f"CONCAT('customer', seq, '@example.com'), CONCAT('Customer ', seq), %s, %s "
                    f"FROM seq_1_to_{CUSTOMERS}", [now, now - timedelta(days=800)])
        cur.execute(f"INSERT INTO orders_order (id, customer_id, created_at, status, total, note) "
                    f"SELECT seq, 1 + MOD(seq, {CUSTOMERS}), "
                    f"%s + INTERVAL (seq * {SPAN_DAYS} * 86400 DIV {n}) SECOND, "
                    "ELT(1 + MOD(seq, 4), 'new', 'paid', 'shipped', 'cancelled'), "
                    "ROUND(MOD(seq, 50000) / 100.0 + 1, 2), "
                    f"IF(MOD(seq, 10) = 0, NULL, CONCAT('order note ', seq)) FROM seq_1_to_{n}", [start])
        cur.execute("INSERT INTO orders_orderline (order_id, sku, quantity, price) "
                    "SELECT o.id, CONCAT('SKU-', (o.id * 7 + k.seq) % 100000), 1 + (o.id + k.seq) % 5, "
                    "ROUND(((o.id * 13 + k.seq) % 10000) / 100.0 + 0.5, 2) FROM orders_order o "
                    "JOIN seq_0_to_3 k ON k.seq <= 1 + o.id % 3 ORDER BY o.id, k.seq")
        cur.execute("ANALYZE TABLE orders_order, orders_orderline")
        cur.fetchall()
        cur.execute("SELECT COUNT(*) FROM orders_orderline")
        lines = cur.fetchone()[0]
    conn.close()
    return lines


def counts(port: int, pair: tuple[str, str]) -> dict:
    conn = connect(port)
    out = {}
    with conn.cursor() as cur:
        for side, db in zip(("hot", "cold"), pair):
            for t in ("orders_order", "orders_orderline"):
                cur.execute(f"SELECT COUNT(*) FROM {db}.{t}")
                out[f"{t}_{side}"] = cur.fetchone()[0]
    conn.close()
    return out


def cutoff() -> datetime:
    return (datetime.now(UTC) - timedelta(days=90)).replace(tzinfo=None)


def measure(port: int, pair: tuple[str, str], method: str, naive_seconds: float) -> dict:
    hot, cold = pair
    if method in ("hotcold", "naive"):  # bench/archive.py's child times the move, not Python's start-up
        done = subprocess.run([PYTHON, "-m", "bench.archive", "--measure", method, "--naive-seconds",
                               str(naive_seconds)], cwd=ROOT, env=env(port, hot, cold), check=True,
                              capture_output=True, text=True)
        import json

        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"seconds": result["seconds"], "orders": result["orders"], "lines": result["lines"],
                "partial": result.get("partial")}
    before = counts(port, pair)
    with timer() as elapsed:
        if method == "limit":
            conn = connect(port)
            conn.autocommit(False)
            with conn.cursor() as cur:
                c = cutoff()
                cur.execute(f"INSERT INTO {cold}.orders_order SELECT * FROM {hot}.orders_order WHERE created_at < %s",
                            [c])
                cur.execute(f"INSERT INTO {cold}.orders_orderline SELECT l.* FROM {hot}.orders_orderline l JOIN "
                            f"{hot}.orders_order o ON o.id = l.order_id WHERE o.created_at < %s", [c])
                cur.execute(f"DELETE l FROM {hot}.orders_orderline l JOIN {hot}.orders_order o ON o.id = l.order_id "
                            "WHERE o.created_at < %s", [c])
                cur.execute(f"DELETE FROM {hot}.orders_order WHERE created_at < %s", [c])
            conn.commit()
            conn.close()
        else:
            c = cutoff().isoformat(sep=" ")
            opts = (["--bulk-insert", "--bulk-delete", "--limit", "1000", "--txn-size", "1000"] if method == "pt-bulk"
                    else ["--run-time", f"{max(1, int(naive_seconds / 2))}s"])
            lines_where = f"order_id IN (SELECT id FROM orders_order WHERE created_at < '{c}')"
            for t, where in (("orders_orderline", lines_where), ("orders_order", f"created_at < '{c}'")):
                subprocess.run(["pt-archiver", "--source", f"h=127.0.0.1,P={port},u=root,D={hot},t={t},L=1",
                                "--dest", f"h=127.0.0.1,P={port},u=root,D={cold},t={t},L=1", "--where", where,
                                "--no-check-charset", "--no-safe-auto-increment", *opts], check=True,
                               capture_output=True, text=True)
    after = counts(port, pair)
    return {"seconds": elapsed(), "orders": before["orders_order_hot"] - after["orders_order_hot"],
            "lines": before["orders_orderline_hot"] - after["orders_orderline_hot"],
            "partial": method == "pt" and after["orders_order_hot"] > 0}


def main(sizes: list[int], methods: list[str], naive_seconds: float, repeat: int) -> None:
    port = server()
    methods = [m for m in METHODS if m in methods] if methods else list(METHODS)
    results: dict = {}
    base = template(port)
    for n in sizes:
        with timer() as build:
            data = clone(port, base, f"data_{n}")
            lines = fill(port, data[0], n)
        print(f"[mariadb] built {n:,} orders + {lines:,} lines in {build():.1f}s", flush=True)
        for round_ in range(1, repeat + 1):
            for method in methods:
                pair = clone(port, data, method.replace("-", "_"))
                try:
                    r = measure(port, pair, method, naive_seconds)
                finally:
                    drop(port, pair)
                r["rate"] = rate(r["orders"], r["seconds"])
                results.setdefault((n, method), []).append(r)
                print(f"[mariadb] N={n:,} {method:8s} moved {r['orders']:,} orders + {r['lines']:,} lines in "
                      f"{r['seconds']:.2f}s: {fmt_rate(r['rate'])}{' (time-boxed subset)' if r['partial'] else ''}"
                      f" run {round_}/{repeat}", flush=True)
        drop(port, data)
    drop(port, base)
    medians = {k: median([r["rate"] for r in v]) for k, v in results.items()}
    print(f"\n== mariadb: orders moved per second (lines move with them), the median of {repeat} runs each ==")
    rows = [["N", *methods, "hotcold/pt-bulk", "hotcold/limit"]]
    for n in sizes:
        m = {k: medians[(n, k)] for k in methods}
        rows.append([f"{n:,}", *(f"{m[k]:,.0f}" for k in methods),
                     ratio(m["hotcold"], m["pt-bulk"]) if {"hotcold", "pt-bulk"} <= m.keys() else "-",
                     ratio(m["hotcold"], m["limit"]) if {"hotcold", "limit"} <= m.keys() else "-"])
    print(table(rows))
    if len(sizes) > 1 and "hotcold" in methods:
        large, small = medians[(max(sizes), "hotcold")], medians[(min(sizes), "hotcold")]
        print(f"hotcold: rows/s at N={max(sizes):,} is {ratio(large, small)} of rows/s at N={min(sizes):,}")
