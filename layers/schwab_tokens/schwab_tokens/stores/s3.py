"""An S3 object: ``s3://BUCKET/KEY``.

The version is the object's ETag, and every write is conditional on it: ``If-Match: <etag>`` to
replace the document that was read, ``If-None-Match: *`` to create the first one. S3 answers
412 (or 409 when another conditional write is in flight) to the loser, which becomes
``WriteConflict``; nothing is ever overwritten blindly.

The single-flight lease is a sidecar object ``KEY.lease`` holding ``{"owner", "expires_at"}``,
created with ``If-None-Match: *``, so at most one writer can create it. An expired lease is taken
over with ``If-Match: <its ETag>``, so of two writers that both saw it expire only one wins.
Release deletes it only while it is still ours (owner checked, then ``If-Match`` on the delete).
A holder that dies leaves the object behind; it is dead weight once ``expires_at`` has passed.
The expiry is judged on the writers' clocks, which must agree to well under the ttl.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .. import aws
from ..errors import InvalidTokenDocument, LoginRequired, WriteConflict
from ..token import MAX_DOCUMENT_BYTES, Token
from .base import TokenStore, polled_lease

#: Server-side encryption with this KMS key (id, ARN or alias) when set; else the bucket default.
KMS_KEY_ENV = "TOKEN_STORE_KMS_KEY_ID"
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}


class S3Store(TokenStore):
    def __init__(self, bucket: str, key: str, url: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.url = url or f"s3://{bucket}/{key}"
        self.lease_key = key + ".lease"

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> tuple[bytes, str, float | None]:
        s3 = aws.client("s3")
        try:
            response = s3.get_object(Bucket=self.bucket, Key=self.key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _MISSING_CODES:
                raise self._no_token() from None
            raise aws.translate(exc, what=self.url, action="s3:GetObject") from exc
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if isinstance(size, int) and size > MAX_DOCUMENT_BYTES:
                raise InvalidTokenDocument(
                    f"{self.url} is {size} bytes, more than a token document can be "
                    f"({MAX_DOCUMENT_BYTES}); it is not a schwab-tokens/schwab-py token"
                )
            raw = body.read(MAX_DOCUMENT_BYTES + 1)  # Token.parse refuses anything longer
        except aws.boto_errors() as exc:
            raise aws.translate(exc, what=self.url, action="s3:GetObject") from exc
        finally:
            body.close()
        modified = response.get("LastModified")
        return raw, str(response["ETag"]), modified.timestamp() if modified else None

    def version(self) -> str | None:
        try:
            response = aws.client("s3").head_object(Bucket=self.bucket, Key=self.key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _MISSING_CODES:
                return None
            raise aws.translate(exc, what=self.url, action="s3:GetObject") from exc
        return str(response["ETag"])

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        condition = (
            {"IfNoneMatch": "*"} if expected_version is None else {"IfMatch": expected_version}
        )
        try:
            response = aws.client("s3").put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=token.to_json(),
                ContentType="application/json",
                Metadata={"last-refresh": str(int(time.time())), "writer": writer_name()},
                **condition,
                **_encryption(),
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or aws.http_status(exc) in (409, 412):
                what = "holds a token" if expected_version is None else "changed"
                raise WriteConflict(
                    f"{self.url} {what} since it was read; not overwritten"
                ) from None
            if expected_version is not None and code in _MISSING_CODES:
                raise WriteConflict(f"{self.url} was deleted since it was read") from None
            raise aws.translate(exc, what=self.url, action="s3:PutObject") from exc
        return str(response["ETag"])

    # -- the lease ---------------------------------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[bool]:
        owner = uuid.uuid4().hex
        held: dict[str, str] = {}
        what = f"s3://{self.bucket}/{self.lease_key}"

        def try_acquire() -> bool:
            body = json.dumps({"owner": owner, "expires_at": round(time.time() + ttl, 3)})
            etag = self._put_lease(body.encode(), {"IfNoneMatch": "*"}, what)
            if etag is None:
                current = self._get_lease(what)
                if current is None:  # released just now: take it on the next poll
                    return False
                data, current_etag = current
                if data.get("owner") == owner:  # our create landed; only its answer was lost
                    held["etag"] = current_etag
                    return True
                if _expires_at(data) > time.time():
                    return False
                # Expired (or unreadable): take it over only if nobody did since we looked.
                etag = self._put_lease(body.encode(), {"IfMatch": current_etag}, what)
                if etag is None:
                    return False
            held["etag"] = etag
            return True

        return polled_lease(
            try_acquire, lambda: self._release_lease(owner, what), wait, self.url, abandon_if
        )

    def _release_lease(self, owner: str, what: str) -> None:
        current = self._get_lease(what)
        if current is None or current[0].get("owner") != owner:
            return  # expired and taken over (or cleaned up): not ours to delete
        try:
            # If-Match too: never delete a successor's lease that appeared since the read.
            aws.client("s3").delete_object(
                Bucket=self.bucket, Key=self.lease_key, IfMatch=current[1]
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or code in _MISSING_CODES:
                return
            raise aws.translate(exc, what=what, action="s3:DeleteObject") from exc

    def _put_lease(self, body: bytes, condition: dict[str, str], what: str) -> str | None:
        """The new lease's ETag, or None when the condition failed."""
        try:
            response = aws.client("s3").put_object(
                Bucket=self.bucket,
                Key=self.lease_key,
                Body=body,
                ContentType="application/json",
                **condition,
                **_encryption(),
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or code in _MISSING_CODES:
                return None
            if aws.http_status(exc) in (409, 412):
                return None
            raise aws.translate(exc, what=what, action="s3:PutObject") from exc
        return str(response["ETag"])

    def _get_lease(self, what: str) -> tuple[dict[str, Any], str] | None:
        try:
            response = aws.client("s3").get_object(Bucket=self.bucket, Key=self.lease_key)
            try:
                raw = response["Body"].read(4096)
            finally:
                response["Body"].close()
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _MISSING_CODES:
                return None
            raise aws.translate(exc, what=what, action="s3:GetObject") from exc
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        return (data if isinstance(data, dict) else {}), str(response["ETag"])

    def _no_token(self) -> LoginRequired:
        return LoginRequired(
            f"no token at {self.url}: run `schwab-tokens login --store {self.url}`"
        )


def _expires_at(data: dict[str, Any]) -> float:
    """When a lease record expires; an unreadable record counts as expired."""
    value = data.get("expires_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _encryption() -> dict[str, str]:
    key_id = os.environ.get(KMS_KEY_ENV, "").strip()
    if not key_id:
        return {}
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}


def writer_name() -> str:
    """Who wrote: the Lambda function's name, else the host name (ASCII, for S3 metadata)."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or socket.gethostname() or "unknown"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "unknown"
