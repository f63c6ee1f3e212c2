"""Settings of bench/read_path.py: the bench pair plus ``all``, one database holding every row."""
import os

from bench.settings import *  # noqa: F401,F403
from bench.settings import DATABASES, _database

os.environ.setdefault("BENCH_ALL_URL", "")
DATABASES["all"] = _database("BENCH_ALL_URL")
