"""TieringRouter: the small seam between Django and the two tiers.

Writes go to hot, except that saving an instance loaded from cold writes it
back to cold, and a child row written through its parent follows the parent.
Tiered tables (and their children) are created in both aliases, every other
table in hot only. The tiered reads themselves live in ``tiering.query``.
"""
from __future__ import annotations

from django.apps import apps

from .conf import tiering_settings
from .registry import registry


class TieringRouter:
    def db_for_read(self, model, **hints):
        instance = hints.get("instance")
        if instance is not None and instance._state.db in tiering_settings.aliases:
            return instance._state.db
        return tiering_settings.HOT

    def db_for_write(self, model, **hints):
        instance = hints.get("instance")
        if instance is not None and instance._state.db in tiering_settings.aliases:
            if isinstance(instance, model):
                return instance._state.db  # save a row where it lives
            parent = registry.parent_of(model)
            if parent is not None and isinstance(instance, parent.model):
                return instance._state.db  # children follow their parent
        if instance is not None and isinstance(instance, model):
            parent = registry.parent_of(model)
            if parent is not None:
                tier = self._parent_tier(instance, parent)
                if tier is not None:
                    return tier
        return tiering_settings.HOT

    @staticmethod
    def _parent_tier(instance, parent):
        for child in parent.children:
            if type(instance)._meta.concrete_model is child.model and child.fk.is_cached(instance):
                cached = child.fk.get_cached_value(instance)
                if cached is not None and cached._state.db in tiering_settings.aliases:
                    return cached._state.db
        return None

    def allow_relation(self, obj1, obj2, **hints):
        aliases = tiering_settings.aliases
        if obj1._state.db in aliases and obj2._state.db in aliases:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db == tiering_settings.HOT:
            return True
        if db != tiering_settings.COLD:
            return None
        return self.belongs_in_cold(app_label, model_name, hints.get("model"))

    @staticmethod
    def belongs_in_cold(app_label, model_name=None, historical_model=None) -> bool:
        """Only tiered tables and their children exist in the cold alias."""
        if model_name is None and historical_model is not None:
            model_name = historical_model._meta.model_name
        if model_name is None:
            return False  # RunPython/RunSQL without a model hint runs in hot only
        try:
            model = apps.get_model(app_label, model_name)
        except LookupError:
            return False
        return registry.lives_in_both(model)
