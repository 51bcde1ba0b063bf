"""Finding-region endpoints: list/add on a radiograph, edit, accept, reject, mask image."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..services import regions as region_services
from . import serializers as ser


class RadiographRegionsApi(APIView):
    required_actions = {"GET": "view", "POST": "review"}

    @extend_schema(responses=ser.RegionSerializer(many=True))
    def get(self, request, radiograph_id: int):
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        return Response(ser.RegionSerializer(radiograph.regions.all(), many=True).data)

    @extend_schema(request=ser.RegionAddSerializer, responses={201: ser.RegionSerializer})
    def post(self, request, radiograph_id: int):
        body = ser.RegionAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
        region = region_services.region_add(radiograph=radiograph, user=request.user, **body.validated_data)
        return Response(ser.RegionSerializer(region).data, status=status.HTTP_201_CREATED)


class RegionApi(APIView):
    required_actions = {"GET": "view", "PATCH": "review"}

    @extend_schema(responses=ser.RegionSerializer)
    def get(self, request, region_id: int):
        return Response(ser.RegionSerializer(selectors.region_get(user=request.user, region_id=region_id)).data)

    @extend_schema(request=ser.RegionEditSerializer, responses=ser.RegionSerializer)
    def patch(self, request, region_id: int):
        body = ser.RegionEditSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        region = selectors.region_get(user=request.user, region_id=region_id)
        region = region_services.region_edit(region=region, user=request.user, **{"version": None, **body.validated_data})
        return Response(ser.RegionSerializer(region).data)


class RegionDecisionApi(APIView):
    required_action = "review"

    @extend_schema(
        parameters=[OpenApiParameter("decision", str, OpenApiParameter.PATH, enum=["accept", "reject"])],
        request=ser.RegionDecisionSerializer,
        responses=ser.RegionSerializer,
    )
    def post(self, request, region_id: int, decision: str):
        body = ser.RegionDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        region = selectors.region_get(user=request.user, region_id=region_id)
        region = region_services.region_decide(region=region, user=request.user, version=body.validated_data.get("version"), decision=decision)
        return Response(ser.RegionSerializer(region).data)


class RegionMaskApi(APIView):
    required_action = "view"

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, region_id: int):
        region = selectors.region_get(user=request.user, region_id=region_id)
        response = HttpResponse(region_services.region_mask_png(region), content_type="image/png")
        response["Cache-Control"] = "private, no-cache"
        return response
