"""``tests/s3_proxy.py`` answers like S3 with and without ``s3:ListBucket``, in front of moto.

Without ListBucket, S3 answers a missing object 403 AccessDenied (moto: 404 NoSuchKey); every
other answer is moto's own, relayed byte for byte.
"""

from __future__ import annotations

import http.client
import threading
import uuid
import zlib
from base64 import b64encode
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from schwab_tokens import aws
from tests.s3_proxy import S3Proxy, object_address

pytestmark = pytest.mark.usefixtures("s3_without_listbucket")

KEY = "schwab/tokens.json"
BODY = b'{"token": "not a real one", "n": 1}\n'


def s3() -> Any:
    return aws.client("s3")


def new_bucket() -> str:
    name = f"proxy-test-{uuid.uuid4().hex[:12]}"
    s3().create_bucket(Bucket=name)
    return name


def client_error(call: Callable[..., Any], **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value


def status(error: ClientError) -> int:
    return int(error.response["ResponseMetadata"]["HTTPStatusCode"])


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


# ---------------------------------------------------------------- plumbing


def test_s3_goes_through_the_proxy_path_style_and_other_services_do_not(
    s3_without_listbucket: S3Proxy, aws_endpoint: str
) -> None:
    proxy = s3_without_listbucket
    sent: list[str] = []
    s3().meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    bucket = new_bucket()
    s3().put_object(Bucket=bucket, Key=KEY, Body=BODY)
    # Path style against an IP endpoint: the bucket is the first path segment, which is all
    # the proxy understands.
    assert sent == [f"{proxy.url}/{bucket}", f"{proxy.url}/{bucket}/schwab/tokens.json"]
    assert object_address(urlsplit(sent[1]).path) == (bucket, KEY)
    assert proxy.requests == 2

    name = f"proxy-test/{uuid.uuid4().hex}"
    aws.client("secretsmanager").create_secret(Name=name, SecretString="{}")
    assert aws.client("secretsmanager").meta.endpoint_url == aws_endpoint
    assert proxy.requests == 2  # Secrets Manager talks to moto directly


def test_object_address() -> None:
    assert object_address("/b/k") == ("b", "k")
    assert object_address("/b/a%20b/c.json?versionId=1") == ("b", "a b/c.json")
    assert object_address("/b") is None
    assert object_address("/b/") is None
    assert object_address("/b?list-type=2") is None
    assert object_address("/") is None


def test_upstream_must_be_an_http_host_and_port() -> None:
    for bad in ("https://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:5000"):
        with pytest.raises(ValueError):
            S3Proxy(bad)


def test_start_stop(moto_server: str) -> None:
    proxy = S3Proxy(moto_server).start()
    try:
        assert proxy.start() is proxy
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    finally:
        proxy.stop()
    proxy.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = proxy.url


# ---------------------------------------------------------------- a missing object


def test_a_rule_decides_per_bucket(s3_without_listbucket: S3Proxy) -> None:
    """``list_bucket`` as a rule of the bucket's name (a role's policies, e.g.): a missing key
    of a bucket the rule lets the caller list is 404, of any other 403."""
    listed, hidden = new_bucket(), new_bucket()
    asked: list[str] = []

    def rule(bucket: str) -> bool:
        asked.append(bucket)
        return bucket == listed

    s3_without_listbucket.list_bucket = rule
    missing = client_error(s3().get_object, Bucket=listed, Key=KEY)
    assert (status(missing), code(missing)) == (404, "NoSuchKey")
    denied = client_error(s3().get_object, Bucket=hidden, Key=KEY)
    assert (status(denied), code(denied)) == (403, "AccessDenied")
    head = client_error(s3().head_object, Bucket=hidden, Key=KEY)
    assert status(head) == 403
    assert asked == [listed, hidden, hidden] and s3_without_listbucket.rewritten == 2


def test_get_missing_key_without_listbucket_is_403_access_denied(
    s3_without_listbucket: S3Proxy,
) -> None:
    bucket = new_bucket()
    error = client_error(s3().get_object, Bucket=bucket, Key=KEY)
    assert (status(error), code(error)) == (403, "AccessDenied")
    assert error.response["Error"]["Message"] == "Access Denied"
    headers = error.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/xml"
    assert error.response["ResponseMetadata"]["RequestId"] == headers["x-amz-request-id"]
    assert error.response["ResponseMetadata"]["HostId"] == headers["x-amz-id-2"]
    assert s3_without_listbucket.rewritten == 1


def test_access_denied_body_is_s3s(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    url = urlsplit(s3_without_listbucket.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        # moto needs no valid signature, only the credential scope to route the call to S3.
        conn.request("GET", f"/{bucket}/{KEY}", headers=_unsigned())
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    assert answer.status == 403
    assert answer.getheader("Content-Type") == "application/xml"
    assert answer.getheader("Connection") == "close"
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message><RequestId>"
    )
    assert b"</RequestId><HostId>" in body and body.endswith(b"</HostId></Error>")
    assert int(answer.getheader("Content-Length") or -1) == len(body)


def test_head_missing_key_without_listbucket_is_403(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    error = client_error(s3().head_object, Bucket=bucket, Key=KEY)
    # A HEAD answer has no body: botocore names the error after the status, as with S3.
    assert (status(error), code(error)) == (403, "403")
    assert error.response["Error"]["Message"] == "Forbidden"
    assert s3_without_listbucket.rewritten == 1


def test_missing_key_with_listbucket_is_moto_404(s3_without_listbucket: S3Proxy) -> None:
    s3_without_listbucket.list_bucket = True
    bucket = new_bucket()
    error = client_error(s3().get_object, Bucket=bucket, Key=KEY)
    assert (status(error), code(error)) == (404, "NoSuchKey")
    error = client_error(s3().head_object, Bucket=bucket, Key=KEY)
    assert (status(error), code(error)) == (404, "404")
    assert s3_without_listbucket.rewritten == 0


@pytest.mark.parametrize("list_bucket", [False, True])
def test_missing_bucket_stays_404_no_such_bucket(
    s3_without_listbucket: S3Proxy, list_bucket: bool
) -> None:
    s3_without_listbucket.list_bucket = list_bucket
    bucket = f"proxy-test-missing-{uuid.uuid4().hex[:12]}"
    error = client_error(s3().get_object, Bucket=bucket, Key=KEY)
    assert (status(error), code(error)) == (404, "NoSuchBucket")
    error = client_error(s3().head_object, Bucket=bucket, Key=KEY)
    assert (status(error), code(error)) == (404, "404")
    error = client_error(s3().head_bucket, Bucket=bucket)
    assert (status(error), code(error)) == (404, "404")
    assert s3_without_listbucket.rewritten == 0


def test_deleted_object_is_403_again(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    etag = s3().put_object(Bucket=bucket, Key=KEY, Body=BODY)["ETag"]
    assert s3().get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY
    s3().delete_object(Bucket=bucket, Key=KEY, IfMatch=etag)
    assert status(client_error(s3().get_object, Bucket=bucket, Key=KEY)) == 403
    assert status(client_error(s3().head_object, Bucket=bucket, Key=KEY)) == 403


# ---------------------------------------------------------------- everything else is moto's


@pytest.mark.parametrize("list_bucket", [False, True])
def test_existing_object_is_relayed(s3_without_listbucket: S3Proxy, list_bucket: bool) -> None:
    s3_without_listbucket.list_bucket = list_bucket
    bucket = new_bucket()
    payload = BODY + bytes(range(256)) * 64  # binary, 16 KB
    put = s3().put_object(Bucket=bucket, Key=KEY, Body=payload, ContentType="application/json")
    got = s3().get_object(Bucket=bucket, Key=KEY)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == payload
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/json"
    head = s3().head_object(Bucket=bucket, Key=KEY)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert head["ContentLength"] == len(payload)
    assert head["ETag"] == put["ETag"]
    assert s3_without_listbucket.rewritten == 0


@pytest.mark.parametrize("list_bucket", [False, True])
def test_put_if_none_match_on_existing_key_is_412(
    s3_without_listbucket: S3Proxy, list_bucket: bool
) -> None:
    s3_without_listbucket.list_bucket = list_bucket
    bucket = new_bucket()
    s3().put_object(Bucket=bucket, Key=KEY, Body=BODY, IfNoneMatch="*")
    error = client_error(s3().put_object, Bucket=bucket, Key=KEY, Body=b"other", IfNoneMatch="*")
    assert (status(error), code(error)) == (412, "PreconditionFailed")
    assert s3().get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY
    assert s3_without_listbucket.rewritten == 0


def test_delete_if_match(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    first = s3().put_object(Bucket=bucket, Key=KEY, Body=BODY)["ETag"]
    second = s3().put_object(Bucket=bucket, Key=KEY, Body=b"second")["ETag"]
    assert first != second
    error = client_error(s3().delete_object, Bucket=bucket, Key=KEY, IfMatch=first)
    assert (status(error), code(error)) == (412, "PreconditionFailed")
    assert s3().get_object(Bucket=bucket, Key=KEY)["Body"].read() == b"second"
    deleted = s3().delete_object(Bucket=bucket, Key=KEY, IfMatch=second)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code(client_error(s3().get_object, Bucket=bucket, Key=KEY)) == "AccessDenied"


def test_twenty_writers_at_once(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    s3_without_listbucket.reset()
    start = threading.Barrier(20)

    def writer(n: int) -> tuple[bytes, int, int]:
        key = f"writer/{n}.json"
        body = f'{{"writer": {n}}}'.encode() * (n + 1)
        start.wait(timeout=30)
        s3().put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        got = s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        missing = status(client_error(s3().get_object, Bucket=bucket, Key=f"{key}.missing"))
        losing = status(
            client_error(s3().put_object, Bucket=bucket, Key=key, Body=b"x", IfNoneMatch="*")
        )
        assert got == body
        return got, missing, losing

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(writer, range(20)))
    assert [(missing, losing) for _, missing, losing in results] == [(403, 412)] * 20
    assert s3_without_listbucket.rewritten == 20
    assert s3_without_listbucket.requests == 80


# ---------------------------------------------------------------- raw bodies


def _unsigned(**extra: str) -> dict[str, str]:
    """Headers moto routes to S3 (it checks no signature unless IAM is enforced)."""
    scope = "testing/20250101/us-east-1/s3/aws4_request"
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
        "x-amz-date": "20250101T000000Z",
        **extra,
    }


def _raw_put(proxy: S3Proxy, path: str, headers: dict[str, str], body: bytes) -> int:
    url = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(body)
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_chunked_request_body_is_forwarded(s3_without_listbucket: S3Proxy) -> None:
    bucket = new_bucket()
    parts = [b"hello ", b"chunked ", b"world" * 1000]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    headers = _unsigned(
        **{"Transfer-Encoding": "chunked", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    )
    assert _raw_put(s3_without_listbucket, f"/{bucket}/chunked", headers, framed) == 200
    assert s3().get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"".join(parts)


def test_aws_chunked_body_is_forwarded(s3_without_listbucket: S3Proxy) -> None:
    """What botocore sends over HTTPS: ``aws-chunked`` framing with a trailing checksum, all
    inside a ``Content-Length`` body, decoded by S3 (and moto), not by the proxy."""
    bucket = new_bucket()
    data = b"aws-chunked payload " * 100
    checksum = b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    framed = (
        b"%x\r\n%s\r\n0\r\n" % (len(data), data)
        + f"x-amz-checksum-crc32:{checksum}\r\n\r\n".encode()
    )
    headers = _unsigned(
        **{
            "Content-Encoding": "aws-chunked",
            "Content-Length": str(len(framed)),
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
            "x-amz-sdk-checksum-algorithm": "CRC32",
        }
    )
    assert _raw_put(s3_without_listbucket, f"/{bucket}/aws-chunked", headers, framed) == 200
    assert s3().get_object(Bucket=bucket, Key="aws-chunked")["Body"].read() == data
