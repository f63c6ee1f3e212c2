"""The Celery app of the hotcold site.

Configured from Django settings under the ``CELERY_`` namespace (broker and
result backend come from ``REDIS_URL``); tasks are found in each app's
``tasks.py``. Start a worker with ``celery -A hotcold_site worker`` and the
scheduler with ``celery -A hotcold_site beat`` (schedules live in the database,
managed by ``manage.py tiering_schedule``).
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcold_site.settings")

app = Celery("hotcold_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
