"""The schema gate: a run moves rows only between tables that match the models on both tiers.

A column added to the live table (a migration applied to hot only) makes a copy to cold fail, or worse
drop the new column's values. Before a run, ``gate()`` compares, on each tier alias, the tables of the
model and its children with what Django expects there (column names, the column type Django's
``field.db_type()`` gives for that alias's database, nullability) and asks Django's migration executor
which migrations of their apps are not applied on that alias (what ``migrate --check`` asks). Any
difference is ``SchemaDrift``, one line naming it and the ``migrate --database`` that fixes it,
raised before anything is recorded in the ledger.

Before each batch ``recheck()`` is cheap: it reads each alias's ``django_migrations`` count and
largest id (two one-row queries) and runs the full comparison again only when they changed since the
gate, since a migration is how a table changes under a running job. A hand-made ``ALTER TABLE`` without
a migration is caught by the next run's gate.

Column types are compared on SQLite (the declared type) and PostgreSQL (``format_type``); on other
databases names and nullability only.
"""
from __future__ import annotations

import re
import threading

from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from .conf import tiering_settings
from .exceptions import ImproperlyTiered
from .registry import TieredModel
from .text import one_line

# format_type() spellings -> the ones Django's PostgreSQL data_types use
_PG_SYNONYMS = {"character varying": "varchar", "character": "char", "time without time zone": "time",
                "timestamp without time zone": "timestamp"}
_PG_TYPES = ("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
             "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped")

_signatures: dict[tuple, tuple] = {}  # (hot, cold, label) -> migration signature at the last clean gate
_recorded: set[str] = set()  # aliases known to have django_migrations
_lock = threading.Lock()


class SchemaDrift(ImproperlyTiered):
    """Hot and cold tables of a tiered model differ from the models (or each other's migrations)."""


def aliases() -> list[str]:
    return [tiering_settings.HOT, tiering_settings.COLD]


def fix_hint(alias: str) -> str:
    return f"run manage.py migrate --database={alias}"


def _normal(type_text: str | None) -> str:
    text = re.sub(r"\s+", " ", str(type_text or "").strip().lower())
    text = re.sub(r"\s*,\s*", ",", text)
    base, paren, rest = text.partition("(")
    return _PG_SYNONYMS.get(base.strip(), base.strip()) + paren + rest


def _present_types(connection, cursor, table: str, description) -> dict[str, str] | None:
    if connection.vendor == "sqlite":
        return {col.name: _normal(col.type_code) for col in description}
    if connection.vendor == "postgresql":
        cursor.execute(_PG_TYPES, [connection.ops.quote_name(table)])
        return {name: _normal(text) for name, text in cursor.fetchall()}
    return None  # a vendor whose type spelling this module does not know: names and nullability only


def table_problems(alias: str, models) -> list[str]:
    """What differs between the models' tables on ``alias`` and the models."""
    connection = connections[alias]
    problems = []
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for model in models:
            table = model._meta.db_table
            if table not in tables:
                problems.append(f"table {table} is missing on alias {alias!r}")
                continue
            description = connection.introspection.get_table_description(cursor, table)
            present = {col.name: col for col in description}
            types = _present_types(connection, cursor, table, description)
            expected = {f.column: f for f in model._meta.local_concrete_fields if f.db_type(connection)}
            for column, field in expected.items():
                col = present.get(column)
                if col is None:
                    problems.append(f"column {table}.{column} is missing on alias {alias!r}")
                    continue
                wanted = _normal(field.db_type(connection))
                if types is not None and types.get(column) != wanted:
                    problems.append(f"column {table}.{column} is {types.get(column)} on alias {alias!r}, "
                                    f"the model wants {wanted}")
                if bool(col.null_ok) != bool(field.null):
                    problems.append(f"column {table}.{column} is {'' if col.null_ok else 'NOT '}NULL on alias "
                                    f"{alias!r}, the model wants {'' if field.null else 'NOT '}NULL")
            problems += [f"column {table}.{name} on alias {alias!r} is not in the model"
                         for name in present if name not in expected]
    return problems


def migration_problems(alias: str, app_labels: set[str]) -> list[str]:
    """The migrations of ``app_labels`` that are not applied on ``alias`` (Django's ``migrate --check``)."""
    executor = MigrationExecutor(connections[alias])
    targets = [key for key in executor.loader.graph.leaf_nodes() if key[0] in app_labels]
    return [f"migration {m.app_label}.{m.name} is {'applied' if backwards else 'not applied'} on alias {alias!r}"
            for m, backwards in executor.migration_plan(targets)]


def drift(tiered: TieredModel) -> dict[str, list[str]]:
    """Per alias, every difference found (empty lists when the tiers match the models)."""
    models = tiered.unit
    apps = {model._meta.app_label for model in models}
    return {alias: migration_problems(alias, apps) + table_problems(alias, models) for alias in aliases()}


def describe(tiered: TieredModel, found: dict[str, list[str]]) -> str:
    """The one-line refusal: the first differences and, per alias that has one, the command that fixes it."""
    parts = []
    for alias, problems in found.items():
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            parts.append(f"{fix_hint(alias)}: {'; '.join(problems[:3])}{more}")
    return f"{tiered.label}: the tier schemas differ, nothing moved; {'; '.join(parts)}"


def signature() -> tuple:
    """Count and largest id of ``django_migrations`` on each alias: changes whenever a migration is
    applied or unapplied there."""
    found = []
    for alias in aliases():
        connection = connections[alias]
        recorder = MigrationRecorder(connection)
        if alias not in _recorded:  # the table does not go away: ask once per process
            if not recorder.has_table():
                found.append((alias, 0, 0))
                continue
            _recorded.add(alias)
        table = connection.ops.quote_name(recorder.Migration._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {table}")
            found.append((alias, *cursor.fetchone()))
    return tuple(found)


def gate(tiered: TieredModel) -> None:
    """Raise SchemaDrift unless both tiers' tables and migrations match the models (the full comparison)."""
    before = signature()
    found = drift(tiered)
    if any(found.values()):
        raise SchemaDrift(describe(tiered, found))
    with _lock:
        _signatures[(*aliases(), tiered.label)] = before


def gate_answering(tiered: TieredModel) -> None:
    """The gate before a run, passed when a tier does not answer: that is no drift, and the run then fails
    on the tier with its own error, recorded in the ledger (as a copy would)."""
    try:
        gate(tiered)
    except DatabaseError:
        pass


def recheck(tiered: TieredModel) -> None:
    """Before a batch: the full gate again only if a migration changed on a tier since the last gate.
    Nothing when this process never gated the model (a promote on the read path), nor when a tier does not
    answer: the batch then fails on it with its own error, in the ledger."""
    key = (*aliases(), tiered.label)
    known = _signatures.get(key)
    if known is None:
        return
    try:
        changed = signature() != known
    except DatabaseError:
        return
    if changed:
        gate_answering(tiered)


def drift_lines(tiered: TieredModel) -> list[tuple[str, str]]:
    """For reports (check, analyze_tiers, dashboard): (difference, the command that fixes it) pairs; an alias
    that does not answer is one pair too."""
    try:
        found = drift(tiered)
    except DatabaseError as exc:
        return [(f"schema not compared: {one_line(exc)}", "check that both tier databases answer")]
    return [(problem, fix_hint(alias)) for alias, problems in found.items() for problem in problems]
