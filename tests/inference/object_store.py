"""A real S3-protocol server for tests: moto in server mode on a free loopback port, over HTTP.

``object_store`` (a fixture) starts it, creates an empty bucket, and gives the environment a
process needs to use it as its media storage (``env``), the matching ``STORAGES`` setting for the
test process itself (``storages``), and a boto3 client to look inside the bucket (``keys()``).
"""
from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ObjectStore:
    endpoint: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)
    client: Any = None

    @property
    def storages(self) -> dict[str, dict[str, Any]]:
        from config.settings.base import storages_from_env

        return storages_from_env(self.env)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket below ``prefix``."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [entry["Key"] for entry in page.get("Contents", ())]
        return sorted(keys)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def moto_server():
    moto_server_module = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def object_store(moto_server) -> ObjectStore:
    """An empty bucket on the moto server (each test its own)."""
    import boto3

    bucket = f"lungmark-{uuid.uuid4().hex[:12]}"
    env = {
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": moto_server,
        "AWS_S3_ACCESS_KEY_ID": "test-key",
        "AWS_S3_SECRET_ACCESS_KEY": "test-secret",
        "AWS_S3_REGION_NAME": "us-east-1",
    }
    client = boto3.client(
        "s3", endpoint_url=moto_server, aws_access_key_id="test-key", aws_secret_access_key="test-secret", region_name="us-east-1"
    )
    client.create_bucket(Bucket=bucket)
    return ObjectStore(endpoint=moto_server, bucket=bucket, env=env, client=client)
