"""manage.py migrate_cold: move policy-eligible rows (and their children) from hot to cold."""
from __future__ import annotations

import time

from django.core.management.base import CommandError
from django.utils import timezone

from tiering.management.base import MoveCommand, check_aliases, check_lock, one_line, resolve_models
from tiering.models import Direction, RunState


class Command(MoveCommand):
    help = (
        "Move every row that its model's tiering policy calls cold, with its related child rows, "
        "from the hot to the cold database (copy, verify, then delete, in short batches). "
        "Half-done batches of an interrupted run are repaired first. With no --model, every "
        "tiered model is archived; --resume finishes the last run that did not finish."
    )
    direction = Direction.TO_COLD

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", action="append", dest="models", metavar="app.Model",
                            help="Tiered model to archive (repeatable); default: all tiered models.")
        parser.add_argument("--resume", action="store_true",
                            help="Finish each model's last run if it did not finish (killed, failed, or stopped "
                                 "by --limit/--max-runtime): repair its half-done batches, then move what was "
                                 "eligible at that run's cutoff (rows gone cold since wait for the next run). "
                                 "Models whose last run finished are skipped. A plain run repairs half-done "
                                 "batches first too, and moves what is eligible now.")
        self.add_move_arguments(parser)

    def handle(self, *args, **options) -> None:
        from tiering import mover

        self.verbosity = options["verbosity"]
        models = resolve_models(options["models"])
        if not models:
            raise CommandError("No tiered models: declare 'class Tiering' on a model first.")
        check_aliases(models)
        resumes = {}
        if options["resume"]:
            resumes = self.runs_to_resume(models)
            models = [tiered for tiered in models if tiered.label in resumes]
            if not models:
                self.log("Nothing to resume: nothing moved.")
                return
        # the plan (counts, bytes estimate) serves the dry run and the question; --no-input skips its scans
        wants_plan = options["dry_run"] or options["interactive"]
        plans = [(tiered, mover.plan(tiered, self.direction, limit=options["limit"], batch_size=options["batch_size"],
                                     now=resumes[tiered.label].cutoff if resumes else None)
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
            run = self.run_move(tiered, options, plan.rows if plan else None, limit=remaining, max_runtime=max_runtime,
                                resumes=resumes.get(tiered.label))
            if remaining is not None:
                remaining -= run.rows
            if run.state == RunState.FAILED:  # an engine that records failure without raising
                raise CommandError(f"{tiered.label}: run {run.pk} failed: {run.error or 'see the ledger'}")

    def runs_to_resume(self, models: list) -> dict:
        """{label: the run to finish} for the models whose last run did not finish; the others are named."""
        from tiering import mover

        found = {}
        for tiered in models:
            run = mover.resumable_run(tiered, self.direction)
            if run is None:
                live = mover.held_lock(tiered, self.direction)
                why = f"run {live.run_id} is moving it now" if live else "its last run finished, or there is none"
                self.log(f"{tiered.label}: nothing to resume ({why}).")
                continue
            found[tiered.label] = run
            why = f": {one_line(run.error)}" if run.error else ""
            cutoff = f"{timezone.localtime(run.cutoff):%Y-%m-%d %H:%M:%S %Z}" if run.cutoff else "now (it had none)"
            self.log(f"{tiered.label}: resuming run {run.pk} ({run.state}{why}) with its cutoff {cutoff}.")
        return found
