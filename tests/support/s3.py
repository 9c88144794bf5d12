"""An S3-compatible server on loopback for tests: moto in server mode, one bucket per test.

Import the fixtures into a test module (``from support.s3 import s3, s3_server``); a non-root
conftest cannot register them as a plugin.

The endpoint and the dummy credentials are set through the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``…), which botocore, aiobotocore and therefore s3fs
honour, exactly as a user points the connector at MinIO or another S3-compatible store. The shared
config and credentials files are pointed away from the user's home, so a real AWS profile can
never be picked up and no request can leave 127.0.0.1.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_S3",
    "FSSPEC_S3",
    "FSSPEC_S3_ENDPOINT_URL",
)


@dataclass(frozen=True)
class S3Server:
    """A running moto server on loopback."""

    endpoint: str
    """``http://127.0.0.1:<port>``."""
    env: dict[str, str]
    """The environment variables that point AWS clients at it (also for subprocesses)."""


@dataclass
class S3Bucket:
    """A fresh bucket on the test server."""

    server: S3Server
    name: str
    prefix: str = "zoho/crm"
    _fs: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``s3://<bucket>/<prefix>``: what a user gives to ``--output``."""
        return f"s3://{self.name}/{self.prefix}"

    @property
    def root(self) -> str:
        """``<bucket>/<prefix>``: the same place as a path for :attr:`fs` and pyarrow."""
        return f"{self.name}/{self.prefix}"

    @property
    def fs(self) -> Any:
        """An s3fs filesystem of its own (no listings cache), for reading back what was written."""
        if self._fs is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(
                endpoint_url=self.server.endpoint,
                key=ACCESS_KEY,
                secret=SECRET_KEY,
                use_listings_cache=False,
                skip_instance_cache=True,
            )
        return self._fs

    @property
    def arrow_fs(self) -> Any:
        """pyarrow's own S3 filesystem for the server (what pyarrow-based loaders use)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.server.endpoint,
            scheme="http",
            region=REGION,
        )

    def client(self) -> Any:
        """A boto3 S3 client of the server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.server.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def objects(self, under: str = "") -> list[str]:
        """Every object key below the prefix (relative to it), sorted."""
        base = f"{self.prefix}/{under}".rstrip("/")
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=base)
        )
        found = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        return sorted(key[len(self.prefix) + 1 :] for key in found)

    def pending_uploads(self) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        answer = self.client().list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in answer.get("Uploads", [])]


def _clear_fsspec_instances() -> None:
    # fsspec caches filesystem instances by their arguments, not by the environment: an instance
    # made for another server (another port) must not be reused.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 (a free port), with the AWS environment pointing at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    empty: Path = tmp_path_factory.mktemp("aws") / "none"
    empty.write_text("")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in _CLEARED:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        _clear_fsspec_instances()
        try:
            yield S3Server(endpoint=endpoint, env=env)
        finally:
            _clear_fsspec_instances()
            server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Bucket]:
    """A new, empty bucket for one test."""
    bucket = S3Bucket(server=s3_server, name=f"test-{uuid.uuid4().hex[:16]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    yield bucket
    # An fsspec output builds its files in a local scratch dir of its own; leave none behind.
    from connector.lake.output import FsspecOutput

    shutil.rmtree(FsspecOutput(bucket.url).scratch, ignore_errors=True)
