"""How times and durations read in messages, the CLI and ``doctor`` (UTC, always)."""

from __future__ import annotations

import time


def when(epoch: float) -> str:
    """An epoch time as ``2026-12-02 06:05:25 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def minute(epoch: float) -> str:
    """An epoch time as ``2026-12-02 06:05 UTC``: in a sentence, the seconds are noise."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def duration(seconds: float) -> str:
    """Seconds as ``6 days 23 hours``, ``2 h 5 min`` or ``4 min 30 s`` (negative: zero)."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} days {hours} hours"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"
