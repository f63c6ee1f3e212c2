"""manage.py migrate_cold: move policy-eligible rows (and their children) from hot to cold."""
from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from tiering import move
from tiering.management.base import MoveCommand, resolve_models
from tiering.models import Direction
from tiering.text import one_line


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
                            help="Finish each model's last unfinished run (killed, failed, or stopped by "
                                 "--limit/--max-runtime) with that run's cutoff; skip the others.")
        self.add_move_arguments(parser)

    def selections(self, options: dict) -> list[tuple]:
        models = resolve_models(options["models"])
        if not models:
            raise CommandError("No tiered models: declare 'class Tiering' on a model first.")
        return [(tiered, {}) for tiered in models]

    def pending(self, work: list[tuple], options: dict) -> list[tuple]:
        if not options["resume"]:
            return work
        work = [(tiered, {"resumes": run}) for tiered, run in self.runs_to_resume([t for t, _ in work])]
        if not work:
            self.log("Nothing to resume: nothing moved.")
        return work

    def runs_to_resume(self, models: list) -> list[tuple]:
        """(model, the run to finish) for the models whose last run did not finish; the others are named."""
        found = []
        for tiered in models:
            run = move.resumable_run(tiered, self.direction)
            if run is None:
                live = move.held_lock(tiered, self.direction)
                why = f"run {live.run_id} is moving it now" if live else "its last run finished, or there is none"
                self.log(f"{tiered.label}: nothing to resume ({why}).")
                continue
            found.append((tiered, run))
            why = f": {one_line(run.error)}" if run.error else ""
            cutoff = f"{timezone.localtime(run.cutoff):%Y-%m-%d %H:%M:%S %Z}" if run.cutoff else "now (it had none)"
            self.log(f"{tiered.label}: resuming run {run.pk} ({run.state}{why}) with its cutoff {cutoff}.")
        return found
