"""Unique values hold across both tiers, as in one database: a write whose value the other tier holds fails.

What it covers: for every tiered model and child, ``unique=True`` fields,
``unique_together`` and ``UniqueConstraint`` s on fields without a condition
(``unique_sets``). ORM writes through the model and its ``TieredManager``:
``save()`` (hence ``create()``, ``get_or_create()``, ``update_or_create()``),
``bulk_create()`` and ``QuerySet.update()`` of a unique field raise
``IntegrityError`` when the other tier holds the value on another key;
``validate_unique()``/``validate_constraints()`` (model forms, the admin) see
both tiers. Not covered: raw SQL, ``_raw_delete``-style internals, and
managers that are not a ``TieredManager`` (their ``bulk_create``/``update``).
A restore or promote leaves a row whose value hot holds in cold and records
a ``UniqueConflict`` (``conflicts_in_hot``).

The design, and why no interleaving lets two rows hold one value. A value V
"lives" in a tier while a committed row there holds it; each tier's own
unique index keeps V once per tier. The mover commits every copy in the
target no later than the source delete: to cold the copy commits (or, on
the one-transaction paths, commits together) before the hot delete; a
restore's copy commits in hot before the cold delete. So a row in flight is
in both tiers for a moment, never in neither.

* Writing V in hot: the write, then one indexed probe of cold, in one hot
  transaction; the probe finding V on another key raises (rolls back). If
  the write got past hot's index, any hot row that held V was deleted
  (committed: PostgreSQL's index waits for an open delete, SQLite's write
  lock serialises writers); a move to cold had committed its copy before, so
  the probe, later, sees it. A restore of a V row keeps it in cold until its
  hot copy commits, so the probe sees it in cold, or the write meets the
  copy in hot's index.
* Writing V in cold (saving a row loaded from cold): the write, then a lock
  on hot's table that holds off hot's writers (``hold_off_writers``: SHARE
  on PostgreSQL, the write lock on SQLite), then a probe of hot; cold commits
  before the hot lock is released. A hot write of V either committed before
  the lock was granted (the probe sees it) or waits for the lock, and its own
  probe of cold then sees V committed. The lock comes after the cold write,
  never before: a restore holds its cold rows locked while it copies into
  hot, and with two PostgreSQL databases a wait the other way round would be
  a deadlock no server sees. Writers of cold are rare; one may still wait
  for a move's batch, or (one server, SQLite) lose a deadlock or a busy wait.
* MySQL has no such table lock (``hold_off_writers``): there every probe of
  either tier is a locking read (``probe_lock``) that waits for a write of
  V in flight in the other tier, so of two writers of V the later prober
  sees the other's commit; two at the same instant deadlock (on two servers
  until the lock wait timeout) and fail, which leaves V in neither.
* A restore reads, before a batch, which of its rows' values hot holds on
  another key (``conflicts_in_hot``) and leaves those rows out. A hot write
  of such a value after that read fails its probe (the row is still in
  cold), so nothing can take the value between the read and the copy.

A write of a unique value needs the other tier to answer: with it down, the
write fails (the database's OperationalError) rather than risk a duplicate.

Cost: an insert or update of a model with unique fields pays one indexed
probe of the other tier per unique set (one SQL statement each, not
compiled by the ORM) and the transaction around the write and the probe;
``bench/unique_insert.py`` measures it.
"""
from __future__ import annotations

import contextlib
from functools import cache

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, models, transaction

from . import backends
from .conf import tiering_settings
from .registry import registry


@cache
def unique_sets(model: type[models.Model]) -> tuple[tuple[str, ...], ...]:
    """The field-name tuples whose values must be unique across both tiers (the key excluded: the mover
    keeps each key in one tier). Empty for a model that does not live in both tiers."""
    if not registry.lives_in_both(model):
        return ()
    meta = model._meta
    found = [(f.name,) for f in meta.concrete_fields if f.unique and not f.primary_key]
    found += [tuple(names) for names in meta.unique_together]
    found += [tuple(c.fields) for c in meta.total_unique_constraints]
    return tuple(dict.fromkeys(found))


def sets_touching(model: type[models.Model], names) -> tuple[tuple[str, ...], ...]:
    """The unique sets a write of the fields ``names`` may change (None: every field)."""
    sets = unique_sets(model)
    if names is None:
        return sets
    attnames = {model._meta.get_field(n).name for n in names}
    return tuple(s for s in sets if attnames.intersection(s))


def other_tier(alias: str) -> str | None:
    return {tiering_settings.HOT: tiering_settings.COLD, tiering_settings.COLD: tiering_settings.HOT}.get(alias)


@contextlib.contextmanager
def guarded(model: type[models.Model], aliases: list[str]):
    """One transaction per alias written, hot's opened first and committed last (writing cold, hot's
    transaction is opened too: ``refuse_taken`` holds off hot's writers in it)."""
    hot, opened = tiering_settings.HOT, set(aliases)
    if tiering_settings.COLD in opened:
        opened.add(hot)  # for refuse_taken's hold on hot, released after cold's commit
    with contextlib.ExitStack() as stack:
        for alias in sorted(opened, key=lambda a: a != hot):
            stack.enter_context(transaction.atomic(using=alias, savepoint=False))
        yield


def hold_off_hot_writers(model: type[models.Model]) -> None:
    backends.ops(tiering_settings.HOT).hold_off_writers(model._meta.db_table)


def _lookup(names: tuple[str, ...], values: tuple) -> models.Q | None:
    """The Q of one row's values of a set, or None when one is NULL (NULLs never collide)."""
    if any(v is None for v in values):
        return None
    return models.Q(**dict(zip(names, values)))


