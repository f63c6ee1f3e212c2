"""Test settings: real SQLite files and, when the server starts, real PostgreSQL.

Aliases: ``default``/``cold`` are the SQLite pair, ``standin`` a vendor tiering does not know,
``pg_hot``/``pg_cold`` the PostgreSQL pair, ``pg_hot``/``pg_cold_schema`` PostgreSQL with cold as a schema
of the hot database, ``default``/``pg_cold`` hot in SQLite and cold in PostgreSQL, ``my_hot``/``my_cold``
two MariaDB servers, ``my_hot``/``my_cold_db`` two databases of one MariaDB server.
The ``tiers`` fixture points TIERING at one pair per test.
Subprocesses started by tests (crash tests, Celery workers) import these
settings with HOTCOLD_TEST_SUBPROCESS=1 and open the test databases directly.
"""
import copy
import os
from pathlib import Path

import dj_database_url

from hotcold_site.settings import *  # noqa: F401,F403
from hotcold_site.settings import PROMETHEUS_ENGINES, sqlite_database
from tests import servers

# One id per test run, inherited by subprocesses, so concurrent runs never share databases; each
# pytest-xdist worker inherits its controller's id and adds its own name to it.
RUN_ID = os.environ.get("HOTCOLD_TEST_RUN") or str(os.getpid())
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if XDIST_WORKER and not RUN_ID.endswith(XDIST_WORKER):
    RUN_ID += XDIST_WORKER
    os.environ.pop("HOTCOLD_TEST_DIR", None)
os.environ["HOTCOLD_TEST_RUN"] = RUN_ID
TEST_DIR = Path(os.environ.setdefault("HOTCOLD_TEST_DIR", f"/tmp/hotcold-tests-{RUN_ID}"))
TEST_DIR.mkdir(parents=True, exist_ok=True)
SUBPROCESS = os.environ.get("HOTCOLD_TEST_SUBPROCESS") == "1"


def sqlite_test_database(name: str) -> dict:
    db = sqlite_database(TEST_DIR / f"test_{name}.sqlite3")
    db["TEST"] = {"NAME": db["NAME"]}  # real files, not Django's in-memory default
    return db


DATABASES = {"default": sqlite_test_database("hot"), "cold": sqlite_test_database("cold"),
             # a database tiering has no backend for (tests/standin: SQLite under another vendor name)
             "standin": {**sqlite_test_database("standin"), "ENGINE": "tests.standin"}}

COLD_SCHEMA = "cold"
PG = servers.ensure_postgres()
PG_SKIP_REASON = PG.reason
if PG.url:
    for alias, name in (("pg_hot", "hotcold_hot"), ("pg_cold", "hotcold_cold")):
        db = dj_database_url.parse(PG.url.rsplit("/", 1)[0] + f"/{name}")
        db["ENGINE"] = PROMETHEUS_ENGINES[db["ENGINE"]]  # the engine production uses
        db["TEST"] = {"NAME": f"test_{name}_{RUN_ID}"}
        if SUBPROCESS:
            db["NAME"] = db["TEST"]["NAME"]
        DATABASES[alias] = db
    # The cold tier as a schema of the hot database (the pg_insert path). Django's test runner sees one
    # database (same server, name and test name as pg_hot), creates and migrates it for pg_hot only;
    # tests/conftest.py creates the schema and migrates this alias into it.
    DATABASES["pg_cold_schema"] = {**copy.deepcopy(DATABASES["pg_hot"]),
                                   "OPTIONS": {"options": f"-c search_path={COLD_SCHEMA}"}}
    if os.environ.get("HOTCOLD_TEST_PG_HOT_PORT"):  # a throwaway server as the hot tier (tests/move/test_hot_dies.py)
        DATABASES["pg_hot"]["PORT"] = os.environ["HOTCOLD_TEST_PG_HOT_PORT"]

# MariaDB: hot and cold_db on one server, cold on a second one. The test databases sort text by code point
# without padding (utf8mb4_nopad_bin), as the merged read path does; tiering's check E020 asks users for the same.
MY = servers.ensure_mariadb()
MY2 = servers.ensure_mariadb("mariadb2") if MY.url else MY
MY_SKIP_REASON = MY.reason or MY2.reason
if MY.url and MY2.url:
    for alias, server, name in (("my_hot", MY, "hotcold_hot"), ("my_cold_db", MY, "hotcold_cold"),
                                ("my_cold", MY2, "hotcold_cold")):
        db = dj_database_url.parse(server.url.rsplit("/", 1)[0] + f"/{name}")
        db["ENGINE"] = PROMETHEUS_ENGINES.get(db["ENGINE"], db["ENGINE"])
        db["OPTIONS"] = {"charset": "utf8mb4", "local_infile": 1}
        db["TEST"] = {"NAME": f"test_{name}_{RUN_ID}", "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_nopad_bin"}
        if SUBPROCESS:
            db["NAME"] = db["TEST"]["NAME"]
        DATABASES[alias] = db

REDIS = servers.ensure_redis()
REDIS_SKIP_REASON = REDIS.reason
if REDIS.url:
    REDIS_URL = REDIS.url
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL

INSTALLED_APPS = [
    *INSTALLED_APPS,  # noqa: F405
    "tests.keyed",  # tiered models with text and UUID keys
    # the third-party clients users combine with tiered models, and their one-table oracle (tests/ecosystem)
    "rest_framework",
    "django_filters",
    "django_tables2",
    "tests.ecosystem",
]
DATABASE_ROUTERS = ["tests.router.PairedTieringRouter"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TIERING = {"HOT": "default", "COLD": "cold", "BATCH_SIZE": 1000, "RUN_IN_PROCESS": True}
LOGGING = {"version": 1, "disable_existing_loggers": False}

# Celery worker/beat subprocesses started by tests/celery_helpers.py: HOTCOLD_TEST_PAIR picks the
# tier pair they move between, and each run (and pair) gets its own queue on the shared Redis.
TEST_PAIR = os.environ.get("HOTCOLD_TEST_PAIR", "")
if TEST_PAIR == "postgresql":
    TIERING = {**TIERING, "HOT": "pg_hot", "COLD": "pg_cold"}
elif TEST_PAIR == "pg_schema":
    TIERING = {**TIERING, "HOT": "pg_hot", "COLD": "pg_cold_schema"}
elif TEST_PAIR == "mariadb":
    TIERING = {**TIERING, "HOT": "my_hot", "COLD": "my_cold"}
elif TEST_PAIR == "mariadb_db":
    TIERING = {**TIERING, "HOT": "my_hot", "COLD": "my_cold_db"}
elif TEST_PAIR == "sqlite_pg":
    TIERING = {**TIERING, "HOT": "default", "COLD": "pg_cold"}
CELERY_TASK_DEFAULT_QUEUE = "-".join(filter(None, ["hotcold-tests", RUN_ID, TEST_PAIR]))
