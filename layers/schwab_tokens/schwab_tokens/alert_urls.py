"""Alerts through Apprise: a notice sent to the user's chat and push URLs (``tgram://``,
``discord://``, ``slack://``, ``ntfy://``, ``pover://``, ``mailto://``, ``json://``...), and
where those URLs are kept.

Apprise speaks to about a hundred services from one URL syntax; this module adds what a
notifier needs around it (docs/alerts.md):

- one ``apprise.Apprise`` per URL, so that one bad or slow URL neither hides nor stops another,
  each with bounded timeouts, and a result per URL;
- the URLs carry secrets (bot tokens, webhook keys, passwords), so nothing here ever shows one:
  a URL is shown as its service's name and, for a plain server, its host (``describe``); what
  Apprise logs while it sends is kept from the process's log and only a scrubbed last line
  is reported;
- the list of URLs lives in an SSM SecureString (``ssm:/<stack>/alerts``, written by the CLI:
  CloudFormation cannot create one) or in a private file beside a local token file
  (``tokens.json.alerts``), as a JSON list of strings.

Apprise is imported on first use (about 0.1 s, 14 MB): never by a consumer or the refresher.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import aws, strictjson
from .errors import ConfigurationError, SchwabTokensError, UsageError

if TYPE_CHECKING:
    from .notify import Notice

#: A user has a few; a list longer than this is not a list of alerts.
MAX_URLS = 20
MAX_URL_LENGTH = 2000
#: Per request to a service (Apprise's own defaults are 4 s; an SMTP server gets 15).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: After this long, the URLs not yet tried are reported as not tried rather than sent late
#: (the notifier's Lambda timeout is sized above it: docs/alerts.md).
SEND_BUDGET_SECONDS = 40.0
#: Services whose URL's host is a server's address, not a key: the only hosts ever shown.
_HOST_SHOWN = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"})
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]{0,31})://")
_ANY_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{0,31})://\S*")
FILE_SUFFIX = ".alerts"
SSM_PREFIX = "ssm:"
#: Short: ``alerts add`` followed by ``alerts test`` must see the new URL in a warm notifier.
CACHE_SECONDS = 60

_send_lock = threading.Lock()


@dataclass(frozen=True)
class Delivery:
    """What one URL answered: ``ok``, and ``detail`` ("delivered", or why not).

    The reason is Apprise's last word, with every part of the URL taken out.
    """

    index: int
    service: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The delivery as JSON-ready fields (no part of the URL)."""
        return {"index": self.index, "service": self.service, "ok": self.ok, "detail": self.detail}


# -- URLs ----------------------------------------------------------------------------------------
def scheme_of(url: str) -> str | None:
    """The URL's scheme in lower case (``tgram``), or None if it has none."""
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else None


def describe(url: str) -> str:
    """The URL as it may be shown: the service's name, and the host for a plain server.

    For example ``JSON (127.0.0.1)``, ``E-Mail (gmail.com)``, ``Telegram``; never a key or a
    path. Raises ``ConfigurationError`` if Apprise is not installed.
    """
    plugin = _instantiate(url)
    if plugin is None:
        scheme = scheme_of(url)
        return f"{scheme}:// (not usable)" if scheme else "not a URL"
    name = str(getattr(plugin, "service_name", None) or scheme_of(url))
    host = getattr(plugin, "host", None)
    if scheme_of(url) in _HOST_SHOWN and isinstance(host, str) and _is_server(host):
        return f"{name} ({host})"
    return name


