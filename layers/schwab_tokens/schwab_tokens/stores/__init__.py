"""Where tokens live: ``store_from_url`` picks the backend from the URL's scheme.

Backends are imported only when asked for, so a file-store user never loads boto3. A URL that
looks like a scheme but is not one of ours (``s3:/b/k``, ``S3://``, ``xyz://``) is a usage error
naming the right form, never a file of that odd name.
"""

from __future__ import annotations

import re

from ..errors import UsageError
from ..settings import Settings
from .base import RawDocument, Stored, TokenStore

DEFAULT_STORE_URL = "tokens.json"
FORMS = "a path, file:PATH, s3://BUCKET/KEY or secretsmanager://NAME"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")


def store_from_url(url: str, settings: Settings | None = None) -> TokenStore:
    """``PATH`` or ``file:PATH``, ``s3://BUCKET/KEY`` or ``secretsmanager://NAME``.

    ``settings`` (default: ``Settings.from_env()``) supply what writers need: the KMS key for
    new objects and secrets, and the writer's name for S3 metadata.
    """
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"the store URL is empty: give {FORMS}")
    url = url.strip()
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1) == "file":
        from .file import FileStore

        path = url.removeprefix("file:")
        if not path:
            raise UsageError("file: needs a path, as in file:tokens.json")
        return FileStore(path, url=url)
    settings = Settings.from_env() if settings is None else settings
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or not key:
            raise UsageError(
                f"an S3 store URL is s3://BUCKET/KEY with a bucket name of 3-63 lowercase "
                f"letters, digits, dots or hyphens, not {url!r}"
            )
        from .s3 import S3Store

        return S3Store(bucket, key, url=url, kms_key_id=settings.kms_key_id, writer=settings.writer)
    if url.startswith("secretsmanager://"):
        name = url[len("secretsmanager://") :]
        if not _SECRET_NAME.fullmatch(name):
            raise UsageError(
                "a Secrets Manager store URL is secretsmanager://NAME, the name made of letters, "
                f"digits and /_+=.@- (at most 512), not {url!r}"
            )
        from .secretsmanager import SecretsManagerStore

        return SecretsManagerStore(name, url=url, kms_key_id=settings.kms_key_id)
    hint = {"s3": "s3://BUCKET/KEY", "secretsmanager": "secretsmanager://NAME"}.get(
        scheme.group(1).lower()
    )
    if hint:
        raise UsageError(f"{url!r} is not a store URL: write it as {hint} (lowercase, two slashes)")
    raise UsageError(
        f"unknown store URL scheme {scheme.group(1)!r} in {url!r}: use {FORMS} "
        "(a file whose name has a colon: ./NAME or file:NAME)"
    )


__all__ = ["DEFAULT_STORE_URL", "RawDocument", "Stored", "TokenStore", "store_from_url"]
