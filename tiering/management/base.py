"""The flow every command that moves rows shares (migrate_cold, restore_hot), the way Django's
``BaseCommand`` fixes ``execute()`` around ``handle()``.

``MoveCommand.handle``: resolve the models and rows (the subclass's
``selections``), check that both tiers answer, plan, then a dry run or the
confirmation, then run and report. Bad input is a one-line ``CommandError``
before anything moves (the options' values: ``tiering.arguments``); a
database that stops answering mid-command is one line naming the tier; what
the arguments asked for and did not get (``unmet``: keys in neither tier...)
fails the command after the run. The moving itself is ``tiering.move``'s job.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.db.models import Sum

from tiering import backends, move, schema
from tiering.arguments import OPTIONS, check_options
from tiering.conf import tiering_settings
from tiering.exceptions import ArgumentError
from tiering.models import Direction, MigrationBatch, MigrationRun, RunState
from tiering.move import throttle
from tiering.move.locks import describe_holder
from tiering.registry import TieredModel, registry
from tiering.text import human_bytes, one_line

# --- argument types: tiering.arguments declares them ---------------------------------------

positive_int = OPTIONS["batch_size"].argparse_type()
positive_float = OPTIONS["max_runtime"].argparse_type()
non_negative_float = OPTIONS["sleep"].argparse_type()
latency_ratio = OPTIONS["max_latency_ratio"].argparse_type()
finite_seconds = OPTIONS["max_replica_lag"].argparse_type()


# --- resolving arguments ----------------------------------------------------------------------

def resolve_models(labels: Iterable[str] | None) -> list[TieredModel]:
    """Registry entries for ``app.Model`` labels, or every tiered model when none is given."""
    labels = list(labels or [])
    if not labels:
        return list(registry)
    found: list[TieredModel] = []
    for label in labels:
        try:
            tiered = registry.by_label(label)
        except LookupError as exc:
            raise CommandError(one_line(exc.args[0] if exc.args else exc)) from None
        if tiered not in found:
            found.append(tiered)
    return found


def require_tiers_reachable(models: Iterable[TieredModel]) -> None:
    """Fail fast (CommandError) unless both tiers answer, are databases tiering knows, are not the same
    tables, and hold the tables we will touch: checked before the first batch, so that an unreachable or
    unfit cold database changes nothing."""
    tables = set()
    for tiered in models:
        tables.update(model._meta.db_table for model in tiered.unit)
    present = {}
    for role, alias in (("hot", tiering_settings.HOT), ("cold", tiering_settings.COLD)):
        try:
            connection = connections[alias]
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
                present[role] = set(connection.introspection.table_names(cursor))
        except Exception as exc:  # any driver error means: do not start
            raise CommandError(f"The {role} database (alias {alias!r}) is unreachable: {one_line(exc)}") from None
    try:
        reason = backends.same_tables(tiering_settings.HOT, tiering_settings.COLD)
    except ImproperlyConfigured as exc:  # a database tiering has no backend for, a missing schema
        raise CommandError(one_line(exc)) from None
    if reason:  # a move would copy each row onto itself and delete it
        raise CommandError(f"Hot and cold are the same tables: {reason}.")
    for role, alias in (("hot", tiering_settings.HOT), ("cold", tiering_settings.COLD)):
        missing = sorted(tables - present[role])
        if missing:
            raise CommandError(
                f"The {role} database (alias {alias!r}) lacks table(s) {', '.join(missing)}: "
                f"run 'manage.py migrate --database={alias}'"
            )
    for tiered in models:  # columns, types, nullability and migrations of both tiers match the models
        try:
            schema.gate(tiered)
        except schema.SchemaDrift as exc:
            raise CommandError(one_line(exc)) from None


REPAIRS = "nothing is lost: the next run repairs what this one left"


def unanswering_tier(note: str = "") -> CommandError | None:
    """A CommandError naming the first tier that does not answer on a fresh connection, or None."""
    for role, alias in (("hot", tiering_settings.HOT), ("cold", tiering_settings.COLD)):
        try:
            connections[alias].close()
        except Exception:  # a dead connection may fail to close: it is dropped all the same
            pass
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as down:  # any driver error: that tier is away
            return CommandError(f"The {role} database (alias {alias!r}) does not answer: {one_line(down)}"
                                + (f"; {note}" if note else ""))
    return None


def database_error(exc: BaseException, note: str = REPAIRS) -> CommandError:
    """A database error met mid-command as one line, naming the tier that does not answer (each is asked
    again on a fresh connection); ``note``: what it means for the data."""
    return unanswering_tier(note) or CommandError(f"{type(exc).__name__}: {one_line(exc)}")


def check_lock(tiered: TieredModel, direction: str) -> None:
    """CommandError if a live run holds the model+direction lock, before anything is written.

    ``move()`` raises ``LockHeld`` too, but only after recording a refused run
    in the ledger; checking first keeps a refused command side-effect free.
    """
    lock = move.held_lock(tiered, direction)
    if lock is not None:
        raise CommandError(describe_holder(tiered, direction, lock))


# --- the command base -------------------------------------------------------------------------

class MoveCommand(BaseCommand):
    """Base of commands that move rows: the shared flow, options, confirmation, progress and summary.

    A subclass sets ``direction`` and gives ``selections(options)``: each
    model the arguments name, with the rows to move as ``move()`` keywords.
    ``pending(work, options)`` may narrow that once the tiers answer.
    """

    direction: str = Direction.TO_COLD

    def selections(self, options: dict) -> list[tuple[TieredModel, dict]]:
        raise NotImplementedError("subclasses of MoveCommand must provide selections()")

    def pending(self, work: list[tuple[TieredModel, dict]], options: dict) -> list[tuple[TieredModel, dict]]:
        return work

    def handle(self, *args: Any, **options: Any) -> None:
        """Resolve, check, plan, dry run or confirm, run, report: then what the arguments asked for and did
        not get (``self.unmet``, filled by the subclass) fails the command in one line."""
        self.verbosity = options["verbosity"]
        self.unmet: list[str] = []
        try:
            self.move_all(options)
        except DatabaseError as exc:  # a tier died between the engine's steps, or before the run existed
            raise database_error(exc) from None
        if self.unmet:
            raise CommandError("Not all of the request was met: " + "; ".join(self.unmet))

    def move_all(self, options: dict) -> None:
        work = self.selections(options)
        require_tiers_reachable([tiered for tiered, _ in work])
        work = self.pending(work, options)
        if not work:
            return
        # the plan (counts, bytes estimate) serves the dry run and the question; --no-input skips its scans
        wants_plan = options["dry_run"] or options["interactive"]
        plans = [(tiered, self.plan(tiered, options, selection) if wants_plan else None) for tiered, selection in work]
        if options["dry_run"]:
            self.show_plans(plans)
            self.log("Dry run: nothing moved.")
            return
        for tiered, _ in work:
            check_lock(tiered, self.direction)
        if not self.confirm(options, plans):
            raise CommandError("Cancelled: nothing moved.")
        self.run_all(work, [plan for _, plan in plans], options)

    def plan(self, tiered: TieredModel, options: dict, selection: dict) -> move.MovePlan:
        chosen = {k: v for k, v in selection.items() if k in ("pks", "where", "all_rows")}
        resumes = selection.get("resumes")
        return move.plan(tiered, self.direction, limit=options["limit"], batch_size=options["batch_size"],
                         now=resumes.cutoff if resumes else None, **chosen)

    def run_all(self, work: list[tuple[TieredModel, dict]], plans: list, options: dict) -> None:
        """Move model after model within one --limit and one --max-runtime."""
        deadline = time.monotonic() + options["max_runtime"] if options["max_runtime"] else None
        remaining = options["limit"]
        for (tiered, selection), plan in zip(work, plans):
            max_runtime = None
            if deadline is not None:
                max_runtime = deadline - time.monotonic()
                if max_runtime <= 0:
                    self.log(f"{tiered.label}: skipped, --max-runtime reached.")
                    continue
            if remaining is not None and remaining <= 0:
                self.log(f"{tiered.label}: skipped, --limit reached.")
                continue
            run = self.run_move(tiered, options, plan.rows if plan else None, limit=remaining,
                                max_runtime=max_runtime, **selection)
            if remaining is not None and run is not None:
                remaining -= run.rows

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any):
        """Bad arguments raise CommandError (one line) also on the command line."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.called_from_command_line = False
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        # Django parses argv outside its own CommandError handler: report here.
        try:
            super().run_from_argv(argv)
        except CommandError as exc:
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(exc.returncode)

    def execute(self, *args: Any, **options: Any) -> Any:
        """Check the move options first: ``call_command(..., batch_size=0)`` skips argparse's types, and must
        fail the same one-line way before anything moves."""
        try:
            options.update({k: v for k, v in check_options(options).items() if v is not None})
        except ArgumentError as exc:
            raise CommandError(str(exc)) from None
        if options.get("max_replica_lag") is not None and not throttle.settings()["REPLICA"]:
            raise CommandError("--max-replica-lag needs the replica's alias in TIERING['THROTTLE']['REPLICA'].")
        return super().execute(*args, **options)

    def add_move_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Show how many rows, bytes and batches would move, and change nothing.")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive",
                            help="Do not ask for confirmation (required when not on a terminal).")
        parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                            help="Upper bound of rows per batch (default TIERING['BATCH_SIZE'], 50000; the "
                                 "orm path takes at most 10000); batches are also sized by time.")
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                            help="Stop cleanly once about N rows have moved.")
        parser.add_argument("--max-runtime", type=positive_float, default=None, metavar="SECONDS",
                            help="Stop cleanly between batches once this many seconds have passed.")
        parser.add_argument("--sleep", type=non_negative_float, default=0.0, metavar="SECONDS",
                            help="Pause between batches to leave room for the application.")
        parser.add_argument("--max-latency-ratio", type=latency_ratio, default=None, metavar="RATIO",
                            help="Throttle: keep the p99 of a probe on hot within RATIO times its idle p99, by "
                                 "smaller batches and pauses (default TIERING['THROTTLE']['MAX_LATENCY_RATIO']).")
        parser.add_argument("--max-replica-lag", type=finite_seconds, default=None, metavar="SECONDS",
                            help="Throttle: pause while TIERING['THROTTLE']['REPLICA'] lags more than this.")

    # output -------------------------------------------------------------------------------

    def is_tty(self, stream: Any) -> bool:
        target = getattr(stream, "_out", stream)
        try:
            return bool(target.isatty())
        except (AttributeError, ValueError):
            return False

    def log(self, message: str, level: int = 1, style: Any = None) -> None:
        if self.verbosity >= level:
            self.stdout.write(style(message) if style else message)

    # confirmation -------------------------------------------------------------------------

    def show_plans(self, plans: list[tuple[TieredModel, Any]]) -> None:
        direction = Direction(self.direction).label
        for tiered, plan in plans:
            children = f" (+{plan.child_rows} child rows)" if plan.child_rows else ""
            self.stdout.write(
                f"{tiered.label} {direction}: {plan.rows} rows{children}, "
                f"~{human_bytes(plan.bytes)}, {plan.batches} batches"
            )

    def confirm(self, options: dict, plans: list[tuple[TieredModel, Any]]) -> bool:
        """Ask before moving; refuse outright when nobody can answer."""
        if not options["interactive"]:
            return True
        if not self.is_tty(sys.stdin):
            raise CommandError("Not on a terminal: nothing moved; pass --no-input to move without confirmation.")
        self.show_plans(plans)
        answer = input("Type 'yes' to move these rows: ")
        return answer.strip().lower() in {"yes", "y"}

    # the move -----------------------------------------------------------------------------

    def progress_reporter(self, tiered: TieredModel, total: int | None):
        """A callable for ``move(progress=...)`` plus a closer."""
        use_bar = self.verbosity >= 1 and self.is_tty(self.stdout)
        state = {"rows": 0, "last_log": 0.0}
        bar = None
        if use_bar:
            from tqdm import tqdm

            out = getattr(self.stdout, "_out", sys.stdout)
            try:
                width = os.get_terminal_size(out.fileno()).columns
            except (AttributeError, OSError, ValueError):
                width = 0
            # a terminal that reports no size (a bare pty) would hide the bar: assume 100x24
            bar = tqdm(total=total or None, unit=" rows", unit_scale=True, dynamic_ncols=bool(width),
                       ncols=None if width else 100, nrows=None if width else 24,
                       desc=tiered.label, file=out)

        def report(progress: Any) -> None:
            if getattr(progress, "waiting", ""):
                line = f"{tiered.label}: throttled, waiting: {progress.waiting}"
                if bar is not None:
                    bar.write(line, file=bar.fp)
                elif self.verbosity >= 1:
                    self.stdout.write(line)
                return
            rows = int(progress.rows)
            if bar is not None:
                if progress.total_estimate and bar.total != progress.total_estimate:
                    bar.total = progress.total_estimate
                bar.update(rows - state["rows"])
                bar.set_postfix(batches=progress.batches, size=human_bytes(progress.bytes), refresh=False)
            else:
                now = time.monotonic()
                if self.verbosity >= 2 or (self.verbosity >= 1 and now - state["last_log"] >= 10):
                    state["last_log"] = now
                    of = f"/{progress.total_estimate}" if progress.total_estimate else ""
                    self.stdout.write(f"{tiered.label}: {rows}{of} rows in {progress.batches} batches, "
                                      f"{human_bytes(progress.bytes)}")
            state["rows"] = rows

        def close() -> None:
            if bar is not None:
                bar.close()

        return report, close

    def run_move(self, tiered: TieredModel, options: dict, total: int | None,
                 **selection: Any) -> MigrationRun | None:
        """Call the engine for one model; map its errors to one-line CommandErrors. None: nothing to move
        (the engine recorded no run)."""
        report, close = self.progress_reporter(tiered, total)
        started = time.monotonic()
        try:
            run = move.move(tiered, self.direction, batch_size=options["batch_size"], sleep=options["sleep"],
                            max_latency_ratio=options.get("max_latency_ratio"),
                            max_replica_lag=options.get("max_replica_lag"), trigger="command",
                            progress=report if self.verbosity >= 1 else None, **selection)
        except move.LockHeld as exc:
            raise CommandError(f"{tiered.label}: {one_line(exc)}") from None
        except move.MoveError as exc:
            run_id = f"run {exc.run.pk}" if exc.run is not None else "run"
            raise CommandError(f"{tiered.label}: {run_id} failed: {one_line(exc)}") from None
        except ImproperlyConfigured as exc:
            raise CommandError(f"{tiered.label}: {one_line(exc)}") from None
        finally:
            close()
        if run is None:
            self.log(f"{tiered.label} {Direction(self.direction).label}: nothing to move.")
            return None
        self.summary(tiered, run, time.monotonic() - started)
        if run.state == RunState.FAILED:  # an engine that records failure without raising
            raise CommandError(f"{tiered.label}: run {run.pk} failed: {run.error or 'see the ledger'}")
        return run

    def summary(self, tiered: TieredModel, run: MigrationRun, seconds: float) -> None:
        rate = run.rows / seconds if seconds > 0 else 0.0
        children = f" (+{run.child_rows} child rows)" if run.child_rows else ""
        stopped = ""
        if run.state == RunState.STOPPED:
            again = "run again"
            if self.direction == Direction.TO_COLD:
                again += " (--resume keeps this run's cutoff)"
            stopped = f" — stopped early (limit or max runtime); {again} to continue"
        throttled = MigrationBatch.objects.using(tiering_settings.HOT).filter(run=run).aggregate(
            s=Sum("throttled_seconds"))["s"]
        if throttled:
            stopped = f", throttled {throttled:.1f}s{stopped}"
        self.log(
            f"{tiered.label} {Direction(self.direction).label}: {run.rows} rows{children} in {run.batches} batches, "
            f"{human_bytes(run.bytes)}, {rate:,.0f} rows/s, run {run.pk} ({run.state}){stopped}",
            style=self.style.SUCCESS,
        )
