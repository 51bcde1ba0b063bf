"""Factories for workflow tests: small synthetic radiographs stored like real imports."""
from __future__ import annotations

import io
import uuid

import factory
import numpy as np
from django.core.files.base import ContentFile
from PIL import Image

from annotator.models import Dataset, FindingRegion, FindingRegionRevision, Radiograph, Subject


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"ds{n}")


class SubjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subject

    dataset = factory.SubFactory(DatasetFactory)
    key = factory.LazyFunction(lambda: uuid.uuid4().hex[:16])


class RadiographFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Radiograph
        skip_postgeneration_save = True

    dataset = factory.SubFactory(DatasetFactory)
    subject = factory.LazyAttribute(lambda o: SubjectFactory(dataset=o.dataset))
    source_name = factory.Sequence(lambda n: f"image{n}.png")
    sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    kind = "png"
    width = 200
    height = 160
    state = "preannotated"
    view = "PA"

    @factory.post_generation
    def files(self, create, extracted, **kwargs):
        pixels = (np.random.default_rng(0).random((self.height, self.width)) * 255).astype(np.uint8)
        stem = uuid.uuid4().hex
        self.display.save(f"{stem}.png", ContentFile(png(pixels)), save=False)
        self.original.name = self.display.name
        self.preview.save(f"{stem}.jpg", ContentFile(png(pixels)), save=False)
        if create:
            self.save()


def region_for(radiograph: Radiograph, *, bbox=(20, 30, 60, 70), label="consolidation", status="suggested", source="model", confidence=0.8) -> FindingRegion:
    x0, y0, x1, y1 = bbox
    crop = np.full((y1 - y0, x1 - x0), 255, dtype=np.uint8)
    data = png(crop)
    region = FindingRegion.objects.create(
        radiograph=radiograph, label=label, status=status, source=source, confidence=confidence,
        bbox=list(bbox), mask_png=data, area=int(crop.size),
    )
    FindingRegionRevision.objects.create(region=region, version=1, label=label, status=status, bbox=list(bbox), mask_png=data)
    return region
