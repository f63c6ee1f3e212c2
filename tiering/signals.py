"""Signals projects can connect to.

``run_finished(sender=MigrationRun, run=run)`` after every run that ends;
``run_failed(sender=MigrationRun, run=run, error=exc)`` when a run fails.
"""
from django.dispatch import Signal

run_finished = Signal()
run_failed = Signal()
