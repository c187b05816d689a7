"""``schwab-tokens alerts``: the Apprise URLs the notices go to (Telegram, Discord, Slack, ntfy,
Pushover, e-mail...), kept for a stack or beside a local token file (docs/alerts.md).

``--stack NAME``: the stack's SSM SecureString ``/<NAME>/alerts`` (read by its notifier
function; CloudFormation cannot create a SecureString, so this command writes it). Otherwise
the local token file's ``<file>.alerts`` (mode 0600), which ``watch`` reads. The URLs carry
secrets: they are never printed (``list`` shows the service and, for a plain server, its host),
and ``add`` without a URL asks for it without showing it, which keeps it out of the shell's
history and the process list.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING

from .. import alert_urls
from ..errors import ConfigurationError, ExitCode, UsageError
from ..settings import Settings
from .common import err, out, store_url

if TYPE_CHECKING:
    from ..notify import Notice

NAME = "alerts"
HELP = (
    "send the notices to Telegram, Discord, Slack, ntfy, Pushover, e-mail... (Apprise URLs): "
    "add, list, remove, test"
)
ACTIONS = ("add", "list", "remove", "test")
#: Where the stack says whether its notifier is deployed (Alerts=Enabled).
NOTIFIER_OUTPUT = "NotifierFunctionName"
TOPIC_OUTPUT = "AlarmTopicArn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``alerts`` to its subparser."""
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="add URL, list, remove N|URL, or test (sends a test notice to each URL and, with "
        "--stack, through the stack's topic)",
    )
    parser.add_argument(
        "value",
        nargs="?",
        metavar="URL|N",
        help="add: an Apprise URL (omit it, or give -, to be asked for it without it being "
        "shown); remove: its number in `alerts list`, or the URL",
    )
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="keep the URLs for this CloudFormation stack's notifier (SSM parameter "
        "/NAME/alerts); without it, beside the local token file (--store FILE.alerts)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``alerts ACTION``; return the exit code (``ExitCode``).

    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    where = _where(args, settings)
    region = settings.region
    if args.action == "add":
        return _add(args, where, region)
    if args.action == "list":
        return _list(where, region)
    if args.action == "remove":
        return _remove(args, where, region)
    return _test(args, settings, where)


def _where(args: argparse.Namespace, settings: Settings) -> str:
    """``ssm:/<stack>/alerts`` or the local alerts file's path."""
    if args.stack:
        if args.store is not None:
            raise UsageError("give --stack NAME or --store FILE, not both")
        return alert_urls.SSM_PREFIX + alert_urls.parameter_name(_stack_name(args.stack))
    from ..stores import store_from_url
    from ..stores.file import FileStore

    url = store_url(args, settings)
    found = store_from_url(url, settings)
    if not isinstance(found, FileStore):
        raise UsageError(
            f"{url} is not a local file: a stack's alerts are kept with --stack NAME "
            "(its notifier sends them); local alerts beside a token file with --store FILE"
        )
    return str(alert_urls.file_beside(found.path))


def _stack_name(name: str) -> str:
    # CloudFormation's own rule; SSM adds that a name may not start with aws or ssm.
    if not (
        0 < len(name) <= 128
        and name[0].isalpha()
        and all(c.isalnum() or c == "-" for c in name)
        and name.isascii()
    ):
        raise UsageError(f"--stack must be a CloudFormation stack name, not {name[:40]!r}")
    return name


def _label(where: str) -> str:
    if where.startswith(alert_urls.SSM_PREFIX):
        return f"parameter {where.removeprefix(alert_urls.SSM_PREFIX)}"
    return where


def _add(args: argparse.Namespace, where: str, region: str | None) -> int:
    url = alert_urls.check(_url_from(args.value))
    # A typo in the stack's name fails here, not in silence.
    outputs = _stack_outputs(args.stack, region) if args.stack else {}
    urls = alert_urls.read_urls(where, region=region) or []
    if url in urls:
        out(f"already there: {urls.index(url) + 1}. {alert_urls.describe(url)}")
        return int(ExitCode.OK)
    alert_urls.write_urls(where, [*urls, url], region)
    out(f"added {len(urls) + 1}. {alert_urls.describe(url)} ({len(urls) + 1} in {_label(where)})")
    if args.stack:
        if not outputs.get(NOTIFIER_OUTPUT):
            err(
                f"note: the stack {args.stack} has no notifier yet: deploy it with "
                "Alerts=Enabled (sam deploy --parameter-overrides Alerts=Enabled) so that "
                "its notices reach this URL"
            )
    else:
        err("`schwab-tokens watch` with the same --store sends its notices there")
    return int(ExitCode.OK)


