"""REST API of the inference app: model registry, training runs, pre-annotation requests and progress.

Thin views: the permission is declared (``required_action(s)``; writes need ``manage_models``),
input is validated by a serializer, one service or selector does the work. Domain errors become
HTTP in ``annotator.apis.exception_handler``.
"""
from __future__ import annotations

from django.core.files.storage import default_storage
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.apis.media import stored_file_response
from annotator.errors import InvalidInput, NotFound
from annotator.selectors import radiograph_get

from . import selectors
from . import serializers as ser
from .services import model_version_activate, model_version_register, model_version_rollback, training_run_start
from .services.preannotation import preannotation_request_for_dataset, preannotation_request_for_radiographs
from .services.retraining import training_presets
from .services.run_files import VIEWABLE, run_folder_name


class ModelListApi(APIView):
    """The registered model versions (newest first); admins upload a checkpoint to register it."""

    required_actions = {"GET": "view", "POST": "manage_models"}
    parser_classes = [MultiPartParser, FormParser]
    # The role and this size are checked from the headers before the body is read (EarlyRefusal).
    body_limit_setting = "MODEL_MAX_BYTES"

    @extend_schema(responses=ser.ModelVersionSerializer(many=True))
    def get(self, request):
        return Response(ser.ModelVersionSerializer(selectors.model_version_list(), many=True).data)

    @extend_schema(request={"multipart/form-data": ser.ModelUploadSerializer}, responses={201: ser.ModelVersionSerializer})
    def post(self, request):
        body = ser.ModelUploadSerializer(data=request.data)
        if not body.is_valid():
            raise InvalidInput("Attach a checkpoint file ('file'); 'name', 'activate' and 'notes' are optional.", extra={"errors": body.errors})
        data = body.validated_data
        model_version = model_version_register(
            file=data["file"].file,
            name=data.get("name") or None,
            activate=data.get("activate", False),
            actor=request.user,
            notes=data.get("notes", ""),
        )
        return Response(ser.ModelVersionSerializer(model_version).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    required_action = "view"

    @extend_schema(responses=ser.ModelVersionSerializer)
    def get(self, request, model_version_id: int):
        return Response(ser.ModelVersionSerializer(selectors.model_version_get(model_version_id=model_version_id)).data)


class ModelActivateApi(APIView):
    """Promote a version to active (atomically); the unfinished radiographs get its suggestions."""

    required_action = "manage_models"
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(request=ser.ModelActivateSerializer, responses=ser.ModelVersionSerializer)
    def post(self, request, model_version_id: int):
        body = ser.ModelActivateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        model_version = model_version_activate(
            model_version_id=model_version_id, actor=request.user, preannotate=body.validated_data["preannotate"]
        )
        return Response(ser.ModelVersionSerializer(model_version).data)


class ModelRollbackApi(APIView):
    """Make the previously active version active again."""

    required_action = "manage_models"
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(request=ser.ModelActivateSerializer, responses=ser.ModelVersionSerializer)
    def post(self, request):
        body = ser.ModelActivateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        model_version = model_version_rollback(actor=request.user, preannotate=body.validated_data["preannotate"])
        return Response(ser.ModelVersionSerializer(model_version).data)


class TrainingRunListApi(ListAPIView):
    """Training runs (newest first, paginated); admins start one by hand (409 while another is live)."""

    required_actions = {"GET": "view", "POST": "manage_models"}
    serializer_class = ser.TrainingRunSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return selectors.training_run_list()

    @extend_schema(request=ser.TrainingStartSerializer, responses={201: ser.TrainingRunDetailSerializer})
    def post(self, request):
        body = ser.TrainingStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        overrides = dict(body.validated_data)
        preset = overrides.pop("preset", None) or None
        run = training_run_start(actor=request.user, trigger="manual", preset=preset, overrides=overrides)
        return Response(ser.TrainingRunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingPresetListApi(APIView):
    """The training presets with roughly how long each would take on the annotated radiographs now."""

    required_action = "view"

    @extend_schema(responses=ser.TrainingPresetListSerializer)
    def get(self, request):
        return Response(ser.TrainingPresetListSerializer(training_presets()).data)


class TrainingRunDetailApi(APIView):
    """One run with its progress, per-epoch history, gate decision and log."""

    required_action = "view"

    @extend_schema(responses=ser.TrainingRunDetailSerializer)
    def get(self, request, training_run_id: int):
        run = selectors.training_run_get(training_run_id=training_run_id)
        artefacts = selectors.training_run_artefacts(run=run)
        return Response(ser.TrainingRunDetailSerializer(run, context={"artefacts": artefacts}).data)


class TrainingRunArtefactApi(APIView):
    """One stored artefact of a run (``train.log``, ``metrics.jsonl``, ``loss_curves.png``, ...), read
    from the media storage: a presigned redirect with a bucket."""

    required_action = "view"

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, training_run_id: int, name: str):
        run = selectors.training_run_get(training_run_id=training_run_id)
        if name not in selectors.training_run_artefacts(run=run):
            raise NotFound(f"Training run {run.pk} has no artefact {name!r}.")
        return stored_file_response(default_storage, f"{run_folder_name(run)}/{name}", content_type=VIEWABLE[name])


class PreannotationListApi(ListAPIView):
    """Pre-annotation batches (newest first, paginated) with done/total; admins ask for a dataset or
    a list of radiographs to be pre-annotated."""

    required_actions = {"GET": "view", "POST": "manage_models"}
    serializer_class = ser.PreannotationBatchSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return selectors.preannotation_batch_list()

    @extend_schema(request=ser.PreannotationRequestSerializer, responses={202: ser.PreannotationBatchSerializer})
    def post(self, request):
        body = ser.PreannotationRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data.get("dataset"):
            batch = preannotation_request_for_dataset(dataset_name=data["dataset"], actor=request.user)
        else:
            batch = preannotation_request_for_radiographs(radiograph_ids=data["radiograph_ids"], actor=request.user)
        batch = selectors.preannotation_batch_get(batch_id=batch.pk)
        return Response(ser.PreannotationBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)


class PreannotationDetailApi(APIView):
    required_action = "view"

    @extend_schema(responses=ser.PreannotationBatchSerializer)
    def get(self, request, batch_id: int):
        return Response(ser.PreannotationBatchSerializer(selectors.preannotation_batch_get(batch_id=batch_id)).data)


class RadiographPreannotateApi(APIView):
    """Pre-annotate one radiograph with the active model now (202: queued; see the batch)."""

    required_action = "manage_models"

    @extend_schema(request=None, responses={202: ser.PreannotationBatchSerializer})
    def post(self, request, radiograph_id: int):
        radiograph = radiograph_get(user=request.user, radiograph_id=radiograph_id)
        batch = preannotation_request_for_radiographs(radiograph_ids=[radiograph.pk], actor=request.user)
        batch = selectors.preannotation_batch_get(batch_id=batch.pk)
        return Response(ser.PreannotationBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)
