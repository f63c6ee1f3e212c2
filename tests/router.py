"""The tests keep two tier pairs side by side: SQLite (default/cold) and
PostgreSQL (pg_hot/pg_cold). In production one pair is configured; here the
PostgreSQL pair gets the same table layout as the pair TIERING names."""
from tiering.router import TieringRouter


class PairedTieringRouter(TieringRouter):
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db == "pg_hot":
            return True
        if db == "pg_cold":
            return self.belongs_in_cold(app_label, model_name, hints.get("model"))
        return super().allow_migrate(db, app_label, model_name, **hints)
