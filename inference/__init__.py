"""Celery-side bridge between the web app and ``training``: pre-annotation, model registry, retraining."""
