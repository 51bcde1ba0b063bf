"""File names become a keyed hash (for matching annotation files); the names themselves are kept only
where KEEP_SOURCE_NAMES allows. Adds the "burned-in text" exclusion reason."""
from django.conf import settings
from django.db import migrations, models


def names_to_keys(apps, schema_editor):
    from annotator.services.imports import source_key

    Radiograph = apps.get_model("annotator", "Radiograph")
    for radiograph in Radiograph.objects.exclude(source_name="").only("id", "source_name").iterator():
        radiograph.source_key = source_key(radiograph.source_name)
        if not settings.KEEP_SOURCE_NAMES:
            radiograph.source_name = ""
        radiograph.save(update_fields=["source_key", "source_name"])


class Migration(migrations.Migration):

    dependencies = [
        ('annotator', '0004_queue_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='radiograph',
            name='source_key',
            field=models.CharField(blank=True, db_index=True, help_text='Keyed hash of the file name it was imported under.', max_length=64),
        ),
        migrations.AlterField(
            model_name='radiograph',
            name='excluded_reason',
            field=models.CharField(blank=True, choices=[('lateral_view', 'Lateral view'), ('ct', 'CT slice'), ('unreadable', 'Unreadable'), ('not_chest', 'Not a chest radiograph'), ('burned_in_text', 'Burned-in text'), ('other', 'Other')], max_length=16),
        ),
        migrations.AlterField(
            model_name='radiograph',
            name='source_name',
            field=models.CharField(blank=True, help_text='The file name it was imported under (admins only, when kept).', max_length=255),
        ),
        migrations.RunPython(names_to_keys, migrations.RunPython.noop),
    ]
