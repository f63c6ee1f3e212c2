"""manage.py restore_hot: move chosen rows of one tiered model back from cold to hot."""
from __future__ import annotations

from django.core.management.base import CommandError

from tiering.management.base import MoveCommand, check_aliases, check_lock, parse_filters, parse_pks, resolve_models
from tiering.models import Direction, RunState


class Command(MoveCommand):
    help = (
        "Move rows of one tiered model (with their child rows) from the cold back to the hot "
        "database: by primary key, by filter, or all of them. Copy, verify, then delete, in short "
        "batches. Restored rows are kept from going straight back: the next migrate_cold skips them "
        "because a policy's access field (e.g. last_seen, last_accessed) is set to now, and a time "
        "policy's rows get a restore hold (RestoredRow) for the policy's age threshold (90 days for "
        "orders.Order)."
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

    def handle(self, *args, **options) -> None:
        from tiering import mover

        self.verbosity = options["verbosity"]
        [tiered] = resolve_models([options["model"]])
        selection: dict = {}
        if options["pks"]:
            selection["pks"] = parse_pks(tiered, options["pks"])
        elif options["filters"]:
            selection["where"] = parse_filters(tiered, options["filters"])
        elif options["all_rows"]:
            selection["all_rows"] = True
        else:  # argparse enforces one of them; call_command(pks=[]) lands here
            raise CommandError("Choose the rows: --pk PK ..., --filter field__lookup=value or --all.")
        check_aliases([tiered])
        plan = None  # the plan serves the dry run and the question; --no-input skips its scans
        if options["dry_run"] or options["interactive"]:
            plan = mover.plan(tiered, self.direction, limit=options["limit"], batch_size=options["batch_size"],
                              **selection)
        if options["dry_run"]:
            self.show_plans([(tiered, plan)])
            self.log("Dry run: nothing moved.")
            return
        check_lock(tiered, self.direction)
        if not self.confirm(options, [(tiered, plan)]):
            raise CommandError("Cancelled: nothing moved.")
        run = self.run_move(tiered, options, plan.rows if plan else None, **selection)
        if run.state == RunState.FAILED:
            raise CommandError(f"{tiered.label}: run {run.pk} failed: {run.error or 'see the ledger'}")
