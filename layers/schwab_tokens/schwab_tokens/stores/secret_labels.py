"""The staging labels of a Secrets Manager secret, and what the store makes of them: its
single-flight lease and its notes.

A label costs no secret version (``UpdateSecretVersionStage`` only moves labels), and a secret
holds up to 20 of them, which leaves room for the few below beside ``AWSCURRENT``,
``AWSPREVIOUS`` and the pending label of a write:

- ``lease.<expires_at, 10 digits>.<owner>``: one per contender for the lease (``LabelLease``);
- ``notes.<seq>.<base64 of the JSON>``: the notes, changed under the lease (``write_notes``).

Time is Secrets Manager's: the ``Date`` of its answers, never a writer's own clock.
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
from typing import TYPE_CHECKING

from .. import aws
from ..errors import ConfigurationError, NotesTooLarge, SchwabTokensError, WriteConflict
from .base import Lease, polled_lease, response_date

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
#: Secrets Manager's longest staging label.
MAX_LABEL_CHARS = 256

_LEASE_LABEL = re.compile(r"^lease\.(\d{10})\.([0-9a-f]{32})$")
_NOTES_LABEL = re.compile(r"^notes\.(\d{1,12})\.([A-Za-z0-9_-]{0,240})$")
_GONE = {"InvalidParameterException", "ResourceNotFoundException"}

#: Labels per version id.
Stages = dict[str, list[str]]


class Secret:
    """One secret as Secrets Manager answers for it, and the calls that change one label.

    What it answers: the labels per version, its clock and its KMS key; the calls attach and
    remove one label.
    """

    def __init__(self, name: str, url: str, region: str | None, kms_key_id: str | None) -> None:
        self.name = name
        self.url = url
        #: The region of the clients (``Settings.region``; None: boto3's chain).
        self.region = region
        #: The customer-managed key DescribeSecret reported for the secret, if any.
        self.kms_key_seen: str | None = kms_key_id

    def client(self) -> SecretsManagerClient:
        """The shared Secrets Manager client of this secret's region (``aws.client``)."""
        client: SecretsManagerClient = aws.client("secretsmanager", self.region)
        return client

    def translate(self, exc: BaseException, operation: str) -> SchwabTokensError:
        """``exc``, an AWS error of ``operation``, as the package's error naming the secret."""
        return aws.translate(exc, what=self.url, action=f"secretsmanager:{operation}")

    def describe(self) -> tuple[Stages, float] | None:
        """Labels per version and Secrets Manager's clock (epoch seconds), or None (no secret).

        Raises ``ConfigurationError`` for a secret scheduled for deletion, and what
        ``translate`` makes of any other refusal.
        """
        try:
            response = self.client().describe_secret(SecretId=self.name)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return None
            raise self.translate(exc, "DescribeSecret") from exc
        if response.get("DeletedDate"):
            raise ConfigurationError(f"{self.url} {aws.deletion_hint(self.name)}")
        key = response.get("KmsKeyId")
        if isinstance(key, str) and key:
            self.kms_key_seen = key
        stages = response.get("VersionIdsToStages") or {}
        now = response_date(response)
        if now is None:  # no Date header (only fakes): fall back to this process's clock
            now = time.time()
        return {str(version): list(labels) for version, labels in stages.items()}, now

    def stages(self) -> Stages | None:
        """Labels per version, or None when the secret does not exist (raises as ``describe``)."""
        described = self.describe()
        return None if described is None else described[0]

    def add_label(self, label: str, version: str) -> bool:
        """Attach ``label`` to ``version``; returns whether Secrets Manager took it.

        False when Secrets Manager refused it for now (the version went away, or too many
        labels). Raises what ``translate`` makes of any other refusal.
        """
        try:
            self.client().update_secret_version_stage(
                SecretId=self.name, VersionStage=label, MoveToVersionId=version
            )
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _GONE | {"LimitExceededException"}:
                return False
            raise self.translate(exc, "UpdateSecretVersionStage") from exc
        return True

    def remove_label(self, label: str, version: str) -> None:
        """Take ``label`` off ``version``; nothing when someone removed it first.

        Raises what ``translate`` makes of any other refusal.
        """
        try:
            self.client().update_secret_version_stage(
                SecretId=self.name, VersionStage=label, RemoveFromVersionId=version
            )
        except aws.boto_errors() as exc:
            if aws.error_code(exc) in _GONE:
                return
            raise self.translate(exc, "UpdateSecretVersionStage") from exc


def current_version(stages: Stages) -> str | None:
    """The version that carries ``AWSCURRENT``, or None (a secret without a value)."""
    for version, labels in stages.items():
        if CURRENT in labels:
            return version
    return None


# -- the lease ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _LeaseLabel:
    label: str
    version: str
    expires_at: int
    owner: str


def _lease_labels(stages: Stages) -> Iterator[_LeaseLabel]:
    for version, labels in stages.items():
        for label in labels:
            match = _LEASE_LABEL.match(label)
            if match:
                yield _LeaseLabel(label, version, int(match.group(1)), match.group(2))


