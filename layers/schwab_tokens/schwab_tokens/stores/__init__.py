"""Where tokens live: ``store_from_url`` picks the backend from the URL's scheme.

Backends are imported only when asked for, so a file-store user never loads boto3.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import Stored, TokenStore

DEFAULT_STORE_URL = "tokens.json"


def store_from_url(url: str) -> TokenStore:
    """``PATH`` or ``file:PATH``, ``s3://BUCKET/KEY`` or ``secretsmanager://NAME``."""
    if not url or not url.strip():
        raise UsageError("the store URL is empty")
    url = url.strip()
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://") :].partition("/")
        if not bucket or not key:
            raise UsageError(f"an S3 store URL is s3://BUCKET/KEY, not {url!r}")
        from .s3 import S3Store

        return S3Store(bucket, key, url=url)
    if url.startswith("secretsmanager://"):
        name = url[len("secretsmanager://") :]
        if not name:
            raise UsageError(f"a Secrets Manager store URL is secretsmanager://NAME, not {url!r}")
        from .secretsmanager import SecretsManagerStore

        return SecretsManagerStore(name, url=url)
    if "://" in url:
        raise UsageError(
            f"unknown store URL {url!r}: use a path, file:PATH, s3://BUCKET/KEY or "
            "secretsmanager://NAME"
        )
    from .file import FileStore

    path = url[len("file:") :] if url.startswith("file:") else url
    if not path:
        raise UsageError("file: needs a path, as in file:tokens.json")
    return FileStore(path, url=url)


__all__ = ["DEFAULT_STORE_URL", "Stored", "TokenStore", "store_from_url"]
