"""Archive throughput: hotcold migrate_cold vs a naive ORM loop vs the database's own limit.

    .venv/bin/python -m bench.archive --rows 100000 --rows 1000000 --backend both

For each backend and N it builds N orders with 2-4 lines each (3 on average,
dates over two years so ~88% are older than the 90-day policy), clones that
pair once per method so all start from the same data, and measures in a
fresh child process:

- hotcold: ``migrate_cold --model orders.Order --no-input`` (the real engine), plus
           ``--move-args`` (say ``--batch-size 30000``) when given;
- naive:   the obvious hand-written loop, per batch of 1000: read orders and
           lines from hot, bulk_create them in cold, delete them from hot
           (stops after --naive-seconds; its rate is measured over what it moved);
- limit:   what the database does in one go (SQLite: ATTACH + INSERT ... SELECT
           + DELETE in one transaction; PostgreSQL: COPY TO STDOUT piped into
           COPY FROM STDIN between the two databases + DELETE).

Rates count orders (the policy's rows) per second; "all rows/s" adds lines.
It prints figures and ratios; it never asserts anything about time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from bench.common import (
    clone,
    drop,
    fill_orders,
    fmt_rate,
    median,
    rate,
    ratio,
    run_child,
    schema_template,
    table,
    timer,
)

METHODS = ("hotcold", "naive", "limit")


# --- measurements (run in a child process configured by bench.settings) ----------------------

def _setup():
    import django

    django.setup()
    from django.utils import timezone

    from orders.models import Order
    from tiering.registry import registry

    tiered = registry.get(Order)
    return tiered, timezone.now()


def _tier_counts() -> dict:
    from django.db.models import QuerySet

    from orders.models import Order, OrderLine

    return {f"{model.__name__}_{alias}": QuerySet(model).using(alias).count()
            for model in (Order, OrderLine) for alias in ("default", "cold")}


def measure_hotcold(args) -> dict:
    from django.core.management import call_command, load_command_class

    _setup()
    from django.utils.module_loading import import_string

    from tiering.move import paths

    # start-up, not archiving: import (and compile) the command and the copy paths untimed, as the other
    # methods import theirs before their timers
    load_command_class("tiering", "migrate_cold")
    for path in paths.DEFAULT_PATHS:
        import_string(path)
    before = _tier_counts()
    with timer() as elapsed:
        call_command("migrate_cold", "--model", "orders.Order", "--no-input", *args.move_args.split(), verbosity=0)
    after = _tier_counts()
    return {"seconds": elapsed(), "orders": before["Order_default"] - after["Order_default"],
            "lines": before["OrderLine_default"] - after["OrderLine_default"], "counts": after,
            "steps": _ledger_steps()}


def _ledger_steps() -> dict:
    """Where the last run's time went, from its ledger: batches and seconds per step."""
    from django.db.models import Count, Sum

    from tiering.models import MigrationRun

    run = MigrationRun.objects.using("default").latest("pk")
    sums = run.batch_set.aggregate(batches=Count("pk"), copy=Sum("copy_seconds"), verify=Sum("verify_seconds"),
                                   delete=Sum("delete_seconds"))
    return {key: value or 0 for key, value in sums.items()}


def measure_naive(args) -> dict:
    tiered, now = _setup()
    from django.db import transaction
    from django.db.models import QuerySet

    from orders.models import Order, OrderLine

    cold_q = tiered.policy.cold_q(now)
    moved_orders = moved_lines = 0
    deadline = time.perf_counter() + args.naive_seconds
    with timer() as elapsed:
        while time.perf_counter() < deadline:
            orders = list(QuerySet(Order).using("default").filter(cold_q).order_by("pk")[:1000])
            if not orders:
                break
            pks = [order.pk for order in orders]
            lines = list(QuerySet(OrderLine).using("default").filter(order_id__in=pks))
            with transaction.atomic(using="cold"):
                QuerySet(Order).using("cold").bulk_create(orders)
                QuerySet(OrderLine).using("cold").bulk_create(lines)
            with transaction.atomic(using="default"):
                QuerySet(Order).using("default").filter(pk__in=pks).delete()  # cascades to the lines
            moved_orders += len(orders)
            moved_lines += len(lines)
    return {"seconds": elapsed(), "orders": moved_orders, "lines": moved_lines, "counts": _tier_counts(),
            "partial": time.perf_counter() >= deadline}


