"""System checks for tiering configuration (``manage.py check``).

Ids: tiering.E0xx for errors (a configuration that would lose or hide rows,
or cannot work), W0xx for settings that work but cost speed or leave a
hazard (W002: a save that can duplicate a moved row; W003: an unknown key;
W010, W011: a setting that asks for an optional package that is not installed; E018: tables or
migrations of a tier that differ from the models; E019: TIERING['THROTTLE']; E020: a text column of a
tiered model that MySQL/MariaDB sorts case- or accent-insensitively, or with PAD SPACE).
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connections, models

from . import backends, extras
from .conf import DEFAULTS, tiering_settings
from .exceptions import UnsupportedDatabase
from .mixins import TieredSaveMixin
from .move import paths
from .policies import HybridPolicy, Policy
from .query import TieredManager, TieredQuerySet
from .registry import TieredModel, constraints_into, constraints_out_of
from .registry import registry as global_registry
from .schedule import crontab_fields


@checks.register(checks.Tags.database, checks.Tags.models)
def check_aliases(app_configs=None, **kwargs):
    errors = []
    for key in ("HOT", "COLD"):
        alias = getattr(tiering_settings, key)
        if alias not in settings.DATABASES:
            errors.append(
                checks.Error(
                    f"TIERING['{key}'] names the database alias {alias!r}, which is not in DATABASES.",
                    hint=f"Add {alias!r} to DATABASES (for example from COLD_DATABASE_URL) or fix TIERING['{key}'].",
                    id="tiering.E001",
                )
            )
    if tiering_settings.HOT == tiering_settings.COLD:
        errors.append(
            checks.Error(
                "TIERING['HOT'] and TIERING['COLD'] name the same alias.",
                hint="The cold tier must be a second database alias.",
                id="tiering.E002",
            )
        )
    if "tiering.router.TieringRouter" not in getattr(settings, "DATABASE_ROUTERS", []) and not any(
        "TieringRouter" in str(r) for r in getattr(settings, "DATABASE_ROUTERS", [])
    ):
        errors.append(
            checks.Error(
                "tiering.router.TieringRouter is not in DATABASE_ROUTERS.",
                hint="Add 'tiering.router.TieringRouter' to DATABASE_ROUTERS so writes go to the hot tier.",
                id="tiering.E003",
            )
        )
    for name in ("BATCH_SIZE", "TOUCH_INTERVAL", "READ_CHUNK_SIZE", "TOUCH_BUFFER_SIZE"):
        value = getattr(tiering_settings, name)
        if not isinstance(value, int) or value <= 0:
            errors.append(
                checks.Error(
                    f"TIERING['{name}'] must be a positive integer, not {value!r}.",
                    hint=f"Set TIERING['{name}'] to an int above 0 or remove it to use the default.",
                    id="tiering.E004",
                )
            )
    return errors


@checks.register()
def check_settings(app_configs=None, **kwargs):
    """Every other TIERING key: unknown keys (W003), seconds (E014), prices and their currency (E015), the
    crontab (E016), booleans (E017)."""
    errors = []
    user = getattr(settings, "TIERING", None) or {}
    for key in sorted(set(user) - set(DEFAULTS)):
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        errors.append(checks.Warning(
            f"TIERING has the unknown key {key!r}; it is ignored.",
            hint=f"Did you mean {close[0]!r}?" if close else f"The keys are {', '.join(DEFAULTS)}.",
            id="tiering.W003"))
    for name in ("BATCH_TARGET_SECONDS", "TOUCH_FLUSH_SECONDS", "LOCK_STALE_SECONDS", "METRICS_REFRESH_SECONDS"):
        value = getattr(tiering_settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            errors.append(checks.Error(
                f"TIERING['{name}'] must be a positive number of seconds, not {value!r}.",
                hint=f"Set TIERING['{name}'] to a number above 0 or remove it to use the default.",
                id="tiering.E014"))
    for name in ("RUN_IN_PROCESS", "ADMIN_PROMOTES_ON_VIEW"):
        value = getattr(tiering_settings, name)
        if not isinstance(value, bool):
            errors.append(checks.Error(
                f"TIERING['{name}'] must be True or False, not {value!r}.",
                hint=f"Set TIERING['{name}'] to a bool or remove it to use the default ({DEFAULTS[name]}).",
                id="tiering.E017"))
    prices = tiering_settings.COST_PER_GB_MONTH
    if not isinstance(prices, dict) or not all(
            isinstance(prices.get(tier), (int, float)) and not isinstance(prices.get(tier), bool)
            and 0 <= prices[tier] < math.inf for tier in ("hot", "cold")):
        errors.append(checks.Error(
            f"TIERING['COST_PER_GB_MONTH'] must give a price of 0 or more for 'hot' and 'cold', not {prices!r}.",
            hint="For example {'hot': 0.25, 'cold': 0.02} (per GB and month).",
            id="tiering.E015"))
    currency = tiering_settings.CURRENCY
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
        errors.append(checks.Error(
            f"TIERING['CURRENCY'] must be a three-letter ISO 4217 currency code, not {currency!r}.",
            hint="For example 'USD' or 'EUR': the currency of COST_PER_GB_MONTH.",
            id="tiering.E015"))
    try:
        crontab_fields(tiering_settings.SCHEDULE)
    except ValueError as exc:
        errors.append(checks.Error(f"TIERING['SCHEDULE']: {exc}.", hint="For example '0 2 * * *' (02:00 daily).",
                                   id="tiering.E016"))
    return errors


@checks.register()
def check_extras(app_configs=None, **kwargs):
    """Settings whose part needs an extra that is not installed (tiering/extras.py)."""
    warnings = []
    if not tiering_settings.RUN_IN_PROCESS and not extras.has_celery():
        warnings.append(checks.Warning(
            "The dashboard's 'Run now' queues a Celery task, and Celery is not installed.",
            hint="pip install 'hotcold[celery]' and run a worker, or set TIERING['RUN_IN_PROCESS'] = True "
                 "to move in the web process.",
            id="tiering.W010"))
    user = getattr(settings, "TIERING", None) or {}
    scheduled = ["TIERING['SCHEDULE']"] if "SCHEDULE" in user else []
    scheduled += [f"{tiered.label} (class Tiering: schedule)" for tiered in global_registry if tiered.schedule]
    if scheduled and not extras.has_beat():
        warnings.append(checks.Warning(
            f"{scheduled[0]} sets a schedule, and django-celery-beat, which runs it, is not in INSTALLED_APPS.",
            hint="pip install 'hotcold[celery]', add 'django_celery_beat' to INSTALLED_APPS and run "
                 "manage.py tiering_schedule; or remove the schedule.",
            id="tiering.W011"))
    return warnings


@checks.register(checks.Tags.database)
def check_tier_tables(app_configs=None, databases=None, **kwargs):
    """HOT and COLD must be databases tiering has a backend for (E012) and must not reach the same tables
    (E011): a move would copy each row onto itself, verify it and delete it. ``check --database HOT
    --database COLD`` asks the databases; otherwise the settings are compared."""
    hot, cold = tiering_settings.HOT, tiering_settings.COLD
    if hot == cold or hot not in settings.DATABASES or cold not in settings.DATABASES:
        return []  # E001 / E002
    asks_servers = bool(databases) and hot in databases and cold in databases
    try:
        reason = backends.same_tables(hot, cold, by_settings=not asks_servers)
    except UnsupportedDatabase as exc:
        return [checks.Error(str(exc), hint="Point TIERING['HOT'] and TIERING['COLD'] at SQLite or PostgreSQL "
                                            "databases.", id="tiering.E012")]
    except ImproperlyConfigured:  # no schema yet: migrate and the run say so
        reason = None
    if not reason:
        return []
    return [
        checks.Error(
            f"TIERING['HOT'] and TIERING['COLD'] reach the same tables: {reason}.",
            hint="Point COLD at another database, or at its own schema of the hot database "
                 "(OPTIONS={'options': '-c search_path=cold'}, then migrate --database for the cold alias).",
            id="tiering.E011",
        )
    ]


@checks.register(checks.Tags.database)
def check_schema_drift(app_configs=None, databases=None, **kwargs):
    """E018: with ``check --database HOT --database COLD``, the tables and migrations of each tiered model on
    both tiers match the models (``tiering.schema``, the gate every run passes first)."""
    from . import schema

    hot, cold = tiering_settings.HOT, tiering_settings.COLD
    if not databases or hot not in databases or cold not in databases or hot == cold:
        return []
    errors = []
    for tiered in global_registry:
        errors += [checks.Error(f"{tiered.label}: {problem}", hint=f"{fix[0].upper()}{fix[1:]}.", id="tiering.E018")
                   for problem, fix in schema.drift_lines(tiered)]
    return errors


@checks.register()
def check_move_path(app_configs=None, **kwargs):
    """A forced ``TIERING['MOVE_PATH']`` must name a copy path (whether it fits the pair is asked at the run)."""
    name = tiering_settings.MOVE_PATH
    if not name:
        return []
    try:
        paths.load(name)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Remove TIERING['MOVE_PATH'] to let tiering choose.", id="tiering.E013")]
    return []


def _field_is_indexed(model: type[models.Model], field: models.Field) -> bool:
    if field.primary_key or field.unique or field.db_index:
        return True
    for index in model._meta.indexes:
        if index.fields and index.fields[0].lstrip("-") == field.name:
            return True
    return False


def _policy_problem(policy) -> str | None:
    """Why ``policy`` cannot select cold rows, or None when it can."""
    if not isinstance(policy, Policy):
        return "is missing or not a tiering policy"
    parts = [policy.time, policy.access] if isinstance(policy, HybridPolicy) else [policy]
    for part in parts:
        if not isinstance(part, Policy):
            return f"combines {part!r}, which is not a tiering policy"
        for attr in ("older_than", "idle_for"):
            value = getattr(part, attr, None)
            if value is not None and not (isinstance(value, timedelta) and value > timedelta(0)):
                return f"has {type(part).__name__}.{attr}={value!r}; it must be a positive timedelta"
    return None


@checks.register(checks.Tags.models)
def check_tiered_models(app_configs=None, registry: Iterable[TieredModel] | None = None, **kwargs):
    """Check every tiered model of ``registry`` (default: the project's registry)."""
    errors = []
    tiered_models = list(global_registry if registry is None else registry)
    for tiered in tiered_models:
        model = tiered.model
        label = tiered.label
        problem = _policy_problem(tiered.policy)
        if problem:
            errors.append(
                checks.Error(
                    f"{label}.Tiering.policy {problem}.",
                    hint="Set policy = TimePolicy(...), AccessPolicy(...) or HybridPolicy(...).",
                    obj=model,
                    id="tiering.E005",
                )
            )
            continue
        for name in tiered.policy.fields:
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(
                    checks.Error(
                        f"{label}.Tiering.policy names the unknown field {name!r}.",
                        hint=f"Use a DateTimeField or DateField of {label}.",
                        obj=model,
                        id="tiering.E006",
                    )
                )
                continue
            if not isinstance(field, (models.DateTimeField, models.DateField)):
                errors.append(
                    checks.Error(
                        f"{label}.{name} is used by a tiering policy but is not a date or datetime field.",
                        hint=f"Use a DateTimeField or DateField of {label}.",
                        obj=model,
                        id="tiering.E006",
                    )
                )
            elif not _field_is_indexed(model, field):
                errors.append(
                    checks.Error(
                        f"{label}.{name} is used by a tiering policy but has no index.",
                        hint="Add db_index=True (or an index that starts with this field): every run selects on it.",
                        obj=model,
                        id="tiering.E007",
                    )
                )
        for name in tiered.related:
            try:
                model._meta.get_field(name)
                tiered.children  # noqa: B018  (resolves and validates every name)
            except (FieldDoesNotExist, ValueError) as exc:
                errors.append(
                    checks.Error(
                        f"{label}.Tiering.related names {name!r}, which is not a reverse foreign key of {label}: {exc}",
                        hint="Use the related_name of a ForeignKey that points at this model.",
                        obj=model,
                        id="tiering.E008",
                    )
                )
                break
        manager = model._default_manager
        if not isinstance(manager, TieredManager) and not isinstance(manager.get_queryset(), TieredQuerySet):
            errors.append(
                checks.Error(
                    f"{label} is tiered but its default manager is not a TieredManager.",
                    hint="Declare objects = TieredManager() first among the model's managers.",
                    obj=model,
                    id="tiering.E009",
                )
            )
        elif not isinstance(model._base_manager.get_queryset(), TieredQuerySet):
            errors.append(
                checks.Warning(
                    f"{label}'s base manager is not tiered: a foreign key to a cold {label} row will not resolve.",
                    hint="Add base_manager_name = 'objects' to the model's Meta.",
                    obj=model,
                    id="tiering.W001",
                )
            )
        errors.extend(_check_save_mixin(tiered))
        errors.extend(_check_foreign_keys(tiered))
    errors.extend(_check_foreign_keys_into_tiers(tiered_models))
    return errors


def _check_save_mixin(tiered) -> list[checks.CheckMessage]:
    """tiering.W002: a tiered model or child that saves the Django way duplicates a row that moved after
    the instance was loaded (the UPDATE finds nothing, the INSERT adds a copy in the old tier)."""
    return [
        checks.Warning(
            f"{model._meta.label} is tiered but does not save through TieredSaveMixin: saving an instance whose "
            "row moved to the other tier after it was loaded would insert a second copy of the row.",
            hint="Add tiering.mixins.TieredSaveMixin first among the model's bases.",
            obj=model,
            id="tiering.W002",
        )
        for model in tiered.unit if not issubclass(model, TieredSaveMixin)
    ]


FK_HINT = "Declare the ForeignKey with db_constraint=False; the tiered manager resolves it in either tier."


def foreign_key_errors(tiered, tiered_models: list[TieredModel]) -> list[checks.CheckMessage]:
    """tiering.E010 for ``tiered``: database constraints that reach its moved unit from outside it."""
    return _check_foreign_keys(tiered) + _check_foreign_keys_into_tiers(tiered_models)


def _check_foreign_keys(tiered) -> list[checks.CheckMessage]:
    """A cold table cannot hold a database constraint to a row that may be elsewhere."""
    return [
        checks.Error(
            f"{field.model._meta.label}.{field.name} keeps a database constraint to "
            f"{field.related_model._meta.label}, whose rows are not moved together with {tiered.label}.",
            hint=FK_HINT,
            obj=field,
            id="tiering.E010",
        )
        for field in constraints_out_of(tiered)
    ]


def _check_foreign_keys_into_tiers(tiered_models: list[TieredModel]) -> list[checks.CheckMessage]:
    """A hot-only table cannot hold a database constraint to a row that may leave hot."""
    errors = []
    for field, target, tiered in constraints_into(tiered_models):
        where, hint = " keeps", FK_HINT
        if field.many_to_many:
            where = f": its table {field.remote_field.through._meta.db_table} keeps"
            hint = "Declare the ManyToManyField with db_constraint=False."
        errors.append(checks.Error(
            f"{field.model._meta.label}.{field.name}{where} a database constraint to {target._meta.label}, "
            f"whose rows move to the cold tier with {tiered.label}.",
            hint=hint, obj=field, id="tiering.E010"))
    return errors


def _is_number(value, low: float, *, strict: bool) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and (value > low if strict else value >= low) and value < math.inf)


