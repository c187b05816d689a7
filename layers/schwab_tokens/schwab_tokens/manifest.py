"""Which tokens to keep fresh: one store URL, a list of them, or a manifest.

- ``TOKEN_STORE_URL``: one token.
- ``TOKEN_STORE_URLS``: comma-separated, each ``URL`` or ``name=URL``.
- ``TOKEN_MANIFEST``: inline JSON or a path to a JSON file, either a list or ``{"tokens": [...]}``
  of ``{"name": .., "store": .., "credentials_secret": ..}`` (the secret is optional: tokens
  from separate Schwab apps each name their own).

Names label every log line and metric; they default to the store's last path segment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Target:
    """One token to keep fresh: a name for logs and metrics, its store, its app credentials."""

    name: str
    url: str
    credentials_secret: str | None = None


def targets_from_env(env: Mapping[str, str] | None = None) -> list[Target]:
    env = os.environ if env is None else env
    manifest = env.get("TOKEN_MANIFEST", "").strip()
    if manifest:
        return load_manifest(manifest)
    many = [item.strip() for item in env.get("TOKEN_STORE_URLS", "").split(",") if item.strip()]
    one = env.get("TOKEN_STORE_URL", "").strip()
    entries = many or ([one] if one else [])
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
    """A manifest given inline (JSON text) or as a path to a JSON file."""
    text = source
    if not source.lstrip().startswith(("{", "[")):
        try:
            text = Path(source).expanduser().read_text()
        except OSError as exc:
            raise UsageError(f"cannot read the manifest {source}: {exc.strerror}") from None
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise UsageError("the token manifest is not valid JSON") from None
    entries = data.get("tokens") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise UsageError('the manifest must be a list of tokens or {"tokens": [...]}')
    targets = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"store": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("store"), str):
            raise UsageError(f'manifest entry {index} needs a "store" URL')
        secret = entry.get("credentials_secret")
        targets.append(
            Target(
                str(entry.get("name") or default_name(entry["store"])),
                entry["store"],
                secret if isinstance(secret, str) and secret else None,
            )
        )
    return _checked(targets)


def default_name(url: str) -> str:
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
