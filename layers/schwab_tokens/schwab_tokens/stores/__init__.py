"""Where tokens live: ``store_from_url`` picks the backend from the URL's scheme.

Backends are imported only when asked for, so a file-store user never loads boto3. A URL that
looks like a scheme but is not one of ours (``s3:/b/k``, ``S3://``, ``xyz://``) is a usage error
naming the right form, never a file of that odd name.

Every store keeps an access view beside its token (``access.py``), where ``access_url`` says,
one rule per kind of store, so no writer needs to be told:

- a file ``PATH/NAME.json`` (or ``file:``): ``PATH/NAME.access.json`` (a name without ``.json``
  gets ``.access.json`` appended);
- ``s3://BUCKET/KEY``: the same rule on the key, in the same bucket
  (``s3://b/schwab/tokens.json`` -> ``s3://b/schwab/tokens.access.json``): one more small
  object, a few cents a year;
- ``secretsmanager://NAME``: the SSM SecureString parameter ``ssm:/NAME.access`` (``+``, ``=``
  and ``@``, which SSM names cannot hold, become ``_``). Not a second secret: that would add
  $0.40 a month, and a standard parameter costs nothing.

``source_from_url`` opens either kind of URL for a reader (``TokenReader``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import UsageError
from ..settings import Settings
from .base import RawDocument, Stored, TokenStore, View

DEFAULT_STORE_URL = "tokens.json"
FORMS = "a path, file:PATH, s3://BUCKET/KEY or secretsmanager://NAME"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")


def store_from_url(url: str, settings: Settings | None = None) -> TokenStore:
    """The store at ``PATH`` or ``file:PATH``, ``s3://BUCKET/KEY`` or ``secretsmanager://NAME``.

    ``settings`` (default: ``Settings.from_env()``, read only for an AWS store) supply what
    writers need: the KMS key for new objects and secrets, and the writer's name for S3
    metadata. Raises ``UsageError`` naming the right form for a URL that is empty, of no known
    scheme, of a scheme's wrong form, or an access view's.
    """
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"the store URL is empty: give {FORMS}")
    url = url.strip()
    if is_view_url(url):
        # The view is where bots and the reader policy read: a document (refresh token
        # included) written there, or a refresh run on it, would put seven days of access
        # where read-only roles reach.
        raise UsageError(
            f"{url!r} is an access view (the access token alone, for consumers: "
            f"TOKEN_ACCESS_URL), not a token store; give the token store's URL: "
            f"{document_url(url)}"
        )
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1) == "file":
        return _file_store(url)
    settings = Settings.from_env() if settings is None else settings
    for prefix, parse in _AWS_STORES.items():
        if url.startswith(prefix):
            return parse(url, settings)
    raise _unknown_scheme_error(url, scheme.group(1))


def _file_store(url: str) -> TokenStore:
    from .file import FileStore

    path = url.removeprefix("file:")
    if not path:
        raise UsageError("file: needs a path, as in file:tokens.json")
    return FileStore(path, url=url)


def _s3_store(url: str, settings: Settings) -> TokenStore:
    bucket, _, key = url[len("s3://") :].partition("/")
    if _BUCKET.fullmatch(bucket) and not key:
        raise UsageError(
            f"{url!r} names a bucket but no key: an S3 store URL is s3://BUCKET/KEY, e.g. "
            f"s3://{bucket}/schwab/tokens.json (the stack's StoreUrl output)"
        )
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(
            f"an S3 store URL is s3://BUCKET/KEY with a bucket name of 3-63 lowercase "
            f"letters, digits, dots or hyphens, not {url!r}"
        )
    from .s3 import S3Store

    return S3Store(
        bucket,
        key,
        url=url,
        kms_key_id=settings.kms_key_id,
        writer=settings.writer,
        region=settings.region,
    )


def _secretsmanager_store(url: str, settings: Settings) -> TokenStore:
    name = url[len("secretsmanager://") :]
    if not _SECRET_NAME.fullmatch(name):
        raise UsageError(
            "a Secrets Manager store URL is secretsmanager://NAME, the name made of letters, "
            f"digits and /_+=.@- (at most 512), not {url!r}"
        )
    from .secretsmanager import SecretsManagerStore
    from .ssm import check_parameter_name

    # Its view is an SSM parameter: a name SSM refuses is refused here, before a login spends
    # Schwab's code on a store whose every run would then fail at the view.
    check_parameter_name(
        ssm_view_name(name),
        f"the access view of secretsmanager://{name} is that parameter: choose a secret name "
        "that does not begin with aws or ssm",
    )
    return SecretsManagerStore(
        name, url=url, kms_key_id=settings.kms_key_id, region=settings.region
    )


#: The AWS stores by the prefix of their URL (a file store needs no settings).
_AWS_STORES: dict[str, Callable[[str, Settings], TokenStore]] = {
    "s3://": _s3_store,
    "secretsmanager://": _secretsmanager_store,
}


def _unknown_scheme_error(url: str, scheme: str) -> UsageError:
    hint = {"s3": "s3://BUCKET/KEY", "secretsmanager": "secretsmanager://NAME"}.get(scheme.lower())
    if hint:
        return UsageError(
            f"{url!r} is not a store URL: write it as {hint} (lowercase, two slashes)"
        )
    return UsageError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use {FORMS} "
        "(a file whose name has a colon: ./NAME or file:NAME)"
    )


def view_name(name: str) -> str:
    """The name of a file's or S3 key's access view: ``tokens.json`` -> ``tokens.access.json``."""
    return name.removesuffix(".json") + ".access.json"


SSM_VIEW = "ssm:"
_SSM_UNSAFE = re.compile(r"[+=@]")


def ssm_view_name(secret_name: str) -> str:
    """The name of the SSM parameter that holds the view of ``secretsmanager://secret_name``."""
    return "/" + _SSM_UNSAFE.sub("_", secret_name).lstrip("/") + ".access"


