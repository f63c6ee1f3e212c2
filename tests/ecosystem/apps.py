from django.apps import AppConfig


class EcosystemConfig(AppConfig):
    """Test-only plain models, the one-table oracle the third-party clients' tests compare tiered models with."""

    name = "tests.ecosystem"
    label = "ecosystem"
    default_auto_field = "django.db.models.BigAutoField"
