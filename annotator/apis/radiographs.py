"""Radiograph endpoints: list, detail, the annotator's save, workflow actions, queues, history."""
from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..services import queues, workflow
from . import serializers as ser

StateSchema = ser.AnnotationStateSerializer


def radiograph_payload(radiograph, *, user) -> dict:
    """What the workspace pages need to open a radiograph, in one response (with what ``user`` may do now)."""
    context = {
        "prediction": selectors.prediction_current(radiograph),
        "actions": workflow.radiograph_actions(radiograph=radiograph, user=user),
        "user": user,
    }
    return ser.RadiographDetailSerializer(radiograph, context=context).data


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

    @extend_schema(responses=ser.RadiographDetailSerializer)
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

    @extend_schema(request=None, responses=ser.LeaseHeldSerializer)
    def post(self, request, radiograph_id: int):
        radiograph = workflow.lease_renew(radiograph_id=radiograph_id, user=request.user)
        return Response(ser.LeaseHeldSerializer(radiograph).data)


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
        responses={200: ser.LeaseSerializer, 204: None},
    )
    def post(self, request, queue: str):
        body = ser.QueueInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = queues.queue_next(
            user=request.user, queue=queue, dataset=body.validated_data.get("dataset") or None, order=body.validated_data.get("order", "oldest")
        )
        if radiograph is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ser.LeaseSerializer(radiograph).data)


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