def measure_limit(args) -> dict:
    tiered, now = _setup()
    from django.db import connections

    cutoff = tiered.policy.cutoff(now)
    hot = connections["default"]
    if hot.vendor == "sqlite":
        import sqlite3

        hot_path = hot.settings_dict["NAME"]
        cold_path = connections["cold"].settings_dict["NAME"]
        conn = sqlite3.connect(hot_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        cutoff_text = cutoff.astimezone(__import__("datetime").timezone.utc).replace(tzinfo=None).isoformat(" ")
        with timer() as elapsed:
            conn.execute("ATTACH DATABASE ? AS cold", (cold_path,))
            conn.execute("PRAGMA cold.synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            orders = conn.execute("INSERT INTO cold.orders_order SELECT * FROM main.orders_order "
                                  "WHERE created_at < ?", (cutoff_text,)).rowcount
            lines = conn.execute("INSERT INTO cold.orders_orderline SELECT l.* FROM main.orders_orderline l "
                                 "JOIN main.orders_order o ON o.id = l.order_id WHERE o.created_at < ?",
                                 (cutoff_text,)).rowcount
            conn.execute("DELETE FROM main.orders_orderline WHERE order_id IN "
                         "(SELECT id FROM main.orders_order WHERE created_at < ?)", (cutoff_text,))
            conn.execute("DELETE FROM main.orders_order WHERE created_at < ?", (cutoff_text,))
            conn.execute("COMMIT")
        conn.close()
    else:
        import psycopg

        def url(alias):
            s = connections[alias].settings_dict
            return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"

        with psycopg.connect(url("default")) as src, psycopg.connect(url("cold")) as dst, timer() as elapsed:
            counts = {}
            for table_name, select in (
                ("orders_order", "SELECT * FROM orders_order WHERE created_at < %s"),
                ("orders_orderline", "SELECT l.* FROM orders_orderline l JOIN orders_order o "
                                     "ON o.id = l.order_id WHERE o.created_at < %s"),
            ):
                with src.cursor().copy(f"COPY ({select}) TO STDOUT", (cutoff,)) as out, \
                        dst.cursor().copy(f"COPY {table_name} FROM STDIN") as into:
                    for chunk in out:
                        into.write(chunk)
                counts[table_name] = dst.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0]
            src.execute("DELETE FROM orders_orderline WHERE order_id IN "
                        "(SELECT id FROM orders_order WHERE created_at < %s)", (cutoff,))
            src.execute("DELETE FROM orders_order WHERE created_at < %s", (cutoff,))
            dst.commit()
            src.commit()
        orders, lines = counts["orders_order"], counts["orders_orderline"]
    return {"seconds": elapsed(), "orders": orders, "lines": lines, "counts": _tier_counts()}


# --- orchestration ---------------------------------------------------------------------------

def bench(backend: str, sizes: list[int], methods: list[str], naive_seconds: float, repeat: int = 1,
          move_args: str = "") -> dict:
    """Measure every method on every size ``repeat`` times (rounds interleave the methods, so a slow spell
    of the shared machine hits them alike); ``results[(n, method)]`` is the list of runs."""
    results: dict = {}
    template = schema_template(backend)
    for n in sizes:
        with timer() as build:
            data = clone(template, f"data_{n}")
            built = fill_orders(data, n)
        print(f"[{backend}] built {built['orders']:,} orders + {built['lines']:,} lines in {build():.1f}s",
              flush=True)
        for round_ in range(1, repeat + 1):
            for method in methods:
                pair = clone(data, method)
                try:
                    result = run_child(pair, "bench.archive", ["--measure", method, "--naive-seconds",
                                                                 str(naive_seconds), f"--move-args={move_args}"])
                finally:
                    drop(pair)
                result["rate"] = rate(result["orders"], result["seconds"])
                result["all_rate"] = rate(result["orders"] + result["lines"], result["seconds"])
                results.setdefault((n, method), []).append(result)
                partial = " (time-boxed subset)" if result.get("partial") else ""
                run = f" run {round_}/{repeat}" if repeat > 1 else ""
                print(f"[{backend}] N={n:,} {method:8s} moved {result['orders']:,} orders + {result['lines']:,} "
                      f"lines in {result['seconds']:.2f}s: {fmt_rate(result['rate'])} "
                      f"({fmt_rate(result['all_rate'])} incl. lines){partial}{run}", flush=True)
                if "steps" in result:
                    s = result["steps"]
                    print(f"[{backend}] N={n:,} {method:8s} {s['batches']} batches: copy {s['copy']:.2f}s, "
                          f"verify {s['verify']:.2f}s, delete {s['delete']:.2f}s (from the ledger)", flush=True)
        drop(data)
    drop(template)
    return results


