"""What the notifier Lambda does with an SNS event: forward each message on the stack's topic to
the user's alert URLs (Telegram, Discord, Slack, ntfy, Pushover, e-mail...: docs/alerts.md).

The handler is one call to ``handle``. The topic carries two kinds of messages:

- the refresher's notices: the e-mail as the message, and the chat's parts in the message
  attribute ``notice`` (``notify.Notice.to_json``), which becomes "subject, one line, the link";
- CloudWatch alarms (their message is the alarm as JSON), forwarded as
  "ALARM: <name>" and the first line of the alarm's reason.

Anything else on the topic (a message someone in the account published) is forwarded as its
subject and first line. The event is outside input: a record that is not an SNS notification,
or has odd fields, is skipped and said in the log; nothing from it is trusted beyond the text
forwarded.

The URLs come from an SSM SecureString (``SCHWAB_TOKENS_ALERTS_PARAMETER``) that the CLI
writes. One failing URL does not stop the others, and each failure is logged with the
service's name, never the URL. The handler raises only when a message reached no URL at all:
then Lambda's retries (the asynchronous invocation SNS makes is retried twice) can still
deliver it, its Errors metric counts it, and a URL that did take the message never gets it
twice, since a partial success is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import alert_urls, strictjson
from ..errors import ConfigurationError, SchwabTokensError
from ..notify import NOTICE_ATTRIBUTE, Notice
from ..settings import Settings
from .observability import logger

#: SNS's largest message (256 KiB): a longer one is not from SNS.
MAX_MESSAGE = 262_144
#: How much of a message that is not ours is read for its first line.
_HEAD = 2000
_LINE = 300


class NothingDelivered(SchwabTokensError):
    """Raised after reporting, when a message reached none of the alert URLs."""


@dataclass(frozen=True)
class Text:
    """One chat message: ``title`` and ``body``, and what it came from (for the log)."""

    title: str
    body: str
    source: str
    #: The CloudWatch alarm's full name, for a message about one.
    alarm: str | None = None


#: The notifier's errors alarm is ``<stack>-NotifierErrors`` (template.yaml).
OWN_ALARM = "NotifierErrors"


def handle(event: Any, settings: Settings | None = None) -> dict[str, Any]:
    """Forward every notification in ``event`` to every alert URL.

    Returns, per record, what each URL answered (none while no URL was added: a warning says
    how). Raises ``NothingDelivered`` if a message reached no URL, and ``ConfigurationError``
    if the alert URLs cannot be read.
    """
    settings = Settings.from_env() if settings is None else settings
    texts = []
    for index, record in enumerate(_records(event), start=1):
        text = from_record(record)
        if text is None:
            logger.warning(f"record {index} is not an SNS notification: skipped")
            continue
        if text.alarm == f"{_stack(settings)}-{OWN_ALARM}":
            # Its own alarm goes by e-mail only: sent to URLs that fail, it would fail the
            # notifier again and keep that alarm going.
            logger.info(f"record {index} is the notifier's own alarm: left to the e-mail")
            continue
        texts.append(text)
    if not texts:
        return {"records": []}
    urls = _urls(settings)
    if not urls:
        # Deployed before `alerts add` (the docs' order): the alarms' first moves to OK come
        # here. Not an error: one would retry and fire the notifier's own alarm for nothing.
        logger.warning(
            f"{len(texts)} message(s) not forwarded: {_no_urls(settings)}",
            extra={"forwarded": 0},
        )
        return {"records": []}
    summary = []
    undelivered = []
    for text in texts:
        results = alert_urls.send_text(urls, text.title, text.body)
        for result in results:
            if not result.ok:
                logger.error(
                    f"alert to {result.service} (URL {result.index}) failed: {result.detail}",
                    extra={"alert_service": result.service, "alert_url": result.index},
                )
        delivered = sum(r.ok for r in results)
        logger.info(
            f"{text.source}: delivered to {delivered} of {len(results)} alert URLs",
            extra={"source": text.source, "delivered": delivered, "urls": len(results)},
        )
        summary.append({"source": text.source, "results": [r.to_dict() for r in results]})
        if not delivered:
            undelivered.append(text.source)
    if undelivered:
        raise NothingDelivered(
            f"{', '.join(undelivered)} reached none of the {len(urls)} alert URLs: see the "
            "errors above; `schwab-tokens alerts test --stack NAME` tries each from your computer"
        )
    return {"records": summary}


def _records(event: Any) -> list[Any]:
    if not isinstance(event, Mapping):
        logger.warning("the event is not a JSON object: nothing to forward")
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        logger.warning("the event has no Records: nothing to forward")
        return []
    return records


def from_record(record: Any) -> Text | None:
    """The chat message for one SNS record, or None if it is not an SNS notification.

    Not one: not from ``aws:sns``, no text message, or longer than SNS allows.
    """
    if not isinstance(record, Mapping):
        return None
    source = record.get("EventSource") or record.get("eventSource")
    sns = record.get("Sns")
    if source != "aws:sns" or not isinstance(sns, Mapping):
        return None
    message = sns.get("Message")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        return None
    subject = sns.get("Subject")
    subject = subject if isinstance(subject, str) else None
    notice = _notice(sns.get("MessageAttributes"))
    if notice is not None:
        return Text(notice.subject, notice.chat(), f"notice {notice.kind}")
    alarm = _alarm(message)
    if alarm is not None:
        return alarm
    head = _first_line(message[:_HEAD])
    return Text(_first_line(subject or "") or "schwab-tokens", head or "(no text)", "message")


def _notice(attributes: Any) -> Notice | None:
    if not isinstance(attributes, Mapping):
        return None
    attribute = attributes.get(NOTICE_ATTRIBUTE)
    if not isinstance(attribute, Mapping):
        return None
    value = attribute.get("Value")
    if attribute.get("Type") != "String" or not isinstance(value, str):
        return None
    try:
        return Notice.from_json(value)
    except ValueError as exc:
        logger.warning(f"a notice attribute that is not ours ({exc}): forwarded as text")
        return None


def _alarm(message: str) -> Text | None:
    """A CloudWatch alarm's state change, shortened: "ALARM: <name>", the reason's first line."""
    if not message.lstrip().startswith("{"):
        return None
    try:
        data = strictjson.loads(message)
    except strictjson.NotJSON:
        return None
    if not isinstance(data, dict):
        return None
    name, state = data.get("AlarmName"), data.get("NewStateValue")
    reason = data.get("NewStateReason")
    if not isinstance(name, str) or not isinstance(state, str):
        return None
    title = _first_line(f"{state}: {name}")
    body = _first_line(reason) if isinstance(reason, str) else ""
    return Text(title, body or title, f"alarm {_first_line(name)[:80]}", alarm=name)


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= _LINE else line[: _LINE - 3] + "..."


def _urls(settings: Settings) -> list[str]:
    name = settings.alerts_parameter
    if not name or not name.startswith("/"):
        raise ConfigurationError(
            "the notifier has no SCHWAB_TOKENS_ALERTS_PARAMETER (an SSM parameter /NAME): "
            "deploy the stack with Alerts=Enabled"
        )
    return (
        alert_urls.read_urls(alert_urls.SSM_PREFIX + name, cached=True, region=settings.region)
        or []
    )


def _stack(settings: Settings) -> str:
    """The stack's name, from its alerts parameter ``/<stack>/alerts``."""
    return alert_urls.stack_of(settings.alerts_parameter or alert_urls.parameter_name("<stack>"))


def _no_urls(settings: Settings) -> str:
    name = settings.alerts_parameter or alert_urls.parameter_name("<stack>")
    stack = _stack(settings)
    region = f" --region {settings.region}" if settings.region else ""
    return (
        f"no alert URLs in parameter {name} yet: add one with "
        f"`schwab-tokens alerts add --stack {stack}{region}`"
    )


__all__ = ["NothingDelivered", "Text", "from_record", "handle"]
