"""manage.py restore_hot: move chosen rows of one tiered model back from cold to hot."""
from __future__ import annotations

from django.core.management.base import CommandError

from tiering.exceptions import FilterError
from tiering.filters import parse_filters, parse_pks
from tiering.management.base import MoveCommand, resolve_models
from tiering.models import Direction
from tiering.move.conflicts import described


class Command(MoveCommand):
    help = (
        "Move rows of one tiered model (with their child rows) from the cold back to the hot "
        "database: by primary key, by filter, or all of them. Copy, verify, then delete, in short "
        "batches. Restored rows are kept from going straight back: the next migrate_cold skips them "
        "because a policy's access field is set to now, and a time policy's rows are held in hot "
        "(RestoredRow) for the policy's age threshold."
    )
    direction = Direction.TO_HOT

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, metavar="app.Model", help="The tiered model to restore.")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--pk", nargs="+", action="extend", dest="pks", metavar="PK",
                           help="Primary keys of the rows to restore.")
        which.add_argument("--filter", action="append", dest="filters", metavar="field__lookup=value",
                           help="Restore the cold rows matching this lookup (repeatable, combined with AND); "
                                "values are parsed by the field, e.g. created_at__gte=2024-01-01.")
        which.add_argument("--all", action="store_true", dest="all_rows", help="Restore every cold row.")
        self.add_move_arguments(parser)

    def selections(self, options: dict) -> list[tuple]:
        [tiered] = resolve_models([options["model"]])
        try:
            if options["pks"]:
                return [(tiered, {"pks": parse_pks(tiered, options["pks"])})]
            if options["filters"]:
                return [(tiered, {"where": parse_filters(tiered, options["filters"])})]
        except FilterError as exc:
            raise CommandError(str(exc)) from None
        if options["all_rows"]:
            return [(tiered, {"all_rows": True})]
        # argparse enforces one of them; call_command(pks=[]) lands here
        raise CommandError("Choose the rows: --pk PK ..., --filter field__lookup=value or --all.")

    def run_move(self, tiered, options: dict, total, **selection):
        """A row left in cold because hot holds one of its unique values: named, and the command fails."""
        run = super().run_move(tiered, options, total, **selection)
        lines = described(run) if run is not None else []
        for line in lines:
            self.stderr.write(line)
        if lines:
            raise CommandError(f"{tiered.label}: run {run.pk}: {len(lines)} row(s) stay in cold, their unique "
                               "values taken in hot (see above; the ledger has them)")
        return run
