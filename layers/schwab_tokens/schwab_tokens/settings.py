"""Numbers read from the environment, with one clear error for a value that is not a number."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import UsageError


def env_number(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if env is None else env).get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number (of seconds), not {raw!r}") from None
