"""API routes of the annotator app (mounted under /api/)."""
from django.urls import path

from .apis import exports, imports, media, radiographs, regions

urlpatterns = [
    path("datasets/", radiographs.DatasetListApi.as_view(), name="api-datasets"),
    path("imports/", imports.ImportApi.as_view(), name="api-imports"),
    path("exports/", exports.ExportListApi.as_view(), name="api-exports"),
    path("exports/<int:export_id>/", exports.ExportDetailApi.as_view(), name="api-export"),
    path("exports/<int:export_id>/download/", exports.ExportDownloadApi.as_view(), name="api-export-download"),
    path("radiographs/", radiographs.RadiographListApi.as_view(), name="api-radiographs"),
    path("radiographs/<int:radiograph_id>/", radiographs.RadiographDetailApi.as_view(), name="api-radiograph"),
    path("radiographs/<int:radiograph_id>/annotation/", radiographs.AnnotationApi.as_view(), name="api-annotation"),
    path("radiographs/<int:radiograph_id>/exclude/", radiographs.ExcludeApi.as_view(), name="api-exclude"),
    path("radiographs/<int:radiograph_id>/skip/", radiographs.SkipApi.as_view(), name="api-skip"),
    path("radiographs/<int:radiograph_id>/lease/", radiographs.LeaseApi.as_view(), name="api-lease"),
    path("radiographs/<int:radiograph_id>/return/", radiographs.ReturnApi.as_view(), name="api-return"),
    path("radiographs/<int:radiograph_id>/accept/", radiographs.AcceptApi.as_view(), name="api-accept"),
    path("radiographs/<int:radiograph_id>/events/", radiographs.EventListApi.as_view(), name="api-events"),
    path("radiographs/<int:radiograph_id>/regions/", regions.RadiographRegionsApi.as_view(), name="api-regions"),
    path("radiographs/<int:radiograph_id>/image/<str:kind>", media.RadiographImageApi.as_view(), name="api-image"),
    path("regions/<int:region_id>/", regions.RegionApi.as_view(), name="api-region"),
    path("regions/<int:region_id>/mask.png", regions.RegionMaskApi.as_view(), name="api-region-mask"),
    path("regions/<int:region_id>/<str:decision>/", regions.RegionDecisionApi.as_view(), name="api-region-decision"),
    path("queue/<str:queue>/next/", radiographs.QueueNextApi.as_view(), name="api-queue-next"),
]
