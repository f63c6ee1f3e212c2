"""The hotcold Django project; the Celery app loads with it so @shared_task binds to it."""
from .celery import app as celery_app

__all__ = ("celery_app",)
