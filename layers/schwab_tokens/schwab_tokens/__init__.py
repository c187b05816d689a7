"""schwab-tokens: keep a Charles Schwab OAuth token fresh, and read it from anywhere.

Names are loaded on first use so ``import schwab_tokens`` stays cheap on a Lambda cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "TokenReader": "reader",
    "Token": "token",
    "Settings": "settings",
    "store_from_url": "stores",
    "TokenStore": "stores",
    "Outcome": "errors",
    "ExitCode": "errors",
    "SchwabTokensError": "errors",
    "LoginRequired": "errors",
    "TemporaryFailure": "errors",
    "ConfigurationError": "errors",
}

if TYPE_CHECKING:
    from .errors import (
        ConfigurationError,
        ExitCode,
        LoginRequired,
        Outcome,
        SchwabTokensError,
        TemporaryFailure,
    )
    from .reader import TokenReader
    from .settings import Settings
    from .stores import TokenStore, store_from_url
    from .token import Token


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'schwab_tokens' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)


__all__ = [
    "ConfigurationError",
    "ExitCode",
    "LoginRequired",
    "Outcome",
    "SchwabTokensError",
    "Settings",
    "TemporaryFailure",
    "Token",
    "TokenReader",
    "TokenStore",
    "store_from_url",
]
