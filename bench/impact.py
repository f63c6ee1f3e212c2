"""Application latency while migrate_cold runs, against the same loop with no move.

    .venv/bin/python -m bench.impact --rows 200000 --backend both

Builds N orders (as bench/archive.py does), then a client process runs a loop
of typical requests for --seconds with no move running (the baseline), starts
``migrate_cold --model orders.Order --no-input`` in another process and runs
the same loop until the move ends. Requests: get a recent order by key with
its lines, the first page (20) of the orders of one status, newest first (a merged
read over both tiers), and an insert of an order with a line. It prints p50
and p99 per request type and overall, and the ratio with/without a move;
with ``--repeat N`` (default 3) it does so N times on fresh copies of the same
data and ends with the median ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

from bench.common import (PYTHON, ROOT, clone, drop, fill_orders, median, percentile, ratio, run_child,
                          schema_template, table, timer)

OPS = ("get", "list", "insert")


def client(args) -> dict:
    import django

    django.setup()
    from decimal import Decimal

    from django.db import transaction

    from orders.models import Order, OrderLine

    rng = random.Random(1)
    n = args.rows
    recent_low = int(n * 0.9)

    def get():
        order = Order.objects.get(pk=rng.randint(recent_low, n))
        list(order.lines.all())

    def first_page():
        list(Order.objects.filter(status=rng.choice(["new", "paid", "shipped"])).order_by("-created_at", "-id")[:20])

    def insert():
        with transaction.atomic():
            order = Order.objects.create(customer_id=rng.randint(1, 1000), total=Decimal("12.50"), note="bench")
            OrderLine.objects.create(order=order, sku="SKU-BENCH", quantity=1, price=Decimal("12.50"))

    ops = {"get": get, "list": first_page, "insert": insert}

    def loop(until) -> dict[str, list[float]]:
        latencies: dict[str, list[float]] = {op: [] for op in OPS}
        while not until():
            for op in OPS:
                start = time.perf_counter()
                ops[op]()
                latencies[op].append(time.perf_counter() - start)
        return latencies

    for _ in range(50):  # warm connections and caches
        for op in OPS:
            ops[op]()
    stop_at = time.perf_counter() + args.seconds
    baseline = loop(lambda: time.perf_counter() >= stop_at)

    move = subprocess.Popen([PYTHON, "-m", "django", "migrate_cold", "--model", "orders.Order", "--no-input",
                             "-v", "1", *args.move_args.split()], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with timer() as move_seconds:
        deadline = time.perf_counter() + args.max_seconds
        during = loop(lambda: move.poll() is not None or time.perf_counter() >= deadline)
    if move.poll() is None:
        move.terminate()
    output = move.communicate()[0]
    return {"baseline": baseline, "during": during, "move_seconds": move_seconds(),
            "move_returncode": move.returncode, "move_output": output.strip().splitlines()[-3:]}


def overall(result: dict) -> tuple[float, float]:
    """(p50 ratio, p99 ratio) over every request, with a move vs without."""
    base, during = sum(result["baseline"].values(), []), sum(result["during"].values(), [])
    return (percentile(during, 50) / percentile(base, 50), percentile(during, 99) / percentile(base, 99))


def report(backend: str, result: dict, title: str = "") -> None:
    print(f"\n== {backend}{title}: request latency in ms, no move vs while migrate_cold runs "
          f"({result['move_seconds']:.1f}s, exit {result['move_returncode']}) ==")
    for line in result["move_output"]:
        print(f"   migrate_cold: {line}")
    rows = [["request", "n base", "p50 base", "p99 base", "n move", "p50 move", "p99 move", "p50 ratio", "p99 ratio"]]
    for op in (*OPS, "all"):
        base = result["baseline"][op] if op != "all" else sum(result["baseline"].values(), [])
        during = result["during"][op] if op != "all" else sum(result["during"].values(), [])
        b50, b99 = percentile(base, 50) * 1000, percentile(base, 99) * 1000
        d50, d99 = percentile(during, 50) * 1000, percentile(during, 99) * 1000
        rows.append([op, len(base), f"{b50:.2f}", f"{b99:.2f}", len(during), f"{d50:.2f}", f"{d99:.2f}",
                     ratio(d50, b50), ratio(d99, b99)])
    print(table(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Orders to build (default 200000).")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=15.0, help="Length of the no-move baseline loop.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="Stop the loop (and the move) after this.")
    parser.add_argument("--move-args", default="", metavar="'--sleep S ...'",
                        help="Extra migrate_cold options for the move, e.g. '--batch-size 2000 --sleep 0.05' "
                             "to trade archive speed for application latency.")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="Measure N times on fresh copies of the same data and report each run and the "
                             "median ratios (default 3: on a shared machine one run's p99 wanders).")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client(args)))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(f"impact bench: {args.rows:,} orders, backends {backends}, migrate_cold options "
          f"{args.move_args or '(defaults)'}, {args.repeat} run(s) each, python {sys.version.split()[0]}")
    for backend in backends:
        template = schema_template(backend)
        data = clone(template, "impact_data")
        ratios = []
        try:
            built = fill_orders(data, args.rows)
            print(f"[{backend}] built {built['orders']:,} orders + {built['lines']:,} lines", flush=True)
            for run in range(1, args.repeat + 1):
                pair = clone(data, "impact")
                try:
                    result = run_child(pair, "bench.impact", [
                        "--client", "--rows", str(args.rows), "--seconds", str(args.seconds),
                        "--max-seconds", str(args.max_seconds), f"--move-args={args.move_args}"])
                finally:
                    drop(pair)
                report(backend, result, f" run {run}/{args.repeat}")
                ratios.append(overall(result))
        finally:
            drop(data)
            drop(template)
        p50s, p99s = [r[0] for r in ratios], [r[1] for r in ratios]
        print(f"\n[{backend}] all requests over {len(ratios)} run(s): p50 ratio median {median(p50s):.2f}x, "
              f"p99 ratio median {median(p99s):.2f}x (runs: {', '.join(f'{r:.2f}x' for r in p99s)}; "
              f"target p99 <= 1.5x)")


if __name__ == "__main__":
    main()
