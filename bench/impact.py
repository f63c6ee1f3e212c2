"""Application latency while migrate_cold runs, against the same loop with no move.

    .venv/bin/python -m bench.impact --rows 200000 --backend both

Builds N orders (as bench/archive.py does), then a client process runs a loop
of typical requests for --seconds with no move running, starts
``migrate_cold --model orders.Order --no-input`` in another process, runs the
same loop until the move ends, and then once more for --seconds with no move.
Requests: get a recent order by key with its lines, the first page (20) of the
orders of one status, newest first (a merged read over both tiers), and an
insert of an order with a line.

The baseline is the no-move loop before and after the move together: the move
leaves most orders in cold, which makes the merged first page slower for good
(p50 0.8 -> 1.15 ms on PostgreSQL), a cost of tiering that bench/read_path.py
measures, not of the move; before the move alone would count it as the move's.
It prints p50 and p99 per request type and overall for each loop, and the
ratio while moving / baseline; with ``--repeat N`` (default 3) it does so N
times on fresh copies of the same data and ends with the median ratios.
``--ratios off,3,2,1.3`` measures the move unthrottled and throttled at each
``--max-latency-ratio`` and ends with one table: p50/p99 ratios and the orders
moved per second (and their share of the unthrottled rate), to pick a point.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

from bench.common import (
    PYTHON,
    ROOT,
    clone,
    drop,
    fill_orders,
    median,
    percentile,
    ratio,
    run_child,
    schema_template,
    table,
    timer,
)

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

    def for_seconds() -> dict[str, list[float]]:
        stop_at = time.perf_counter() + args.seconds
        return loop(lambda: time.perf_counter() >= stop_at)

    for _ in range(50):  # warm connections and caches
        for op in OPS:
            ops[op]()
    before = for_seconds()

    move = subprocess.Popen([PYTHON, "-m", "django", "migrate_cold", "--model", "orders.Order", "--no-input",
                             "-v", "1", *args.move_args.split()], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with timer() as move_seconds:
        deadline = time.perf_counter() + args.max_seconds
        during = loop(lambda: move.poll() is not None or time.perf_counter() >= deadline)
    if move.poll() is None:
        move.terminate()
    output = move.communicate()[0]
    moved = Order._base_manager.using("cold").count()
    after = for_seconds()
    return {"before": before, "during": during, "after": after, "move_seconds": move_seconds(), "moved": moved,
            "move_returncode": move.returncode, "move_output": output.strip().splitlines()[-3:]}


def latencies(result: dict, loop: str, op: str) -> list[float]:
    """One loop's latencies of one request type ("all": every type); loop "baseline" = before + after."""
    loops = ["before", "after"] if loop == "baseline" else [loop]
    ops = OPS if op == "all" else (op,)
    return [x for name in loops for o in ops for x in result[name][o]]


def overall(result: dict, baseline: str = "baseline", op: str = "all") -> tuple[float, float]:
    """(p50 ratio, p99 ratio) of ``op`` requests, while moving vs ``baseline`` (or "before" alone)."""
    base, during = latencies(result, baseline, op), latencies(result, "during", op)
    return (percentile(during, 50) / percentile(base, 50), percentile(during, 99) / percentile(base, 99))


