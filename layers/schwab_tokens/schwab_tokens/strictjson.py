"""JSON as RFC 8259 defines it, for every document that comes from outside.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e400`` (which becomes ``inf``); none of
them is JSON, and each would make a token or a number we compute unusable. ``loads`` refuses
them, and turns every way a text can fail to parse into one ``NotJSON`` whose ``reason`` says
where or what, never quoting the text (it may hold a token).
"""

from __future__ import annotations

import json
import math
from typing import Any


class NotJSON(ValueError):
    """The text is not JSON; ``reason`` is safe to show (a position or a kind, no content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJSON("a number is out of range")
    return value


def dumps(value: Any) -> bytes:
    """Compact, key-sorted JSON bytes; ``NaN`` and infinities are refused (``ValueError``)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def loads(raw: bytes | str) -> Any:
    """Parse ``raw`` as strict JSON, or raise ``NotJSON``."""
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except NotJSON:
        raise
    except json.JSONDecodeError as exc:
        raise NotJSON(f"line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise NotJSON("not UTF-8 text") from None
    except RecursionError:
        raise NotJSON("nested too deeply") from None
    except ValueError:  # e.g. an integer longer than int() accepts
        raise NotJSON("a value is too large") from None
