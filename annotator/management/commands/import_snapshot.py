"""``manage.py import_snapshot <dir> --dataset <name>``: import an export snapshot (images, labels,
lung boxes, masks and regions, with its subjects and frozen split) as accepted ground truth."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.errors import DomainError
from annotator.services.imports import dataset_get_or_create
from annotator.services.snapshot_import import snapshot_import


class Command(BaseCommand):
    help = "Import an export snapshot (format lungmark-export/1) into a dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--report", type=Path)

    def handle(self, *args, path: Path, dataset: str, report, **options) -> None:
        if not path.is_dir():
            raise CommandError(f"{path} is not a folder.")
        try:
            result = snapshot_import(dataset=dataset_get_or_create(name=dataset), path=path)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{result['dataset']}: {result['imported']} imported, {result['duplicates']} already there, {len(result['errors'])} errors")
        for item in result["errors"]:
            self.stdout.write(self.style.WARNING(f"  error {item['file']}: {item['error']}"))
        if report:
            Path(report).write_text(json.dumps(result, indent=2))