def report(backend: str, sizes: list[int], methods: list[str], results: dict) -> None:
    repeat = len(results[(sizes[0], methods[0])])
    medians = {key: median([run["rate"] for run in runs]) for key, runs in results.items()}
    each = f", the median of {repeat} runs each" if repeat > 1 else ""
    print(f"\n== {backend}: orders moved per second (lines move with them){each} ==")
    rows = [["N", *methods, "hotcold/naive", "hotcold/limit"]]
    for n in sizes:
        r = {m: medians[(n, m)] for m in methods}
        rows.append([f"{n:,}", *(f"{r[m]:,.0f}" for m in methods),
                     ratio(r["hotcold"], r["naive"]) if "naive" in r and "hotcold" in r else "-",
                     ratio(r["hotcold"], r["limit"]) if "limit" in r and "hotcold" in r else "-"])
    print(table(rows))
    small, large = min(sizes), max(sizes)
    if large != small:
        for m in methods:
            print(f"{m}: rows/s at N={large:,} is {ratio(medians[(large, m)], medians[(small, m)])} "
                  f"of rows/s at N={small:,}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="Orders to build (repeatable); default 100000.")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both", "mariadb"], default="both",
                        help="both: sqlite and postgresql; mariadb: bench/archive_mariadb.py (with pt-archiver)")
    parser.add_argument("--method", action="append", choices=METHODS + ("pt", "pt-bulk"),
                        help="Methods to run; default all (pt, pt-bulk: pt-archiver, --backend mariadb only).")
    parser.add_argument("--naive-seconds", type=float, default=60.0,
                        help="Time box of the naive loop (it is slow; its rate is measured on what it moved).")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="Measure each method N times on fresh copies of the same data and report the medians "
                             "(a shared machine's noise moves single runs by 10%% and more).")
    parser.add_argument("--workers", type=int, action="append", metavar="N",
                        help="Scale-out mode (repeatable): archive with N Celery worker processes on PostgreSQL "
                             "and print the speedup over one worker (runs bench/archive_workers.py).")
    parser.add_argument("--move-args", default="", metavar="'--batch-size N ...'",
                        help="Extra migrate_cold options for the hotcold method (default: none, the defaults).")
    parser.add_argument("--two-servers", action="store_true",
                        help="--backend mariadb: cold on the test setup's second MariaDB server (the mysql_bulk path; "
                             "no limit method: no statement spans two servers).")
    parser.add_argument("--measure", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.workers:
        from bench import archive_workers

        rows = max(args.rows or [200_000])
        archive_workers.main(["--rows", str(rows), *(f"--workers={n}" for n in args.workers)])
        return
    if args.measure:
        result = {"hotcold": measure_hotcold, "naive": measure_naive, "limit": measure_limit}[args.measure](args)
        print(json.dumps(result))
        return
    if args.two_servers and args.backend != "mariadb":
        parser.error("--two-servers is for --backend mariadb")
    sizes = sorted(set(args.rows or [100_000]))
    if args.backend == "mariadb":
        from bench import archive_mariadb

        archive_mariadb.main(sizes, args.method or [], args.naive_seconds, args.repeat, args.two_servers)
        return
    methods = [m for m in METHODS if m in (args.method or METHODS)]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"archive bench: sizes {sizes}, backends {backends}, methods {methods}, "
          f"migrate_cold options {args.move_args or '(defaults)'}, python {sys.version.split()[0]}")
    for backend in backends:
        results = bench(backend, sizes, methods, args.naive_seconds, args.repeat, args.move_args)
        report(backend, sizes, methods, results)


if __name__ == "__main__":
    main()
