"""API routes of the inference app (model registry, predictions, training runs)."""
urlpatterns: list = []
