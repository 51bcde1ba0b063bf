"""``manage.py import_radiographs <folder> --dataset <name> [--report report.json]``."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotator.errors import DomainError
from annotator.services.imports import dataset_get_or_create, folder_sources, radiographs_import


class Command(BaseCommand):
    help = "Import radiographs (PNG/JPEG/DICOM) and metadata.csv from a folder in the sample's layout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--report", type=Path, help="Write the JSON report here.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--allow-burned-in",
            action="store_true",
            help="Import DICOM marked (or, for secondary captures, presumed) to carry burned-in text into the normal queue.",
        )

    def handle(
        self, *args, folder: Path, dataset: str, report: Path | None, no_progress: bool, allow_burned_in: bool, **options
    ) -> None:
        try:
            ds = dataset_get_or_create(name=dataset)
            sources, metadata = folder_sources(folder)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        with tqdm(total=len(sources), desc="import", unit="file", disable=no_progress) as bar:
            result = radiographs_import(
                dataset=ds, sources=sources, metadata=metadata, progress=bar.update, allow_burned_in=allow_burned_in
            ).as_dict()
        result.pop("radiograph_ids", None)
        self.stdout.write(
            f"dataset {ds.name}: {result['imported']} imported, {result['duplicates']} duplicates, "
            f"{len(result['excluded'])} excluded, {len(result['errors'])} errors"
        )
        for item in result["excluded"]:
            self.stdout.write(f"  excluded {item['file']}: {item['reason']}")
        for item in result["errors"]:
            self.stdout.write(self.style.WARNING(f"  error {item['file']}: {item['error']}"))
        if report:
            Path(report).write_text(json.dumps(result, indent=2))
