"""``manage.py verify_export <dir>``: check a snapshot against its manifest and the format; exit 1 with
each problem (naming its file) when it is not sound."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.services.exports import export_verify


class Command(BaseCommand):
    help = "Verify an export snapshot: manifest checksums, unlisted files, labels.csv schema, mask sizes and values."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args, path: Path, **options) -> None:
        problems = export_verify(path)
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"{path}: {len(problems)} problem(s); the snapshot is not sound.")
        self.stdout.write(self.style.SUCCESS(f"{path}: sound"))
