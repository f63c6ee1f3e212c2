"""Shared fixtures: run a test against each real backend pair."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connections

# "pg_schema": cold as a schema of the hot PostgreSQL database (the mover's pg_insert path); "sqlite_pg": hot
# in SQLite, cold in PostgreSQL, a pair of two vendors that only the portable orm path moves between
PAIRS = {"sqlite": ("default", "cold"), "postgresql": ("pg_hot", "pg_cold"), "pg_schema": ("pg_hot", "pg_cold_schema"),
         "sqlite_pg": ("default", "pg_cold"),
         # two MariaDB servers (the mysql_bulk path); two databases of one MariaDB server (mysql_insert)
         "mariadb": ("my_hot", "my_cold"), "mariadb_db": ("my_hot", "my_cold_db")}
# the pairs every ``tiers`` test runs on (MariaDB's two-server pair; the moves' modules add its one-server pair);
# a module names others (the mixed pair) in ``TIER_PAIRS``
DEFAULT_PAIRS = ["sqlite", "postgresql", "pg_schema", "mariadb"]


@dataclass(frozen=True)
class Tiers:
    backend: str
    hot: str
    cold: str

    @property
    def vendor(self) -> str:
        return connections[self.hot].vendor

    @property
    def cold_vendor(self) -> str:
        return connections[self.cold].vendor


def pytest_sessionstart(session):
    """scripts/test.sh sets HOTCOLD_REQUIRE_SERVERS=1: there a server that did not start fails the run
    instead of skipping its tests, so a missing install step cannot pass as green."""
    if os.environ.get("HOTCOLD_REQUIRE_SERVERS") != "1":
        return
    missing = [reason for reason in (django_settings.PG_SKIP_REASON, django_settings.MY_SKIP_REASON,
                                     django_settings.REDIS_SKIP_REASON) if reason]
    if missing:
        pytest.exit("test servers unavailable: " + "; ".join(missing), returncode=3)


def pytest_generate_tests(metafunc):
    """``tiers`` runs over the DEFAULT_PAIRS, over those a module names in ``TIER_PAIRS``, or over those a
    test names with ``@pytest.mark.tier_pairs(...)``."""
    if "tiers" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("tier_pairs")
        pairs = marker.args if marker else getattr(metafunc.module, "TIER_PAIRS", DEFAULT_PAIRS)
        metafunc.parametrize("tiers", list(pairs), indirect=True)


@pytest.fixture
def tiers(request, settings):
    """Point TIERING at one real backend pair (SQLite files or PostgreSQL)."""
    backend = request.param
    hot, cold = PAIRS[backend]
    if hot not in django_settings.DATABASES or cold not in django_settings.DATABASES:
        reason = django_settings.MY_SKIP_REASON if backend.startswith("mariadb") else django_settings.PG_SKIP_REASON
        pytest.skip(f"{'MariaDB' if backend.startswith('mariadb') else 'PostgreSQL'} unavailable: {reason}")
    settings.TIERING = {**django_settings.TIERING, "HOT": hot, "COLD": cold}
    from tiering.access import tracker

    tracker.discard()
    yield Tiers(backend, hot, cold)
    tracker.discard()


@pytest.fixture(params=["fast", "orm"])
def path(request, tiers):
    """The pair's fast path, then the portable orm path (once for a pair whose only path it is)."""
    from tests.move.helpers import FAST_PATHS

    if request.param == "fast" and FAST_PATHS[tiers.backend] == "orm":
        pytest.skip("this pair has no fast path: its orm case covers it")
    return FAST_PATHS[tiers.backend] if request.param == "fast" else "orm"


@pytest.fixture(scope="session")
def django_db_modify_db_settings_xdist_suffix():
    """tests/settings.py already names each xdist worker's databases (and its subprocesses use those
    names), so pytest-django's own worker suffix is not added."""


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Django's test runner sees pg_cold_schema as the pg_hot database (same server and names) and
    migrates it for pg_hot only: create the cold schema and migrate the cold tables into it. Only when
    pg_hot's test database was created: pytest-django creates those of the selected tests only. At the
    end every connection is closed, pg_cold_schema's too, which the runner does not know holds pg_hot's
    test database open (its drop would fail and leave the database behind)."""
    hot = connections["pg_hot"].settings_dict if "pg_cold_schema" in django_settings.DATABASES else None
    if hot and hot["NAME"] == hot["TEST"]["NAME"]:
        with django_db_blocker.unblock():
            with connections["pg_hot"].cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{django_settings.COLD_SCHEMA}"')
            call_command("migrate", database="pg_cold_schema", verbosity=0, interactive=False)
    yield
    connections.close_all()


@pytest.fixture
def retune():
    """retune(alias, **settings): change an alias's connection settings for this test only (the test
    runner allows no new aliases in a test, so the pg_schema pair's cold alias is re-pointed). Needs
    ``transaction=True``: inside a test's atomic block Django does not really close the connection."""
    saved = {}

    def change(alias: str, **changes) -> str:
        conn = connections[alias]
        saved.setdefault(alias, copy.deepcopy(conn.settings_dict))
        conn.close()
        conn.settings_dict.update(changes)
        return alias

    yield change
    for alias, settings_dict in saved.items():
        connections[alias].close()
        connections[alias].settings_dict.clear()
        connections[alias].settings_dict.update(settings_dict)
