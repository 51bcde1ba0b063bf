"""Factories for export tests: small synthetic radiographs with stored images, and their ground truth."""
from __future__ import annotations

import uuid

import factory
import numpy as np
from django.core.files.base import ContentFile

from annotator.constants import AnnotationSource, LungStatus, Provenance, RegionStatus, State, Tri
from annotator.geometry import mask_crop
from annotator.imaging.encode import mask_png_bytes, png_bytes
from annotator.models import Dataset, FindingRegion, LungAnnotation, Radiograph, Subject


def gray_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width), dtype=np.uint8)


def _png_file(obj) -> ContentFile:
    return ContentFile(png_bytes(gray_image(obj.height, obj.width, seed=obj.width * 7 + obj.height)), name=f"{uuid.uuid4().hex}.png")


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"synthetic-{n}")


class SubjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subject

    dataset = factory.SubFactory(DatasetFactory)
    key = factory.Sequence(lambda n: f"subject-{n:05d}")


class RadiographFactory(factory.django.DjangoModelFactory):
    """A frontal radiograph with a stored 8-bit image and metadata labels (COVID positive by default)."""

    class Meta:
        model = Radiograph

    dataset = factory.SubFactory(DatasetFactory)
    subject = factory.SubFactory(SubjectFactory, dataset=factory.SelfAttribute("..dataset"))
    source_name = factory.Sequence(lambda n: f"image-{n}.png")
    sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    kind = "png"
    width = 64
    height = 48
    view = "PA"
    state = State.IMPORTED
    display = factory.LazyAttribute(_png_file)
    preview = factory.LazyAttribute(_png_file)
    original = factory.LazyAttribute(_png_file)
    healthy = Tri.NEGATIVE
    healthy_source = Provenance.METADATA
    covid = Tri.POSITIVE
    covid_source = Provenance.METADATA
    other_disease = Tri.UNKNOWN
    other_disease_source = Provenance.NONE


def lungs_save(
    radiograph: Radiograph,
    right=(4, 6, 28, 40),
    left=(34, 6, 60, 40),
    *,
    status: str = LungStatus.ACCEPTED,
    source: str = AnnotationSource.IMPORTED,
    outline: np.ndarray | None = None,
) -> LungAnnotation:
    """Append a lung annotation state (accepted imported boxes by default)."""
    radiograph.version += 1
    Radiograph.objects.filter(pk=radiograph.pk).update(version=radiograph.version)
    box, png = None, None
    if outline is not None:
        box, crop = mask_crop(outline)
        png = mask_png_bytes(crop)
    return LungAnnotation.objects.create(
        radiograph=radiograph,
        version=radiograph.version,
        right_box=list(right) if right else None,
        left_box=list(left) if left else None,
        mask_png=png,
        mask_bbox=box,
        status=status,
        source=source,
    )


def region_save(radiograph: Radiograph, mask: np.ndarray, *, label: str = "consolidation", status: str = RegionStatus.ACCEPTED,
                source: str = AnnotationSource.IMPORTED, subtype: str = "", description: str = "", source_label: str = "") -> FindingRegion:
    box, crop = mask_crop(mask)
    return FindingRegion.objects.create(
        radiograph=radiograph,
        label=label,
        subtype=subtype,
        description=description,
        source_label=source_label or label,
        flagged=label == "unknown",
        status=status,
        source=source,
        bbox=box,
        mask_png=mask_png_bytes(crop),
        area=int(crop.sum()),
    )


def blob(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask
