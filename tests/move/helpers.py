"""Helpers for the mover tests: fast seeding of orders with lines, tier snapshots.

A snapshot reads every order and order line of both tiers with raw SQL and
hashes each row, so tests can check that every row is in exactly one tier and
that the content of all rows, both tiers together, did not change.
"""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.db import connections
from django.utils import timezone

from orders.models import Order, OrderLine, Payment

# each tier pair's fast path (tests/conftest.py PAIRS); the mixed pair has none, only the portable orm path
FAST_PATHS = {"sqlite": "sqlite", "postgresql": "pg_copy", "pg_schema": "pg_insert", "sqlite_pg": "orm",
              "mariadb": "mysql_bulk", "mariadb_db": "mysql_insert"}

TABLES = (Order, OrderLine)


class Killed(BaseException):
    """Stands in for a SIGKILL in this process: no ``except Exception`` handler undoes anything."""


def seed_orders(alias: str, n: int, *, lines: int = 1, old: bool = True, start_pk: int = 1) -> None:
    """Insert ``n`` orders (ids from ``start_pk``) with ``lines`` lines each, in bulk."""
    now = datetime.now(UTC)
    rng = random.Random(n)
    orders, order_lines = [], []
    line_pk = (start_pk - 1) * lines + 1
    for i in range(n):
        pk = start_pk + i
        age = timedelta(days=rng.randrange(91, 700) if old else rng.randrange(0, 30), seconds=rng.randrange(86400))
        note = None if i % 3 == 0 else f"note {pk} — ünïcødé ✓"
        orders.append((pk, 1, now - age, "paid", Decimal(rng.randrange(100, 100_000)) / 100, note))
        for _ in range(lines):
            order_lines.append((line_pk, pk, f"SKU-{line_pk:07d}", rng.randrange(1, 6),
                                Decimal(rng.randrange(100, 20_000)) / 100))
            line_pk += 1
    conn = connections[alias]
    o_cols = "id, customer_id, created_at, status, total, note"
    l_cols = "id, order_id, sku, quantity, price"
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY orders_order ({o_cols}) FROM STDIN") as copy:
                for row in orders:
                    copy.write_row(row)
            with cursor.cursor.copy(f"COPY orders_orderline ({l_cols}) FROM STDIN") as copy:
                for row in order_lines:
                    copy.write_row(row)
            for table in ("orders_order", "orders_orderline"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT MAX(id) FROM {table}))")
        elif conn.vendor == "mysql":
            cursor.executemany(f"INSERT INTO orders_order ({o_cols}) VALUES (%s, %s, %s, %s, %s, %s)",
                               [(r[0], r[1], r[2].replace(tzinfo=None), *r[3:]) for r in orders])
            cursor.executemany(f"INSERT INTO orders_orderline ({l_cols}) VALUES (%s, %s, %s, %s, %s)", order_lines)
        else:
            raw = conn.connection  # autocommit: one explicit transaction for the whole seed
            raw.execute("BEGIN")
            raw.executemany(f"INSERT INTO orders_order ({o_cols}) VALUES (?, ?, ?, ?, ?, ?)",
                            [(r[0], r[1], r[2].isoformat(sep=" ").replace("+00:00", ""), r[3], str(r[4]), r[5])
                             for r in orders])
            raw.executemany(f"INSERT INTO orders_orderline ({l_cols}) VALUES (?, ?, ?, ?, ?)",
                            [(*r[:4], str(r[4])) for r in order_lines])
            raw.execute("COMMIT")


def _table_hashes(alias: str, model, as_python: bool = False) -> dict:
    """{pk: hash of the row}. Python's tuple hash: stable within this process, which is all a before/after
    comparison needs. ``as_python``: the values as the ORM converts them (aware datetimes, decimals), so that
    a row hashes the same in two databases of different vendors; otherwise the raw values, which is faster."""
    if as_python:
        names = [f.attname for f in model._meta.concrete_fields]
        return {row[0]: hash(row[1:]) for row in model._base_manager.using(alias).values_list(*names)}
    cols = ", ".join(f.column for f in model._meta.concrete_fields)
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT {cols} FROM {model._meta.db_table}")
        return {row[0]: hash(row[1:]) for row in cursor.fetchall()}


def snapshot(hot: str, cold: str) -> dict:
    """{table: {pk: (tier, row hash)}}; asserts that no row is in both tiers."""
    out = {}
    as_python = connections[hot].vendor != connections[cold].vendor
    for model in TABLES:
        h, c = _table_hashes(hot, model, as_python), _table_hashes(cold, model, as_python)
        both = h.keys() & c.keys()
        assert not both, f"{len(both)} {model.__name__} rows in both tiers, e.g. {sorted(both)[:5]}"
        merged = {pk: ("hot", v) for pk, v in h.items()}
        merged.update({pk: ("cold", v) for pk, v in c.items()})
        out[model._meta.db_table] = merged
    return out


def content(snap: dict) -> dict:
    """The snapshot without the tiers: what must never change by moving."""
    return {table: {pk: v for pk, (_, v) in rows.items()} for table, rows in snap.items()}


def assert_lines_follow_orders(hot: str, cold: str) -> None:
    """Every line lives in the tier of its order."""
    for alias in (hot, cold):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM orders_orderline l LEFT JOIN orders_order o ON o.id = l.order_id "
                           "WHERE o.id IS NULL")
            orphans = cursor.fetchone()[0]
        assert orphans == 0, f"{orphans} order lines in {alias} without their order"


def payment_values(alias):
    """Every payment's values as the ORM reads them (binary as bytes), in key order."""
    fields = [f.attname for f in Payment._meta.concrete_fields]
    rows = Payment.objects.using(alias).order_by("pk").values_list(*fields)
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def make_payments(alias):
    """Three old payments with the awkward values: decimals, an aware datetime in +02:00, NULL, unicode,
    JSON objects and lists, binary with NUL bytes, an auto_now field."""
    old = timezone.now() - timedelta(days=400)
    berlin = dt_timezone(timedelta(hours=2))
    specs = [
        dict(amount=Decimal("12345.67"), method="card", reference="", details={}, attachment=None),
        dict(amount=Decimal("0.10"), method="iban", reference="Zahlung für Bücher ✓ 日本",
             details={"nested": {"b": [1, 2.5, None, "x"], "a": True}, "ü": "ß"}, attachment=b"\x00\xff\x10binary"),
        dict(amount=Decimal("-3.00"), method="cash", reference="x" * 64, details=[1, "two", {"3": None}],
             attachment=b""),
    ]
    for i, spec in enumerate(specs):
        Payment.objects.using(alias).create(
            order_id=1000 + i, created_at=(old + timedelta(microseconds=123456 * i)).astimezone(berlin),
            last_accessed=old, **spec)
    # auto_now stamped them now; a move must keep that value as it is, however the copy is written
    Payment.objects.using(alias).update(updated_at=old + timedelta(days=1, microseconds=7))
