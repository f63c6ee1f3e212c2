"""TieredSaveMixin: ``save()`` of a loaded instance updates its row in the tier that holds it now.

Django saves a loaded instance with an UPDATE in the database it came from and,
when that UPDATE matches no row, INSERTs it there. A tiered row can move
between the load and the save (``migrate_cold`` archived it, ``restore_hot``
brought it back): the UPDATE then finds nothing and the INSERT puts a second
copy of the row in the old tier, beside the one the mover verified. With this
mixin an UPDATE that matched nothing is tried in the other tier before Django
falls back to the INSERT, and the instance follows its row there.

Put it first among the bases of every tiered model and of its ``Tiering.related``
children (``manage.py check`` warns, ``tiering.W002``)::

    class Order(TieredSaveMixin, models.Model): ...

New instances (``_state.adding``) keep Django's own behaviour. A save of a
model with unique fields also checks the other tier for its unique values
(``tiering.unique``), in one transaction with the write.
"""
from __future__ import annotations

from typing import Any

from django.db import router

from . import unique
from .conf import tiering_settings


class TieredSaveMixin:
    """Saving a loaded instance never duplicates its row: see the module docstring."""

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update) -> bool:
        if super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update):
            return True
        other = {tiering_settings.HOT: tiering_settings.COLD, tiering_settings.COLD: tiering_settings.HOT}.get(using)
        if self._state.adding or other is None:
            return False
        if not super()._do_update(base_qs.using(other), other, pk_val, values, update_fields, forced_update):
            return False
        self._tiering_saved_in = other  # save_base records ``using`` after this returns
        return True

    def save_base(self, raw: bool = False, force_insert: Any = False, force_update: bool = False,
                  using: str | None = None, update_fields: Any = None) -> None:
        using = using or router.db_for_write(self.__class__, instance=self)
        sets = unique.sets_touching(type(self), update_fields)
        if not sets:
            self._save_in_tier(raw, force_insert, force_update, using, update_fields)
            return
        # an update may land in the other tier (the row moved since it was loaded): open both then
        adding = self._state.adding
        aliases = [using] if adding else [using, unique.other_tier(using) or using]
        with unique.guarded(type(self), aliases):
            self._save_in_tier(raw, force_insert, force_update, using, update_fields)
            unique.refuse_taken(type(self), self._state.db, [self], sets, new=adding)

    def _save_in_tier(self, *args: Any) -> None:
        super().save_base(*args)
        moved_to = self.__dict__.pop("_tiering_saved_in", None)
        if moved_to is not None:
            self._state.db = moved_to

    def validate_constraints(self, exclude: Any = None) -> None:
        """Unique constraints hold across both tiers in forms and the admin too (``tiering.unique``)."""
        super().validate_constraints(exclude)
        unique.validate_other_tier(self, exclude)
