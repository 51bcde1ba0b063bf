"""``manage.py import_annotations --dataset <name> [--lung-boxes coco.json] [--lung-polygons coco.json] [--findings findings.csv]``."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.errors import DomainError
from annotator.models import Dataset
from annotator.services.annotation_import import findings_import, lung_boxes_import, lung_polygons_import


class Command(BaseCommand):
    help = "Import existing lung boxes, lung polygons and finding masks as accepted ground truth."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--lung-boxes", type=Path)
        parser.add_argument("--lung-polygons", type=Path)
        parser.add_argument("--findings", type=Path)
        parser.add_argument("--report", type=Path)

    def handle(self, *args, dataset: str, lung_boxes, lung_polygons, findings, report, **options) -> None:
        ds = Dataset.objects.filter(name=dataset).first()
        if ds is None:
            raise CommandError(f"No dataset named {dataset!r}: import its radiographs first.")
        if not (lung_boxes or lung_polygons or findings):
            raise CommandError("Give at least one of --lung-boxes, --lung-polygons, --findings.")
        result = {}
        steps = [("lung_boxes", lung_boxes, lung_boxes_import), ("lung_polygons", lung_polygons, lung_polygons_import), ("findings", findings, findings_import)]
        for name, path, importer in steps:
            if path is None:
                continue
            if not path.is_file():
                raise CommandError(f"{path} does not exist.")
            try:
                result[name] = importer(dataset=ds, path=path)
            except DomainError as exc:
                raise CommandError(f"{path.name}: {exc.message}") from exc
            section = result[name]
            self.stdout.write(
                f"{name}: {section['images']} images, {section['unchanged']} unchanged, "
                f"{len(section['unknown_images'])} unknown images, {len(section['errors'])} errors"
            )
            for note in section.get("notes", []):
                self.stdout.write(f"  {note}")
            for item in section["errors"]:
                where = f"{item['file']} (line {item['line']})" if "line" in item else item["file"]
                self.stdout.write(self.style.WARNING(f"  error {where}: {item['error']}"))
        if report:
            Path(report).write_text(json.dumps(result, indent=2))
