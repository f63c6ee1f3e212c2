from django.apps import AppConfig


class TieringConfig(AppConfig):
    name = "tiering"
    verbose_name = "Hot/cold tiering"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, extras, signals  # noqa: F401  (register checks and receivers)
        from .registry import registry

        registry.populate()
        if extras.has_prometheus():
            from .metrics import connect

            connect()  # Prometheus collector and signal receivers
