"""An S3 object: ``s3://BUCKET/KEY``.

The version is the object's ETag, and every write is conditional on it: ``If-Match: <etag>`` to
replace the document that was read, ``If-None-Match: *`` to create the first one. S3 answers
412 (or 409 when another conditional write is in flight) to the loser, which becomes
``WriteConflict``; nothing is ever overwritten blindly. A document is at most
``limits.MAX_DOCUMENT_BYTES``, as in every store, though an object could hold more.

The single-flight lease ``KEY.lease`` and the notes ``KEY.notes`` are objects beside the token,
written the same way (``s3_sidecars.py``).

The access view is ``KEY`` with ``.json`` replaced by ``.access.json``, written with the same
conditions. With a KMS key it is encrypted without the bucket key, so its encryption context is
the object's own ARN, not the bucket's: the consumers' policy may decrypt the view and nothing
else in the bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .. import aws
from ..access import AccessView
from ..errors import AccessDenied, InvalidTokenDocument, WriteConflict
from ..token import Token
from .base import Lease, RawDocument, TokenStore, View
from .limits import MAX_DOCUMENT_BYTES, encode_document, encode_view
from .s3_sidecars import CONFLICT_CODES, MISSING_CODES, S3Lease, S3Notes

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Store", "S3View"]


class S3Store(TokenStore):
    """A token document in an S3 object (see the module's docstring).

    Its lease and notes are objects beside it (``s3_sidecars.py``), and so is its access view
    (``S3View``).
    """

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
        self.encryption: dict[str, Any] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
        )
        #: The KMS key S3 reported for the token object (a laptop's login is not told the key).
        self.kms_key_seen: str | None = kms_key_id
        self._view = S3View(self)
        self._notes = S3Notes(self)

    def client(self) -> S3Client:
        """The shared S3 client of this store's region (``aws.client``)."""
        client: S3Client = aws.client("s3", self.region)
        return client

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> RawDocument:
        found = self.get_object(self.key, MAX_DOCUMENT_BYTES)
        if found is None:
            raise self.no_token_error()
        self._saw(found[1])
        return _raw_document(*found)

    def version(self) -> str | None:
        try:
            response = self.client().head_object(Bucket=self.bucket, Key=self.key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in MISSING_CODES or aws.http_status(exc) == 403:
                # Without s3:ListBucket a missing object answers 403 too. Taken as "none": the
                # write that follows is If-None-Match: *, so an object that does exist (and is
                # denied) refuses it, and a real denial shows there, naming the action.
                return None
            raise aws.translate(exc, what=self.url, action="s3:GetObject") from exc
        self._saw(response)
        return str(response["ETag"])

    def _saw(self, response: Mapping[str, Any]) -> None:
        key = response.get("SSEKMSKeyId")
        if isinstance(key, str) and key:
            self.kms_key_seen = key

    def get_object(self, key: str, limit: int) -> tuple[bytes, Mapping[str, Any]] | None:
        """The bytes of the object ``key`` in this store's bucket and S3's answer, or None.

        At most ``limit`` + 1 bytes; None if the object is missing. Raises
        ``InvalidTokenDocument`` when the token object is over ``MAX_DOCUMENT_BYTES``, and what
        S3's refusals translate to.
        """
        what = f"s3://{self.bucket}/{key}"
        try:
            response = self.client().get_object(Bucket=self.bucket, Key=key)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in MISSING_CODES:
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
        return self.put_if(
            self.key,
            encode_document(token, self.url),
            expected_version,
            {"last-refresh": str(int(time.time())), "writer": self.writer},
        )

    def put_if(
        self,
        key: str,
        body: bytes,
        expected: str | None,
        metadata: dict[str, str],
        encryption: dict[str, Any] | None = None,
    ) -> str:
        """Put ``body`` at ``key`` only if its ETag is still ``expected``; returns the new ETag.

        ``expected`` None: only if there is none. With this store's encryption unless
        ``encryption`` is given. Raises ``WriteConflict`` when the condition fails, and what S3's
        other refusals translate to.
        """
        aws.require_s3_conditional_writes()
        condition: dict[str, Any] = (
            {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        )
        try:
            response = self.client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=metadata,
                **condition,
                **(self.encryption if encryption is None else encryption),
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in CONFLICT_CODES or aws.http_status(exc) in (409, 412):
                what = "holds a token" if expected is None else "changed"
                raise self.changed_error(what) from None
            if expected is not None and code in MISSING_CODES:
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
        """The access view beside the token (``S3View``)."""
        return self._view

    # -- notes and the lease: objects beside the token -----------------------------------------
    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        return self._notes.read()

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        return self._notes.write(raw, expected_version)

    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        return S3Lease(self, ttl).hold(wait, abandon_if)


class S3View(View):
    """The access view beside an S3 token, in the same bucket.

    ``schwab/tokens.json`` -> ``schwab/tokens.access.json``, written conditionally
    (``If-Match`` / ``If-None-Match: *``).
    """

    def __init__(self, store: S3Store) -> None:
        from . import view_name

        self.store = store
        self.store_url = store.url
        self.key = view_name(store.key)
        self.url = f"s3://{store.bucket}/{self.key}"

    def read_raw(self) -> RawDocument:
        try:
            found = self.store.get_object(self.key, MAX_DOCUMENT_BYTES)
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
            found = self.store.get_object(self.key, MAX_DOCUMENT_BYTES)
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
            self.store.put_if(
                self.key, encode_view(view, self.url), expected_version, {}, encryption
            )
        except WriteConflict:
            raise self.store.changed_error("access view changed") from None


def _raw_document(raw: bytes, response: Mapping[str, Any]) -> RawDocument:
    """A GetObject answer's bytes, ETag and time of writing."""
    modified = response.get("LastModified")
    return RawDocument(raw, str(response["ETag"]), modified.timestamp() if modified else None)
