"""``manage.py analyze_tiers``: rows, bytes, backlog, age histogram and cost per model and tier.

``--format json`` prints the stable document described in docs/dashboard.md;
the table form fits a 100-column terminal. Read-only: it never moves data.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist

from tiering import overdue, schema
from tiering.analysis import analyze_all, keys_in_both, report, unique_values_in_both
from tiering.conf import tiering_settings
from tiering.management.base import database_error, unanswering_tier
from tiering.registry import registry
from tiering.text import human_bytes

WIDTH = 100
SHORT = {"pg_total_relation_size": "pg_total_relation_size", "dbstat": "sqlite dbstat",
         "page_share": "sqlite page share"}


class Command(BaseCommand):
    help = "Show rows, bytes on disk, backlog, age histogram and storage cost per tiered model and tier."

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", action="append", dest="models", metavar="APP.MODEL",
            help="Only this tiered model (repeatable). Default: every tiered model.",
        )
        parser.add_argument("--format", choices=["table", "json"], default="table", help="Output format.")
        parser.add_argument(
            "--check-duplicates", action="store_true",
            help="Also compare the primary keys of both tiers (reads every key) and the unique values (probes "
                 "hot for each cold row's), and fail if a key or a unique value is in both.",
        )

    def handle(self, *args, models=None, format="table", verbosity=1, **options):
        try:
            labels = [registry.by_label(label).label for label in models] if models else None
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        if not labels and not len(registry):
            raise CommandError("No tiered models: declare 'class Tiering' with a policy on a model.")
        try:
            unreachable = unanswering_tier()
            if unreachable:
                raise unreachable
            self.analyze(labels, format, verbosity, options)
        except ConnectionDoesNotExist as exc:
            raise CommandError(f"TIERING names a database alias that DATABASES lacks: {exc}") from None
        except DatabaseError as exc:  # one line, as migrate_cold and restore_hot say it
            raise database_error(exc, note="") from None

    def analyze(self, labels: list[str] | None, format: str, verbosity: int, options: dict) -> None:
        figures = analyze_all(labels)
        document = report(figures)
        if format == "json":
            self.stdout.write(json.dumps(document, indent=2, sort_keys=False))
        else:
            self.write_table(document, verbosity)
        if options.get("check_duplicates"):
            self.check_duplicates(labels)

    def check_duplicates(self, labels: list[str] | None) -> None:
        """Keys in both tiers are a bug (the mover prevents them): name them and fail."""
        found = {}
        for tiered in registry:
            if labels is None or tiered.label in labels:
                keys = keys_in_both(tiered)
                if keys:
                    found[tiered.label] = keys
        values = [row for tiered in registry if labels is None or tiered.label in labels
                  for row in unique_values_in_both(tiered)]
        for label, names, cold_pk, hot_pk in values:
            self.stderr.write(f"{label}: the {', '.join(names)} of cold {cold_pk} is also hot {hot_pk}'s")
        if found or values:
            detail = "; ".join(f"{label}: {len(keys)} keys, e.g. {keys[:5]}" for label, keys in found.items())
            if values:
                detail += ("; " if detail else "") + f"{len(values)} unique value(s) in both tiers (listed above)"
            raise CommandError(f"Rows present in both tiers: {detail}")
        self.stderr.write("No key is in both tiers, nor any unique value.")

    def write_table(self, doc: dict, verbosity: int) -> None:
        def out(line: str) -> None:
            self.stdout.write(_clip(line, WIDTH))

        late = {item.label: item for item in overdue.overdue(send=True)}
        prices = doc["cost_per_gb_month"]
        per_month = f"{tiering_settings.CURRENCY}/month"
        header = f"{'model / tier':<24}{'rows':>12}{'child rows':>12}{'bytes':>12}{per_month:>10}  {'notes'}"
        out(header)
        out("-" * WIDTH)
        for m in doc["models"]:
            self.stdout.write(self.style.MIGRATE_HEADING(_clip(f"{m['model']}  ({m['policy']})", WIDTH)))
            for tier in ("hot", "cold"):
                t = m["tiers"][tier]
                out(
                    f"  {tier + ' [' + t['alias'] + ']':<22}{t['rows']:>12,}{t['child_rows']:>12,}"
                    f"{human_bytes(t['bytes']):>12}{_money(t['monthly_cost']):>10}  "
                    f"{SHORT.get(t['bytes_method'], t['bytes_method'])}"
                )
            backlog = m["backlog"]
            out(
                f"  {'backlog (eligible now)':<22}{backlog['rows']:>12,}{'':>12}{human_bytes(backlog['bytes']):>12}"
                f"{'':>10}  saving so far {_money(m['cost']['saving_monthly'])}/month"
            )
            run = m["last_run"]
            if run:
                line = (
                    f"  last run #{run['id']} {run['direction']} {run['state']} {run['rows']:,} rows "
                    f"{run['rows_per_second']:,.0f} rows/s at {run['started_at'][:19]}"
                )
                if run["error"]:
                    line += f" error: {run['error'].splitlines()[0]}"
                out(line)
            else:
                out("  last run: never")
            if m["model"] in late:
                self.stdout.write(self.style.WARNING(_clip(f"  warning: {late[m['model']].describe()}", WIDTH)))
            for problem, fix in schema.drift_lines(registry.by_label(m["model"])):
                out(f"  schema drift: {problem}: {fix}")
            if verbosity >= 1:
                for hist in m["histograms"]:
                    out(f"  age of {hist['field']} (hot/cold rows):")
                    cells = [f"{b['label']} {b['hot']:,}/{b['cold']:,}" for b in hist["buckets"]]
                    for line in _wrap(cells, WIDTH - 4):
                        out("    " + line)
            out("")
        totals = doc["totals"]
        out("-" * WIDTH)
        out(
            f"{'total hot':<24}{totals['hot']['rows']:>12,}{totals['hot']['child_rows']:>12,}"
            f"{human_bytes(totals['hot']['bytes']):>12}{_money(totals['hot']['monthly_cost']):>10}  "
            f"at {prices['hot']}/GB-month"
        )
        out(
            f"{'total cold':<24}{totals['cold']['rows']:>12,}{totals['cold']['child_rows']:>12,}"
            f"{human_bytes(totals['cold']['bytes']):>12}{_money(totals['cold']['monthly_cost']):>10}  "
            f"at {prices['cold']}/GB-month"
        )
        out(
            f"{'backlog':<24}{totals['backlog_rows']:>12,}{'':>12}{human_bytes(totals['backlog_bytes']):>12}"
            f"{'':>10}  saving so far {_money(totals['saving_monthly'])}/month"
        )


def _money(value: float) -> str:
    """Small demo-sized costs keep their digits; large ones fit the column."""
    return f"{value:.2f}" if abs(value) >= 100 else f"{value:.6f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(cells: list[str], width: int) -> list[str]:
    lines, current = [], ""
    for cell in cells:
        candidate = f"{current}   {cell}" if current else cell
        if len(candidate) > width and current:
            lines.append(current)
            current = cell
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines
