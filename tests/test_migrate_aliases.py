"""Real `manage.py migrate` and `migrate --database=cold` on fresh databases, SQLite and
PostgreSQL, with the production settings module: hot gets every table, cold exactly the tiered
tables and their children, and no cold foreign key points at a table cold does not have."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.apps import apps

from hotcold_site import settings as site_settings
from tests import servers

ROOT = Path(__file__).resolve().parent.parent
COLD_TABLES = {"accounts_customer", "orders_order", "orders_orderline", "orders_payment", "django_migrations"}
# A few tables by name, so the test does not only compare Django with itself.
NAMED_HOT_TABLES = {
    "auth_user", "auth_group", "auth_permission", "auth_user_groups", "django_content_type", "django_session",
    "django_admin_log", "django_celery_beat_periodictask", "django_celery_beat_crontabschedule",
    "tiering_migrationrun", "tiering_migrationbatch", "tiering_tierlock", "django_migrations",
} | COLD_TABLES
CLEAN = "System check identified no issues (0 silenced)."


def project_tables() -> set[str]:
    """Every table the site's installed apps define (models and many-to-many tables), not the test-only apps."""
    tables = {"django_migrations"}
    for model in apps.get_models(include_auto_created=True):
        if (model._meta.managed and not model._meta.proxy
                and model._meta.app_config.name in site_settings.INSTALLED_APPS):
            tables.add(model._meta.db_table)
    return tables


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def site_env(hot_url: str, cold_url: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTCOLD_TEST", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="hotcold_site.settings", DATABASE_URL=hot_url, COLD_DATABASE_URL=cold_url,
               HOTCOLD_DATA_DIR=str(tmp_path / "data"), PYTHONDONTWRITEBYTECODE="1")
    return env


def migrate_both_and_check(env: dict) -> None:
    hot = manage(env, "migrate", "--no-input")
    assert "Applying orders.0001" in hot.stdout and "Applying auth.0001" in hot.stdout
    cold = manage(env, "migrate", "--database=cold", "--no-input")
    assert "Applying orders.0001" in cold.stdout  # recorded (and the tiered tables created) in cold
    again = manage(env, "migrate", "--database=cold", "--no-input")
    assert "No migrations to apply" in again.stdout
    checked = manage(env, "check", "--database", "default", "--database", "cold")
    assert CLEAN in checked.stdout, checked.stdout + checked.stderr
    assert "tiering." not in checked.stdout + checked.stderr


def assert_layout(hot: set[str], cold: set[str], cold_fks: set[tuple[str, str]]) -> None:
    assert hot == project_tables()
    assert NAMED_HOT_TABLES <= hot
    assert cold == COLD_TABLES
    assert ("orders_orderline", "orders_order") in cold_fks  # the child keeps its FK: the query sees FKs
    dangling = {(src, dst) for src, dst in cold_fks if dst not in cold}
    assert not dangling, f"cold foreign keys to tables absent from cold: {dangling}"
    assert {src for src, _ in cold_fks} <= COLD_TABLES


# ----------------------------------------------------------------------------------- SQLite
def sqlite_tables(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}
        fks = {(table, row[2]) for table in tables
               for row in conn.execute(f'PRAGMA foreign_key_list("{table}")')}
    return tables, fks


def test_migrate_fresh_sqlite_files(tmp_path):
    hot_file, cold_file = tmp_path / "hot.sqlite3", tmp_path / "cold.sqlite3"
    env = site_env(f"sqlite:///{hot_file}", f"sqlite:///{cold_file}", tmp_path)
    migrate_both_and_check(env)
    hot, hot_fks = sqlite_tables(hot_file)
    cold, cold_fks = sqlite_tables(cold_file)
    assert_layout(hot, cold, cold_fks)
    # tiered tables keep no constraint outside their own family in hot either
    assert {fk for fk in hot_fks if fk[0] in COLD_TABLES} == {("orders_orderline", "orders_order")}
    assert not (tmp_path / "data" / "hot.sqlite3").exists()  # the URLs were used, not the default files


# ------------------------------------------------------------------------------- PostgreSQL
PG_FKS = """
    SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE c.contype = 'f' AND n.nspname = 'public'
"""
PG_TABLES = ("SELECT table_name FROM information_schema.tables"
             " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")


@contextmanager
def fresh_pg_databases(base_url: str, *names: str):
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield [base_url.rsplit("/", 1)[0] + f"/{name}" for name in names]
        finally:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_layout(url: str) -> tuple[set[str], set[tuple[str, str]]]:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute(PG_TABLES)}
        fks = {(src, dst) for src, dst in conn.execute(PG_FKS)}
    return tables, fks


def test_migrate_fresh_postgresql_databases(tmp_path):
    pg = servers.ensure_postgres()
    if not pg.url:
        pytest.skip(f"PostgreSQL unavailable: {pg.reason}")
    pid = os.getpid()
    with fresh_pg_databases(pg.url, f"hotcold_mig_hot_{pid}", f"hotcold_mig_cold_{pid}") as (hot_url, cold_url):
        assert pg_layout(cold_url) == (set(), set())
        migrate_both_and_check(site_env(hot_url, cold_url, tmp_path))
        hot, hot_fks = pg_layout(hot_url)
        cold, cold_fks = pg_layout(cold_url)
    assert_layout(hot, cold, cold_fks)
    assert {fk for fk in hot_fks if fk[0] in COLD_TABLES} == {("orders_orderline", "orders_order")}
