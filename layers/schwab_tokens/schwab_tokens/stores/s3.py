"""An S3 object: ``s3://BUCKET/KEY``.

The version is the object's ETag, and every write is conditional on it: ``If-Match: <etag>`` to
replace the document that was read, ``If-None-Match: *`` to create the first one. S3 answers
412 (or 409 when another conditional write is in flight) to the loser, which becomes
``WriteConflict``; nothing is ever overwritten blindly. The notes are a sidecar ``KEY.notes``
written the same way.

The single-flight lease is a sidecar object ``KEY.lease`` holding ``{"owner", "ttl"}``, created
with ``If-None-Match: *``, so at most one writer can create it. Its expiry is judged on S3's
clock only: a lease is dead once the ``Date`` of a reader's answer is past the lease object's
``LastModified`` plus its ttl plus one second (both are whole seconds), so a writer whose own
clock is minutes off can neither steal a live lease nor keep a dead one. An expired lease is
taken over with ``If-Match: <its ETag>``, so of two writers that both saw it expire only one
wins. Release deletes it only while it is still ours (owner checked, then ``If-Match``).

The access view is ``KEY`` with ``.json`` replaced by ``.access.json``, written with the same
conditions. With a KMS key it is encrypted without the bucket key, so its encryption context is
the object's own ARN, not the bucket's: the consumers' policy may decrypt the view and nothing
else in the bucket.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .. import aws
from ..access import AccessView
from ..errors import AccessDenied, InvalidTokenDocument, WriteConflict
from ..settings import DEFAULT_LEASE_TTL
from ..token import MAX_DOCUMENT_BYTES, Token
from .base import (
    MAX_NOTES_BYTES,
    Lease,
    RawDocument,
    TokenStore,
    View,
    polled_lease,
    response_date,
)

_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}


class S3Store(TokenStore):
    def __init__(
        self,
        bucket: str,
        key: str,
        url: str | None = None,
        *,
        kms_key_id: str | None = None,
        writer: str = "unknown",
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        #: The region of the clients (``Settings.region``; None: boto3's chain).
        self.region = region
        self.key = key
        self.url = url or f"s3://{bucket}/{key}"
        self.lease_key = key + ".lease"
        self.notes_key = key + ".notes"
        self.writer = writer
        # Server-side encryption with this KMS key when set; else the bucket's default.
        self._encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
        )
        #: The KMS key S3 reported for the token object (a laptop's login is not told the key).
        self.kms_key_seen: str | None = kms_key_id
        self._view = S3View(self)

    def _s3(self) -> Any:
        return aws.client("s3", self.region)

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> RawDocument:
        found = self._get(self.key, MAX_DOCUMENT_BYTES)
        if found is None:
            raise self.no_token_error()
        self._saw(found[1])
        return _raw_document(*found)

    def version(self) -> str | None:
        try:
            response = self._s3().head_object(Bucket=self.bucket, Key=self.key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _MISSING_CODES or aws.http_status(exc) == 403:
                # Without s3:ListBucket a missing object answers 403 too. Taken as "none": the
                # write that follows is If-None-Match: *, so an object that does exist (and is
                # denied) refuses it, and a real denial shows there, naming the action.
                return None
            raise aws.translate(exc, what=self.url, action="s3:GetObject") from exc
        self._saw(response)
        return str(response["ETag"])

    def _saw(self, response: dict[str, Any]) -> None:
        key = response.get("SSEKMSKeyId")
        if isinstance(key, str) and key:
            self.kms_key_seen = key

    def _get(self, key: str, limit: int) -> tuple[bytes, dict[str, Any]] | None:
        """The object's bytes (at most ``limit`` + 1) and the answer, or None if it is missing."""
        what = f"s3://{self.bucket}/{key}"
        try:
            response = self._s3().get_object(Bucket=self.bucket, Key=key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _MISSING_CODES:
                return None
            raise aws.translate(exc, what=what, action="s3:GetObject") from exc
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if isinstance(size, int) and size > limit and key == self.key:
                raise InvalidTokenDocument(
                    f"{self.url} is {size} bytes, more than a token document can be "
                    f"({MAX_DOCUMENT_BYTES}); it is not a schwab-tokens/schwab-py token"
                )
            raw = body.read(limit + 1)  # the parsers refuse anything longer
        except aws.boto_errors() as exc:
            raise aws.translate(exc, what=what, action="s3:GetObject") from exc
        finally:
            body.close()
        return raw, response

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        return self._put_conditional(
            self.key,
            token.to_json(),
            expected_version,
            {"last-refresh": str(int(time.time())), "writer": self.writer},
        )

    def _put_conditional(
        self,
        key: str,
        body: bytes,
        expected: str | None,
        metadata: dict[str, str],
        encryption: dict[str, Any] | None = None,
    ) -> str:
        aws.require_s3_conditional_writes()
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        try:
            response = self._s3().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=metadata,
                **condition,
                **(self._encryption if encryption is None else encryption),
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or aws.http_status(exc) in (409, 412):
                what = "holds a token" if expected is None else "changed"
                raise self.changed_error(what) from None
            if expected is not None and code in _MISSING_CODES:
                raise self.deleted_error() from None
            raise aws.translate(
                exc, what=f"s3://{self.bucket}/{key}", action="s3:PutObject"
            ) from exc
        if key == self.key:
            self._saw(response)
        return str(response["ETag"])

    # -- the access view ----------------------------------------------------------------------
    @property
    def view(self) -> S3View:
        return self._view

    # -- notes -------------------------------------------------------------------------------
    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        try:
            found = self._get(self.notes_key, MAX_NOTES_BYTES)
        except AccessDenied:
            # Without s3:ListBucket (the stack grants none) S3 answers 403, not 404, for a
            # missing object. The notes share the token's grant, so this is "no notes yet":
            # the first write creates them with If-None-Match: *, and a real denial shows there.
            return None, None
        if found is None:
            return None, None
        return found[0], str(found[1]["ETag"])

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        try:
            return self._put_conditional(self.notes_key, raw, expected_version, {})
        except WriteConflict:
            raise self.changed_error("notes changed") from None

    # -- the lease ---------------------------------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        aws.require_s3_conditional_writes()
        owner = uuid.uuid4().hex
        body = json.dumps({"owner": owner, "ttl": ttl}).encode()
        what = f"s3://{self.bucket}/{self.lease_key}"

        def try_acquire() -> bool:
            if self._put_lease(body, {"IfNoneMatch": "*"}, what):
                return True
            current = self._get_lease(what)
            if current is None:  # released just now: take it on the next poll
                return False
            data, etag, expired = current
            if data.get("owner") == owner:  # our create landed; only its answer was lost
                return True
            # Expired (on S3's clock): take it over only if nobody did since we looked.
            return expired and self._put_lease(body, {"IfMatch": etag}, what)

        return polled_lease(
            try_acquire, lambda: self._release_lease(owner, what), wait, ttl, self.url, abandon_if
        )

    def _release_lease(self, owner: str, what: str) -> None:
        current = self._get_lease(what)
        if current is None or current[0].get("owner") != owner:
            return  # expired and taken over (or cleaned up): not ours to delete
        try:
            # If-Match too: never delete a successor's lease that appeared since the read.
            self._s3().delete_object(Bucket=self.bucket, Key=self.lease_key, IfMatch=current[1])
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or code in _MISSING_CODES:
                return
            raise aws.translate(exc, what=what, action="s3:DeleteObject") from exc

    def _put_lease(self, body: bytes, condition: dict[str, str], what: str) -> bool:
        """Whether the conditional put of the lease object landed."""
        try:
            self._s3().put_object(
                Bucket=self.bucket,
                Key=self.lease_key,
                Body=body,
                ContentType="application/json",
                **condition,
                **self._encryption,
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in _CONFLICT_CODES or code in _MISSING_CODES:
                return False
            if aws.http_status(exc) in (409, 412):
                return False
            raise aws.translate(exc, what=what, action="s3:PutObject") from exc
        return True

    def _get_lease(self, what: str) -> tuple[dict[str, Any], str, bool] | None:
        """The lease record, its ETag and whether it has expired on S3's clock; None if none."""
        try:
            found = self._get(self.lease_key, 4096)
        except AccessDenied:
            # Without s3:ListBucket, a lease released between our create (refused: it existed)
            # and this read answers 403, not 404: it is gone, and the next poll takes it. A
            # real denial of the lease object shows on the create, which needs s3:PutObject.
            return None
        if found is None:
            return None
        raw, response = found
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        ttl = data.get("ttl")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 3600:
            # Unreadable, or written by an older version: the default ttl, so a live holder of
            # an older version keeps its lease and a garbage record frees itself in time.
            ttl = DEFAULT_LEASE_TTL
        modified = response.get("LastModified")
        now = response_date(response)
        if now is None:  # no Date header (only fakes): fall back to this process's clock
            now = time.time()
        written = modified.timestamp() if modified else 0.0
        expired = now >= written + float(ttl) + 1.0
        return data, str(response["ETag"]), expired


class S3View(View):
    """The access view beside an S3 token: ``schwab/tokens.json`` -> ``schwab/tokens.access.json``
    in the same bucket, written conditionally (``If-Match`` / ``If-None-Match: *``)."""

    def __init__(self, store: S3Store) -> None:
        from . import view_name

        self.store = store
        self.store_url = store.url
        self.key = view_name(store.key)
        self.url = f"s3://{store.bucket}/{self.key}"

    def read_raw(self) -> RawDocument:
        try:
            found = self.store._get(self.key, MAX_DOCUMENT_BYTES)
        except AccessDenied as exc:
            # The reader policy grants the view alone (no s3:ListBucket), so S3 answers a view
            # not written yet (a stack upgraded from before views) 403 too: name both causes.
            raise AccessDenied(
                f"{exc}; with the reader policy, this means no access view yet: the refresher "
                f"writes it on its next run, or run `schwab-tokens refresh --store "
                f"{self.store.url}` to write it now"
            ) from None
        if found is None:
            raise self.missing_error()
        return _raw_document(*found)

    def current(self) -> tuple[AccessView | None, str | None]:
        try:
            found = self.store._get(self.key, MAX_DOCUMENT_BYTES)
        except AccessDenied:
            # Without s3:ListBucket a missing object answers 403: then there is none yet, and the
            # If-None-Match write below creates it (a real denial shows there).
            return None, None
        if found is None:
            return None, None
        raw, response = found
        version = str(response["ETag"])
        if response.get("BucketKeyEnabled"):
            # Encrypted with the bucket key (a writer that knew no KMS key): its encryption
            # context is then the bucket, which consumers may not decrypt. Write it again.
            return None, version
        return self.usable(raw, version)

    def put(self, view: AccessView, expected_version: str | None) -> None:
        key_id = self.store.kms_key_seen
        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id, "BucketKeyEnabled": False}
            if key_id
            else {}
        )
        try:
            self.store._put_conditional(self.key, view.to_json(), expected_version, {}, encryption)
        except WriteConflict:
            raise self.store.changed_error("access view changed") from None


def _raw_document(raw: bytes, response: dict[str, Any]) -> RawDocument:
    """A GetObject answer's bytes, ETag and time of writing."""
    modified = response.get("LastModified")
    return RawDocument(raw, str(response["ETag"]), modified.timestamp() if modified else None)