class LabelLease:
    """One contender for the lease of a secret, made of staging labels.

    It never creates a secret version.

    Why labels: a lease taken by writing versions would add up to two ``PutSecretValue`` per
    refresh, while Secrets Manager asks for at most about one every ten minutes (it deletes
    unlabelled versions only when there are over 100 and they are a day old). Each contender
    announces itself with a label ``lease.<expires_at>.<owner>`` on the current version, where
    ``expires_at`` is the ``Date`` of the answer that showed the lease free, plus one second (the
    header has whole seconds) plus the ttl; a label is dead once another answer's ``Date``
    reaches it. A writer's own clock is never used, so a writer minutes ahead cannot steal a
    live lease.

    Acquire (``try_acquire``): read all labels; remove lease labels whose time has passed (their
    holders died or overran the ttl); if another owner's live label remains, the lease is busy.
    Otherwise attach ours, read again, and win only if no other owner's live lease label is
    there beside ours; if one is, remove ours and report busy, and ``polled_lease`` retries
    after a jittered sleep.

    Why announce-then-check is safe: of two contenders whose labels overlap in time, the one
    that attached second reads after both labels exist and sees the other's, so it loses; the
    first may lose too (if it read after the second attached), but two can never both win. Both
    losing only costs a retry. This relies on Secrets Manager applying label changes one at a
    time per secret and on reads seeing earlier label changes; if either ever failed, the damage
    is bounded: the document itself is still protected by the conditional write, so a doubled
    lease costs one extra token call, never a lost token.

    Crash: the label stays until ``expires_at``; the next acquirer then removes it. Labels stay
    on the version they were attached to (moving ``AWSCURRENT`` does not move them), so release
    removes ours from that version. A secret with no value has nothing to refresh: the lease is
    then a no-op (the first write is conditional anyway).
    """

    def __init__(self, secret: Secret, ttl: float) -> None:
        self.secret = secret
        self.ttl = ttl
        self.owner = uuid.uuid4().hex
        #: The label this contender holds, and the version it is attached to.
        self.held: dict[str, str] = {}

    def hold(
        self, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        """The lease as ``TokenStore.lease`` hands it out (``polled_lease``).

        Raises ``LeaseBusy`` when ``wait`` runs out, and what the label calls raise.
        """
        return polled_lease(
            self.try_acquire, self.release, wait, self.ttl, self.secret.url, abandon_if
        )

    def try_acquire(self) -> bool:
        """One attempt: whether this contender holds the lease (or there is nothing to lease).

        False when another holds it or won the race. Raises what the label calls raise.
        """
        described = self.secret.describe()
        if described is None:
            return True
        stages, now = described
        version = current_version(stages)
        if version is None:
            return True
        rivals = False
        for found in _lease_labels(stages):
            if found.expires_at <= now:
                self.secret.remove_label(found.label, found.version)
            elif found.owner != self.owner:
                rivals = True
        if rivals:
            return False
        label = f"lease.{math.ceil(now + 1 + self.ttl):010d}.{self.owner}"
        if not self.secret.add_label(label, version):
            return False
        try:
            won = self._alone(label, now)
        except BaseException:
            with contextlib.suppress(Exception):  # do not leave a label nobody releases
                self.secret.remove_label(label, version)
            raise
        if won:
            self.held[label] = version
            return True
        self.secret.remove_label(label, version)
        return False

    def _alone(self, label: str, now: float) -> bool:
        """Whether ``label`` is live and no other owner's live lease label is beside it."""
        after, now = self.secret.describe() or ({}, now)
        live = [found for found in _lease_labels(after) if found.expires_at > now]
        ours = any(found.label == label for found in live)
        return ours and all(found.owner == self.owner for found in live)

    def release(self) -> None:
        """Remove the label this contender holds, if any (raises what ``remove_label`` does)."""
        while self.held:
            self.secret.remove_label(*self.held.popitem())


# -- the notes ------------------------------------------------------------------------------------
def latest_notes(stages: Stages) -> tuple[int, str, bytes] | None:
    """The notes label with the highest sequence number: (sequence, label, decoded bytes).

    None when there is none that decodes.
    """
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


def read_notes(secret: Secret) -> tuple[bytes | None, str | None]:
    """The notes' bytes and version (their label), or ``(None, None)`` when there are none.

    Raises as ``Secret.describe``.
    """
    stages = secret.stages()
    found = None if stages is None else latest_notes(stages)
    if found is None:
        return None, None
    _, label, raw = found
    return raw, label


def write_notes(
    secret: Secret,
    raw: bytes,
    expected_version: str | None,
    changed_error: Callable[[str], WriteConflict],
) -> str:
    """Replace the notes label of ``secret`` with one for ``raw``; call it under the lease.

    Checks the notes label is still ``expected_version``, attaches the new one to the current
    version, then removes the old ones (a crash in between leaves two labels; readers take the
    higher sequence number). Returns the new label. Raises ``changed_error(...)`` when the notes
    or the secret changed, ``NotesTooLarge`` when the notes do not fit a label (before anything
    is written).
    """
    stages = secret.stages()
    version = None if stages is None else current_version(stages)
    if stages is None or version is None:
        raise changed_error("has no current token to keep notes beside")
    found = latest_notes(stages)
    if (None if found is None else found[1]) != expected_version:
        raise changed_error("notes changed")
    seq = 0 if found is None else found[0] + 1
    label = f"notes.{seq}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"
    if len(label) > MAX_LABEL_CHARS or not _NOTES_LABEL.match(label):
        # Unreachable within MAX_NOTES_BYTES (see limits.py) unless the sequence outgrew 12
        # digits: refused like any oversized notes, before anything is written.
        raise NotesTooLarge(f"the notes of {secret.url} do not fit a staging label")
    if not secret.add_label(label, version):
        raise changed_error("notes changed")
    for each, labels in stages.items():
        for old in labels:
            if _NOTES_LABEL.match(old):
                secret.remove_label(old, each)
    return label