def fingerprint(url: str) -> str:
    """A short fingerprint that tells two URLs apart without revealing either."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def check(url: str) -> str:
    """``url``, stripped, if Apprise can use it.

    Raises ``UsageError`` naming the scheme and why, never the rest of the URL, and
    ``ConfigurationError`` if Apprise is not installed.
    """
    url = url.strip()
    scheme = scheme_of(url)
    if not url or scheme is None:
        raise UsageError(
            "an alert URL looks like tgram://BOT_TOKEN/CHAT_ID or ntfy://TOPIC (see "
            "docs/alerts.md); this is not one"
        )
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise UsageError(f"the {scheme}:// URL is too long or holds spaces: paste it again")
    captured: list[str] = []
    with _apprise_logs(captured):
        plugin = _instantiate(url)
    if plugin is None:
        reason = _scrub(captured[-1], url) if captured else "Apprise does not know it"
        raise UsageError(
            f"Apprise cannot use this {scheme}:// URL ({reason}): check it against "
            "docs/alerts.md and Apprise's page for the service"
        )
    return url


def _instantiate(url: str) -> Any:
    apprise = _apprise()
    with _apprise_logs([]):
        return apprise.Apprise.instantiate(url, asset=_asset())


def _is_server(host: str) -> bool:
    return host == "localhost" or "." in host or ":" in host


# -- sending -------------------------------------------------------------------------------------
def send(
    urls: Sequence[str],
    notice: Notice,
    *,
    budget: float = SEND_BUDGET_SECONDS,
) -> list[Delivery]:
    """Send ``notice`` to every URL, one by one; return what each answered, in order.

    The title is the notice's subject, the body ``Notice.chat``. A URL that cannot be parsed,
    refused the message or timed out is a ``Delivery`` with ``ok`` False, never an exception;
    only a missing Apprise raises (``ConfigurationError``).
    """
    return send_text(urls, notice.subject, notice.chat(), budget=budget)


def send_text(
    urls: Sequence[str], title: str, body: str, *, budget: float = SEND_BUDGET_SECONDS
) -> list[Delivery]:
    """``send`` for a title and a body of any origin (a CloudWatch alarm's)."""
    apprise = _apprise()
    deadline = time.monotonic() + budget
    results = []
    # One send at a time per process: Apprise's log is one logger, read per URL.
    with _send_lock:
        for index, url in enumerate(urls, start=1):
            service = describe(url)
            if time.monotonic() > deadline:
                results.append(Delivery(index, service, False, "not tried: out of time"))
                continue
            captured: list[str] = []
            with _apprise_logs(captured):
                ok = _send_one(apprise, url, title, body)
            if ok:
                detail = "delivered"
            elif ok is None:
                detail = "Apprise cannot use this URL (`schwab-tokens alerts list` shows it)"
            else:
                detail = _scrub(captured[-1], url) if captured else "not delivered"
            results.append(Delivery(index, service, bool(ok), detail))
    return results


def _send_one(apprise: Any, url: str, title: str, body: str) -> bool | None:
    """True if the service took it, False if not, None if the URL is not usable."""
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return None
    # Bounded whatever the URL asks (cto=, rto=): a notifier must finish in its time.
    for name, bound in (
        ("socket_connect_timeout", CONNECT_TIMEOUT),
        ("socket_read_timeout", READ_TIMEOUT),
    ):
        current = getattr(plugin, name, None)
        if isinstance(current, int | float) and current > 0:
            setattr(plugin, name, min(float(current), bound))
    one = apprise.Apprise(asset=_asset())
    one.add(plugin)
    try:
        return bool(one.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT))
    except Exception as exc:  # a plugin's bug must not stop the next URL
        logging.getLogger("apprise").warning("the service failed (%s)", type(exc).__name__)
        return False


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise ConfigurationError(
            "alerts need Apprise: pip install 'schwab-tokens[alerts]' (or pip install apprise)"
        ) from None
    return apprise


_assets: list[Any] = []


def _asset() -> Any:
    if not _assets:
        apprise = _apprise()
        _assets.append(
            apprise.AppriseAsset(
                app_id="schwab-tokens",
                app_desc="schwab-tokens alerts",
                secure_logging=True,
            )
        )
    return _assets[0]


class _Capture(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.into.append(record.getMessage())


@contextlib.contextmanager
def _apprise_logs(into: list[str]) -> Iterator[None]:
    """Apprise's warnings while it works go to ``into``, not to the process's log: they can
    name a chat, a topic or a host, and the log must name the service only."""
    logger = logging.getLogger("apprise")
    handler = _Capture(into)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _scrub(text: str, url: str) -> str:
    """Apprise's line with every piece of the URL (key, token, chat, topic, password) taken
    out, on one short line."""
    shown = {scheme_of(url) or ""}
    plugin_host = _host_shown(url)
    if plugin_host:
        shown.add(plugin_host)
    pieces = set()
    for piece in re.split(r"[/:@?&=#,;+ ]+", url):
        for variant in (piece, unquote(piece)):
            if len(variant) >= 3 and variant not in shown:
                pieces.add(variant)
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "…")
    # Apprise's own masking keeps a first and last character: keep none.
    text = _ANY_URL.sub(lambda m: f"{m.group(1)}://…", text)
    flat = " ".join(text.split())
    return flat if len(flat) <= 200 else flat[:197] + "..."


def _host_shown(url: str) -> str | None:
    described = describe(url)
    if described.endswith(")") and "(" in described:
        return described[described.rindex("(") + 1 : -1]
    return None


# -- where the URLs are kept -------------------------------------------------------------------
def parameter_name(stack: str) -> str:
    """The stack's SSM SecureString of alert URLs (the notifier reads it)."""
    return f"/{stack}/alerts"


