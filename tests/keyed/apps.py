from django.apps import AppConfig


class KeyedConfig(AppConfig):
    """Test-only tiered models whose primary keys are not integers (text and UUID)."""

    name = "tests.keyed"
    label = "keyed"
    default_auto_field = "django.db.models.BigAutoField"
