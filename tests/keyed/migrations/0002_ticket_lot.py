"""A column added to a tiered table: tests/test_schema_gate.py applies it to hot only."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("keyed", "0001_initial")]

    operations = [
        migrations.AddField(model_name="ticket", name="lot", field=models.CharField(blank=True, default="", max_length=20)),
    ]
