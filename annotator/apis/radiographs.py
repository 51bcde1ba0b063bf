"""Radiograph endpoints: list, detail, the annotator's save, workflow actions, queues, history."""
from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as s
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..services import workflow
from ..services.regions import region_state
from . import serializers as ser

# What a save, an exclusion, a return or an acceptance answers (``workflow.annotation_state``),
# and what a 409 carries as ``current``.
_STATE_FIELDS = {
    "id": s.IntegerField(),
    "version": s.IntegerField(),
    "state": s.CharField(),
    "view": s.CharField(),
    "labels": s.DictField(),
    "label_sources": s.DictField(),
    "lungs": s.DictField(),
    "excluded_reason": s.CharField(allow_blank=True),
    "return_comment": s.CharField(allow_blank=True),
}
StateSchema = inline_serializer("AnnotationState", _STATE_FIELDS)
# What the workspace opens a radiograph with (``radiograph_payload``).
DetailSchema = inline_serializer(
    "RadiographDetail",
    {
        **_STATE_FIELDS,
        "dataset": s.CharField(),
        "name": s.CharField(),
        "source_name": s.CharField(allow_blank=True),
        "kind": s.CharField(),
        "width": s.IntegerField(),
        "height": s.IntegerField(),
        "bit_depth": s.IntegerField(),
        "window": s.DictField(),
        "modality": s.CharField(allow_blank=True),
        "uncertainty": s.FloatField(allow_null=True),
        "preannotation_status": s.CharField(),
        "findings_complete": s.BooleanField(),
        "leased_to": s.CharField(allow_null=True),
        "image": s.DictField(),
        "prediction": s.DictField(allow_null=True),
        "regions": s.ListField(child=s.DictField()),
    },
)
LeaseSchema = inline_serializer("Lease", {"id": s.IntegerField(), "version": s.IntegerField(), "state": s.CharField()})


def radiograph_payload(radiograph, *, user, with_regions: bool = True) -> dict:
    """What the workspace pages need to open a radiograph, in one response (as ``user`` may see it)."""
    data = workflow.annotation_state(radiograph)
    prediction = selectors.prediction_current(radiograph)
    data.update(
        dataset=radiograph.dataset.name,
        name=radiograph.display_name,
        source_name=ser.file_name_for(user, radiograph),
        kind=radiograph.kind,
        width=radiograph.width,
        height=radiograph.height,
        bit_depth=radiograph.bit_depth,
        window={"center": radiograph.window_center, "width": radiograph.window_width},
        modality=radiograph.modality,
        uncertainty=radiograph.uncertainty,
        preannotation_status=radiograph.preannotation_status,
        findings_complete=radiograph.findings_complete,
        leased_to=radiograph.leased_to.username if radiograph.lease_holder_id() else None,
        image={
            "preview": f"/api/radiographs/{radiograph.id}/image/preview",
            "display": f"/api/radiographs/{radiograph.id}/image/display",
            "pixels": f"/api/radiographs/{radiograph.id}/image/pixels" if radiograph.pixels else None,
            "preview_mime": radiograph.preview_mime,
        },
        prediction=(
            {
                "model_version": prediction.model_version.name,
                "healthy": prediction.healthy_prob,
                "covid": prediction.covid_prob,
                "other_disease": prediction.other_disease_prob,
                "uncertainty": prediction.uncertainty,
                "right": prediction.right_box,
                "left": prediction.left_box,
                "created_at": prediction.created_at,
            }
            if prediction
            else None
        ),
    )
    if with_regions:
        data["regions"] = [region_state(r) | {"mask_url": f"/api/regions/{r.id}/mask.png"} for r in radiograph.regions.all()]
    return data


class DatasetListApi(APIView):
    required_action = "view"

    @extend_schema(responses=ser.DatasetSerializer(many=True))
    def get(self, request):
        datasets = selectors.dataset_list(user=request.user).annotate(radiograph_count=Count("radiographs"))
        return Response(ser.DatasetSerializer(datasets, many=True).data)


