"""The whole flow on an S3-protocol object store (moto, over HTTP), with a worker that shares no
folder with the web process: its own empty MEDIA_ROOT and cache, and only the database, the broker
and the bucket in common, as a worker on another host would have.

import → pre-annotate (the worker) → annotate → review → export (the worker; zip download read
from the bucket) → retrain (the worker, a tiny run) → promote → the promoted model pre-annotates
the next import. Every stored file is an object in the bucket; nothing is written to a MEDIA_ROOT.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import override_settings

from annotator.models import Dataset, ExportSnapshot, Radiograph
from annotator.services.queues import queue_next
from annotator.services.regions import region_decide
from annotator.services.workflow import annotation_save, radiograph_accept
from inference.models import ModelVersion, Prediction, TrainingRun
from inference.services import training_run_start
from tests.inference.conftest import import_files, small_sample_images
from tests.inference.object_store import object_store, moto_server  # noqa: F401  (fixtures)
from tests.inference.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

TINY_RUN = {"epochs": 1, "width": 0.03125, "image_size": 32, "batch_size": 2, "lr": 1e-3}
RUN_ARTEFACTS = {"config.json", "metrics.jsonl", "loss_curves.png", "train.log", "last.pt", "best.pt"}


def media_files() -> set[Path]:
    return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}


def annotate_and_accept(radiograph_id: int, *, annotator, radiologist, covid: str) -> None:
    """The annotator draws both lung boxes and submits; the radiologist takes it from the review
    queue, decides the suggested regions and accepts it."""
    radiograph = Radiograph.objects.get(pk=radiograph_id)
    w, h = radiograph.width, radiograph.height
    right, left = [w // 10, h // 5, w * 45 // 100, h * 4 // 5], [w * 55 // 100, h // 5, w * 9 // 10, h * 4 // 5]
    annotation_save(radiograph_id=radiograph_id, user=annotator, version=radiograph.version, right=right, left=left, submit=True)
    leased = queue_next(user=radiologist, queue="review")
    assert leased is not None and leased.id == radiograph_id
    for region in leased.regions.filter(status="suggested"):
        region_decide(region=region, user=radiologist, version=region.version, decision="accept")
    radiograph_accept(
        radiograph_id=radiograph_id, user=radiologist, version=Radiograph.objects.get(pk=radiograph_id).version,
        labels={"healthy": "negative", "covid": covid, "other_disease": "negative"},
    )


def test_the_whole_flow_runs_on_an_object_store_with_a_worker_on_another_host(
    object_store, celery_worker, register, checkpoints, tmp_path, annotator, radiologist, admin_user, client_for  # noqa: F811
):
    # Data other tests committed lives in the local media folder: this test starts from none.
    Radiograph.objects.all().delete()
    Dataset.objects.all().delete()
    before = media_files()
    worker_media, worker_cache = tmp_path / "worker-media", tmp_path / "worker-cache"
    with override_settings(STORAGES=object_store.storages, WORKER_CACHE_DIR=tmp_path / "web-cache"):
        model = register(checkpoints["plumbing"], name="s3-plumbing", activate=True)
        assert object_store.keys("models/") == [model.checkpoint.name]
        # PROMOTION_TOLERANCE: a one-epoch model on a handful of images is promoted whatever it scores.
        worker = celery_worker({
            **object_store.env, "MEDIA_ROOT": str(worker_media), "WORKER_CACHE_DIR": str(worker_cache), "PROMOTION_TOLERANCE": "1",
        })

        # import → pre-annotate
        images = small_sample_images(6)
        ids = import_files(images[:5], dataset="s3").radiograph_ids
        assert len(ids) == 5
        wait_for(lambda: Prediction.objects.filter(radiograph_id__in=ids, model_version=model).count() == 5, timeout=120,
                 what="pre-annotations by the worker", worker=worker)
        for radiograph in Radiograph.objects.filter(pk__in=ids):
            assert radiograph.preannotation_status == "done"
            for field in (radiograph.original, radiograph.display, radiograph.preview):
                assert field.name in object_store.keys(field.name)
        assert (worker_cache / "models" / f"{model.sha256}.pt").is_file()  # fetched once, by sha256

        # media leave only after the permission check, as a short-lived presigned link
        url = f"/api/radiographs/{ids[0]}/image/display"
        assert client_for(None).get(url).status_code in (401, 403)
        redirect = client_for(annotator).get(url)
        assert redirect.status_code == 302 and redirect["Location"].startswith(object_store.endpoint)
        assert "X-Amz-Signature" in redirect["Location"] and redirect["Cache-Control"] == "private, no-store"
        fetched = requests.get(redirect["Location"], timeout=10)
        assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"
        assert fetched.content == object_store.read(Radiograph.objects.get(pk=ids[0]).display.name)

        # annotate → review
        for number, rid in enumerate(ids):
            annotate_and_accept(rid, annotator=annotator, radiologist=radiologist, covid="positive" if number % 2 else "negative")
        assert Radiograph.objects.filter(pk__in=ids, state="accepted").count() == 5

        # export (the worker), downloaded as a zip read from the bucket
        admin = client_for(admin_user)
        created = admin.post("/api/exports/", {"datasets": ["s3"]}, format="json")
        assert created.status_code == 202, created.json()
        export = wait_for(lambda: ExportSnapshot.objects.filter(pk=created.json()["id"], status__in=["done", "failed"]).first(),
                          timeout=60, what="the export", worker=worker)
        assert export.status == "done", export.error
        assert export.path.startswith("exports/") and export.counts["images"] == 5
        manifest_bytes = object_store.read(f"{export.path}/manifest.json")
        assert hashlib.sha256(manifest_bytes).hexdigest() == export.manifest_sha256
        manifest = json.loads(manifest_bytes)
        assert set(object_store.keys(f"{export.path}/")) == {f"{export.path}/{rel}" for rel in [*manifest["files"], "manifest.json"]}
        download = admin.post(f"/api/exports/{export.id}/download/")
        assert download.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
        prefix = f"lungmark-export-{export.id}/"
        assert archive.read(prefix + "manifest.json") == manifest_bytes
        for rel, digest in manifest["files"].items():
            assert hashlib.sha256(archive.read(prefix + rel)).hexdigest() == digest

        # retrain (the worker) → promote
        run = training_run_start(trigger="manual", overrides=TINY_RUN)
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(), timeout=300,
                       what="the training run", worker=worker)
        assert run.status == "succeeded", run.log
        assert run.promoted, run.decision
        candidate = ModelVersion.objects.get(is_active=True)
        assert candidate.pk == run.candidate_id and candidate.checkpoint.name in object_store.keys("models/")
        folder = run.config["run_dir"]
        assert folder.startswith(f"training/{run.pk}-")  # the id and the creation time: ids come back
        stored_run = {key.removeprefix(f"{folder}/") for key in object_store.keys(f"{folder}/")}
        assert RUN_ARTEFACTS <= stored_run, stored_run
        detail = client_for(annotator).get(f"/api/training-runs/{run.pk}/").json()
        log = client_for(annotator).get(next(a["url"] for a in detail["artefacts"] if a["name"] == "train.log"))
        assert log.status_code == 302 and log["Location"].startswith(object_store.endpoint)
        assert requests.get(log["Location"], timeout=10).content == object_store.read(f"{folder}/train.log")
        training_export = ExportSnapshot.objects.get(pk=run.export_id)
        assert object_store.keys(f"{training_export.path}/manifest.json")
        # The worker trained on a verified copy in its cache, and kept no copy of the finished run.
        assert (worker_cache / "exports" / training_export.manifest_sha256 / "manifest.json").is_file()
        assert not (worker_cache / "training" / str(run.pk)).exists()

        # the promoted model (fetched from the bucket) pre-annotates the next import
        [new] = import_files(images[5:], dataset="s3").radiograph_ids
        wait_for(lambda: Prediction.objects.filter(radiograph_id=new, model_version=candidate).exists(), timeout=60,
                 what="a pre-annotation by the promoted model", worker=worker)
        assert (worker_cache / "models" / f"{candidate.sha256}.pt").is_file()

    assert media_files() == before, "something was written to the web process's MEDIA_ROOT"
    assert not worker_media.exists() or not any(p.is_file() for p in worker_media.rglob("*")), "the worker wrote to its MEDIA_ROOT"
