"""Choosing a copy path: the first default path that fits the pair, or the one TIERING["MOVE_PATH"] forces,
by name or by dotted path, as Django loads ENGINE; a path that does not exist or does not fit is refused."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from orders.models import Order
from tests.move.helpers import seed_orders
from tiering import move
from tiering.checks import check_move_path
from tiering.models import Direction
from tiering.move import paths
from tiering.move.paths.orm import OrmPath
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TIER_PAIRS = ["sqlite", "postgresql", "pg_schema", "sqlite_pg", "mariadb", "mariadb_db"]


class CountingOrmPath(OrmPath):
    """A project's own path: the orm path that counts its batches."""

    name = "counting_orm"
    batches = 0

    def move_batch(self, batch, keys):
        type(self).batches += 1
        return super().move_batch(batch, keys)


def test_every_pair_gets_its_own_path(tiers):
    expected = {"sqlite": "sqlite", "postgresql": "pg_copy", "pg_schema": "pg_insert", "sqlite_pg": "orm",
                "mariadb": "mysql_bulk", "mariadb_db": "mysql_insert"}
    assert move.choose_path().name == expected[tiers.backend]
    assert [paths.load(name).name for name in paths.names()] == ["sqlite", "pg_insert", "pg_copy", "mysql_insert",
                                                                 "mysql_bulk", "orm"]


def test_a_dotted_path_is_loaded_like_engine(tiers, settings):
    settings.TIERING = {**settings.TIERING, "MOVE_PATH": f"{__name__}.CountingOrmPath"}
    assert check_move_path() == []
    seed_orders(tiers.hot, 30, lines=1)
    CountingOrmPath.batches = 0
    run = move.move(registry.get(Order), Direction.TO_COLD, batch_size=10)
    assert run.rows == 30 and run.path == "counting_orm" and CountingOrmPath.batches == 3


@pytest.mark.parametrize("name", ["nope", "tiering.move.paths.no_such_module.Path", "tiering.models.MigrationRun"])
def test_a_path_that_does_not_exist_is_refused(tiers, settings, name):
    settings.TIERING = {**settings.TIERING, "MOVE_PATH": name}
    [error] = check_move_path()
    assert error.id == "tiering.E013" and name in error.msg
    seed_orders(tiers.hot, 3, lines=0)
    with pytest.raises(ImproperlyConfigured, match="(?i)move path"):
        move.move(registry.get(Order), Direction.TO_COLD)
    assert Order.objects.hot().count() == 3


def test_a_forced_path_that_does_not_fit_is_refused(tiers):
    unfit = "pg_copy" if tiers.backend == "sqlite" else "sqlite"
    with pytest.raises(ImproperlyConfigured, match=f"path '{unfit}' needs"):
        move.move(registry.get(Order), Direction.TO_COLD, path=unfit)
