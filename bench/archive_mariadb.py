"""Archive throughput on MariaDB: hotcold vs a naive ORM loop vs the database's own limit vs pt-archiver.

    .venv/bin/python -m bench.archive --backend mariadb --rows 100000 --repeat 3

Hot and cold are two databases of the test server of tests/servers.py (127.0.0.1:53306), or with
``--two-servers`` hot there and cold on its second server (127.0.0.1:53307), pt-archiver's usual ground.
They are built like bench/archive.py's pairs (N orders with 2-4 lines each, ~88% older than the 90-day
policy), cloned per method so all start from identical data:

- hotcold:  ``migrate_cold --model orders.Order --no-input`` (the engine: the mysql_insert path on one
            server, mysql_bulk on two), timed in bench/archive.py's child after its start-up;
- naive:    bench/archive.py's ORM loop (time-boxed by --naive-seconds);
- limit:    ``INSERT ... SELECT`` of the cold orders and their lines + ``DELETE``, one transaction (one
            server only: no statement spans two);
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


def servers(two: bool) -> tuple[int, int]:
    """The (hot, cold) ports: the test server twice, or its two servers."""
    sys.path.insert(0, str(ROOT))
    from tests.servers import MARIADB_PORTS, ensure_mariadb

    names = ("mariadb", "mariadb2") if two else ("mariadb",)
    for name in names:
        found = ensure_mariadb(name)
        if not found.url:
            raise SystemExit(f"MariaDB unavailable: {found.reason}")
    return MARIADB_PORTS[names[0]], MARIADB_PORTS[names[-1]]


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


def env(ports: tuple[int, int], hot: str, cold: str) -> dict:
    import os

    e = os.environ.copy()
    e.update(BENCH_HOT_URL=f"mysql://root@127.0.0.1:{ports[0]}/{hot}",
             BENCH_COLD_URL=f"mysql://root@127.0.0.1:{ports[1]}/{cold}",
             DJANGO_SETTINGS_MODULE="bench.settings", PYTHONPATH=str(ROOT))
    return e


def template(ports: tuple[int, int]) -> tuple[str, str]:
    hot, cold = "bench_template_hot", "bench_template_cold"
    for port, name in zip(ports, (hot, cold)):
        execute(port, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} COLLATE utf8mb4_nopad_bin")
    for alias in ("default", "cold"):
        subprocess.run([PYTHON, "-m", "django", "migrate", "--database", alias, "-v", "0"], cwd=ROOT,
                       env=env(ports, hot, cold), check=True)
    return hot, cold


def clone(ports: tuple[int, int], source: tuple[str, str], tag: str) -> tuple[str, str]:
    """Each database of ``source`` copied on its own server."""
    target = f"bench_{tag}_hot", f"bench_{tag}_cold"
    for port, src, dst in zip(ports, source, target):
        conn = connect(port)
        with conn.cursor() as cur:
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


def drop(ports: tuple[int, int], pair: tuple[str, str]) -> None:
    for port, name in zip(ports, pair):
        execute(port, f"DROP DATABASE IF EXISTS {name}")


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


def counts(ports: tuple[int, int], pair: tuple[str, str]) -> dict:
    out = {}
    for port, side, db in zip(ports, ("hot", "cold"), pair):
        conn = connect(port)
        with conn.cursor() as cur:
            for t in ("orders_order", "orders_orderline"):
                cur.execute(f"SELECT COUNT(*) FROM {db}.{t}")
                out[f"{t}_{side}"] = cur.fetchone()[0]
        conn.close()
    return out


def cutoff() -> datetime:
    return (datetime.now(UTC) - timedelta(days=90)).replace(tzinfo=None)


def measure(ports: tuple[int, int], pair: tuple[str, str], method: str, naive_seconds: float) -> dict:
    hot, cold = pair
    if method in ("hotcold", "naive"):  # bench/archive.py's child times the move, not Python's start-up
        done = subprocess.run([PYTHON, "-m", "bench.archive", "--measure", method, "--naive-seconds",
                               str(naive_seconds)], cwd=ROOT, env=env(ports, hot, cold), check=True,
                              capture_output=True, text=True)
        import json

        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"seconds": result["seconds"], "orders": result["orders"], "lines": result["lines"],
                "partial": result.get("partial")}
    before = counts(ports, pair)
    with timer() as elapsed:
        if method == "limit":
            conn = connect(ports[0])  # one server: main() refuses the limit on two
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
                subprocess.run(["pt-archiver", "--source", f"h=127.0.0.1,P={ports[0]},u=root,D={hot},t={t},L=1",
                                "--dest", f"h=127.0.0.1,P={ports[1]},u=root,D={cold},t={t},L=1", "--where", where,
                                "--no-check-charset", "--no-safe-auto-increment", *opts], check=True,
                               capture_output=True, text=True)
    after = counts(ports, pair)
    return {"seconds": elapsed(), "orders": before["orders_order_hot"] - after["orders_order_hot"],
            "lines": before["orders_orderline_hot"] - after["orders_orderline_hot"],
            "partial": method == "pt" and after["orders_order_hot"] > 0}


def main(sizes: list[int], methods: list[str], naive_seconds: float, repeat: int, two_servers: bool = False) -> None:
    methods = [m for m in METHODS if m in methods] if methods else list(METHODS)
    if two_servers and "limit" in methods:
        if len(methods) == 1:
            raise SystemExit("--method limit needs one server: no statement spans two (drop --two-servers)")
        methods.remove("limit")
        print("[mariadb] two servers: no limit (no statement spans two servers)")
    ports = servers(two_servers)
    where = f"hot on :{ports[0]}, cold on :{ports[1]}" if two_servers else f"two databases of :{ports[0]}"
    print(f"[mariadb] {where}, methods {methods}", flush=True)
    results: dict = {}
    base = template(ports)
    for n in sizes:
        with timer() as build:
            data = clone(ports, base, f"data_{n}")
            lines = fill(ports[0], data[0], n)
        print(f"[mariadb] built {n:,} orders + {lines:,} lines in {build():.1f}s", flush=True)
        for round_ in range(1, repeat + 1):
            for method in methods:
                pair = clone(ports, data, method.replace("-", "_"))
                try:
                    r = measure(ports, pair, method, naive_seconds)
                finally:
                    drop(ports, pair)
                r["rate"] = rate(r["orders"], r["seconds"])
                results.setdefault((n, method), []).append(r)
                print(f"[mariadb] N={n:,} {method:8s} moved {r['orders']:,} orders + {r['lines']:,} lines in "
                      f"{r['seconds']:.2f}s: {fmt_rate(r['rate'])}{' (time-boxed subset)' if r['partial'] else ''}"
                      f" run {round_}/{repeat}", flush=True)
        drop(ports, data)
    drop(ports, base)
    medians = {k: median([r["rate"] for r in v]) for k, v in results.items()}
    print(f"\n== mariadb, {where}: orders moved per second (lines move with them), the median of {repeat} runs each ==")
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
