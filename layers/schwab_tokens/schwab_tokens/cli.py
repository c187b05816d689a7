"""The ``schwab-tokens`` console script; the commands live in ``commands/``, one per module."""

from __future__ import annotations

import sys

from .commands import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
