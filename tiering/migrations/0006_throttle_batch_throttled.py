from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tiering', '0005_migrationrun_done_commits_with_delete'),
    ]

    operations = [
        migrations.AddField(
            model_name='migrationbatch',
            name='throttled_seconds',
            field=models.FloatField(default=0, help_text='Seconds the throttle waited after this batch (latency on hot, replica lag).'),
        ),
        migrations.AddField(
            model_name='migrationbatch',
            name='throttle_reason',
            field=models.CharField(blank=True, help_text='Why the throttle waited.', max_length=200),
        ),
    ]
