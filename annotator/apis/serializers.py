"""API representations and input validation."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..constants import (
    FINDING_INPUT_CHOICES,
    AnnotationSource,
    ExclusionReason,
    InterstitialSubtype,
    LungStatus,
    PreannotationStatus,
    Provenance,
    RegionStatus,
    State,
    Tri,
    View,
)
from ..models import Dataset, FindingRegion, Radiograph, ReviewEvent
from ..permissions import can
from ..workflow import ACTIONS

LABEL_FIELDS = ("healthy", "covid", "other_disease")


class DatasetSerializer(serializers.ModelSerializer):
    # The count of radiographs (the list view annotates it); no default: DRF refuses one on a name
    # that is also a to-many relation of the model.
    radiographs = serializers.IntegerField(read_only=True, source="radiograph_count")

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "created_at", "radiographs"]


def file_name_for(user, radiograph: Radiograph) -> str:
    """The uploaded file name, for admins only and only where it is kept; "" for everyone else."""
    return radiograph.admin_file_name if can(user, "import") else ""


class RadiographListSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")
    name = serializers.CharField(source="display_name", read_only=True)
    source_name = serializers.SerializerMethodField(help_text="The uploaded file name: admins only, where kept; else empty.")

    class Meta:
        model = Radiograph
        fields = [
            "id", "dataset", "name", "source_name", "kind", "width", "height", "bit_depth", "view", "state",
            "excluded_reason", "healthy", "covid", "other_disease", "version", "uncertainty",
            "preannotation_status", "created_at", "updated_at",
        ]

    def get_source_name(self, radiograph: Radiograph) -> str:
        request = self.context.get("request")
        return file_name_for(getattr(request, "user", None), radiograph)


class LabelsSerializer(serializers.Serializer):
    healthy = serializers.ChoiceField(choices=Tri.choices, required=False)
    covid = serializers.ChoiceField(choices=Tri.choices, required=False)
    other_disease = serializers.ChoiceField(choices=Tri.choices, required=False)


Box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, allow_null=True, required=False)


class AnnotationInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False, help_text="The version this edit is based on (428 without it).")
    right = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, allow_null=True, required=False)
    left = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, allow_null=True, required=False)
    labels = LabelsSerializer(required=False)
    view = serializers.ChoiceField(choices=[v for v in View.values if v not in ("LATERAL", "CT")], required=False)
    submit = serializers.BooleanField(required=False, default=False)


class ExcludeInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False)
    reason = serializers.ChoiceField(choices=ExclusionReason.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class SkipInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class ReturnInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False)
    comment = serializers.CharField(max_length=4000)


class AcceptInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False)
    labels = LabelsSerializer(required=False)
    right = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False)
    left = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False)


class RegionSerializer(serializers.ModelSerializer):
    class Meta:
        model = FindingRegion
        fields = [
            "id", "radiograph", "label", "subtype", "description", "status", "source", "confidence",
            "bbox", "area", "version", "flagged", "source_label", "updated_at",
        ]


class RegionAddSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=FINDING_INPUT_CHOICES)
    subtype = serializers.ChoiceField(choices=InterstitialSubtype.choices, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    bbox = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4)
    mask = serializers.CharField(help_text="Base64 PNG (0/255) of the bbox area.", max_length=50_000_000)


class RegionEditSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False)
    label = serializers.ChoiceField(choices=FINDING_INPUT_CHOICES, required=False)
    subtype = serializers.ChoiceField(choices=InterstitialSubtype.choices, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    bbox = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False)
    mask = serializers.CharField(required=False, max_length=50_000_000)
    status = serializers.ChoiceField(choices=RegionStatus.choices, required=False, default=RegionStatus.ACCEPTED)


class RegionDecisionSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False)


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None)
    model_version = serializers.CharField(source="model_version.name", default=None)

    class Meta:
        model = ReviewEvent
        fields = ["id", "created_at", "actor", "action", "from_state", "to_state", "model_version", "data"]


class ImportUploadSerializer(serializers.Serializer):
    """What an import uploads (multipart): several files, or a zip with an optional metadata.csv."""

    dataset = serializers.CharField()
    files = serializers.ListField(child=serializers.FileField())
    archive = serializers.FileField(required=False)
    allow_burned_in = serializers.BooleanField(required=False, help_text="Import DICOM with burned-in text into the normal queue.")


class ImportReportSerializer(serializers.Serializer):
    """What an import answers (``services.imports.ImportReport``): counts, and each excluded or failed file."""

    dataset = serializers.CharField()
    imported = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    excluded = serializers.ListField(child=serializers.DictField())
    errors = serializers.ListField(child=serializers.DictField())
    radiograph_ids = serializers.ListField(child=serializers.IntegerField())


class LeaseSerializer(serializers.ModelSerializer):
    """The radiograph a queue leased to the user: which one to open, at which version and state."""

    class Meta:
        model = Radiograph
        fields = ["id", "version", "state"]


class LeaseHeldSerializer(serializers.ModelSerializer):
    """A renewed lease: who holds the radiograph now, and until when."""

    leased_to = serializers.CharField(source="leased_to.get_username")

    class Meta:
        model = Radiograph
        fields = ["id", "leased_to", "lease_expires_at"]


class QueueInputSerializer(serializers.Serializer):
    dataset = serializers.CharField(required=False, allow_blank=True, max_length=100)
    order = serializers.ChoiceField(choices=["oldest", "uncertainty"], required=False, default="oldest")


# ---- the annotation state and the radiograph detail: the answers of the workspace's calls --------------
class LabelValuesSerializer(serializers.Serializer):
    healthy = serializers.ChoiceField(choices=Tri.choices)
    covid = serializers.ChoiceField(choices=Tri.choices)
    other_disease = serializers.ChoiceField(choices=Tri.choices)


class LabelSourcesSerializer(serializers.Serializer):
    healthy = serializers.ChoiceField(choices=Provenance.choices)
    covid = serializers.ChoiceField(choices=Provenance.choices)
    other_disease = serializers.ChoiceField(choices=Provenance.choices)


class LungsStateSerializer(serializers.Serializer):
    """The current lung boxes (patient right and left), or nulls before anyone drew them."""

    right = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    left = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    status = serializers.ChoiceField(choices=LungStatus.choices, allow_null=True)
    source = serializers.ChoiceField(choices=AnnotationSource.choices, allow_null=True)
    version = serializers.IntegerField(allow_null=True)


class AnnotationStateSerializer(serializers.Serializer):
    """The image-level annotation as clients see it: what a save, an exclusion, a return or an
    acceptance answers, and what a 409 carries as ``current``. The current lung annotation may be
    given as ``context["lungs"]`` (read from the radiograph otherwise)."""

    id = serializers.IntegerField()
    version = serializers.IntegerField()
    state = serializers.ChoiceField(choices=State.choices)
    view = serializers.ChoiceField(choices=View.choices)
    labels = serializers.SerializerMethodField()
    label_sources = serializers.SerializerMethodField()
    lungs = serializers.SerializerMethodField()
    excluded_reason = serializers.CharField(allow_blank=True)
    return_comment = serializers.CharField(allow_blank=True)

    @extend_schema_field(LabelValuesSerializer)
    def get_labels(self, radiograph: Radiograph) -> dict:
        return {name: getattr(radiograph, name) for name in LABEL_FIELDS}

    @extend_schema_field(LabelSourcesSerializer)
    def get_label_sources(self, radiograph: Radiograph) -> dict:
        return {name: getattr(radiograph, f"{name}_source") for name in LABEL_FIELDS}

    @extend_schema_field(LungsStateSerializer)
    def get_lungs(self, radiograph: Radiograph) -> dict:
        lungs = self.context["lungs"] if "lungs" in self.context else radiograph.lung_annotations.first()
        return {
            "right": lungs.right_box if lungs else None,
            "left": lungs.left_box if lungs else None,
            "status": lungs.status if lungs else None,
            "source": lungs.source if lungs else None,
            "version": lungs.version if lungs else None,
        }


class ImageUrlsSerializer(serializers.Serializer):
    preview = serializers.CharField()
    display = serializers.CharField()
    pixels = serializers.CharField(allow_null=True)
    preview_mime = serializers.CharField()


class PredictionSummarySerializer(serializers.Serializer):
    model_version = serializers.CharField(source="model_version.name")
    healthy = serializers.FloatField(source="healthy_prob", allow_null=True)
    covid = serializers.FloatField(source="covid_prob", allow_null=True)
    other_disease = serializers.FloatField(source="other_disease_prob", allow_null=True)
    uncertainty = serializers.FloatField(allow_null=True)
    right = serializers.ListField(source="right_box", child=serializers.IntegerField(), allow_null=True)
    left = serializers.ListField(source="left_box", child=serializers.IntegerField(), allow_null=True)
    created_at = serializers.DateTimeField()


class RegionCurrentSerializer(serializers.ModelSerializer):
    """A region's current state: what a 409 for a stale region edit carries as ``current``."""

    class Meta:
        model = FindingRegion
        fields = [
            "id", "version", "label", "subtype", "description", "status", "source", "confidence",
            "bbox", "area", "flagged", "source_label",
        ]


