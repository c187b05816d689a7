"""The access view of a Secrets Manager store: an SSM SecureString parameter, ``ssm:/NAME``.

A standard parameter costs nothing (a second secret would add $0.40 a month), is encrypted with
KMS (``aws/ssm``, or the stack's key, whose encryption context is the parameter's ARN: consumers
may decrypt this parameter and nothing else), and can be granted on its own. Parameter Store has
no conditional write: ``put`` checks the version first, which narrows a race but cannot close it.
Two writers racing can leave the older of two views; the next run's ``sync_view`` writes the
current one again. It never holds a token the store did not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import aws
from ..access import AccessView
from ..errors import (
    ConfigurationError,
    UsageError,
    WriteConflict,
)
from ..settings import Settings
from .base import RawDocument, View
from .limits import encode_view

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import GetParameterResultTypeDef

PREFIX = "ssm:"
#: SSM's own rules for names: a-z, A-Z, 0-9, _ . - and / (and never aws* or ssm* at the top).
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/")


def check_parameter_name(name: str, fix: str) -> None:
    """Raise ``UsageError`` naming ``fix``, before any call, for a name SSM would refuse.

    SSM takes /NAME of letters, digits and ``_ . - /``, and no name beginning with aws or ssm
    (case-insensitive, ``/aws...`` included).
    """
    top = name.lstrip("/").lower()
    if not name.startswith("/") or not set(name) <= _ALLOWED or top.startswith(("aws", "ssm")):
        raise UsageError(
            f"ssm:{name[:80]} cannot name an SSM parameter: use /NAME of letters, digits and "
            f"_ . - /, not beginning with aws or ssm; {fix}"
        )


class SsmView(View):
    """The access view of a Secrets Manager store: an SSM SecureString standard parameter.

    See the module's docstring; at most ``limits.MAX_VIEW_BYTES`` like every view.
    """

    def __init__(
        self,
        name: str,
        *,
        kms_key_id: str | None = None,
        store_url: str = "",
        key_of_store: Callable[[], str | None] | None = None,
        region: str | None = None,
    ) -> None:
        check_parameter_name(
            name, "rename the Secrets Manager store if its name starts so (the stack's name)"
        )
        self.name = name
        self.region = region
        self.url = PREFIX + name
        self.kms_key_id = kms_key_id
        self.store_url = store_url
        #: The KMS key the store's secret is encrypted with, as the store last saw it: a
        #: laptop's login is not told the stack's key, and the view must be under it too.
        self.key_of_store = key_of_store

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SsmView:
        """The view at ``ssm:/NAME`` for a consumer.

        Raises ``UsageError`` for a name SSM would refuse.
        """
        return cls(url.removeprefix(PREFIX), kms_key_id=settings.kms_key_id, region=settings.region)

    def read_raw(self) -> RawDocument:
        response = self._get()
        if response is None:
            raise self.missing_error()
        parameter = response["Parameter"]
        modified = parameter.get("LastModifiedDate")
        return RawDocument(
            str(parameter.get("Value", "")).encode(),
            str(parameter.get("Version")),
            modified.timestamp() if modified else None,
        )

    def current(self) -> tuple[AccessView | None, str | None]:
        response = self._get()
        if response is None:
            return None, None
        parameter = response["Parameter"]
        return self.usable(str(parameter.get("Value", "")), str(parameter.get("Version")))

    def put(self, view: AccessView, expected_version: str | None) -> None:
        value = encode_view(view, self.url).decode()
        current = self._get()
        found = None if current is None else str(current["Parameter"].get("Version"))
        if found != expected_version:
            raise WriteConflict(f"{self.url} changed since it was read; not overwritten")
        key = self.kms_key_id or (self.key_of_store() if self.key_of_store else None)
        options: dict[str, Any] = {"KeyId": key} if key else {}
        try:
            self._client().put_parameter(
                Name=self.name,
                Value=value,
                Type="SecureString",
                Tier="Standard",
                Overwrite=True,
                Description="Schwab access token for consumers (schwab-tokens access view)",
                **options,
            )
        except aws.boto_errors() as exc:
            raise aws.translate(exc, what=self.url, action="ssm:PutParameter") from exc

    def _client(self) -> SSMClient:
        client: SSMClient = aws.client("ssm", self.region)
        return client

    def _get(self) -> GetParameterResultTypeDef | None:
        try:
            response = self._client().get_parameter(Name=self.name, WithDecryption=True)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ParameterNotFound":
                return None
            if aws.error_code(exc) == "ParameterVersionNotFound":
                raise ConfigurationError(f"{self.url} has no readable version") from None
            raise aws.translate(exc, what=self.url, action="ssm:GetParameter") from exc
        return response
