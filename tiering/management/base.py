"""Shared plumbing of the commands that move rows (migrate_cold, restore_hot, ...).

One place for what every data-moving command must do the same way: parse
``--model``/``--pk``/``--filter`` into registry entries and ``Q`` objects,
reject bad input with a one-line ``CommandError`` before anything moves,
check that both tier aliases answer, show the plan and ask for confirmation,
report progress (a tqdm bar on a terminal, plain log lines otherwise) and
print a summary. The moving itself is ``tiering.mover``'s job.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import Any, Iterable

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.utils import timezone

from tiering.analysis import human_bytes
from tiering.conf import tiering_settings
from tiering.models import Direction, MigrationRun, RunState
from tiering.registry import TieredModel, registry

ARROWS = {Direction.TO_COLD: "hot → cold", Direction.TO_HOT: "cold → hot"}


def one_line(exc: BaseException | str) -> str:
    """The first line of an error message, whitespace collapsed (CommandErrors are one line)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())[:300]


# --- argument types ---------------------------------------------------------------------------

def positive_int(value: str) -> int:
    """argparse type: an integer > 0 (argparse turns the ValueError into a usage error)."""
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


positive_int.__name__ = "positive integer"


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


positive_float.__name__ = "positive number"


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError(value)
    return number


non_negative_float.__name__ = "number >= 0"


# the options add_move_arguments declares, with their argparse types (checked again for call_command)
MOVE_OPTION_TYPES = {"batch_size": positive_int, "limit": positive_int, "max_runtime": positive_float,
                     "sleep": non_negative_float}


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


def parse_pks(tiered: TieredModel, values: Iterable[str]) -> list[Any]:
    """Convert ``--pk`` values with the primary key field's ``to_python``."""
    pk_field = tiered.model._meta.pk
    pks = []
    for value in values:
        try:
            pks.append(pk_field.to_python(value))
        except ValidationError as exc:
            raise CommandError(f"--pk {value!r}: {one_line('; '.join(exc.messages))}") from None
    return pks


def _convert(field: Any, lookup: str, raw: str) -> Any:
    """A ``--filter`` value as the lookup expects it, converted by the field's ``to_python``."""
    if lookup == "isnull":
        lowered = raw.strip().lower()
        if lowered not in {"true", "false", "1", "0", "yes", "no"}:
            raise ValidationError(f"isnull expects true or false, not {raw!r}")
        return lowered in {"true", "1", "yes"}
    if lookup in {"in", "range"}:
        items = [_field_value(field, item.strip()) for item in raw.split(",")]
        if lookup == "range" and len(items) != 2:
            raise ValidationError("range expects two comma-separated values")
        return items
    if lookup in {"year", "month", "day", "week", "week_day", "iso_week_day", "quarter", "hour", "minute",
                  "second", "iso_year"}:
        return int(raw)
    if lookup in {"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "regex",
                  "iregex"}:
        return raw
    return _field_value(field, raw)


def _field_value(field: Any, raw: str) -> Any:
    value = field.to_python(raw)
    if isinstance(value, datetime) and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value)  # a bare date or local time means the current time zone
    return value


def parse_filters(tiered: TieredModel, expressions: Iterable[str]) -> Q:
    """``field__lookup=value`` strings -> one ``Q`` (AND), validated against the model.

    Values go through the final field's ``to_python`` so dates, datetimes and
    decimals work; an unknown field, relation or lookup raises ``CommandError``.
    """
    model = tiered.model
    q = Q()
    for expression in expressions:
        key, sep, raw = expression.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandError(f"--filter {expression!r}: expected field__lookup=value")
        parts = key.split(LOOKUP_SEP)
        opts, field, lookup = model._meta, None, "exact"
        for i, part in enumerate(parts):
            if part == "pk" and field is None and opts is not None:
                field = opts.pk
                continue
            if opts is not None:
                try:
                    field = opts.get_field(part)
                except FieldDoesNotExist:
                    if field is None:
                        raise CommandError(f"--filter {expression!r}: {model._meta.label} has no field {part!r}") from None
                else:
                    if field.is_relation and i < len(parts) - 1:
                        related = field.related_model
                        opts = related._meta if related is not None else None
                        if not getattr(field, "concrete", False) or field.many_to_many or field.one_to_many:
                            raise CommandError(f"--filter {expression!r}: only fields of the model and its "
                                               "forward relations can be filtered on") from None
                    else:
                        opts = None
                    continue
            lookup = LOOKUP_SEP.join(parts[i:])
            break
        if field is not None and field.is_relation and lookup not in {"isnull"}:
            field = field.target_field  # customer=3 compares with the related key
        if (field is not None and LOOKUP_SEP not in lookup and field.get_lookup(lookup) is None
                and field.get_transform(lookup) is None):
            raise CommandError(f"--filter {expression!r}: unsupported lookup {lookup!r} for field {field.name!r}")
        try:
            value = _convert(field, lookup, raw)
            condition = Q(**{key: value})
            QuerySet(model=model).filter(condition).query.get_compiler(
                using=tiering_settings.HOT).as_sql()
        except ValidationError as exc:
            raise CommandError(f"--filter {expression!r}: {one_line('; '.join(exc.messages))}") from None
        except (FieldError, FieldDoesNotExist, ValueError, TypeError) as exc:
            raise CommandError(f"--filter {expression!r}: {one_line(exc)}") from None
        q &= condition
    return q


