"""Radiograph pixels, served only after a permission check.

In production (``MEDIA_INTERNAL_REDIRECT`` set) the web server sends the file through an internal
redirect (X-Accel-Redirect, with no body from Django); otherwise Django streams it. With a bucket as
media storage the answer is a redirect to a presigned link that expires within a minute (by default),
given out only after the same check. Originals are downloads: POST, admins only, recorded in the audit log.
"""
from __future__ import annotations

import io

import numpy as np
from django.conf import settings
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image
from rest_framework.views import APIView

from .. import selectors
from ..errors import InvalidInput, NotFound
from ..services.events import audit_record
from ..storage import storage_is_local

# Images anyone who may view a radiograph may see (GET); the original is a download (POST, admins).
VIEW_KINDS = {"preview", "display", "pixels"}


def file_response(field, *, content_type: str, download_name: str | None = None):
    if not field:
        raise NotFound("This radiograph has no such image.")
    return stored_file_response(field.storage, field.name, content_type=content_type, download_name=download_name)


def stored_file_response(storage, name: str, *, content_type: str, download_name: str | None = None):
    """A stored file, for a caller that has checked the permission: a presigned redirect (a bucket),
    an internal redirect for the web server, or the file streamed by Django."""
    if not storage_is_local(storage):
        return presigned_redirect(storage, name, content_type=content_type, download_name=download_name)
    if settings.MEDIA_INTERNAL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = settings.MEDIA_INTERNAL_REDIRECT.rstrip("/") + "/" + name
    else:
        try:
            response = FileResponse(storage.open(name, "rb"), content_type=content_type)
        except FileNotFoundError:
            raise NotFound("The file is missing from storage.") from None
    if download_name:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


def presigned_redirect(storage, name: str, *, content_type: str, download_name: str | None = None) -> HttpResponseRedirect:
    """A redirect to a short-lived presigned link of a stored object (a bucket), which answers with
    the given type (and as a download when named)."""
    parameters = {"ResponseContentType": content_type}
    if download_name:
        parameters["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
    response = HttpResponseRedirect(storage.url(name, parameters=parameters))
    response["Cache-Control"] = "private, no-store"  # the link expires: never reuse the redirect
    return response


class RadiographImageApi(APIView):
    """GET ``preview`` (compressed, for the viewer), ``display`` (8-bit PNG), ``pixels`` (full bit depth
    as little-endian uint16 with ``X-Width``/``X-Height`` headers, for window/level); POST ``original``
    downloads the stored (de-identified) original: admins only, audited, never a plain link."""

    required_actions = {"GET": "view", "POST": "export"}

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=sorted(VIEW_KINDS))],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request, radiograph_id: int, kind: str):
        if kind == "original":
            raise InvalidInput("Originals are downloaded with POST (admins only).")
        if kind not in VIEW_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(sorted(VIEW_KINDS))}.")
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        if kind == "preview":
            return file_response(radiograph.preview, content_type=radiograph.preview_mime)
        if kind == "display":
            return file_response(radiograph.display, content_type="image/png")
        if not radiograph.pixels:
            raise NotFound("This radiograph has 8-bit pixels only: use the display image.")
        with radiograph.pixels.open("rb") as fh:
            array = np.asarray(Image.open(io.BytesIO(fh.read())), dtype=np.uint16)
        response = HttpResponse(array.astype("<u2").tobytes(), content_type="application/octet-stream")
        response["X-Width"], response["X-Height"] = str(array.shape[1]), str(array.shape[0])
        response["X-Bit-Depth"] = str(radiograph.bit_depth)
        response["Cache-Control"] = "private, max-age=3600"
        return response

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=["original"])],
        request=None,
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def post(self, request, radiograph_id: int, kind: str):
        if kind != "original":
            raise InvalidInput("Only the original is downloaded with POST; view images with GET.")
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        is_dicom = radiograph.kind == "dicom"
        response = file_response(
            radiograph.original,
            content_type="application/dicom" if is_dicom else "image/png",
            download_name=f"radiograph-{radiograph.id}.{'dcm' if is_dicom else 'png'}",
        )
        audit_record(actor=request.user, action="download_original", target=str(radiograph.id))
        response["Cache-Control"] = "private, no-store"
        return response
