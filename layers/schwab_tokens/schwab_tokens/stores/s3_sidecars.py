"""The objects beside an S3 token: its single-flight lease ``KEY.lease`` and its notes
``KEY.notes``, each written with S3's conditional writes like the token itself.

The lease object holds ``{"owner", "ttl"}`` and is created with ``If-None-Match: *``, so at most
one writer can create it. Its expiry is judged on S3's clock only: a lease is dead once the
``Date`` of a reader's answer is past the lease object's ``LastModified`` plus its ttl plus one
second (both are whole seconds), so a writer whose own clock is minutes off can neither steal a
live lease nor keep a dead one. An expired lease is taken over with ``If-Match: <its ETag>``, so
of two writers that both saw it expire only one wins. Release deletes it only while it is still
ours (owner checked, then ``If-Match``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import aws
from ..errors import AccessDenied, WriteConflict
from ..settings import DEFAULT_LEASE_TTL
from .base import Lease, polled_lease, response_date
from .limits import MAX_NOTES_BYTES

if TYPE_CHECKING:
    from .s3 import S3Store

#: S3's answers to a conditional write that lost (412), or met another in flight (409).
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
#: S3's answers for an object that is not there.
MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
#: A lease record is a few dozen bytes; more is not one of ours.
_MAX_LEASE_BYTES = 4096


class LeaseRecord(NamedTuple):
    """The lease object as read: its record, its ETag, and whether it expired on S3's clock."""

    data: dict[str, Any]
    etag: str
    expired: bool


class S3Lease:
    """One contender for the lease object of an S3 store (see the module's docstring)."""

    def __init__(self, store: S3Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.owner = uuid.uuid4().hex
        self.key = store.lease_key
        self.url = f"s3://{store.bucket}/{store.lease_key}"
        self._body = json.dumps({"owner": self.owner, "ttl": ttl}).encode()

    def hold(
        self, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        """The lease as ``TokenStore.lease`` hands it out (``polled_lease``).

        Raises ``LeaseBusy`` when ``wait`` runs out, ``ConfigurationError`` without S3's
        conditional writes, and what S3's refusals translate to.
        """
        aws.require_s3_conditional_writes()
        return polled_lease(
            self.try_acquire, self.release, wait, self.ttl, self.store.url, abandon_if
        )

    def try_acquire(self) -> bool:
        """One attempt: True when this contender holds the lease, False when another does."""
        if self._put({"IfNoneMatch": "*"}):
            return True
        current = self.read()
        if current is None:  # released just now: take it on the next poll
            return False
        if current.data.get("owner") == self.owner:  # our create landed; its answer was lost
            return True
        # Expired (on S3's clock): take it over only if nobody did since we looked.
        return current.expired and self._put({"IfMatch": current.etag})

    def release(self) -> None:
        """Delete the lease object while it is still ours.

        Nothing when it is not (it expired and was taken over). Raises what S3's other refusals
        translate to.
        """
        current = self.read()
        if current is None or current.data.get("owner") != self.owner:
            return
        try:
            # If-Match too: never delete a successor's lease that appeared since the read.
            self.store.client().delete_object(
                Bucket=self.store.bucket, Key=self.key, IfMatch=current.etag
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in CONFLICT_CODES or code in MISSING_CODES:
                return
            raise aws.translate(exc, what=self.url, action="s3:DeleteObject") from exc

    def _put(self, condition: dict[str, Any]) -> bool:
        """Whether the conditional put of the lease object landed."""
        try:
            self.store.client().put_object(
                Bucket=self.store.bucket,
                Key=self.key,
                Body=self._body,
                ContentType="application/json",
                **condition,
                **self.store.encryption,
            )
        except aws.boto_errors() as exc:
            code = aws.error_code(exc)
            if code in CONFLICT_CODES or code in MISSING_CODES:
                return False
            if aws.http_status(exc) in (409, 412):
                return False
            raise aws.translate(exc, what=self.url, action="s3:PutObject") from exc
        return True

    def read(self) -> LeaseRecord | None:
        """The lease object as it stands, or None when there is none.

        Raises what S3's refusals translate to (a 403 aside: see below).
        """
        try:
            found = self.store.get_object(self.key, _MAX_LEASE_BYTES)
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
            # Unreadable, or not of this version's form: the default ttl, so a live holder
            # keeps its lease and a garbage record frees itself in time.
            ttl = DEFAULT_LEASE_TTL
        modified = response.get("LastModified")
        now = response_date(response)
        if now is None:  # no Date header (only fakes): fall back to this process's clock
            now = time.time()
        written = modified.timestamp() if modified else 0.0
        return LeaseRecord(data, str(response["ETag"]), now >= written + float(ttl) + 1.0)


class S3Notes:
    """The notes object ``KEY.notes`` beside an S3 token, written conditionally on its ETag."""

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.key = store.notes_key

    def read(self) -> tuple[bytes | None, str | None]:
        """``TokenStore.read_notes_raw``: the bytes and ETag, or ``(None, None)``.

        At most ``MAX_NOTES_BYTES`` + 1 bytes. Raises what S3's refusals translate to (a 403
        aside).
        """
        try:
            found = self.store.get_object(self.key, MAX_NOTES_BYTES)
        except AccessDenied:
            # Without s3:ListBucket (the stack grants none) S3 answers 403, not 404, for a
            # missing object. The notes share the token's grant, so this is "no notes yet":
            # the first write creates them with If-None-Match: *, and a real denial shows there.
            return None, None
        if found is None:
            return None, None
        return found[0], str(found[1]["ETag"])

    def write(self, raw: bytes, expected_version: str | None) -> str:
        """``TokenStore.write_notes_raw``: returns the new ETag.

        Raises ``WriteConflict`` when the notes changed since ``expected_version``.
        """
        try:
            return self.store.put_if(self.key, raw, expected_version, {})
        except WriteConflict:
            raise self.store.changed_error("notes changed") from None
