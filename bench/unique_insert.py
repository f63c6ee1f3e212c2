"""What the cross-tier unique check (tiering.unique) costs an insert: ``Customer.objects.create()`` with it
against the same ``create()`` with the check switched off (Django's own insert), on the same pair, interleaved.

    .venv/bin/python -m bench.unique_insert                       # SQLite and PostgreSQL, 100k cold customers
    .venv/bin/python -m bench.unique_insert --backend sqlite --cold-rows 1000000 --rounds 9

Cold holds N customers (their unique emails are what the check probes, by
its index); each round inserts ``--per-round`` customers into hot both ways,
alternating, and the per-insert time of each way is the round's mean. It
prints the medians over the rounds and their ratio; it never asserts anything.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time

from bench.common import clone, drop, pg_connect, run_child, schema_template


def fill_cold(pair, n: int) -> None:
    sql = ("INSERT INTO accounts_customer (id, email, name, last_seen, created_at) "
           "SELECT i, 'cold' || i || '@example.com', 'Cold ' || i, {now}, {now} FROM {rows}")
    if pair.backend == "sqlite":
        with sqlite3.connect(pair.cold) as conn:
            conn.execute(f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "
                         + sql.format(now="strftime('%Y-%m-%d %H:%M:%S', 'now', '-400 days')", rows="seq"))
            conn.execute("ANALYZE")
        conn.close()
    else:
        with pg_connect(pair.cold) as conn:
            conn.execute(sql.format(now="now() - interval '400 days'", rows=f"generate_series(1, {n}) AS i"))
            conn.execute("VACUUM ANALYZE")


def client(args) -> dict:
    import django

    django.setup()
    from accounts.models import Customer
    from tiering import unique

    checks = unique.sets_touching

    def plain(i: int) -> None:  # the same create() with the check switched off: Django's own insert
        unique.sets_touching = lambda *args: ()
        try:
            Customer.objects.create(email=f"p{i}@example.com", name="p")
        finally:
            unique.sets_touching = checks

    def checked(i: int) -> None:
        Customer.objects.create(email=f"c{i}@example.com", name="c")

    per = {"plain": [], "checked": []}
    for _ in range(20):  # warm both ways up (connections, statement caches)
        plain(10**9 + _), checked(10**9 + _)
    i = 0
    for _ in range(args.rounds):
        for name, insert in (("plain", plain), ("checked", checked)):
            t0 = time.perf_counter()
            for _ in range(args.per_round):
                i += 1
                insert(i)
            per[name].append((time.perf_counter() - t0) / args.per_round)
    return per


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--cold-rows", type=int, default=100_000, help="Customers in cold (default 100000).")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=300)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client(args)))
        return
    print(f"unique_insert bench: {args.cold_rows:,} cold customers, {args.rounds} rounds x {args.per_round} "
          f"inserts each way, python {sys.version.split()[0]}")
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        template = schema_template(backend)
        pair = clone(template, "unique_insert")
        try:
            fill_cold(pair, args.cold_rows)
            per = run_child(pair, "bench.unique_insert", ["--client", "--rounds", str(args.rounds),
                                                          "--per-round", str(args.per_round)])
        finally:
            drop(pair)
            drop(template)
        plain, checked = (statistics.median(per[k]) * 1e6 for k in ("plain", "checked"))
        print(f"[{backend}] per insert, median of {args.rounds} rounds: plain create {plain:.0f} us, with the "
              f"cross-tier check {checked:.0f} us: {checked / plain:.2f}x (+{checked - plain:.0f} us)")


if __name__ == "__main__":
    main()