@checks.register()
def check_throttle(app_configs=None, **kwargs):
    """TIERING['THROTTLE'] (tiering/move/throttle.py): known keys, finite positive limits, a replica alias in
    DATABASES other than HOT, an importable probe (E019)."""
    conf = tiering_settings.THROTTLE
    if not isinstance(conf, dict):
        return [checks.Error(f"TIERING['THROTTLE'] must be a dict, not {conf!r}.",
                             hint="For example {'MAX_LATENCY_RATIO': 1.5}; see the README's settings.",
                             id="tiering.E019")]
    problems = [f"has the unknown key {key!r}" for key in sorted(set(conf) - set(DEFAULTS["THROTTLE"]))]
    merged = {**DEFAULTS["THROTTLE"], **conf}
    ratio, lag, replica = merged["MAX_LATENCY_RATIO"], merged["MAX_REPLICA_LAG"], merged["REPLICA"]
    if ratio is not None and not _is_number(ratio, 1, strict=False):
        problems.append(f"['MAX_LATENCY_RATIO'] must be None or a finite number >= 1, not {ratio!r}")
    if lag is not None and not _is_number(lag, 0, strict=True):
        problems.append(f"['MAX_REPLICA_LAG'] must be None or a finite positive number of seconds, not {lag!r}")
    if lag is not None and replica is None:
        problems.append("['MAX_REPLICA_LAG'] needs ['REPLICA'], the alias of the replica")
    if replica is not None and (replica not in settings.DATABASES or replica == tiering_settings.HOT):
        problems.append(f"['REPLICA'] must name a database alias in DATABASES other than HOT, not {replica!r}")
    if not _is_number(merged["PROBE_INTERVAL"], 0, strict=True):
        problems.append(f"['PROBE_INTERVAL'] must be a finite positive number, not {merged['PROBE_INTERVAL']!r}")
    window = merged["WINDOW"]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        problems.append(f"['WINDOW'] must be a positive integer, not {window!r}")
    if merged["PROBE"] is not None:
        from django.utils.module_loading import import_string

        try:
            import_string(merged["PROBE"])
        except (ImportError, TypeError, ValueError) as exc:
            problems.append(f"['PROBE'] cannot be imported: {exc}")
    return [checks.Error(f"TIERING['THROTTLE']{'' if p.startswith('[') else ' '}{p}.",
                         hint="See the README's THROTTLE settings; None turns a limit off.", id="tiering.E019")
            for p in problems]


