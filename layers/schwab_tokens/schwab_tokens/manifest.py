"""Which tokens to keep fresh: one store URL, a list of them, or a manifest.

- ``TOKEN_STORE_URL``: one token.
- ``TOKEN_STORE_URLS``: comma-separated, each ``URL`` or ``name=URL``.
- ``TOKEN_MANIFEST``: inline JSON or a path to a JSON file, either a list or ``{"tokens": [...]}``
  of ``{"name": .., "store": .., "credentials_secret": ..}`` (only ``store`` is required; tokens
  from separate Schwab apps each name their own credentials). A file store's relative path is
  relative to the manifest file's folder.

Names label every log line and metric; they default to the store's last path segment. Anything
else in a manifest (an unknown key, a number where a name goes) is refused, naming the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import strictjson
from .errors import UsageError
from .settings import Settings
from .stores.file import user_path

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENTRY_KEYS = {"name", "store", "credentials_secret"}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Target:
    """One token to keep fresh: a name for logs and metrics, its store, its app credentials."""

    name: str
    url: str
    credentials_secret: str | None = None


def targets_from_settings(settings: Settings) -> list[Target]:
    """The tokens the settings name: the manifest, else the URL list, else the one URL.

    Raises ``UsageError`` when they name none, or an unusable manifest or list.
    """
    if settings.manifest:
        return load_manifest(settings.manifest)
    many = [item.strip() for item in settings.store_urls.split(",") if item.strip()]
    entries = many or ([settings.store_url] if settings.store_url else [])
    if not entries:
        raise UsageError(
            "set TOKEN_STORE_URL (or TOKEN_STORE_URLS, or TOKEN_MANIFEST) to the token store"
        )
    targets = []
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or "://" in name:
            name, url = default_name(entry), entry
        targets.append(Target(name.strip(), url.strip()))
    return _checked(targets)


def load_manifest(source: str) -> list[Target]:
    """The tokens of a manifest given inline (JSON text) or as a path to a JSON file.

    Raises ``UsageError`` naming what is wrong with it.
    """
    text, folder = source, None
    if not source.lstrip().startswith(("{", "[")):
        path = user_path(source)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read the manifest {source}: {reason}") from None
        folder = path.parent
    try:
        data: Any = strictjson.loads(text)
    except strictjson.NotJSON as exc:
        raise UsageError(f"the token manifest is not valid JSON ({exc.reason})") from None
    if isinstance(data, dict):
        extra = set(data) - {"tokens"}
        if extra:
            raise UsageError(f'the manifest has unknown keys {sorted(extra)}; only "tokens"')
        data = data.get("tokens")
    if not isinstance(data, list) or not data:
        raise UsageError('the manifest must be a non-empty list of tokens or {"tokens": [...]}')
    return _checked([_entry(index, entry, folder) for index, entry in enumerate(data)])


def _entry(index: int, entry: Any, folder: Path | None) -> Target:
    where = f"manifest entry {index}"
    if isinstance(entry, str):
        entry = {"store": entry}
    if not isinstance(entry, dict):
        raise UsageError(f'{where} must be a store URL or an object with a "store" URL')
    extra = set(entry) - _ENTRY_KEYS
    if extra:
        raise UsageError(
            f"{where} has unknown keys {sorted(extra)}; allowed: {sorted(_ENTRY_KEYS)}"
        )
    for key in _ENTRY_KEYS:
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise UsageError(f"{where}: {key} must be a non-empty string")
    store = entry.get("store")
    if store is None:
        raise UsageError(f'{where} needs a "store" URL')
    store = _relative_to(store.strip(), folder)
    name = entry.get("name") or default_name(store)
    return Target(name.strip(), store, entry.get("credentials_secret"))


def _relative_to(url: str, folder: Path | None) -> str:
    """A file store's relative path, resolved against the manifest file's folder."""
    if folder is None:
        return url
    scheme = _URL_SCHEME.match(url)
    if scheme is not None and not url.startswith("file:"):
        return url
    path = url.removeprefix("file:")
    if not path or user_path(path).is_absolute():
        return url
    return str(folder / path)


def default_name(url: str) -> str:
    """A token's name from its store URL: the last part, without ``.json`` (or ``default``)."""
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".json") or "default"


def _checked(targets: list[Target]) -> list[Target]:
    names = [t.name for t in targets]
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        raise UsageError(f"token names may use letters, digits, . _ - (1-64 chars): {bad[:3]}")
    if len(set(names)) != len(names):
        raise UsageError("token names must be unique: name them with name=url or the manifest")
    return targets
