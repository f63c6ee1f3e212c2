"""System checks for tiering configuration (``manage.py check``).

Ids: tiering.E001-E011 for errors that would lose or hide rows, W0xx for
settings that work but cost speed or leave a hazard (W002: a save that can
duplicate a moved row).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError, connections, models

from .conf import tiering_settings
from .mixins import TieredSaveMixin
from .policies import HybridPolicy, Policy
from .query import TieredManager, TieredQuerySet
from .registry import TieredModel
from .registry import registry as global_registry


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
    for name in ("BATCH_SIZE", "TOUCH_INTERVAL", "READ_CHUNK_SIZE"):
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


@checks.register(checks.Tags.database)
def check_tier_tables(app_configs=None, databases=None, **kwargs):
    """HOT and COLD must not reach the same tables: a move would copy each row onto itself, verify it
    and delete it. ``check --database HOT --database COLD`` asks the servers (database and
    ``current_schema()``); otherwise the settings are compared (same file, or same server, database,
    user and search_path)."""
    hot, cold = tiering_settings.HOT, tiering_settings.COLD
    if hot == cold or hot not in settings.DATABASES or cold not in settings.DATABASES:
        return []  # E001 / E002
    from .mover import same_tables

    if databases and hot in databases and cold in databases:
        try:
            reason = same_tables(hot, cold)
        except (DatabaseError, ValueError):  # unreachable, or no schema yet: migrate and the mover say so
            reason = None
    else:
        reason = _same_tables_by_settings(hot, cold)
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


def _same_tables_by_settings(hot: str, cold: str) -> str | None:
    """``same_tables`` from the settings alone (no connection): same SQLite file, or the same
    PostgreSQL server, database, user and search_path option."""
    a, b = connections[hot].settings_dict, connections[cold].settings_dict
    vendors = {connections[hot].vendor, connections[cold].vendor}
    if vendors == {"sqlite"}:
        from .mover import same_tables

        return same_tables(hot, cold)
    if vendors != {"postgresql"}:
        return None
    if any(str(a.get(k) or "") != str(b.get(k) or "") for k in ("HOST", "PORT", "NAME", "USER")):
        return None
    if _search_path(a) != _search_path(b):
        return None
    return (f"{hot!r} and {cold!r} are the same PostgreSQL database {a.get('NAME')!r} with the same "
            f"search_path ({_search_path(a) or 'the default'})")


def _search_path(settings_dict: dict) -> str | None:
    found = re.search(r"search_path\s*=\s*(\S+)", str((settings_dict.get("OPTIONS") or {}).get("options", "")))
    return found.group(1) if found else None


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
    try:
        models_ = [tiered.model, *(child.model for child in tiered.children)]
    except (FieldDoesNotExist, ValueError):  # a bad Tiering.related: tiering.E008
        models_ = [tiered.model]
    return [
        checks.Warning(
            f"{model._meta.label} is tiered but does not save through TieredSaveMixin: saving an instance whose "
            "row moved to the other tier after it was loaded would insert a second copy of the row.",
            hint="Add tiering.mixins.TieredSaveMixin first among the model's bases.",
            obj=model,
            id="tiering.W002",
        )
        for model in models_ if not issubclass(model, TieredSaveMixin)
    ]


def foreign_key_errors(tiered, tiered_models: list[TieredModel]) -> list[checks.CheckMessage]:
    """tiering.E010 as seen by the mover: database constraints that reach ``tiered``'s moved unit from
    outside it (none means the unit's own parent/child order keeps every constraint)."""
    return _check_foreign_keys(tiered) + _check_foreign_keys_into_tiers(tiered_models)


def _check_foreign_keys(tiered) -> list[checks.CheckMessage]:
    """A cold table cannot hold a database constraint to a row that may be elsewhere."""
    errors = []
    try:
        children = tiered.children
    except (FieldDoesNotExist, ValueError):
        children = []
    owners = [(tiered.model, None)] + [(c.model, c.fk) for c in children]
    for model, parent_fk in owners:
        for field in model._meta.concrete_fields:
            if not field.is_relation or not field.many_to_one and not field.one_to_one:
                continue
            if field is parent_fk or not field.db_constraint:
                continue
            target = field.related_model._meta.label
            errors.append(
                checks.Error(
                    f"{model._meta.label}.{field.name} keeps a database constraint to {target}, whose rows "
                    f"are not moved together with {tiered.label}.",
                    hint="Declare the ForeignKey with db_constraint=False; the tiered manager resolves it in either tier.",
                    obj=field,
                    id="tiering.E010",
                )
            )
    return errors


def _check_foreign_keys_into_tiers(tiered_models: list[TieredModel]) -> list[checks.CheckMessage]:
    """A hot-only table cannot hold a database constraint to a row that may leave hot."""
    moving = {}
    for tiered in tiered_models:
        moving[tiered.model] = tiered
        try:
            moving.update((c.model, tiered) for c in tiered.children)
        except (FieldDoesNotExist, ValueError):
            pass
    errors = []
    for target, tiered in moving.items():
        for rel in target._meta.related_objects:
            field = rel.field
            if rel.many_to_many or field.model in moving or not field.concrete or not field.db_constraint:
                continue
            errors.append(
                checks.Error(
                    f"{field.model._meta.label}.{field.name} keeps a database constraint to "
                    f"{target._meta.label}, whose rows move to the cold tier with {tiered.label}.",
                    hint="Declare the ForeignKey with db_constraint=False; the tiered manager resolves it in either tier.",
                    obj=field,
                    id="tiering.E010",
                )
            )
        # many-to-many, either side: its auto-created table stays in hot (a declared through model is an
        # ordinary model with foreign keys, met above)
        m2m = list(target._meta.many_to_many) + [r.field for r in target._meta.related_objects if r.many_to_many]
        for field in m2m:
            through = field.remote_field.through
            if not through._meta.auto_created or not field.remote_field.db_constraint:
                continue
            errors.append(
                checks.Error(
                    f"{field.model._meta.label}.{field.name}: its table {through._meta.db_table} keeps a database "
                    f"constraint to {target._meta.label}, whose rows move to the cold tier with {tiered.label}.",
                    hint="Declare the ManyToManyField with db_constraint=False.",
                    obj=field,
                    id="tiering.E010",
                )
            )
    return errors
