"""Settings for the hotcold site, driven by the environment.

With no environment at all the site runs on the embedded default: two SQLite
files (hot and cold) under ``data/``. Production points ``DATABASE_URL`` and
``COLD_DATABASE_URL`` at two PostgreSQL databases.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("HOTCOLD_DATA_DIR", BASE_DIR / "data"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# django-prometheus database wrappers: the same backends, with queries counted per alias.
PROMETHEUS_ENGINES = {
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.mysql": "django_prometheus.db.backends.mysql",
}


def sqlite_database(path: Path) -> dict:
    """An SQLite alias tuned for a hot and a cold file used side by side."""
    return {
        "ENGINE": PROMETHEUS_ENGINES["django.db.backends.sqlite3"],
        "NAME": str(path),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            # WAL lets the application read while a move writes; a 64 MiB page cache keeps
            # large tables off the disk (SQLite's default is 2 MiB).
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000; "
                "PRAGMA cache_size=-65536;"
            ),
        },
    }


def database_from_env(variable: str, sqlite_file: str) -> dict:
    url = os.environ.get(variable)
    if url:
        db = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        db["ENGINE"] = PROMETHEUS_ENGINES.get(db["ENGINE"], db["ENGINE"])
        return db
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return sqlite_database(DATA_DIR / sqlite_file)


SECRET_KEY = os.environ.get("SECRET_KEY", "hotcold-insecure-development-key-change-me")
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_prometheus",
    "tiering",
    "accounts",
    "orders",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files under gunicorn (DEBUG=0)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "hotcold_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "hotcold_site.wsgi.application"

DATABASES = {
    "default": database_from_env("DATABASE_URL", "hot.sqlite3"),
    "cold": database_from_env("COLD_DATABASE_URL", "cold.sqlite3"),
}
DATABASE_ROUTERS = ["tiering.router.TieringRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every key is optional; tiering/conf.py documents the defaults.
TIERING = {
    "HOT": "default",
    "COLD": "cold",
    "RUN_IN_PROCESS": env_bool("TIERING_RUN_IN_PROCESS", False),
}
if os.environ.get("TIERING_BATCH_SIZE"):
    TIERING["BATCH_SIZE"] = int(os.environ["TIERING_BATCH_SIZE"])

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# Celery (hotcold_site/celery.py): JSON only; a move task is acknowledged after it ends, so a
# worker that dies mid-run hands it to another (the mover repairs half-done batches), and a
# worker takes one move at a time. The soft limit stops a runaway move between batches.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = os.environ.get("TIME_ZONE", "UTC")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", 4 * 3600))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600}
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # collectstatic target served by WhiteNoise
WHITENOISE_USE_FINDERS = DEBUG  # without collectstatic in development
LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"tiering": {"handlers": ["console"], "level": os.environ.get("TIERING_LOG_LEVEL", "INFO")}},
}