def values_of(obj: models.Model, names: tuple[str, ...]) -> tuple:
    return tuple(getattr(obj, obj._meta.get_field(n).attname) for n in names)


def taken(model: type[models.Model], alias: str, rows: list[tuple], sets, *, lock: bool = False) -> list[tuple]:
    """Which of ``rows`` ((key, {set: values}), ...) have a set's values held in ``alias`` on another key:
    [(key, set, holder key)]. One query per set and chunk: an indexed probe per value (``lock``: a locking
    read, where the backend's ``probe_lock`` asks for one)."""
    found = []
    manager = models.QuerySet(model).using(alias)  # one tier: no tiered queryset machinery on the way
    if lock:
        manager = manager.select_for_update()
    with transaction.atomic(using=alias) if lock else contextlib.nullcontext():  # the ORM locks in one only
        for names in sets:
            wanted = {}
            for key, values in rows:
                if _lookup(names, values[names]) is not None:
                    wanted.setdefault(values[names], []).append(key)
            items = list(wanted)
            for start in range(0, len(items), 500):
                chunk = items[start:start + 500]
                if len(names) == 1:
                    q = models.Q(**{f"{names[0]}__in": [v[0] for v in chunk]})
                else:
                    q = models.Q()
                    for v in chunk:
                        q |= _lookup(names, v)
                for holder, *held in manager.filter(q).values_list("pk", *names):
                    for key in wanted.get(tuple(held), ()):
                        if key != holder:
                            found.append((key, names, holder))
    return found


def refuse_taken(model: type[models.Model], alias: str, objs, sets, *, new: bool = False) -> None:
    """After writing ``objs`` in ``alias`` (inside its transaction): IntegrityError when the other tier
    holds one of their unique values on another key (``new`` rows: on any key, their own is no excuse)."""
    other = other_tier(alias)
    if other is None or not sets:
        return
    if alias == tiering_settings.COLD:
        hold_off_hot_writers(model)  # after the cold write, before the probe: see the module docstring
    lock = backends.ops(other).probe_lock
    if len(objs) == 1:
        clashes = probe_one(model, other, objs[0], sets, new, lock)
    else:
        rows = [(None if new else obj.pk, {names: values_of(obj, names) for names in sets}) for obj in objs]
        clashes = taken(model, other, rows, sets, lock=bool(lock))
    if clashes:
        key, names, holder = clashes[0]
        raise IntegrityError(
            f"duplicate key value violates unique constraint on {model._meta.db_table} ({', '.join(names)}): "
            f"the {'cold' if other == tiering_settings.COLD else 'hot'} tier holds it on key {holder!r}")


def probe_one(model: type[models.Model], alias: str, obj: models.Model, sets, new: bool,
              lock: str = "") -> list[tuple]:
    """``taken`` for one row, one SQL statement per unique set (a save's probe: compiling it with the ORM
    would cost more than the indexed lookup itself); ``lock`` ends each statement."""
    conn = connections[alias]
    qn, meta, pk = conn.ops.quote_name, model._meta, model._meta.pk
    for names in sets:
        fields = [meta.get_field(n) for n in names]
        values = [getattr(obj, f.attname) for f in fields]
        if any(v is None for v in values):
            continue
        sql = (f"SELECT {qn(pk.column)} FROM {qn(meta.db_table)} WHERE "
               + " AND ".join(f"{qn(f.column)} = %s" for f in fields))
        params = [f.get_db_prep_value(v, conn, prepared=False) for f, v in zip(fields, values)]
        if not new:
            sql += f" AND {qn(pk.column)} <> %s"
            params.append(pk.get_db_prep_value(obj.pk, conn, prepared=False))
        with conn.cursor() as cursor:
            cursor.execute(sql + " LIMIT 1" + lock, params)
            row = cursor.fetchone()
        if row is not None:
            return [(None if new else obj.pk, names, pk.to_python(row[0]))]
    return []


def validate_other_tier(obj: models.Model, exclude=None) -> None:
    """``validate_constraints`` of the unique constraints against the other tier (Django checks them in
    the tier the instance is written to; unique fields and unique_together go through the tiered manager)."""
    alias = obj._state.db or tiering_settings.HOT
    other = other_tier(alias)
    if other is None:
        return
    exclude = set(exclude or ())
    for constraint in obj._meta.total_unique_constraints:
        names = tuple(constraint.fields)
        if exclude.intersection(names):
            continue
        q = _lookup(names, values_of(obj, names))
        if q is None:
            continue
        qs = obj._meta.model._base_manager.using(other).filter(q)
        if not obj._state.adding and obj.pk is not None:
            qs = qs.exclude(pk=obj.pk)
        if qs.exists():
            raise ValidationError(constraint.get_violation_error_message(), code=constraint.violation_error_code)


def conflicts_in_hot(tiered, keys: list) -> list[tuple]:
    """For a restore batch of ``keys`` (in cold): [(parent key, model, row key, set, hot holder key)] for
    each row of the batch (parent or child) whose unique values hot holds on another key."""
    found = []
    for model in tiered.unit:
        sets = unique_sets(model)
        if not sets:
            continue
        key_field = "pk" if model is tiered.model else next(
            c.fk.attname for c in tiered.children if c.model is model)
        names = sorted({n for s in sets for n in s})
        rows, parent_of = [], {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            qs = model._base_manager.using(tiering_settings.COLD).filter(**{f"{key_field}__in": chunk})
            for pk, parent, *values in qs.values_list("pk", key_field, *names):
                by_name = dict(zip(names, values))
                rows.append((pk, {s: tuple(by_name[n] for n in s) for s in sets}))
                parent_of[pk] = parent
        for pk, names_set, holder in taken(model, tiering_settings.HOT, rows, sets):
            found.append((parent_of[pk], model, pk, names_set, holder))
    return found
