"""``manage.py bootstrap_demo``: the three demo accounts, with passwords printed once at creation."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from annotator.services.users import user_create

DEMO_USERS = (("annotator", "annotator"), ("radiologist", "radiologist"), ("admin", "admin"))


class Command(BaseCommand):
    help = "Create the demo accounts (annotator, radiologist, admin) if they do not exist."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        created = []
        for username, role in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            user_create(actor=None, username=username, password=password, roles=[role], is_staff=role == "admin", is_superuser=role == "admin")
            created.append((username, password))
        if created:
            self.stdout.write("Demo accounts (passwords are shown only this once):")
            for username, password in created:
                self.stdout.write(f"  {username:<12} {password}")
        else:
            self.stdout.write("Demo accounts already exist (annotator, radiologist, admin).")
