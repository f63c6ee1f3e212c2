"""The optional parts of tiering and the extras that install them.

The app runs on Django alone. Celery (``hotcold[celery]``) runs the archive
and restore tasks and, with django-celery-beat, the nightly schedules;
django-prometheus (``hotcold[prometheus]``) serves ``/metrics``. Each part
asks here whether its package is installed, so that a project without it
imports the app and passes ``manage.py check``, and a part it does use fails
with the line to install it.
"""
from __future__ import annotations

import importlib.util

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

CELERY = "celery"
PROMETHEUS = "prometheus"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def has_celery() -> bool:
    return installed("celery")


def has_prometheus() -> bool:
    return installed("django_prometheus")


def has_beat() -> bool:
    """django-celery-beat installed and in INSTALLED_APPS: its models hold the schedules."""
    return installed("django_celery_beat") and apps.is_installed("django_celery_beat")


def missing(what: str, extra: str) -> ImproperlyConfigured:
    """The error of a part used without its extra."""
    return ImproperlyConfigured(f"{what} (pip install 'hotcold[{extra}]')")