def report(backend: str, result: dict, title: str = "") -> None:
    print(f"\n== {backend}{title}: request latency in ms, no move (before, after, both: the baseline) vs while "
          f"migrate_cold runs ({result['move_seconds']:.1f}s, exit {result['move_returncode']}) ==")
    for line in result["move_output"]:
        print(f"   migrate_cold: {line}")
    rows = [["request", "p50 before", "p99 before", "p50 after", "p99 after", "n base", "p50 base", "p99 base",
             "n move", "p50 move", "p99 move", "p50 ratio", "p99 ratio"]]
    for op in (*OPS, "all"):
        figures = {loop: latencies(result, loop, op) for loop in ("before", "after", "baseline", "during")}
        p = {(loop, q): percentile(values, q) * 1000 for loop, values in figures.items() for q in (50, 99)}
        rows.append([op, *(f"{p[loop, q]:.2f}" for loop in ("before", "after") for q in (50, 99)),
                     len(figures["baseline"]), f"{p['baseline', 50]:.2f}", f"{p['baseline', 99]:.2f}",
                     len(figures["during"]), f"{p['during', 50]:.2f}", f"{p['during', 99]:.2f}",
                     ratio(p["during", 50], p["baseline", 50]), ratio(p["during", 99], p["baseline", 99])])
    print(table(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Orders to build (default 200000).")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="Length of each no-move loop, before and after the move.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="Stop the loop (and the move) after this.")
    parser.add_argument("--move-args", default="", metavar="'--sleep S ...'",
                        help="Extra migrate_cold options for the move, e.g. '--batch-size 2000 --sleep 0.05' "
                             "to trade archive speed for application latency.")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="Measure N times on fresh copies of the same data and report each run and the "
                             "median ratios (default 3: on a shared machine one run's p99 wanders).")
    parser.add_argument("--ratios", default="off", metavar="off,3,2,1.3",
                        help="Throttle settings to measure, comma-separated: 'off' (unthrottled) or a "
                             "--max-latency-ratio (default: off only).")
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
    settings = [r.strip() for r in args.ratios.split(",") if r.strip()]
    curve = []
    for backend in backends:
        template = schema_template(backend)
        data = clone(template, "impact_data")
        try:
            built = fill_orders(data, args.rows)
            print(f"[{backend}] built {built['orders']:,} orders + {built['lines']:,} lines", flush=True)
            for setting in settings:
                move_args = args.move_args if setting == "off" else f"{args.move_args} --max-latency-ratio {setting}"
                ratios = measure(backend, data, args, move_args, setting)
                curve.append((backend, setting, ratios))
        finally:
            drop(data)
            drop(template)
    if len(settings) > 1 or len(backends) > 1:
        print_curve(curve)


def measure(backend: str, data, args, move_args: str, setting: str) -> list[tuple]:
    ratios = []
    for run in range(1, args.repeat + 1):
        pair = clone(data, "impact")
        try:
            result = run_child(pair, "bench.impact", [
                "--client", "--rows", str(args.rows), "--seconds", str(args.seconds),
                "--max-seconds", str(args.max_seconds), f"--move-args={move_args}"])
        finally:
            drop(pair)
        report(backend, result, f" throttle {setting}, run {run}/{args.repeat}")
        ratios.append((*overall(result), overall(result, "before")[1], overall(result, op="insert")[1],
                       result["moved"] / result["move_seconds"]))
    p50s, p99s, before, inserts, rates = ([r[i] for r in ratios] for i in range(5))
    print(f"\n[{backend}] throttle {setting}, all requests over {len(ratios)} run(s): p50 ratio median "
          f"{median(p50s):.2f}x, p99 ratio median {median(p99s):.2f}x (runs: {', '.join(f'{r:.2f}x' for r in p99s)}); "
          f"against the loop before the move alone {median(before):.2f}x; inserts alone {median(inserts):.2f}x; "
          f"{median(rates):,.0f} orders/s moved", flush=True)
    return ratios


def print_curve(curve: list) -> None:
    """One line per backend and throttle setting: medians of the runs; rows/s against the unthrottled."""
    rows = [["backend", "throttle", "p50 ratio", "p99 ratio", "p99 runs", "orders/s moved", "of unthrottled"]]
    unthrottled = {backend: median([r[4] for r in ratios]) for backend, setting, ratios in curve if setting == "off"}
    for backend, setting, ratios in curve:
        rate = median([r[4] for r in ratios])
        share = f"{rate / unthrottled[backend]:.0%}" if unthrottled.get(backend) else "-"
        rows.append([backend, "unthrottled" if setting == "off" else f"--max-latency-ratio {setting}",
                     f"{median([r[0] for r in ratios]):.2f}x", f"{median([r[1] for r in ratios]):.2f}x",
                     ", ".join(f"{r[1]:.2f}x" for r in ratios), f"{rate:,.0f}", share])
    print("\n== the curve (medians; targets at the tightest setting: p99 ratio <= 1.3x at >= 50% of the "
          "unthrottled orders/s) ==")
    print(table(rows))

if __name__ == "__main__":
    main()
