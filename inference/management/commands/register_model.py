"""``manage.py register_model <checkpoint> [--name NAME] [--activate] [--notes TEXT]``."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.errors import DomainError
from inference.services import model_version_register


class Command(BaseCommand):
    help = "Register a CMTNet checkpoint in the model registry (a copy goes into the media storage under models/)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("checkpoint", type=Path, help="A cmtnet-checkpoint/1 file (e.g. a run's best.pt).")
        parser.add_argument("--name", help="Registry name (default: cmtnet-<sha256 prefix>).")
        parser.add_argument("--activate", action="store_true", help="Make it the active model (unfinished radiographs get its suggestions).")
        parser.add_argument("--no-preannotate", action="store_true", help="With --activate: do not pre-annotate existing radiographs.")
        parser.add_argument("--notes", default="")

    def handle(self, *args, checkpoint: Path, name: str | None, activate: bool, no_preannotate: bool, notes: str, **options) -> None:
        if not checkpoint.is_file():
            raise CommandError(f"{checkpoint}: no such file.")
        try:
            with open(checkpoint, "rb") as fh:
                model_version = model_version_register(file=fh, name=name, notes=notes)
            if activate:
                from inference.services import model_version_activate

                model_version = model_version_activate(model_version_id=model_version.pk, preannotate=not no_preannotate)
        except DomainError as exc:
            raise CommandError(f"{checkpoint}: {exc.message}") from exc
        state = "active" if model_version.is_active else "not active"
        self.stdout.write(f"registered {model_version.name} (sha256 {model_version.sha256[:12]}, {state})")
