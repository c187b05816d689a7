"""A Secrets Manager secret: ``secretsmanager://NAME``.

The version is the ``VersionId`` that carries ``AWSCURRENT``. A write follows the rotation
template's idempotent steps: ``create_pending`` puts the new document in as a new version under
the label ``SCHWAB_TOKENS_PENDING`` (``ClientRequestToken`` makes a retried call harmless), then
``finish`` moves ``AWSCURRENT`` onto it with ``RemoveFromVersionId`` = the version that was read.
Secrets Manager refuses that move when ``AWSCURRENT`` is no longer on that version, which makes
it a compare-and-swap: the loser gets ``WriteConflict``, takes its pending label off its own
version (leaving it unlabelled, so Secrets Manager deletes it in time) and changes nothing else.
The winner's move makes the replaced version ``AWSPREVIOUS``: the last good token stays
retrievable. The pending label is one fixed name on purpose: a writer that crashes between the
two steps leaves it behind, and the next write's ``PutSecretValue`` moves it away, so orphans
never pile up labelled.

moto 5.2.5 enforces ``RemoveFromVersionId`` exactly like AWS (``InvalidParameterException``
"Version stage AWSCURRENT not found in version ..."), and moves ``AWSPREVIOUS`` as AWS does.

The notes are one more staging label, ``notes.<seq>.<base64 of the JSON>``, changed under the
lease: a label costs no secret version, and the 20-label limit leaves room for one. The access
view is an SSM parameter (``ssm.py``), not a second secret.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from .. import aws
from ..errors import (
    AccessDenied,
    ConfigurationError,
    NotesTooLarge,
    SchwabTokensError,
    WriteConflict,
)
from ..token import Token
from .base import Lease, RawDocument, TokenStore, polled_lease, response_date
from .ssm import SsmView

CURRENT = "AWSCURRENT"
PENDING = "SCHWAB_TOKENS_PENDING"
#: How long a notes change waits for a refresher's lease.
NOTES_WAIT_SECONDS = 30.0

_LEASE_LABEL = re.compile(r"^lease\.(\d{10})\.([0-9a-f]{32})$")
#: Secrets Manager's longest staging label.
MAX_LABEL_CHARS = 256
_NOTES_LABEL = re.compile(r"^notes\.(\d{1,12})\.([A-Za-z0-9_-]{0,240})$")
_GONE = {"InvalidParameterException", "ResourceNotFoundException"}

Stages = dict[str, list[str]]


@dataclass(frozen=True)
class _LeaseLabel:
    label: str
    version: str
    expires_at: int
    owner: str


class SecretsManagerStore(TokenStore):
    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        kms_key_id: str | None = None,
        region: str | None = None,
    ) -> None:
        self.name = name
        #: The region of the clients (``Settings.region``; None: boto3's chain).
        self.region = region
        self.url = url or f"secretsmanager://{name}"
        # A new secret is encrypted with this key when set (else Secrets Manager's default).
        self.kms_key_id = kms_key_id
        #: The customer-managed key DescribeSecret reported for the secret, if any.
        self.kms_key_seen: str | None = kms_key_id
        self._view: SsmView | None = None

    def _sm(self) -> Any:
        return aws.client("secretsmanager", self.region)

    @property
    def view(self) -> SsmView:
        """The access view: the SSM SecureString ``/NAME.access`` (``stores.access_url``)."""
        if self._view is None:
            from . import ssm_view_name

            self._view = SsmView(
                ssm_view_name(self.name),
                kms_key_id=self.kms_key_id,
                region=self.region,
                store_url=self.url,
                key_of_store=lambda: self.kms_key_seen,
            )
        return self._view

    # -- reading -----------------------------------------------------------------------------
    def read_raw(self) -> RawDocument:
        try:
            # Always name the stage: moto can answer a stale version without it.
            response = self._sm().get_secret_value(SecretId=self.name, VersionStage=CURRENT)
        except aws.boto_errors() as exc:
            # Both "no such secret" and "a secret without a value yet" (e.g. made by the stack).
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise self.no_token_error() from None
            raise self._translate(exc, "GetSecretValue") from exc
        text = response.get("SecretString")
        raw = text.encode() if isinstance(text, str) else bytes(response.get("SecretBinary", b""))
        created = response.get("CreatedDate")
        return RawDocument(
            raw, str(response["VersionId"]), created.timestamp() if created else None
        )

    def version(self) -> str | None:
        stages = self._stages()
        return None if stages is None else _current(stages)

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        document = token.to_json().decode()
        if expected_version is None:
            return self._create(document)
        # Not the guard (the label move in ``finish`` is): a cheap check that spares a stale
        # writer from adding a secret version that could never become current.
        current = self.version()
        if current != expected_version:
            raise self._conflict_error(current)
        new = self._create_pending(document)
        try:
            return self._finish(new, expected_version)
        finally:
            self._drop_pending(new)

    def _finish(self, new: str, expected_version: str) -> str:
        """The rotation template's finishSecret: one atomic move of ``AWSCURRENT`` from the
        version read to the new one, which Secrets Manager refuses if anyone moved it since."""
        try:
            self._sm().update_secret_version_stage(
                SecretId=self.name,
                VersionStage=CURRENT,
                MoveToVersionId=new,
                RemoveFromVersionId=expected_version,
            )
        except aws.boto_errors() as exc:
            try:
                current = self.version()
            except SchwabTokensError:
                current = expected_version  # unknown: report the move's own failure
            if current == new:  # our move landed; only its answer was lost and retried
                return new
            if current != expected_version:
                raise self._conflict_error(current) from None
            raise self._translate(exc, "UpdateSecretVersionStage") from exc
        return new

    def _create(self, document: str) -> str:
        new = str(uuid.uuid4())
        options = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
        refused: SchwabTokensError | None = None
        try:
            response = self._sm().create_secret(
                Name=self.name,
                SecretString=document,
                ClientRequestToken=new,
                Description="Schwab OAuth token, kept fresh by schwab-tokens",
                **options,
            )
            return str(response["VersionId"])
        except aws.boto_errors() as exc:
            if aws.error_code(exc) != "ResourceExistsException":
                refused = self._translate(exc, "CreateSecret")
                # The stack makes the secret (without a value) and grants its writers no
                # CreateSecret: IAM refuses that before Secrets Manager could say it exists.
                if not isinstance(refused, AccessDenied):
                    raise refused from exc
        # The secret exists: made by the stack without a value, by a rival writer, or by us on
        # an attempt whose answer was lost.
        stages = self._stages()
        if stages is None and refused is not None:
            raise refused  # it does not exist, and this identity may not create it
        current = None if stages is None else _current(stages)
        if current == new:
            return new
        if current is not None:
            raise self.changed_error("holds a token")
        # No value yet: the first version of a secret gets AWSCURRENT from Secrets Manager
        # itself, so of two racing first writers only one ends up current.
        new = self._create_pending(document)
        current = self.version()
        self._drop_pending(new)
        if current != new:
            raise self._conflict_error(current)
        return new

    def _create_pending(self, document: str) -> str:
        """The rotation template's createSecret: the new document as a new version under the
        pending label, its ``ClientRequestToken`` making a retried call harmless."""
        new = str(uuid.uuid4())
        try:
            self._sm().put_secret_value(
                SecretId=self.name,
                ClientRequestToken=new,
                SecretString=document,
                VersionStages=[PENDING],
            )
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise self.deleted_error() from None
            raise self._translate(exc, "PutSecretValue") from exc
        return new

    def _drop_pending(self, version: str) -> None:
        """Best effort: a leftover pending label is harmless (the next write moves it)."""
        try:
            self._sm().update_secret_version_stage(
                SecretId=self.name, VersionStage=PENDING, RemoveFromVersionId=version
            )
        except aws.boto_errors():
            pass

    # -- the lease ---------------------------------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        """The single-flight lease, made of staging labels; it never creates a secret version.

        Why labels: a lease taken by writing versions would add up to two ``PutSecretValue``
        per refresh, while Secrets Manager asks for at most about one every ten minutes (it
        deletes unlabelled versions only when there are over 100 and they are a day old).
        ``UpdateSecretVersionStage`` only changes labels. Each contender announces itself with
        a label ``lease.<expires_at, 10 digits>.<owner>`` on the current version.

        Time is Secrets Manager's: ``expires_at`` is the ``Date`` of the answer that showed the
        lease free, plus one second (the header has whole seconds) plus the ttl; a label is
        dead once another answer's ``Date`` reaches it. A writer's own clock is never used, so
        a writer minutes ahead cannot steal a live lease.

        Acquire: read all labels (``DescribeSecret``); remove lease labels whose time has passed
        (their holders died or overran the ttl); if another owner's live label remains, the lease
        is busy. Otherwise attach ours, read again, and win only if no other owner's live lease
        label is there beside ours; if one is, remove ours and report busy, and
        ``polled_lease`` retries after a jittered sleep.

        Why announce-then-check is safe: of two contenders whose labels overlap in time, the one
        that attached second reads after both labels exist and sees the other's, so it loses;
        the first may lose too (if it read after the second attached), but two can never both
        win. Both losing only costs a retry. This relies on Secrets Manager applying label
        changes one at a time per secret and on reads seeing earlier label changes; if either
        ever failed, the damage is bounded: the document itself is still protected by the
        conditional write, so a doubled lease costs one extra token call, never a lost token.

        Crash: the label stays until ``expires_at``; the next acquirer then removes it. Labels
        stay on the version they were attached to (moving ``AWSCURRENT`` does not move them),
        so release removes ours from that version. A secret with no value has nothing to
        refresh: the lease is then a no-op (the first write is conditional anyway).
        """
        owner = uuid.uuid4().hex
        held: dict[str, str] = {}

        def try_acquire() -> bool:
            described = self._describe()
            if described is None:
                return True
            stages, now = described
            current = _current(stages)
            if current is None:
                return True
            rivals = False
            for found in _lease_labels(stages):
                if found.expires_at <= now:
                    self._remove_label(found.label, found.version)
                elif found.owner != owner:
                    rivals = True
            if rivals:
                return False
            label = f"lease.{math.ceil(now + 1 + ttl):010d}.{owner}"
            if not self._add_label(label, current):
                return False
            try:
                after, now = self._describe() or ({}, now)
                live = [found for found in _lease_labels(after) if found.expires_at > now]
                ours = any(found.label == label for found in live)
                won = ours and all(found.owner == owner for found in live)
            except BaseException:
                with contextlib.suppress(Exception):  # do not leave a label nobody releases
                    self._remove_label(label, current)
                raise
            if won:
                held[label] = current
                return True
            self._remove_label(label, current)
            return False

        def release() -> None:
            while held:
                self._remove_label(*held.popitem())

        return polled_lease(try_acquire, release, wait, ttl, self.url, abandon_if)

    # -- notes -------------------------------------------------------------------------------
    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        stages = self._stages()
        found = None if stages is None else _latest_notes(stages)
        if found is None:
            return None, None
        _, label, raw = found
        return raw, label

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        """Under the lease: check the notes label is still ``expected_version``, attach the new
        one to the current version, then remove the old ones. A crash in between leaves two
        labels; readers take the higher sequence number."""
        with self.lease(30.0, NOTES_WAIT_SECONDS):
            stages = self._stages()
            current = None if stages is None else _current(stages)
            if stages is None or current is None:
                raise self.changed_error("has no current token to keep notes beside")
            found = _latest_notes(stages)
            if (None if found is None else found[1]) != expected_version:
                raise self.changed_error("notes changed")
            seq = 0 if found is None else found[0] + 1
            label = f"notes.{seq}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"
            if len(label) > MAX_LABEL_CHARS or not _NOTES_LABEL.match(label):
                # Unreachable within MAX_NOTES_BYTES (see there) unless the sequence outgrew
                # 12 digits: refused like any oversized notes, before anything is written.
                raise NotesTooLarge(f"the notes of {self.url} do not fit a staging label")
            if not self._add_label(label, current):
                raise self.changed_error("notes changed")
            for version, labels in stages.items():
                for old in labels:
                    if _NOTES_LABEL.match(old):
                        self._remove_label(old, version)
        return label

    def _add_label(self, label: str, version: str) -> bool:
        try:
            self._sm().update_secret_version_stage(
                SecretId=self.name, VersionStage=label, MoveToVersionId=version
            )
        except aws.boto_errors() as exc:
            # The version went away, or too many labels (contenders) right now: not this time.
            if aws.error_code(exc) in _GONE | {"LimitExceededException"}:
                return False
            raise self._translate(exc, "UpdateSecretVersionStage") from exc
        return True

    def _remove_label(self, label: str, version: str) -> None:
        try:
            self._sm().update_secret_version_stage(
                SecretId=self.name, VersionStage=label, RemoveFromVersionId=version
            )
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _GONE:  # someone removed it first
                return
            raise self._translate(exc, "UpdateSecretVersionStage") from exc

    # -- helpers -----------------------------------------------------------------------------
    def _stages(self) -> Stages | None:
        """Labels per version, or None when the secret does not exist."""
        described = self._describe()
        return None if described is None else described[0]

    def _describe(self) -> tuple[Stages, float] | None:
        """Labels per version and Secrets Manager's clock, or None when there is no secret."""
        try:
            response = self._sm().describe_secret(SecretId=self.name)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return None
            raise self._translate(exc, "DescribeSecret") from exc
        if response.get("DeletedDate"):
            raise ConfigurationError(f"{self.url} {aws.deletion_hint(self.name)}")
        if isinstance(response.get("KmsKeyId"), str) and response["KmsKeyId"]:
            self.kms_key_seen = response["KmsKeyId"]
        stages = response.get("VersionIdsToStages") or {}
        now = response_date(response)
        if now is None:  # no Date header (only fakes): fall back to this process's clock
            now = time.time()
        return {str(version): list(labels) for version, labels in stages.items()}, now

    def _translate(self, exc: BaseException, operation: str) -> SchwabTokensError:
        return aws.translate(exc, what=self.url, action=f"secretsmanager:{operation}")

    def _conflict_error(self, current: str | None) -> WriteConflict:
        if current is None:
            return WriteConflict(f"{self.url} has no current token any more; not overwritten")
        return self.changed_error()


def _current(stages: Stages) -> str | None:
    for version, labels in stages.items():
        if CURRENT in labels:
            return version
    return None


def _lease_labels(stages: Stages) -> Iterator[_LeaseLabel]:
    for version, labels in stages.items():
        for label in labels:
            match = _LEASE_LABEL.match(label)
            if match:
                yield _LeaseLabel(label, version, int(match.group(1)), match.group(2))


def _latest_notes(stages: Stages) -> tuple[int, str, bytes] | None:
    """The notes label with the highest sequence number: (sequence, label, decoded bytes)."""
    best: tuple[int, str, bytes] | None = None
    for labels in stages.values():
        for label in labels:
            match = _NOTES_LABEL.match(label)
            if not match:
                continue
            encoded = match.group(2)
            try:
                raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                continue
            seq = int(match.group(1))
            if best is None or (seq, label) > (best[0], best[1]):
                best = (seq, label, raw)
    return best