class RadiographListApi(APIView):
    required_action = "view"
    pagination_class = LimitOffsetPagination  # used below, and documented by the schema

    @extend_schema(
        parameters=[OpenApiParameter(name, str, required=False) for name in (*selectors.RADIOGRAPH_FILTERS, "ordering")],
        responses=ser.RadiographListSerializer(many=True),
    )
    def get(self, request):
        filters = {k: request.query_params.get(k) for k in selectors.RADIOGRAPH_FILTERS if k in request.query_params}
        qs = selectors.radiograph_list(user=request.user, filters=filters, ordering=request.query_params.get("ordering", "id"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ser.RadiographListSerializer(page, many=True, context={"request": request}).data)


class RadiographDetailApi(APIView):
    required_action = "view"

    @extend_schema(responses=DetailSchema)
    def get(self, request, radiograph_id: int):
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        return Response(radiograph_payload(radiograph, user=request.user))


class AnnotationApi(APIView):
    """The annotator's save: lung boxes, labels, view; ``submit`` sends it to review."""

    required_action = "annotate"

    @extend_schema(request=ser.AnnotationInputSerializer, responses=StateSchema)
    def put(self, request, radiograph_id: int):
        body = ser.AnnotationInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        radiograph, lungs = workflow.annotation_save(
            radiograph_id=radiograph_id,
            user=request.user,
            version=data.get("version"),
            right=data.get("right"),
            left=data.get("left"),
            labels=data.get("labels"),
            view=data.get("view"),
            submit=data.get("submit", False),
        )
        return Response(workflow.annotation_state(radiograph, lungs))


class ExcludeApi(APIView):
    required_action = "annotate"

    @extend_schema(request=ser.ExcludeInputSerializer, responses=StateSchema)
    def post(self, request, radiograph_id: int):
        body = ser.ExcludeInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = workflow.radiograph_exclude(radiograph_id=radiograph_id, user=request.user, **_with_version(body.validated_data))
        return Response(workflow.annotation_state(radiograph))


class SkipApi(APIView):
    required_action = "annotate"

    @extend_schema(request=ser.SkipInputSerializer, responses={204: None})
    def post(self, request, radiograph_id: int):
        body = ser.SkipInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        workflow.radiograph_skip(radiograph_id=radiograph_id, user=request.user, reason=body.validated_data["reason"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class LeaseApi(APIView):
    """Keep holding a radiograph that is open in the workspace (renews the lease); 409 if someone
    else holds it, or if it is in no queue any more."""

    required_action = "annotate"

    @extend_schema(request=None, responses=inline_serializer("LeaseHeld", {"id": s.IntegerField(), "leased_to": s.CharField(), "lease_expires_at": s.DateTimeField()}))
    def post(self, request, radiograph_id: int):
        radiograph = workflow.lease_renew(radiograph_id=radiograph_id, user=request.user)
        return Response({"id": radiograph.id, "leased_to": request.user.get_username(), "lease_expires_at": radiograph.lease_expires_at})


class ReturnApi(APIView):
    required_action = "review"

    @extend_schema(request=ser.ReturnInputSerializer, responses=StateSchema)
    def post(self, request, radiograph_id: int):
        body = ser.ReturnInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = workflow.radiograph_return(radiograph_id=radiograph_id, user=request.user, **_with_version(body.validated_data))
        return Response(workflow.annotation_state(radiograph))


class AcceptApi(APIView):
    required_action = "review"

    @extend_schema(request=ser.AcceptInputSerializer, responses=StateSchema)
    def post(self, request, radiograph_id: int):
        body = ser.AcceptInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = workflow.radiograph_accept(radiograph_id=radiograph_id, user=request.user, **_with_version(body.validated_data))
        return Response(workflow.annotation_state(radiograph))


class QueueNextApi(APIView):
    """Lease the next radiograph of a queue (``annotate`` or ``review``); 204 when the queue is empty."""

    required_actions = {"POST": "annotate"}

    @extend_schema(
        parameters=[OpenApiParameter("queue", str, OpenApiParameter.PATH, enum=["annotate", "review"])],
        request=ser.QueueInputSerializer,
        responses={200: LeaseSchema, 204: None},
    )
    def post(self, request, queue: str):
        body = ser.QueueInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = workflow.queue_next(
            user=request.user, queue=queue, dataset=body.validated_data.get("dataset") or None, order=body.validated_data.get("order", "oldest")
        )
        if radiograph is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"id": radiograph.id, "version": radiograph.version, "state": radiograph.state})


class EventListApi(APIView):
    required_action = "view"

    @extend_schema(responses=ser.EventSerializer(many=True))
    def get(self, request, radiograph_id: int):
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        return Response(ser.EventSerializer(selectors.radiograph_events(user=request.user, radiograph=radiograph), many=True).data)


def _with_version(data: dict) -> dict:
    """The validated body as service arguments; ``version`` always present, so that a missing one
    reaches the service (and becomes 428) instead of failing the call."""
    return {"version": None, **data}