class RegionStateSerializer(RegionCurrentSerializer):
    """A region as the workspace draws it, with the URL of its mask."""

    mask_url = serializers.SerializerMethodField()

    class Meta(RegionCurrentSerializer.Meta):
        fields = [*RegionCurrentSerializer.Meta.fields, "mask_url"]

    def get_mask_url(self, region: FindingRegion) -> str:
        return reverse("api-region-mask", args=[region.id])


class RadiographDetailSerializer(AnnotationStateSerializer):
    """What the workspace opens a radiograph with, in one answer. ``context``: ``user`` (who asks),
    ``prediction`` (the current one, or None), ``actions`` (what the user may do now)."""

    dataset = serializers.CharField(source="dataset.name")
    name = serializers.CharField(source="display_name")
    source_name = serializers.SerializerMethodField(help_text="The uploaded file name: admins only, where kept; else empty.")
    kind = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    bit_depth = serializers.IntegerField()
    window = serializers.SerializerMethodField()
    modality = serializers.CharField(allow_blank=True)
    uncertainty = serializers.FloatField(allow_null=True)
    preannotation_status = serializers.ChoiceField(choices=PreannotationStatus.choices)
    findings_complete = serializers.BooleanField()
    leased_to = serializers.SerializerMethodField(help_text="Who holds a live lease on it (has it open), or null.")
    editable = serializers.SerializerMethodField(help_text="Whether you may change its lung boxes and labels now.")
    actions = serializers.SerializerMethodField(help_text="The workflow actions you may take on it now.")
    image = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    regions = RegionStateSerializer(many=True, source="regions.all")

    @extend_schema_field(serializers.CharField(allow_blank=True))
    def get_source_name(self, radiograph: Radiograph) -> str:
        return file_name_for(self.context["user"], radiograph)

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(allow_null=True)))
    def get_window(self, radiograph: Radiograph) -> dict:
        return {"center": radiograph.window_center, "width": radiograph.window_width}

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_leased_to(self, radiograph: Radiograph) -> str | None:
        return radiograph.leased_to.get_username() if radiograph.lease_holder_id() else None

    @extend_schema_field(serializers.BooleanField())
    def get_editable(self, radiograph: Radiograph) -> bool:
        return "save" in self.context["actions"]

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=ACTIONS)))
    def get_actions(self, radiograph: Radiograph) -> list[str]:
        return list(self.context["actions"])

    @extend_schema_field(ImageUrlsSerializer)
    def get_image(self, radiograph: Radiograph) -> dict:
        image = lambda kind: reverse("api-image", args=[radiograph.id, kind])  # noqa: E731
        return {
            "preview": image("preview"),
            "display": image("display"),
            "pixels": image("pixels") if radiograph.pixels else None,
            "preview_mime": radiograph.preview_mime,
        }

    @extend_schema_field(PredictionSummarySerializer(allow_null=True))
    def get_prediction(self, radiograph: Radiograph) -> dict | None:
        prediction = self.context.get("prediction")
        return PredictionSummarySerializer(prediction).data if prediction is not None else None
