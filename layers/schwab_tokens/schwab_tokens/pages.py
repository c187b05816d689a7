"""The small HTML pages a browser sees: the CLI listener's and the hosted login's.

Mobile-first (a phone is where the hosted login is used), no script, no external resource, and
every piece of text escaped. The headers keep the page out of caches and its address (which may
carry Schwab's code) out of ``Referer``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
}


def render(title: str, paragraphs: Sequence[str], *, code: str | None = None) -> str:
    """A page with a title, some paragraphs and optionally one block of text to copy."""
    body = "".join(f"<p>{html.escape(text)}</p>" for text in paragraphs)
    if code is not None:
        body += (
            "<pre style='white-space:pre-wrap;word-break:break-all;background:#f3f3f3;"
            f"padding:.8em;border-radius:6px'>{html.escape(code)}</pre>"
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>schwab-tokens: {html.escape(title)}</title></head>"
        "<body style='font-family:system-ui,sans-serif;margin:1.5em;max-width:40em;"
        "line-height:1.45'>"
        f"<h1 style='font-size:1.4em'>{html.escape(title)}</h1>{body}</body></html>"
    )
