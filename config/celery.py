"""The Celery app: two queues (``gpu`` for model work, ``default`` for the rest), settings from Django."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("lungmark")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _setting_int(name: str, default: int) -> int:
    """An integer from Django settings, else the environment (for settings not in base.py yet)."""
    from django.conf import settings

    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or default
    return int(value)


def _configure() -> None:
    """Queue layout and transport options that depend on the broker in use."""
    from django.conf import settings

    broker = settings.CELERY_BROKER_URL
    transport: dict = {}
    if broker.startswith("filesystem://"):
        folder = settings.CELERY_BROKER_FOLDER
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport = {
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            # Broadcast (pidbox) state too, or kombu writes it into the working directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    elif broker.startswith(("redis://", "rediss://")):
        transport = {
            # Above the longest task time limit, or a slow task would run twice.
            "visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT,
            # A killed worker's task is restored after about interval x throttle seconds.
            "unacked_restore_interval": settings.CELERY_UNACKED_RESTORE_INTERVAL,
            "unacked_restore_throttle": _setting_int("CELERY_UNACKED_RESTORE_THROTTLE", 10),
        }
    app.conf.update(
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_backend="django-db",
        result_extended=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.CELERY_TASK_TIME_LIMIT,
        task_soft_time_limit=settings.CELERY_TASK_TIME_LIMIT - 60,
        task_default_queue="default",
        task_routes={
            # Model work on the gpu queue (workers with prefetch 1); everything else on default.
            "inference.preannotate_chunk": {"queue": "gpu"},
            "inference.preannotate": {"queue": "gpu"},
            "inference.train": {"queue": "gpu"},
            "inference.retrain_if_due": {"queue": "default"},
            "inference.*": {"queue": "gpu"},
            "annotator.*": {"queue": "default"},
        },
        task_always_eager=settings.CELERY_TASK_ALWAYS_EAGER,
        beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
        beat_schedule={
            "retrain-when-enough-new-work": {
                "task": "inference.retrain_if_due",
                "schedule": float(settings.RETRAIN_INTERVAL_SECONDS),
                "options": {"queue": "default"},
            },
        },
        worker_hijack_root_logger=False,
    )


_configure()
