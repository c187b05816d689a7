"""Notifier Lambda (opt-in, subscribed to the stack's topic): forwards each notice and alarm to
the user's alert URLs through Apprise (Telegram, Discord, Slack, ntfy, Pushover, e-mail...).

All logic is in ``schwab_tokens.lambdas.notifier`` and ``schwab_tokens.alert_urls`` (our layer);
this only wires powertools around it. The event is never logged: a notice carries the one-time
login link.
"""

from typing import TYPE_CHECKING, Any

from schwab_tokens.lambdas.notifier import handle
from schwab_tokens.lambdas.observability import logger

if TYPE_CHECKING:  # the import costs cold-start time and is only for the annotation
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: "LambdaContext") -> dict[str, Any]:
    return handle(event)
