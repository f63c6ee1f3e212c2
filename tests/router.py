"""The tests keep tier pairs side by side: SQLite (default/cold), PostgreSQL
(pg_hot/pg_cold) and PostgreSQL with cold as a schema of the hot database
(pg_hot/pg_cold_schema), MariaDB (my_hot/my_cold on two servers, my_cold_db on
hot's server). In production one pair is configured; here the PostgreSQL and
MariaDB aliases (and the stand-in vendor's, a cold tier tiering refuses) get the
same table layout as the pair TIERING names."""
from tiering.router import TieringRouter


class PairedTieringRouter(TieringRouter):
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db in ("pg_hot", "my_hot"):
            return True
        if db in ("pg_cold", "pg_cold_schema", "my_cold", "my_cold_db", "standin"):
            return self.belongs_in_cold(app_label, model_name, hints.get("model"))
        return super().allow_migrate(db, app_label, model_name, **hints)
