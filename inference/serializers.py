"""API representations of model versions, training runs and pre-annotation batches, and API inputs."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers as s

from .models import ModelVersion, PreannotationBatch, TrainingRun
from .selectors import preannotation_batch_progress

# Bulky metric entries left out of API answers (the curve is in the checkpoint and the run folder).
_HIDDEN_METRICS = {"covid_roc"}


class ModelVersionRefSerializer(s.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name"]


class ModelVersionSerializer(s.ModelSerializer):
    previous = ModelVersionRefSerializer(read_only=True, allow_null=True)
    metrics = s.SerializerMethodField()
    export = s.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "is_active", "sha256", "config", "metrics", "export", "previous", "notes", "created_at", "activated_at"]

    @extend_schema_field(s.DictField())
    def get_metrics(self, obj: ModelVersion) -> dict:
        return {k: v for k, v in (obj.metrics or {}).items() if k not in _HIDDEN_METRICS}


class ModelUploadSerializer(s.Serializer):
    file = s.FileField(help_text="A CMTNet checkpoint (cmtnet-checkpoint/1).")
    name = s.CharField(required=False, allow_blank=True, max_length=100)
    activate = s.BooleanField(required=False, default=False)
    notes = s.CharField(required=False, allow_blank=True, max_length=4000)


class ModelActivateSerializer(s.Serializer):
    preannotate = s.BooleanField(
        required=False, default=True, help_text="Pre-annotate the radiographs nobody has finished with this model."
    )


class TrainingRunSerializer(s.ModelSerializer):
    # A plain string in the schema (an enum here would collide with other "status" enums by name).
    status = s.CharField(read_only=True, help_text="queued, running, succeeded or failed")
    candidate = ModelVersionRefSerializer(read_only=True, allow_null=True)
    baseline = ModelVersionRefSerializer(read_only=True, allow_null=True)
    created_by = s.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    export = s.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "status", "trigger", "created_by", "config", "progress", "history", "decision", "promoted",
            "candidate", "baseline", "export", "accepted_count", "created_at", "started_at", "finished_at",
        ]


class TrainingRunDetailSerializer(TrainingRunSerializer):
    artefacts = s.SerializerMethodField(help_text="The run's stored artefacts, each with its link.")

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "log", "artefacts"]

    def get_artefacts(self, obj: TrainingRun) -> list[dict[str, str]]:
        names = self.context.get("artefacts", [])
        return [{"name": name, "url": reverse("api-training-run-artefact", args=[obj.pk, name])} for name in names]


class TrainingStartSerializer(s.Serializer):
    """A preset (default: TRAINING_PRESET) and optional overrides of its settings for this run."""

    preset = s.CharField(required=False, allow_blank=True, max_length=40)
    epochs = s.IntegerField(required=False, min_value=1, max_value=1000)
    width = s.FloatField(required=False)
    image_size = s.IntegerField(required=False)
    batch_size = s.IntegerField(required=False, min_value=1, max_value=512)
    lr = s.FloatField(required=False)


class ProgressSerializer(s.Serializer):
    total = s.IntegerField()
    finished = s.IntegerField()
    fraction = s.FloatField()
    complete = s.BooleanField()
    queued = s.IntegerField()
    running = s.IntegerField()
    done = s.IntegerField()
    skipped = s.IntegerField()
    failed = s.IntegerField()


class PreannotationBatchSerializer(s.ModelSerializer):
    model_version = ModelVersionRefSerializer(read_only=True)
    progress = s.SerializerMethodField()

    class Meta:
        model = PreannotationBatch
        fields = ["id", "model_version", "reason", "created_at", "progress"]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj: PreannotationBatch) -> dict:
        return preannotation_batch_progress(obj)


class PreannotationRequestSerializer(s.Serializer):
    """Either a dataset name or a list of radiograph ids."""

    dataset = s.CharField(required=False, max_length=100)
    radiograph_ids = s.ListField(child=s.IntegerField(min_value=1), required=False, max_length=100_000, allow_empty=False)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("dataset")) == bool(attrs.get("radiograph_ids")):
            raise s.ValidationError("Give either 'dataset' or 'radiograph_ids'.")
        return attrs


class TrainingPresetSerializer(s.Serializer):
    name = s.CharField()
    title = s.CharField()
    description = s.CharField()
    device = s.CharField(help_text="cpu or cuda")
    epochs = s.IntegerField()
    estimate_seconds = s.IntegerField(help_text="Roughly how long a run takes on the annotated radiographs.")


class TrainingPresetListSerializer(s.Serializer):
    default = s.CharField(help_text="The preset a run gets when none is chosen.")
    images = s.IntegerField(help_text="About how many radiographs a run would learn from.")
    presets = TrainingPresetSerializer(many=True)