def is_view_url(url: str) -> bool:
    """Whether ``url`` names an access view rather than a token store (by the module's rules).

    Never raises.
    """
    url = url.strip()
    return url.startswith(SSM_VIEW) or url.endswith(".access.json")


def document_url(view_url: str) -> str:
    """The URL of the token store whose access view ``view_url`` is, for messages.

    By the module's rules; for a Secrets Manager store's ``ssm:/NAME.access``, the name as
    written (``+``, ``=`` and ``@`` became ``_`` in it), so the stack's StoreUrl output is
    named too.
    """
    view_url = view_url.strip()
    if view_url.startswith(SSM_VIEW):
        name = view_url.removeprefix(SSM_VIEW).strip("/").removesuffix(".access")
        return f"secretsmanager://{name} (the stack's StoreUrl output)"
    return view_url.removesuffix(".access.json") + ".json"


def access_url(url: str, settings: Settings | None = None) -> str:
    """The URL of the access view of the store at ``url`` (see the module's rules).

    Raises what ``store_from_url`` raises.
    """
    store = store_from_url(url, settings or Settings())
    return store.view.url


def source_from_url(url: str, settings: Settings | None = None) -> TokenStore | View:
    """What a reader reads: a token store (any store URL) or an access view.

    A view is named by a store's view URL, or ``ssm:/NAME`` for a Secrets Manager store's.
    Raises ``UsageError`` as ``store_from_url`` does.
    """
    if isinstance(url, str) and url.strip().startswith(SSM_VIEW):
        from .ssm import SsmView

        view: View = SsmView.from_url(url.strip(), settings or Settings.from_env())
        return view
    if isinstance(url, str) and is_view_url(url):
        # A file or S3 view: opened through the store it belongs to (tokens.json for
        # tokens.access.json), whose messages then name the store to refresh or log in to.
        return store_from_url(document_url(url), settings).view
    return store_from_url(url, settings)


__all__ = [
    "DEFAULT_STORE_URL",
    "RawDocument",
    "Stored",
    "TokenStore",
    "View",
    "access_url",
    "document_url",
    "is_view_url",
    "source_from_url",
    "store_from_url",
]