def stack_of(parameter: str) -> str:
    """The stack whose alerts parameter is ``parameter`` (``parameter_name``'s inverse)."""
    return parameter.strip("/").split("/")[0]


def file_beside(store_path: str | os.PathLike[str]) -> Path:
    """The local alerts file of a token file: ``tokens.json`` -> ``tokens.json.alerts``."""
    path = Path(store_path)
    return path.with_name(path.name + FILE_SUFFIX)


def parse_urls(text: str, where: str) -> list[str]:
    """The stored list of URLs: a JSON list of at most ``MAX_URLS`` strings.

    Raises ``ConfigurationError`` for anything else, naming the place and the fix, never the
    content.
    """
    try:
        data = strictjson.loads(text)
    except strictjson.NotJSON as exc:
        raise ConfigurationError(
            f"the alert URLs in {where} are not JSON ({exc.reason}): {_REWRITE}"
        ) from None
    if (
        not isinstance(data, list)
        or len(data) > MAX_URLS
        or not all(isinstance(u, str) and 0 < len(u) <= MAX_URL_LENGTH for u in data)
    ):
        raise ConfigurationError(
            f"the alert URLs in {where} must be a JSON list of at most {MAX_URLS} URLs: {_REWRITE}"
        )
    return list(data)


_REWRITE = "remove it and add the URLs again with `schwab-tokens alerts add`"


def dump_urls(urls: Sequence[str]) -> str:
    """The stored form of a list of URLs (JSON), as ``parse_urls`` reads it."""
    return json.dumps(list(urls))


def read_urls(where: str, *, cached: bool = False, region: str | None = None) -> list[str] | None:
    """The URLs kept at ``where`` (``ssm:/NAME`` of ``region``, or a file path), or None.

    None means nothing is kept there yet. ``cached`` reads through powertools' cache
    (``CACHE_SECONDS``), for the notifier. Raises ``ConfigurationError`` for an unreadable or
    malformed list, and ``TemporaryFailure`` or ``AccessDenied`` when AWS fails.
    """
    if where.startswith(SSM_PREFIX):
        text = _read_parameter(where.removeprefix(SSM_PREFIX), cached, region)
    else:
        text = _read_file(Path(where))
    return None if text is None else parse_urls(text, _label(where))


def write_urls(where: str, urls: Sequence[str], region: str | None = None) -> None:
    """Replace the URLs kept at ``where``: an SSM SecureString (of ``region``), or a 0600 file.

    Raises ``UsageError`` for more than ``MAX_URLS`` URLs, and ``TemporaryFailure``,
    ``AccessDenied`` or ``ConfigurationError`` when the write fails.
    """
    if len(urls) > MAX_URLS:
        raise UsageError(f"at most {MAX_URLS} alert URLs: remove one first")
    text = dump_urls(urls)
    if where.startswith(SSM_PREFIX):
        from .parameters import put_secure_string

        put_secure_string(
            where.removeprefix(SSM_PREFIX),
            text,
            "schwab-tokens alert URLs (Apprise): written by schwab-tokens alerts",
            region,
        )
        return
    from .stores.file import write_private

    write_private(Path(where), text.encode())


def _label(where: str) -> str:
    return f"parameter {where.removeprefix(SSM_PREFIX)}" if where.startswith(SSM_PREFIX) else where


def _read_file(path: Path) -> str | None:
    from .stores.file import refuse_symlink

    refuse_symlink(path)
    try:
        with path.open("rb") as found:
            raw = found.read(MAX_URLS * (MAX_URL_LENGTH + 8) + 16)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path} ({exc.strerror})") from None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not text: {_REWRITE}") from None


def _read_parameter(name: str, cached: bool, region: str | None) -> str | None:
    what = f"parameter {name}"
    try:
        if cached:
            from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

            from .parameters import provider

            try:
                value = provider("ssm", region).get(name, max_age=CACHE_SECONDS, decrypt=True)
            except GetParameterError as exc:
                cause = exc.__cause__ or exc.__context__
                if cause is not None and isinstance(cause, aws.boto_errors()):
                    raise cause from None
                raise SchwabTokensError(f"cannot read {what}") from exc
        else:
            answer = aws.client("ssm", region).get_parameter(Name=name, WithDecryption=True)
            value = answer.get("Parameter", {}).get("Value")
    except aws.boto_errors() as exc:
        if aws.error_code(exc) == "ParameterNotFound":
            return None
        raise aws.translate(exc, what=what, action="ssm:GetParameter") from exc
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} holds no text: {_REWRITE}")
    return value


__all__ = [
    "Delivery",
    "check",
    "describe",
    "file_beside",
    "parameter_name",
    "read_urls",
    "send",
    "send_text",
    "write_urls",
]
