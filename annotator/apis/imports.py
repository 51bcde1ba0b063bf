"""Upload and import radiographs (multipart: several files, or a zip with an optional metadata.csv)."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as s
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import FileTooLarge, InvalidInput
from ..services.events import audit_record
from ..services.imports import SourceFile, dataset_get_or_create, radiographs_import, zip_sources
from . import serializers as ser


def _upload_source(upload) -> SourceFile:
    def read(limit: int) -> bytes:
        upload.seek(0)
        return upload.read(limit)

    return SourceFile(name=upload.name or "upload", size=upload.size or 0, read=read)


class ImportApi(APIView):
    required_action = "import"
    parser_classes = [MultiPartParser]
    # The role and this size are checked from the headers before the body is read (EarlyRefusal).
    body_limit_setting = "MAX_ZIP_BYTES"

    @extend_schema(request={"multipart/form-data": ser.ImportUploadSerializer}, responses={201: ser.ImportReportSerializer})
    def post(self, request):
        name = request.data.get("dataset")
        if not name or not isinstance(name, str):
            raise InvalidInput("Name the dataset to import into ('dataset').")
        dataset = dataset_get_or_create(name=name)
        uploads = request.FILES.getlist("files")
        archive = request.FILES.get("archive")
        if not uploads and archive is None:
            raise InvalidInput("Attach radiograph files ('files') or a zip ('archive').")
        metadata: dict = {}
        sources = []
        for upload in uploads:
            if (upload.name or "").lower().endswith(".zip") and archive is None:
                archive = upload
                continue
            sources.append(_upload_source(upload))
        if archive is not None:
            if archive.size > settings.MAX_ZIP_BYTES:
                raise FileTooLarge(f"The zip is larger than the {settings.MAX_ZIP_BYTES} bytes allowed.")
            zipped, metadata = zip_sources(archive, max_total=settings.MAX_ZIP_BYTES)
            sources.extend(zipped)
        allow_burned_in = s.BooleanField(required=False).to_internal_value(request.data.get("allow_burned_in") or False)
        report = radiographs_import(
            dataset=dataset, sources=sources, metadata=metadata, actor=request.user, origin="upload", allow_burned_in=allow_burned_in
        )
        audit_record(actor=request.user, action="import", target=dataset.name, data={"imported": report.imported, "errors": len(report.errors)})
        return Response(ser.ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)
