"""Settings of the benchmarks: the site's settings on a throwaway pair of databases.

``BENCH_HOT_URL`` and ``BENCH_COLD_URL`` (``sqlite:////abs/path`` or
``postgresql://...``) name the pair, so a bench never touches ``data/``.
"""
import os

import dj_database_url

from hotcold_site.settings import *  # noqa: F401,F403
from hotcold_site.settings import sqlite_database


def _database(variable: str) -> dict:
    url = os.environ.get(variable)
    if not url:
        raise RuntimeError(f"{variable} is not set: run the benches through bench/archive.py or bench/impact.py")
    if url.startswith("sqlite:///"):
        return sqlite_database(url[len("sqlite:///"):])
    db = dj_database_url.parse(url)
    if db["ENGINE"] == "django.db.backends.mysql":  # as README's MySQL set-up: 4-byte UTF-8, LOAD DATA LOCAL
        db["OPTIONS"] = {"charset": "utf8mb4", "local_infile": 1}
    return db


DATABASES = {"default": _database("BENCH_HOT_URL"), "cold": _database("BENCH_COLD_URL")}
DEBUG = False
TIERING = {
    "HOT": "default",
    "COLD": "cold",
    "RUN_IN_PROCESS": True,
}
if os.environ.get("TIERING_BATCH_SIZE"):
    TIERING["BATCH_SIZE"] = int(os.environ["TIERING_BATCH_SIZE"])
LOGGING = {"version": 1, "disable_existing_loggers": False}
