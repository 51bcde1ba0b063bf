"""``manage.py training_bootstrap``: what ``make run`` asks at each start, once its worker is up: a
training left unfinished is queued again (it resumes), and with no model and enough annotated
radiographs the first model starts training. Says what it did and where to follow it."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.services import training_bootstrap


class Command(BaseCommand):
    help = "Resume an unfinished training run, or start the first model's training when it is due."

    def handle(self, *args, **options) -> None:
        status = training_bootstrap()
        for run in status.resumed:
            self.stdout.write(f"Training run #{run.pk} ({run.config.get('preset', '?')}) was not finished: it continues from its last epoch.")
        if status.started is not None:
            config = status.started.config
            minutes = max(1, round(config.get("estimate_seconds", 0) / 60))
            self.stdout.write(
                f"No model yet: training the first one (run #{status.started.pk}, preset {config.get('preset')}, "
                f"{config.get('images')} annotated radiographs, about {minutes} min). Its progress is on the admin "
                "dashboard; the radiographs get suggestions once it is promoted."
            )
        elif status.active is not None:
            self.stdout.write(f"Active model: {status.active.name}.")
        elif not status.resumed:
            self.stdout.write(
                f"No model yet, and {status.annotated} annotated radiographs: the first model trains by itself once "
                f"{settings.BOOTSTRAP_MIN_ANNOTATED} are (imported annotations count), or start one on the Training page."
            )