def check_aliases(models: Iterable[TieredModel]) -> None:
    """Fail fast (CommandError) unless both tiers answer and hold the tables we will touch.

    A cheap ``SELECT 1`` and a table listing per alias, done before the first
    batch, so that an unreachable cold database changes nothing.
    """
    tables = set()
    for tiered in models:
        tables.add(tiered.model._meta.db_table)
        tables.update(child.model._meta.db_table for child in tiered.children)
    for role, alias in (("hot", tiering_settings.HOT), ("cold", tiering_settings.COLD)):
        try:
            connection = connections[alias]
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
                present = set(connection.introspection.table_names(cursor))
        except Exception as exc:  # any driver error means: do not start
            raise CommandError(f"The {role} database (alias {alias!r}) is unreachable: {one_line(exc)}") from None
        missing = sorted(tables - present)
        if missing:
            raise CommandError(
                f"The {role} database (alias {alias!r}) lacks table(s) {', '.join(missing)}: "
                f"run 'manage.py migrate --database={alias}'"
            )
    from tiering.mover import same_tables

    reason = same_tables(tiering_settings.HOT, tiering_settings.COLD)
    if reason:  # a move would copy each row onto itself and delete it
        raise CommandError(f"Hot and cold are the same tables: {reason}.")


def check_lock(tiered: TieredModel, direction: str) -> None:
    """CommandError if a live run holds the model+direction lock, before anything is written.

    ``mover.move()`` raises ``LockHeld`` too, but only after recording a refused
    run in the ledger; checking first keeps a refused command side-effect free.
    """
    from tiering import mover

    lock = mover.held_lock(tiered, direction)
    if lock is not None:
        age = (timezone.now() - lock.heartbeat_at).total_seconds()
        raise CommandError(f"{tiered.label} is already being moved {ARROWS[direction]} by run {lock.run_id} "
                           f"({lock.owner}, heartbeat {age:.0f}s ago); wait for it to finish")


# --- the command base -------------------------------------------------------------------------

class MoveCommand(BaseCommand):
    """Base of commands that move rows: shared options, confirmation, progress and summary."""

    direction: str = Direction.TO_COLD

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
        for name, kind in MOVE_OPTION_TYPES.items():
            value = options.get(name)
            if value is None:
                continue
            try:
                if isinstance(value, bool):
                    raise TypeError(value)
                kind(value)
            except (TypeError, ValueError):
                raise CommandError(f"--{name.replace('_', '-')} must be a {kind.__name__}, not {value!r}.") from None
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
        direction = ARROWS[self.direction]
        for tiered, plan in plans:
            children = f" (+{plan.child_rows} child rows)" if getattr(plan, "child_rows", 0) else ""
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
        """A callable for ``mover.move(progress=...)`` plus a closer."""
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

    def run_move(self, tiered: TieredModel, options: dict, total: int | None, **selection: Any) -> MigrationRun:
        """Call the engine for one model; map its errors to one-line CommandErrors."""
        from tiering import mover

        report, close = self.progress_reporter(tiered, total)
        started = time.monotonic()
        try:
            run = mover.move(
                tiered, self.direction,
                batch_size=options["batch_size"], limit=selection.pop("limit", options["limit"]),
                max_runtime=selection.pop("max_runtime", options["max_runtime"]), sleep=options["sleep"],
                trigger="command", progress=report if self.verbosity >= 1 else None, **selection,
            )
        except mover.LockHeld as exc:
            raise CommandError(f"{tiered.label}: {one_line(exc)}") from None
        except mover.MoveError as exc:
            run = getattr(exc, "run", None) or (
                MigrationRun.objects.using(tiering_settings.HOT)
                .filter(model_label=tiered.label, direction=self.direction, state=RunState.FAILED)
                .order_by("-started_at", "-id").first()
            )
            run_id = f"run {run.pk}" if run is not None else "run"
            raise CommandError(f"{tiered.label}: {run_id} failed: {one_line(exc)}") from None
        finally:
            close()
        self.summary(tiered, run, time.monotonic() - started)
        return run

    def summary(self, tiered: TieredModel, run: MigrationRun, seconds: float) -> None:
        rate = run.rows / seconds if seconds > 0 else 0.0
        children = f" (+{run.child_rows} child rows)" if run.child_rows else ""
        stopped = ""
        if run.state == RunState.STOPPED:
            again = "run again (--resume keeps this run's cutoff)" if self.direction == Direction.TO_COLD else "run again"
            stopped = f" — stopped early (limit or max runtime); {again} to continue"
        self.log(
            f"{tiered.label} {ARROWS[self.direction]}: {run.rows} rows{children} in {run.batches} batches, "
            f"{human_bytes(run.bytes)}, {rate:,.0f} rows/s, run {run.pk} ({run.state}){stopped}",
            style=self.style.SUCCESS,
        )
