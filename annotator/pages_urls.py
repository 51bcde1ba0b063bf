"""Server-rendered pages."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/", views.annotate_queue, name="annotate-queue"),
    path("annotate/<int:radiograph_id>/", views.annotate_workspace, name="annotate-workspace"),
    path("review/", views.review_queue, name="review-queue"),
    path("review/<int:radiograph_id>/", views.review_workspace, name="review-workspace"),
    path("radiographs/", views.radiograph_list, name="radiograph-list"),
    path("radiographs/<int:radiograph_id>/", views.radiograph_detail, name="radiograph-detail"),
    path("manage/", views.dashboard, name="manage-dashboard"),
    path("manage/import/", views.imports, name="manage-import"),
    path("manage/exports/", views.exports, name="manage-exports"),
    path("manage/models/", views.models, name="manage-models"),
    path("manage/training/", views.training, name="manage-training"),
    path("manage/users/", views.users, name="manage-users"),
]