@checks.register(checks.Tags.database)
def check_mysql_collations(app_configs=None, databases=None, registry: Iterable[TieredModel] | None = None,
                           **kwargs):
    """E020: on MySQL/MariaDB, the text columns of tiered models must sort by code point without padding
    (a ``_bin`` collation with NO PAD), as the merge of both tiers compares in Python: MySQL's default
    collations compare case- and accent-insensitively, and its PAD SPACE collations (``utf8mb4_bin``
    among them) compare 'a' equal to 'a ' and sort '' after '\\x1f', so a merged page would interleave the
    tiers out of order and skip or repeat rows. Asked of the tiers named in ``check --database``."""
    errors = []
    for alias in (tiering_settings.HOT, tiering_settings.COLD):
        if not databases or alias not in databases or alias not in settings.DATABASES:
            continue
        connection = connections[alias]
        if connection.vendor != "mysql":
            continue
        wanted = "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"
        verdicts = {}
        for tiered in list(global_registry if registry is None else registry):
            with connection.cursor() as cursor:
                cursor.execute("SELECT column_name, character_set_name, collation_name FROM information_schema.columns "
                               "WHERE table_schema = DATABASE() AND table_name = %s AND collation_name IS NOT NULL",
                               [tiered.model._meta.db_table])
                found = cursor.fetchall()
            json_columns = {f.column for f in tiered.model._meta.concrete_fields
                            if f.get_internal_type() == "JSONField"}  # MariaDB's JSON is utf8mb4_bin text
            for column, charset, collation in found:
                if column in json_columns:
                    continue
                if collation not in verdicts:
                    verdicts[collation] = collation_problem(connection, charset, collation)
                if verdicts[collation]:
                    errors.append(checks.Error(
                        f"{tiered.label}.{column} in {alias!r} sorts with the collation {collation}, which "
                        f"{verdicts[collation]}; the merged reads of both tiers compare text by code point.",
                        hint=f"Give the field db_collation={wanted!r} (then makemigrations and migrate), or create "
                             f"the database with DEFAULT COLLATE {wanted}.",
                        obj=tiered.model, id="tiering.E020"))
    return errors


def collation_problem(connection, charset: str, collation: str) -> str:
    """How ``collation`` departs from code-point order, asked of the server ("" when it does not)."""
    if not collation.endswith("_bin"):
        return "compares text case- or accent-insensitively"
    with connection.cursor() as cursor:  # the names come from information_schema: identifiers, not input
        cursor.execute(f"SELECT CONVERT('' USING {charset}) COLLATE {collation} "
                       f"< CONVERT(CHAR(31) USING {charset}) COLLATE {collation}")
        (no_pad,) = cursor.fetchone()
    return "" if no_pad else "pads text with spaces (PAD SPACE: 'a' equals 'a ', '' sorts after '\\x1f')"
