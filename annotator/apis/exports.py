"""Export endpoints (admins only): request a snapshot, follow its progress, download it as a zip.

The download is a POST (like every export action): it is audit-logged, and the zip is streamed as
it is produced, so a snapshot of any size never sits in memory.
"""
from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as s
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..models import ExportSnapshot
from ..services import exports
from ..services.exports import LUNG_MASK_KINDS


class ExportSerializer(s.ModelSerializer):
    datasets = s.SerializerMethodField()
    created_by = s.CharField(source="created_by.username", default=None, read_only=True)
    download = s.SerializerMethodField()

    class Meta:
        model = ExportSnapshot
        fields = [
            "id", "status", "progress", "datasets", "options", "counts", "manifest_sha256", "error",
            "created_by", "created_at", "finished_at", "download",
        ]

    def get_datasets(self, obj: ExportSnapshot) -> list[str]:
        return sorted(d.name for d in obj.datasets.all())

    def get_download(self, obj: ExportSnapshot) -> str | None:
        return reverse("api-export-download", args=[obj.id]) if obj.status == exports.Status.DONE else None


class ExportCreateSerializer(s.Serializer):
    datasets = s.ListField(child=s.CharField(max_length=100), min_length=1, max_length=100)
    lung_masks = s.ChoiceField(choices=LUNG_MASK_KINDS, required=False, help_text="boxes: the two lung boxes filled; outlines: polygon masks where they exist.")
    reviewed_only = s.BooleanField(required=False, help_text="Only radiographs a radiologist accepted.")
    seed = s.IntegerField(required=False, min_value=0, max_value=2**31 - 1, help_text="Orders new subjects for the split.")


class ExportListApi(APIView):
    required_action = "export"
    pagination_class = LimitOffsetPagination  # used below, and documented by the schema

    @extend_schema(responses=ExportSerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.export_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(ExportSerializer(page, many=True).data)

    @extend_schema(request=ExportCreateSerializer, responses={202: ExportSerializer})
    def post(self, request):
        body = ExportCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = {k: v for k, v in body.validated_data.items() if k != "datasets"}
        snapshot = exports.export_create(user=request.user, datasets=body.validated_data["datasets"], options=options)
        return Response(ExportSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    required_action = "export"

    @extend_schema(responses=ExportSerializer)
    def get(self, request, export_id: int):
        return Response(ExportSerializer(selectors.export_get(user=request.user, export_id=export_id)).data)


class ExportDownloadApi(APIView):
    required_action = "export"

    @extend_schema(request=None, responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def post(self, request, export_id: int):
        snapshot = selectors.export_get(user=request.user, export_id=export_id)
        root = exports.export_download_check(user=request.user, snapshot=snapshot)
        name = f"lungmark-export-{snapshot.id}"
        response = StreamingHttpResponse(exports.export_zip_stream(root, prefix=name), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
        response["Cache-Control"] = "no-store"
        return response
