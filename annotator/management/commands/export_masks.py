"""``manage.py export_masks --dataset <name> [--dataset ...] --out <dir> [--lung-masks outlines] [--reviewed-only] [--seed N]``."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.errors import DomainError
from annotator.services.exports import LUNG_MASK_KINDS, export_build, export_create


class Command(BaseCommand):
    help = "Export the accepted annotations of datasets as an immutable snapshot (format lungmark-export/1)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", action="append", required=True, help="A dataset to export (repeat for several).")
        parser.add_argument("--out", type=Path, required=True, help="The snapshot folder to create (must not exist, or be empty).")
        parser.add_argument("--lung-masks", choices=LUNG_MASK_KINDS, default="boxes", help="boxes (the paper's filled boxes) or outlines (polygon masks where they exist).")
        parser.add_argument("--reviewed-only", action="store_true", help="Only radiographs a radiologist accepted.")
        parser.add_argument("--seed", type=int, default=0, help="Orders subjects that get a split for the first time.")

    def handle(self, *args, dataset: list[str], out: Path, lung_masks: str, reviewed_only: bool, seed: int, **options) -> None:
        out = out.resolve()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise CommandError(f"{out} already exists and is not empty: a snapshot is never overwritten.")
        verbosity = options.get("verbosity", 1)

        def progress(fraction: float) -> None:
            if verbosity > 1:
                self.stdout.write(f"  {fraction:.0%}")

        try:
            snapshot = export_create(
                user=None, datasets=dataset, options={"lung_masks": lung_masks, "reviewed_only": reviewed_only, "seed": seed}, enqueue=False
            )
            snapshot = export_build(export_id=snapshot.id, out=out, progress=progress)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        counts = snapshot.counts
        self.stdout.write(
            f"export {snapshot.id}: {counts['images']} images ({counts['split']['train']} train, {counts['split']['test']} test), "
            f"{counts['lung_masks']} lung masks, {counts['disease_masks']} disease masks, {len(counts['skipped'])} skipped → {out}"
        )
        self.stdout.write(f"manifest sha256 {snapshot.manifest_sha256}")
        for item in counts["skipped"]:
            self.stdout.write(self.style.WARNING(f"  skipped {item['image_id']}: {item['reason']}"))
