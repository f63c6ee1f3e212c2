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

New instances (``_state.adding``) keep Django's own behaviour.
"""
from __future__ import annotations

from typing import Any

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

    def save_base(self, *args: Any, **kwargs: Any) -> None:
        super().save_base(*args, **kwargs)
        moved_to = self.__dict__.pop("_tiering_saved_in", None)
        if moved_to is not None:
            self._state.db = moved_to
