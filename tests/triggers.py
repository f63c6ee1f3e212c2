"""A trigger that makes a real database refuse a write, on each vendor the tests run: a fault the server
itself raises, mid-run, where a mock would only pretend."""
from __future__ import annotations

import contextlib

from django.db import connections

NAME = "hotcold_test_refuse"


@contextlib.contextmanager
def refusing(alias: str, table: str, event: str, message: str):
    """``event`` (INSERT, UPDATE or DELETE) on ``table`` of ``alias`` fails with ``message`` inside."""
    vendor = connections[alias].vendor
    with connections[alias].cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(f"CREATE TRIGGER {NAME} BEFORE {event} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        elif vendor == "mysql":
            cursor.execute(f"CREATE TRIGGER {NAME} BEFORE {event} ON {table} FOR EACH ROW "
                           f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'")
        else:
            cursor.execute(f"CREATE OR REPLACE FUNCTION {NAME}() RETURNS trigger AS $$ "
                           f"BEGIN RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER {NAME} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {NAME}()")
    try:
        yield
    finally:
        drop(alias, table)


def drop(alias: str, table: str) -> None:
    vendor = connections[alias].vendor
    with connections[alias].cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {NAME}" + (f" ON {table}" if vendor == "postgresql" else ""))
        if vendor == "postgresql":
            cursor.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
