import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tiering", "0006_throttle_batch_throttled"),
    ]

    operations = [
        migrations.CreateModel(
            name="UniqueConflict",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model_label", models.CharField(help_text="The model whose unique value is taken (or a child's).",
                                                 max_length=200)),
                ("object_pk", models.CharField(help_text="Key of the row left in cold.", max_length=255)),
                ("fields", models.CharField(help_text="The unique field(s), comma-separated.", max_length=255)),
                ("holder_pk", models.CharField(help_text="Key of the hot row holding the value.", max_length=255)),
                ("recorded_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                          related_name="unique_conflicts", to="tiering.migrationrun")),
            ],
            options={"ordering": ["run", "id"]},
        ),
    ]
