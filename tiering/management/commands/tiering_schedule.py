"""manage.py tiering_schedule: one django-celery-beat schedule per tiered model.

Without options it creates or updates the PeriodicTasks (idempotent: run it
after every deploy); ``--list`` shows them, ``--disable``/``--enable`` pause
and resume them. The crontab comes from ``class Tiering: schedule`` or
``TIERING["SCHEDULE"]`` and is read in ``TIME_ZONE``.
"""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from tiering import schedule


class Command(BaseCommand):
    help = (
        "Create or update one celery-beat PeriodicTask per tiered model that archives it on the crontab "
        "of its 'class Tiering: schedule' or TIERING['SCHEDULE'] (default '0 2 * * *', in TIME_ZONE). "
        "Idempotent; --list shows the schedules, --disable/--enable pause and resume them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", action="append", metavar="app.Model", dest="models",
                            help="Only this tiered model (repeatable). Default: every tiered model.")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--list", action="store_true", help="Show the schedules and change nothing.")
        mode.add_argument("--disable", action="store_true", help="Pause the schedules (of --model, or all).")
        mode.add_argument("--enable", action="store_true", help="Resume the schedules (of --model, or all).")
        parser.add_argument("--dry-run", action="store_true", help="Show what would change and change nothing.")

    def handle(self, *args, **options):
        self.verbosity = verbosity = options["verbosity"]
        models, enable, dry_run = options["models"], options["enable"], options["dry_run"]
        try:
            if options["list"]:
                return self.show()
            if options["disable"] or enable:
                changes = schedule.set_enabled(models, enable, dry_run=dry_run)
            else:
                changes = schedule.sync(models, dry_run=dry_run)
        except (LookupError, ValueError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc).strip().splitlines()[0]) from None
        prefix = "[dry run] would be " if dry_run else ""
        for change in changes:
            if change.action != "unchanged" or verbosity >= 2:
                self.say(1, f"{prefix}{change.action}: {change.name}  {change.detail}".rstrip())
        counts = {}
        for change in changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no tiered models"
        self.say(1, f"{'[dry run] ' if dry_run else ''}{len(changes)} schedule(s): {summary}", style=self.style.SUCCESS)

    def show(self) -> None:
        rows = schedule.listing()
        if not rows:
            self.say(1, "No tiering schedules; run manage.py tiering_schedule to create them.")
            return
        for row in rows:
            state = "enabled " if row["enabled"] else "disabled"
            last = row["last_run_at"].isoformat(timespec="seconds") if row["last_run_at"] else "never"
            self.stdout.write(f"{state}  {row['name']}  {row['schedule']}  last run: {last}  "
                              f"runs: {row['total_run_count']}")

    def say(self, level: int, message: str, style=None) -> None:
        if self.verbosity >= level:
            self.stdout.write(style(message) if style else message)
