"""manage.py restore_hot: move chosen rows of one tiered model back from cold to hot."""
from __future__ import annotations

from django.core.management.base import CommandError

from tiering.conf import tiering_settings
from tiering.exceptions import ArgumentError
from tiering.filters import parse_filters, parse_pks
from tiering.management.base import MoveCommand, positive_int, resolve_models
from tiering.models import Direction, MigrationRun
from tiering.move import keys, undo
from tiering.move.conflicts import described

SHOWN_KEYS = 20  # keys named in one message; the count says how many more


class Command(MoveCommand):
    help = (
        "Move rows of one tiered model (with their child rows) from the cold back to the hot "
        "database: by primary key, by filter, or all of them. Copy, verify, then delete, in short "
        "batches. Restored rows are kept from going straight back: the next migrate_cold skips them "
        "because a policy's access field is set to now, and a time policy's rows are held in hot "
        "(RestoredRow) for the policy's age threshold. --run N undoes archive run N."
    )
    direction = Direction.TO_HOT

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", metavar="app.Model",
                            help="The tiered model to restore (with --run: the run's, which is the default).")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--pk", nargs="+", action="extend", dest="pks", metavar="PK",
                           help="Primary keys of the rows to restore.")
        which.add_argument("--filter", action="append", dest="filters", metavar="field__lookup=value",
                           help="Restore the cold rows matching this lookup (repeatable, combined with AND); "
                                "values are parsed by the field, e.g. created_at__gte=2024-01-01.")
        which.add_argument("--all", action="store_true", dest="all_rows", help="Restore every cold row.")
        which.add_argument("--run", type=positive_int, metavar="N",
                           help="Undo archive run N: restore exactly the rows it moved that are still cold.")
        self.add_move_arguments(parser)

    def selections(self, options: dict) -> list[tuple]:
        if options.get("run"):
            return [self.undo_selection(options["run"], options["model"])]
        if not options["model"]:
            raise CommandError("Name the model: --model app.Model (or undo a run with --run N).")
        [tiered] = resolve_models([options["model"]])
        try:
            if options["pks"]:
                return [(tiered, {"pks": parse_pks(tiered, options["pks"])})]
            if options["filters"]:
                return [(tiered, {"where": parse_filters(tiered, options["filters"])})]
        except ArgumentError as exc:
            raise CommandError(str(exc)) from None
        if options["all_rows"]:
            return [(tiered, {"all_rows": True})]
        # argparse enforces one of them; call_command(pks=[]) lands here
        raise CommandError("Choose the rows: --pk PK ..., --filter field__lookup=value or --all.")

    def undo_selection(self, run_id: int, label: str | None) -> tuple:
        """``--run N``: the keys archive run N moved that are still cold because of it (``move.undo``)."""
        run = MigrationRun.objects.using(tiering_settings.HOT).filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"No run {run_id} in the ledger.")
        try:
            tiered = undo.undoable(run)
        except undo.NotUndoable as exc:
            raise CommandError(str(exc)) from None
        if label and resolve_models([label])[0] is not tiered:
            raise CommandError(f"Run {run_id} moved {tiered.label}, not {label}.")
        undone = undo.keys(run)
        if not undone:
            raise CommandError(f"Run {run_id} moved no row that is still cold because of it: nothing to undo.")
        return tiered, {"pks": undone, "record": {"undo_run": run.pk}}

    def pending(self, work: list[tuple], options: dict) -> list[tuple]:
        """Keys asked for by ``--pk``: those already hot are said, those in neither tier are unmet (the
        command fails once the others are restored)."""
        [(tiered, selection)] = work
        if selection.get("pks") is None:
            return work
        asked = list(dict.fromkeys(selection["pks"]))
        hot, cold = (keys.present(tiered.model, alias, asked) for alias in (tiering_settings.HOT,
                                                                              tiering_settings.COLD))
        already = [pk for pk in asked if pk in hot and pk not in cold]
        if already:
            self.log(f"{tiered.label}: {_keys(already)} already hot.")
        missing = [pk for pk in asked if pk not in hot and pk not in cold]
        if missing:
            self.unmet.append(f"{tiered.label}: {_keys(missing)} in neither tier")
        return work

    def run_move(self, tiered, options: dict, total, **selection):
        """A row left in cold because hot holds one of its unique values: named, and the command fails."""
        run = super().run_move(tiered, options, total, **selection)
        lines = described(run) if run is not None else []
        for line in lines:
            self.stderr.write(line)
        if lines:
            self.unmet.append(f"{tiered.label}: run {run.pk}: {len(lines)} row(s) stay in cold, their unique "
                              "values taken in hot (see above; the ledger has them)")
        return run


def _keys(pks: list) -> str:
    shown = ", ".join(str(pk) for pk in pks[:SHOWN_KEYS])
    more = f" and {len(pks) - SHOWN_KEYS} more" if len(pks) > SHOWN_KEYS else ""
    return f"{len(pks)} key{'s' if len(pks) != 1 else ''} ({shown}{more}) {'are' if len(pks) != 1 else 'is'}"
