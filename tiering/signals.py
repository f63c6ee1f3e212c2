"""Signals projects can connect to.

``run_finished(sender=MigrationRun, run=run)`` after every run that ends;
``run_failed(sender=MigrationRun, run=run, error=exc)`` when a run fails;
``batch_done(sender=MigrationBatch, run=run, batch=batch)`` after each batch
is committed (metrics listen to it);
``run_overdue(sender=TieredModel, model=label, last_success=datetime|None, interval=timedelta)`` when a
scheduled model's archive job has not succeeded for more than twice its interval (``tiering.overdue``).
"""
from django.dispatch import Signal

run_finished = Signal()
run_failed = Signal()
batch_done = Signal()
run_overdue = Signal()
