"""Which models are tiered, with which policy, and which children move with them.

A model opts in with an inner ``class Tiering`` naming a ``policy`` and, if
needed, ``related`` reverse relations whose rows move with the parent and an
optional ``schedule`` crontab overriding ``TIERING["SCHEDULE"]``. The registry
is filled when the ``tiering`` app is ready; problems in a declaration are
reported by the system checks in ``tiering/checks.py``, not raised here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .policies import Policy


@dataclass(frozen=True)
class Child:
    """A child model whose rows move with their parent through ``fk``."""

    model: type[models.Model]
    fk: models.ForeignKey
    related_name: str


@dataclass
class TieredModel:
    model: type[models.Model]
    policy: Policy
    related: list[str] = field(default_factory=list)
    schedule: str | None = None

    @property
    def label(self) -> str:
        return self.model._meta.label

    @cached_property
    def children(self) -> list[Child]:
        """Resolve ``related`` names to child models (raises on a bad name)."""
        found = []
        for name in self.related:
            rel = self.model._meta.get_field(name)
            if not (rel.one_to_many or rel.one_to_one) or not rel.auto_created:
                raise ValueError(f"{self.label}.Tiering.related: {name!r} is not a reverse foreign key")
            found.append(Child(model=rel.related_model, fk=rel.field, related_name=name))
        return found


    @property
    def unit(self) -> list[type[models.Model]]:
        """The models whose rows move together: the parent and its children (the parent alone when a
        ``related`` name is bad, which the system checks report)."""
        try:
            return [self.model, *(child.model for child in self.children)]
        except (FieldDoesNotExist, ValueError):
            return [self.model]


class Registry:
    def __init__(self) -> None:
        self._by_model: dict[type[models.Model], TieredModel] = {}
        self._child_parent: dict[type[models.Model], TieredModel] = {}

    def populate(self) -> None:
        self._by_model.clear()
        self._child_parent.clear()
        for model in apps.get_models():
            declaration = getattr(model, "Tiering", None)
            if declaration is None or model._meta.abstract or model._meta.proxy:
                continue
            policy = getattr(declaration, "policy", None)
            self._by_model[model] = TieredModel(
                model=model,
                policy=policy,
                related=list(getattr(declaration, "related", []) or []),
                schedule=getattr(declaration, "schedule", None),
            )
        for tiered in self._by_model.values():
            try:
                children = tiered.children
            except Exception:  # reported by checks.py
                continue
            for child in children:
                self._child_parent[child.model] = tiered

    def __iter__(self):
        return iter(sorted(self._by_model.values(), key=lambda t: t.label))

    def __len__(self) -> int:
        return len(self._by_model)

    def get(self, model: type[models.Model]) -> TieredModel | None:
        model = getattr(model, "_meta", None) and model._meta.concrete_model or model
        return self._by_model.get(model)

    def parent_of(self, child_model: type[models.Model]) -> TieredModel | None:
        """The tiered model whose rows carry ``child_model`` rows along, if any."""
        return self._child_parent.get(child_model._meta.concrete_model)

    def lives_in_both(self, model: type[models.Model]) -> bool:
        """True for tables that exist in the hot and in the cold alias."""
        return self.get(model) is not None or self.parent_of(model) is not None

    def by_label(self, label: str) -> TieredModel:
        """Look up ``app_label.ModelName`` (case-insensitive); raise LookupError."""
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise LookupError(f"Unknown model {label!r}: use app_label.ModelName") from exc
        tiered = self.get(model)
        if tiered is None:
            raise LookupError(f"Model {model._meta.label} is not tiered (it has no 'class Tiering')")
        return tiered


registry = Registry()


def constraints_out_of(tiered: TieredModel) -> list[models.Field]:
    """Foreign keys of ``tiered``'s moved unit that keep a database constraint to rows not moved with it
    (the unit's own parent key excepted): a cold table cannot hold one to a row that may be elsewhere."""
    found = []
    unit = tiered.unit
    parent_fks = {child.fk for child in tiered.children} if len(unit) > 1 else set()
    for model in unit:
        for fk in model._meta.concrete_fields:
            if not fk.is_relation or not fk.many_to_one and not fk.one_to_one:
                continue
            if fk in parent_fks or not fk.db_constraint:
                continue
            found.append(fk)
    return found


def constraints_into(tiered_models: list[TieredModel]) -> list[tuple[models.Field, type[models.Model], TieredModel]]:
    """(field, moved model, tiered) for every database constraint that a table not moved with ``tiered``
    keeps to a row that moves: a foreign key of a hot-only model, or the table of an auto-created
    many-to-many (either side; a declared through model is an ordinary model with foreign keys)."""
    moving = {}
    for tiered in tiered_models:
        moving.update((model, tiered) for model in tiered.unit)
    found = []
    for target, tiered in moving.items():
        for rel in target._meta.related_objects:
            field = rel.field
            if rel.many_to_many or field.model in moving or not field.concrete or not field.db_constraint:
                continue
            found.append((field, target, tiered))
        m2m = list(target._meta.many_to_many) + [r.field for r in target._meta.related_objects if r.many_to_many]
        for field in m2m:
            if field.remote_field.through._meta.auto_created and field.remote_field.db_constraint:
                found.append((field, target, tiered))
    return found


def constraints_stay_inside(tiered: TieredModel) -> bool:
    """No database foreign key reaches ``tiered``'s moved unit from outside it (``tiering.E010``): its own
    parent/child order then keeps every constraint."""
    return not constraints_out_of(tiered) and not constraints_into(list(registry))
