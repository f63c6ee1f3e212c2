"""manage.py migrate_cold: move policy-eligible rows (and their children) from hot to cold."""
from __future__ import annotations

import time

from django.core.management.base import CommandError

from tiering.management.base import MoveCommand, check_aliases, check_lock, resolve_models
from tiering.models import Direction, RunState


class Command(MoveCommand):
    help = (
        "Move every row that its model's tiering policy calls cold, with its related child rows, "
        "from the hot to the cold database (copy, verify, then delete, in short batches). "
        "Half-done batches of an interrupted run are repaired first. With no --model, every "
        "tiered model is archived."
    )
    direction = Direction.TO_COLD

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", action="append", dest="models", metavar="app.Model",
                            help="Tiered model to archive (repeatable); default: all tiered models.")
        self.add_move_arguments(parser)

    def handle(self, *args, **options) -> None:
        from tiering import mover

        self.verbosity = options["verbosity"]
        models = resolve_models(options["models"])
        if not models:
            raise CommandError("No tiered models: declare 'class Tiering' on a model first.")
        check_aliases(models)
        # the plan (counts, bytes estimate) serves the dry run and the question; --no-input skips its scans
        wants_plan = options["dry_run"] or options["interactive"]
        plans = [(tiered, mover.plan(tiered, self.direction, limit=options["limit"], batch_size=options["batch_size"])
                  if wants_plan else None) for tiered in models]
        if options["dry_run"]:
            self.show_plans(plans)
            self.log("Dry run: nothing moved.")
            return
        for tiered in models:
            check_lock(tiered, self.direction)
        if not self.confirm(options, plans):
            raise CommandError("Cancelled: nothing moved.")
        deadline = time.monotonic() + options["max_runtime"] if options["max_runtime"] else None
        remaining = options["limit"]
        for tiered, plan in plans:
            max_runtime = None
            if deadline is not None:
                max_runtime = deadline - time.monotonic()
                if max_runtime <= 0:
                    self.log(f"{tiered.label}: skipped, --max-runtime reached.")
                    continue
            if remaining is not None and remaining <= 0:
                self.log(f"{tiered.label}: skipped, --limit reached.")
                continue
            run = self.run_move(tiered, options, plan.rows if plan else None, limit=remaining, max_runtime=max_runtime)
            if remaining is not None:
                remaining -= run.rows
            if run.state == RunState.FAILED:  # an engine that records failure without raising
                raise CommandError(f"{tiered.label}: run {run.pk} failed: {run.error or 'see the ledger'}")
