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

The lease and the notes are staging labels too (``secret_labels.py``): a label costs no secret
version. A document is at most ``limits.MAX_DOCUMENT_BYTES``, which is also the most a
``SecretString`` may hold. The access view is an SSM parameter (``ssm.py``), not a second secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .. import aws
from ..errors import AccessDenied, SchwabTokensError, WriteConflict
from ..token import Token
from .base import Lease, RawDocument, TokenStore
from .limits import encode_document
from .secret_labels import (
    CURRENT,
    LabelLease,
    Secret,
    current_version,
    read_notes,
    write_notes,
)
from .ssm import SsmView

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["CURRENT", "NOTES_WAIT_SECONDS", "PENDING", "SecretsManagerStore"]

PENDING = "SCHWAB_TOKENS_PENDING"
#: How long a notes change waits for a refresher's lease.
NOTES_WAIT_SECONDS = 30.0


class SecretsManagerStore(TokenStore):
    """A token document in a Secrets Manager secret (see the module's docstring).

    Its lease and notes are the secret's staging labels (``secret_labels.py``), its access view
    an SSM parameter (``ssm.py``).
    """

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
        self.secret = Secret(name, self.url, region, kms_key_id)
        self._view: SsmView | None = None

    @property
    def kms_key_seen(self) -> str | None:
        """The customer-managed key Secrets Manager last reported for the secret, if any."""
        return self.secret.kms_key_seen

    def _sm(self) -> SecretsManagerClient:
        return self.secret.client()

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
            raise self.secret.translate(exc, "GetSecretValue") from exc
        text = response.get("SecretString")
        raw = text.encode() if isinstance(text, str) else bytes(response.get("SecretBinary", b""))
        created = response.get("CreatedDate")
        return RawDocument(
            raw, str(response["VersionId"]), created.timestamp() if created else None
        )

    def version(self) -> str | None:
        stages = self.secret.stages()
        return None if stages is None else current_version(stages)

    # -- writing -----------------------------------------------------------------------------
    def write(self, token: Token, expected_version: str | None) -> str:
        document = encode_document(token, self.url).decode()
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
            raise self.secret.translate(exc, "UpdateSecretVersionStage") from exc
        return new

    def _create(self, document: str) -> str:
        new = str(uuid.uuid4())
        options: dict[str, Any] = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
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
                refused = self.secret.translate(exc, "CreateSecret")
                # The stack makes the secret (without a value) and grants its writers no
                # CreateSecret: IAM refuses that before Secrets Manager could say it exists.
                if not isinstance(refused, AccessDenied):
                    raise refused from exc
        # The secret exists: made by the stack without a value, by a rival writer, or by us on
        # an attempt whose answer was lost.
        stages = self.secret.stages()
        if stages is None and refused is not None:
            raise refused  # it does not exist, and this identity may not create it
        current = None if stages is None else current_version(stages)
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
            raise self.secret.translate(exc, "PutSecretValue") from exc
        return new

    def _drop_pending(self, version: str) -> None:
        """Best effort: a leftover pending label is harmless (the next write moves it)."""
        try:
            self._sm().update_secret_version_stage(
                SecretId=self.name, VersionStage=PENDING, RemoveFromVersionId=version
            )
        except aws.boto_errors():
            pass

    # -- the lease and the notes: staging labels ------------------------------------------------
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        """The single-flight lease, made of staging labels (``secret_labels.LabelLease``).

        It never creates a secret version. Raises as ``TokenStore.lease`` says.
        """
        return LabelLease(self.secret, ttl).hold(wait, abandon_if)

    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        return read_notes(self.secret)

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        """Move the notes label under the lease (``secret_labels.write_notes``).

        Returns the new label. Raises ``WriteConflict`` as the protocol says, ``LeaseBusy`` when
        a refresh holds the lease longer than ``NOTES_WAIT_SECONDS``.
        """
        with self.lease(30.0, NOTES_WAIT_SECONDS):
            return write_notes(self.secret, raw, expected_version, self.changed_error)

    # -- helpers -----------------------------------------------------------------------------
    def _conflict_error(self, current: str | None) -> WriteConflict:
        if current is None:
            return WriteConflict(f"{self.url} has no current token any more; not overwritten")
        return self.changed_error()
