"""API representations and input validation."""
from __future__ import annotations

from rest_framework import serializers

from ..constants import FINDING_INPUT_CHOICES, ExclusionReason, InterstitialSubtype, RegionStatus, Tri, View
from ..models import Dataset, FindingRegion, Radiograph, ReviewEvent
from ..permissions import can


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


class QueueInputSerializer(serializers.Serializer):
    dataset = serializers.CharField(required=False, allow_blank=True, max_length=100)
    order = serializers.ChoiceField(choices=["oldest", "uncertainty"], required=False, default="oldest")
