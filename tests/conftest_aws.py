"""AWS fixtures (a pytest plugin: ``pytest_plugins = ["tests.conftest_aws"]``).

Two ways to fake AWS, both reached only through boto3's own configuration:

- ``moto_aws``: moto's in-process mock (``mock_aws``), fast, for most tests;
- ``aws_endpoint``: a real HTTP moto server on 127.0.0.1 (one per session, i.e. one per xdist
  worker; its state reset for every test; its conditional changes made atomic, as on AWS),
  reached through ``AWS_ENDPOINT_URL`` exactly as users point the package at LocalStack or
  moto, so the endpoint chain itself is tested;
- ``s3_without_listbucket``: ``aws_endpoint``, with S3 alone (``AWS_ENDPOINT_URL_S3``) behind
  ``tests/s3_proxy.py``, which answers a missing object 403 AccessDenied as S3 does for a
  caller without ``s3:ListBucket`` (moto answers 404). Yields the ``S3Proxy``: set its
  ``list_bucket`` to ``True`` to get moto's 404s back, or to a rule of the bucket's name
  (``tests.template.iam.lists_bucket`` of a role's policies) to answer as S3 would that role;
  ``rewritten`` counts the 403s it made.

``schwab_tokens.aws`` caches clients per process; every fixture here resets that cache so a
test never talks to the previous test's mock or endpoint.
"""

from __future__ import annotations

import itertools
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schwab_tokens import aws
from tests.s3_proxy import S3Proxy

REGION = "us-east-1"
_buckets = itertools.count(1)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials in us-east-1; no profile, config file, endpoint or KMS key leaks in."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "TOKEN_STORE_KMS_KEY_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws.reset_clients()
    yield
    aws.reset_clients()


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """moto's in-process mock of every AWS service, fresh for each test."""
    from moto import mock_aws

    with mock_aws():
        aws.reset_clients()
        yield
    aws.reset_clients()


_moto_changes = threading.Lock()


def _serialise_moto_changes() -> None:
    """Make moto's conditional changes atomic, as AWS's are.

    AWS applies a conditional write atomically (S3 ``If-None-Match: *`` / ``If-Match``, a
    Secrets Manager label move with ``RemoveFromVersionId``): of two racing writers exactly one
    wins. moto checks the condition and then writes, without a lock, so on a busy machine two
    racing writers can both "win" (two holders of a lease) and a test would blame the package
    for moto's race. Each of these moto methods (the check and the change, not the parsing of
    the request) runs under one lock; everything else still runs side by side. Once per
    process; the test double is changed, never the package.
    """
    from moto.s3.responses import S3Response
    from moto.secretsmanager.models import SecretsManagerBackend

    for owner, name in (
        (S3Response, "put_object"),
        (S3Response, "delete_object"),
        (SecretsManagerBackend, "create_secret"),
        (SecretsManagerBackend, "put_secret_value"),
        (SecretsManagerBackend, "update_secret_version_stage"),
    ):
        method = getattr(owner, name)
        if getattr(method, "serialised", False):
            continue

        def serialised(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with _moto_changes:
                return _method(*args, **kwargs)

        serialised.serialised = True  # type: ignore[attr-defined]
        setattr(owner, name, serialised)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free port of 127.0.0.1 for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    _serialise_moto_changes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_endpoint(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``AWS_ENDPOINT_URL`` pointed at the moto server, whose state starts empty."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    aws.reset_clients()
    yield moto_server
    aws.reset_clients()


@pytest.fixture
def s3_store_url() -> Callable[..., str]:
    """Make a bucket in whichever fake AWS the test chose; return ``s3://BUCKET/KEY``."""

    def make(key: str = "schwab/tokens.json", bucket: str | None = None) -> str:
        name = bucket or f"schwab-tokens-test-{next(_buckets)}-{uuid.uuid4().hex[:8]}"
        aws.client("s3").create_bucket(Bucket=name)
        return f"s3://{name}/{key}"

    return make


@pytest.fixture
def sm_store_url() -> Callable[..., str]:
    """A fresh secret name (not created) as ``secretsmanager://NAME``; NAME contains a ``/``."""

    def make(prefix: str = "schwab-tokens/test") -> str:
        return f"secretsmanager://{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture(scope="session")
def s3_proxy(moto_server: str) -> Iterator[S3Proxy]:
    """One ``S3Proxy`` in front of the session's moto server (use ``s3_without_listbucket``)."""
    with S3Proxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def s3_without_listbucket(
    s3_proxy: S3Proxy, aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3Proxy]:
    """S3 as a caller without ``s3:ListBucket`` sees it: a missing object is 403 AccessDenied.

    Everything of ``aws_endpoint`` (moto's state reset, ``AWS_ENDPOINT_URL`` on moto for the
    other services), with ``AWS_ENDPOINT_URL_S3`` on the proxy. The proxy's counters start at
    zero and ``list_bucket`` at ``False``; a test may set ``proxy.list_bucket`` to ``True`` or
    to a rule (see the module docstring).
    """
    s3_proxy.reset(list_bucket=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.url)
    aws.reset_clients()
    try:
        yield s3_proxy
    finally:
        aws.reset_clients()
        s3_proxy.reset(list_bucket=False)