def _url_from(value: str | None) -> str:
    if value is not None and value != "-":
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Apprise URL (not shown): ")
    return sys.stdin.readline()


def _list(where: str, region: str | None) -> int:
    urls = alert_urls.read_urls(where, region=region) or []
    if not urls:
        out(f"no alert URLs in {_label(where)}: add one with `schwab-tokens alerts add`")
        return int(ExitCode.OK)
    for index, url in enumerate(urls, start=1):
        out(f"{index}. {alert_urls.describe(url)} [{alert_urls.fingerprint(url)}]")
    return int(ExitCode.OK)


def _remove(args: argparse.Namespace, where: str, region: str | None) -> int:
    urls = alert_urls.read_urls(where, region=region) or []
    value = (args.value or "").strip()
    if not value:
        raise UsageError("name the URL to remove: its number in `alerts list`, or the URL")
    if value.isdigit():
        index = int(value)
        if not 1 <= index <= len(urls):
            raise UsageError(f"there is no alert URL {index}: `alerts list` shows {len(urls)}")
    elif value in urls:
        index = urls.index(value) + 1
    else:
        raise UsageError("that URL is not in the list: give its number from `alerts list`")
    gone = urls.pop(index - 1)
    alert_urls.write_urls(where, urls, region)
    out(f"removed {index}. {alert_urls.describe(gone)} ({len(urls)} left in {_label(where)})")
    return int(ExitCode.OK)


def _test(args: argparse.Namespace, settings: Settings, where: str) -> int:
    from ..notify import trial_notice

    urls = alert_urls.read_urls(where, region=settings.region) or []
    name = args.stack or _token_name(args, settings)
    notice = trial_notice(name, f"schwab-tokens alerts test on {socket.gethostname()[:40]}")
    failed = 0
    if urls:
        out(f"sending a test notice from this computer to {len(urls)} alert URL(s):")
        for result in alert_urls.send(urls, notice):
            failed += not result.ok
            state = "delivered" if result.ok else f"FAILED: {result.detail}"
            out(f"  {result.index}. {result.service}: {state}")
    else:
        err(f"no alert URLs in {_label(where)}: add one with `schwab-tokens alerts add`")
    if args.stack:
        _publish(args.stack, notice, settings.region)
    if failed or not urls:
        return int(ExitCode.CONFIGURATION)
    return int(ExitCode.OK)


def _publish(stack: str, notice: Notice, region: str | None) -> None:
    from .. import aws

    outputs = _stack_outputs(stack, region)
    topic = outputs.get(TOPIC_OUTPUT)
    if not topic:
        raise ConfigurationError(f"the stack {stack} has no {TOPIC_OUTPUT} output")
    aws.publish(topic, notice.subject, notice.message, notice.attributes())
    if outputs.get(NOTIFIER_OUTPUT):
        out(
            "published it to the stack's topic too: the notifier sends it from AWS to the same "
            "URLs, and the topic's e-mail subscribers get it; if a URL works from here but not "
            "from there, the notifier's log names its service: "
            f"aws logs tail {log_group(stack)} --since 10m"
            + (f" --region {region}" if region else "")
        )
    else:
        out(
            "published it to the stack's topic too (its e-mail subscribers get it); the stack "
            "has no notifier, so the URLs get notices only once it is deployed with Alerts=Enabled"
        )


def log_group(stack: str) -> str:
    """The notifier's log group (the template names it after the stack)."""
    return f"/aws/lambda/{stack}-notifier"


def _token_name(args: argparse.Namespace, settings: Settings) -> str:
    from ..manifest import default_name

    return default_name(store_url(args, settings))


def _stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    from .. import aws

    try:
        found = aws.client("cloudformation", region).describe_stacks(StackName=stack)["Stacks"]
    except aws.boto_errors() as exc:
        if aws.error_code(exc) == "ValidationError" and "not exist" in str(exc):
            raise ConfigurationError(
                f"no stack {stack} in this region: check the name, --region and AWS_PROFILE"
            ) from None
        raise aws.translate(
            exc, what=f"stack {stack}", action="cloudformation:DescribeStacks"
        ) from exc
    return {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in (found[0].get("Outputs") or [] if found else [])
        if "OutputKey" in o and "OutputValue" in o
    }
