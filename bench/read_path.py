"""Tiered reads against a plain single-database ORM query, measured in the same run.

    .venv/bin/python -m bench.read_path --rows 1000000 --backend both
    .venv/bin/python -m bench.read_path --rows 100000          # quick run

For each backend it builds N orders over two years in one database ("all",
the baseline: a plain Django QuerySet on it), then a tiered pair from the same
data split by date as an archive run would leave it (newer than 90 days hot,
~12%; the rest cold, ~88%). A child process then times, interleaving tiered
and baseline calls (median of rounds):

- hot-hit get(pk)             target <= 1.10x
- cold-fallback get(pk)       target <= 2.2x
- first page of 50, -created_at   target <= 1.5x
- page of 50 at offset 10,000     target <= 3x
- peak memory (tracemalloc) of iterating every row with .iterator(), at a
  quarter of the rows and at all of them (should stay flat as rows grow).

It prints figures and ratios; it never asserts anything.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time

from bench.common import Pair, clone, drop, fill_orders, new_pair, pg_admin, pg_connect, ratio, schema_template, table

TARGETS = {"get_hot": 1.10, "get_cold": 2.2, "page_first": 1.5, "page_10k": 3.0}


# --- child: the measurements -----------------------------------------------------------------

def _rounds(tiered, plain, rounds: int, calls: int) -> tuple[float, float]:
    """Median per-call seconds of two callables, interleaved round by round."""
    t_times, p_times = [], []
    for r in range(rounds):
        order = [(tiered, t_times), (plain, p_times)]
        if r % 2:
            order.reverse()
        for fn, sink in order:
            start = time.perf_counter()
            for i in range(calls):
                fn(i)
            sink.append((time.perf_counter() - start) / calls)
    return statistics.median(t_times), statistics.median(p_times)


def _peak(make) -> tuple[int, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        n = sum(1 for _ in make())
        return n, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(args) -> dict:
    import django

    django.setup()
    from django.db.models import QuerySet

    from orders.models import Order

    plain = QuerySet(Order).using("all")
    rng = random.Random(1)
    hot_pks = list(Order.objects.hot().values_list("pk", flat=True))
    cold_pks = list(Order.objects.cold().order_by("?").values_list("pk", flat=True)[:5000])
    hot_sample = [rng.choice(hot_pks) for _ in range(2000)]
    cold_sample = [rng.choice(cold_pks) for _ in range(2000)]
    out: dict = {"hot": len(hot_pks), "cold": Order.objects.cold().count()}

    def get_case(sample):
        return (lambda i: Order.objects.get(pk=sample[i]), lambda i: plain.get(pk=sample[i]))

    cases = {
        "get_hot": (*get_case(hot_sample), 2000),
        "get_cold": (*get_case(cold_sample), 2000),
        "page_first": (lambda i: list(Order.objects.order_by("-created_at")[:50]),
                       lambda i: list(plain.order_by("-created_at")[:50]), 200),
        "page_10k": (lambda i: list(Order.objects.order_by("-created_at")[10_000:10_050]),
                     lambda i: list(plain.order_by("-created_at")[10_000:10_050]), 50),
    }
    for name, (tiered, base, calls) in cases.items():
        tiered(0), base(0)  # warm up
        out[name] = _rounds(tiered, base, args.rounds, calls)

    total = out["hot"] + out["cold"]
    quarter = total // 4
    for label, cut in (("mem_quarter", quarter), ("mem_all", None)):
        def tiered_rows(cut=cut):
            qs = Order.objects.order_by("-created_at")
            return (qs.filter(status="new") if cut else qs).iterator(chunk_size=2000)

        def plain_rows(cut=cut):
            qs = plain.order_by("-created_at")
            return (qs.filter(status="new") if cut else qs).iterator(chunk_size=2000)

        out[label] = {"tiered": _peak(tiered_rows), "plain": _peak(plain_rows)}
    return out


# --- parent: data and report -------------------------------------------------------------------

def _split(backend: str, full: Pair, pair: Pair) -> None:
    """Make ``pair`` hot = rows newer than 90 days, cold = the rest, both copied from ``full``."""
    drop(pair)
    if backend == "sqlite":
        shutil.copyfile(full.hot, pair.hot)
        shutil.copyfile(full.hot, pair.cold)
        import sqlite3

        cut = "strftime('%Y-%m-%d %H:%M:%S', 'now', '-90 days')"
        for path, op in ((pair.hot, "<"), (pair.cold, ">=")):
            conn = sqlite3.connect(path)
            with conn:
                conn.execute(f"DELETE FROM orders_orderline WHERE order_id IN "
                             f"(SELECT id FROM orders_order WHERE created_at {op} {cut})")
                conn.execute(f"DELETE FROM orders_order WHERE created_at {op} {cut}")
                if path == pair.cold:
                    conn.execute("DELETE FROM accounts_customer")  # customers stay hot here
            conn.execute("VACUUM")
            conn.execute("ANALYZE")
            conn.close()
    else:
        for name in (pair.hot, pair.cold):
            pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{full.hot}"')
        for name, op in ((pair.hot, "<"), (pair.cold, ">=")):
            with pg_connect(name) as conn:
                conn.execute(f"DELETE FROM orders_orderline WHERE order_id IN "
                             f"(SELECT id FROM orders_order WHERE created_at {op} now() - interval '90 days')")
                conn.execute(f"DELETE FROM orders_order WHERE created_at {op} now() - interval '90 days'")
                if name == pair.cold:
                    conn.execute("DELETE FROM accounts_customer")  # customers stay hot here
                conn.execute("VACUUM ANALYZE")


def run_mariadb(rows: int, rounds: int) -> dict:
    """run_backend on two databases of the MariaDB test server (bench/archive_mariadb.py's helpers)."""
    import subprocess

    from bench import archive_mariadb as my

    port = my.server()
    base = my.template(port)
    full = my.clone(port, base, "read_all")
    print(f"[mariadb] building {rows:,} orders ...", flush=True)
    my.fill(port, full[0], rows)
    tiered = my.clone(port, (full[0], full[0]), "read_split")
    for name, op in zip(tiered, ("<", ">=")):
        my.execute(port, f"DELETE l FROM orders_orderline l JOIN orders_order o ON o.id = l.order_id "
                         f"WHERE o.created_at {op} UTC_TIMESTAMP() - INTERVAL 90 DAY",
                   f"DELETE FROM orders_order WHERE created_at {op} UTC_TIMESTAMP() - INTERVAL 90 DAY",
                   *(["DELETE FROM accounts_customer"] if op == ">=" else []),
                   "ANALYZE TABLE orders_order, orders_orderline", db=name)
    env = {**my.env(port, *tiered), "BENCH_ALL_URL": f"mysql://root@127.0.0.1:{port}/{full[0]}",
           "DJANGO_SETTINGS_MODULE": "bench.read_settings"}
    done = subprocess.run([sys.executable, "-m", "bench.read_path", "--measure", "--rounds", str(rounds)],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    for pair in (base, full, tiered):
        my.drop(port, pair)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_backend(backend: str, rows: int, rounds: int) -> dict:
    if backend == "mariadb":
        return run_mariadb(rows, rounds)
    template = schema_template(backend)
    full = clone(template, "read_all")
    print(f"[{backend}] building {rows:,} orders ...", flush=True)
    fill_orders(full, rows)
    tiered = new_pair(backend, "read_split")
    _split(backend, full, tiered)
    env = {**tiered.env(BENCH_ALL_URL=full.url(full.hot)), "DJANGO_SETTINGS_MODULE": "bench.read_settings"}
    import subprocess

    done = subprocess.run([sys.executable, "-m", "bench.read_path", "--measure", "--rounds", str(rounds)],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for pair in (template, full, tiered):
        drop(pair)
    return result


def report(backend: str, rows: int, r: dict) -> None:
    print(f"\n{backend}: {rows:,} orders, {r['hot']:,} hot ({r['hot'] / rows:.0%}) / {r['cold']:,} cold")
    lines = [["measure", "tiered", "single db", "ratio", "target"]]
    for name in TARGETS:
        t, p = r[name]
        lines.append([name, f"{t * 1e3:.3f} ms", f"{p * 1e3:.3f} ms", ratio(t, p), f"<= {TARGETS[name]}x"])
    for label in ("mem_quarter", "mem_all"):
        (tn, tp), (_, pp) = r[label]["tiered"], r[label]["plain"]
        lines.append([f"iterator peak, {tn:,} rows", f"{tp / 1024:.0f} KiB", f"{pp / 1024:.0f} KiB",
                      ratio(tp, pp), "flat"])
    growth = r["mem_all"]["tiered"][1] / max(1, r["mem_quarter"]["tiered"][1])
    print(table(lines))
    print(f"tiered iterator peak growth for {r['mem_all']['tiered'][0] / max(1, r['mem_quarter']['tiered'][0]):.1f}x "
          f"the rows: {growth:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders (default 1,000,000; 100000 is quick)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both", "mariadb"], default="both")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per measure (median)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        report(backend, args.rows, run_backend(backend, args.rows, args.rounds))


if __name__ == "__main__":
    main()
