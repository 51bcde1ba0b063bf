"""The model registry: registration checks the file, exactly one version is active, promotion and
rollback swap it atomically and are recorded."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection

from annotator.errors import Conflict, InvalidInput
from annotator.models import AuditLog
from inference.models import ModelVersion
from inference.services import model_version_activate, model_version_rollback

pytestmark = pytest.mark.django_db


def test_a_registered_checkpoint_is_kept_under_models_with_its_hash_and_config(register, checkpoints):
    mv = register(checkpoints["random"], name="first")
    assert mv.checkpoint.name.startswith("models/")
    assert default_storage.open(mv.checkpoint.name).read() == checkpoints["random"].read_bytes()
    assert len(mv.sha256) == 64
    assert mv.config["model"]["width"] == 0.0625 and mv.config["model"]["image_size"] == 64
    assert not mv.is_active
    assert AuditLog.objects.filter(action="model_registered", target="first").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"this is not a checkpoint at all", "not a loadable PyTorch checkpoint"),
        ("tensor", "not a CMTNet checkpoint dict"),
        ("dict", "lacks state_dict, config, normalization, label_names, tasks"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_reason(tmp_path: Path, register, content, message):
    stored_before = _stored_models()
    path = tmp_path / "bad.pt"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "dict":
        torch.save({"format": "cmtnet-checkpoint/1"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        register(path)
    assert not ModelVersion.objects.exists()
    assert _stored_models() == stored_before


def _stored_models() -> set[str]:
    return set(default_storage.listdir("models")[1]) if default_storage.exists("models") else set()


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path, register, checkpoints):
    data = torch.load(checkpoints["random"], weights_only=True)
    data["config"]["width"] = 0.125  # the stored weights are for width 0.0625
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(InvalidInput, match="do not fit its architecture"):
        register(tmp_path / "mismatch.pt")


def test_the_same_file_or_name_twice_is_a_conflict(register, checkpoints):
    register(checkpoints["random"], name="one")
    with pytest.raises(Conflict, match="already registered as one"):
        register(checkpoints["random"], name="two")
    with pytest.raises(Conflict, match="already registered"):
        register(checkpoints["other"], name="one")


def test_promotion_and_rollback_keep_exactly_one_active_and_are_audited(register, checkpoints, admin_user):
    a = register(checkpoints["random"], name="a")
    b = register(checkpoints["other"], name="b")
    model_version_activate(model_version_id=a.pk, actor=admin_user)
    model_version_activate(model_version_id=b.pk, actor=admin_user)
    a.refresh_from_db(), b.refresh_from_db()
    assert (a.is_active, b.is_active) == (False, True)
    assert b.previous == a and b.activated_at >= a.activated_at
    assert list(ModelVersion.objects.filter(is_active=True)) == [b]

    back = model_version_rollback(actor=admin_user)
    assert back == a and list(ModelVersion.objects.filter(is_active=True)) == [a]
    audit = list(AuditLog.objects.filter(action__in=["model_activated", "model_rolled_back"]).order_by("created_at", "id"))
    assert [(r.action, r.target, r.data["previous"], r.actor) for r in audit] == [
        ("model_activated", "a", None, admin_user),
        ("model_activated", "b", "a", admin_user),
        ("model_rolled_back", "a", "b", admin_user),
    ]
    with pytest.raises(Conflict, match="no previously active model"):
        model_version_rollback(actor=admin_user)


def test_rollback_without_an_active_model_is_a_conflict(register, checkpoints):
    register(checkpoints["random"])
    with pytest.raises(Conflict, match="No model is active"):
        model_version_rollback()


def test_register_model_command(tmp_path, checkpoints, capsys):
    call_command("register_model", str(checkpoints["random"]), "--name", "cli", "--activate")
    assert ModelVersion.objects.get(is_active=True).name == "cli"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CommandError, match="not a loadable PyTorch checkpoint"):
        call_command("register_model", str(bad))
    with pytest.raises(CommandError, match="no such file"):
        call_command("register_model", str(tmp_path / "missing.pt"))


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_never_leave_two_active_models(register, checkpoints):
    versions = [register(checkpoints[name], name=name) for name in ("random", "other", "all_lung", "no_lungs")]
    errors: list[BaseException] = []

    def promote_all(order):
        try:
            for _ in range(3):
                for mv in order:
                    model_version_activate(model_version_id=mv.pk, preannotate=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=promote_all, args=(order,)) for order in (versions, versions[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_the_admin_page_promotes_and_rolls_back(client, make_user, register, checkpoints):
    client.force_login(make_user("admin", username="boss", is_staff=True, is_superuser=True))
    a, b = register(checkpoints["random"], name="a"), register(checkpoints["other"], name="b")
    url = "/admin/inference/modelversion/"
    for mv in (a, b):
        response = client.post(url, {"action": "activate_selected", "_selected_action": [mv.pk]}, follow=True)
        assert [str(m) for m in response.context["messages"]] == [f"{mv.name} is now the active model."]
    assert list(ModelVersion.objects.filter(is_active=True)) == [b]
    response = client.post(url, {"action": "roll_back", "_selected_action": [b.pk]}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Rolled back: a is the active model again."]
    assert list(ModelVersion.objects.filter(is_active=True)) == [a]
    page = client.get(url)
    assert page.status_code == 200 and "delete_selected" not in page.content.decode()  # the active one is never bulk-deleted
    assert client.get(f"{url}{a.pk}/delete/").status_code == 403
    assert client.get("/admin/inference/trainingrun/").status_code == 200
    assert client.get("/admin/inference/preannotationbatch/").status_code == 200
