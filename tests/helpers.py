"""Shared test steps: settings and checks around the emulator, tokens and raw bytes put in a store
behind the package's back, the Lambda handlers invoked as AWS would, and what they print.

What a user does (log in through the emulator, run the CLI) and the emulator itself are in the
development kit the scripts share (``devkit.user``, ``devkit.handlers``, ``devkit.emulator``).
Test modules import from there and from here (and from ``tests.fakes``, ``tests.conftest_aws``,
``tests.reliability.support``), never from one another.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devkit import REPO
from devkit.emulator.server import ACCOUNT_NUMBERS_PATH
from devkit.handlers import load_handler
from devkit.user import CLI
from schwab_tokens.errors import LoginRequired
from schwab_tokens.settings import Settings
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.token import Token

EVENTS = REPO / "events"


# -- the emulator ----------------------------------------------------------------------------------
def emulator_settings(emulator: Any, url: str, **options: Any) -> Settings:
    """The package's settings for a store whose app is the emulator's (``options`` as
    ``Settings`` takes them: timeouts, a topic, a login URL...)."""
    return Settings(
        store_url=url,
        app_key=emulator.app_key,
        app_secret=emulator.app_secret,
        api_base=emulator.base_url,
        **{"http_timeout": 5, **options},
    )


def accepted(emulator: Any, access_token: str) -> bool:
    """Whether Schwab (the emulator's account route) takes this access token."""
    answer = requests.get(
        emulator.base_url + ACCOUNT_NUMBERS_PATH,
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=5,
    )
    return answer.status_code == 200


def secrets_of(emulator: Any) -> set[str]:
    """Everything that must never appear in output: every token and code issued, the secret."""
    return set(emulator.issued_secrets()) | {emulator.app_secret}


def assert_no_secrets(text: str, secrets: Iterable[str]) -> None:
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"{len(leaked)} secret(s) appeared in output"


# -- tokens and stores ---------------------------------------------------------------------------
def make_token(label: str = "", *, now: float | None = None, lifetime: int = 1800) -> Token:
    """A valid document, logged in ``now`` (default: the real clock), unique access token."""
    now = int(time.time() if now is None else now)
    return Token(
        creation_timestamp=now,
        token={
            "access_token": f"access-{label}-{uuid.uuid4().hex}",
            "refresh_token": f"refresh-{uuid.uuid4().hex}",
            "id_token": "id",
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "api",
            "expires_at": now + lifetime,
        },
    )


def put_raw(target: str | TokenStore, raw: bytes | str) -> None:
    """Store bytes without any condition or lock, as another tool or a person would."""
    from schwab_tokens import aws
    from schwab_tokens.stores.s3 import S3Store
    from schwab_tokens.stores.secretsmanager import SecretsManagerStore

    store = store_from_url(target) if isinstance(target, str) else target
    data = raw.encode() if isinstance(raw, str) else raw
    if isinstance(store, S3Store):
        aws.client("s3").put_object(Bucket=store.bucket, Key=store.key, Body=data)
    elif isinstance(store, SecretsManagerStore):
        sm = aws.client("secretsmanager")
        try:
            sm.create_secret(Name=store.name, SecretString=data.decode())
        except aws.boto_errors():  # it exists (with or without a value)
            sm.put_secret_value(SecretId=store.name, SecretString=data.decode())
    else:
        Path(getattr(store, "path", store.url)).write_bytes(data)


def snapshot(url: str) -> tuple[bytes, str] | None:
    """The stored bytes and version, or None when nothing is stored."""
    try:
        raw, version, _ = store_from_url(url).read_raw()
    except LoginRequired:
        return None
    return raw, version


class RawBody:
    """A botocore raw HTTP body holding fixed bytes (for answers made up by an event hook)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


# -- the Lambda handlers ---------------------------------------------------------------------------
@dataclass
class LambdaContext:
    """What Lambda hands a handler; each invocation has its own request id (a retry of an
    asynchronous invocation keeps its id: pass the same context again)."""

    function_name: str = "schwab-tokens-refresher"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:schwab-tokens-refresher"
    )
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def start_watch(
    url: str, env: Mapping[str, str], interval: float = 0.2, *, merge_stderr: bool = False
) -> subprocess.Popen[str]:
    """``schwab-tokens watch --store url`` in the background (stop it with a signal)."""
    return subprocess.Popen(
        [*CLI, "watch", "--interval", f"{interval:g}", "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        env=dict(env),
    )


def wait_for(condition: Callable[[], bool], seconds: float = 30, what: str = "it") -> None:
    """Return as soon as ``condition()`` holds. ``seconds`` only bounds a hung process (the test
    then fails naming ``what``); nothing is concluded from how long the wait took."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_rounds(emulator: Any, env: Mapping[str, str], rounds: int) -> None:
    """Return once a ``watch`` started with ``env`` has ended ``rounds`` more rounds and begun
    the next, so that whatever those rounds print is printed: how a test shows that nothing more
    is said, by counting rounds instead of sleeping.

    Only for a watch whose token is due at every round, so each round refreshes once: one to
    ``1 + SCHWAB_HTTP_RETRIES`` calls to the emulator's token endpoint. That many calls per
    round, plus one, mean the rounds have ended and the next one has called Schwab.
    """
    tries = 1 + int(env["SCHWAB_HTTP_RETRIES"])
    target = emulator.token_calls + rounds * tries + 1
    wait_for(lambda: emulator.token_calls >= target, what=f"{rounds} more rounds of watch")


def lambda_event(name: str) -> dict[str, Any]:
    """A sample event from events/, exactly as the file holds it (and as the docs tell users to
    invoke it)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def refresher_env(emulator: Any, url: str, **extra: str) -> dict[str, str]:
    """The refresher Lambda's environment as the stack sets it (DetailedMetrics enabled, so the
    handler prints its EMF metrics too), pointed at the emulator."""
    env = {
        "TOKEN_STORE_URL": url,
        "SCHWAB_API_BASE": emulator.base_url,
        "SCHWAB_HTTP_TIMEOUT": "1",
        "SCHWAB_HTTP_RETRIES": "1",
        "REFRESH_MARGIN_SECONDS": "600",
        "SCHWAB_TOKENS_DETAILED_METRICS": "true",
        "POWERTOOLS_SERVICE_NAME": "schwab-tokens",
        "POWERTOOLS_METRICS_NAMESPACE": "SchwabTokens",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "schwab-tokens-refresher",
    }
    env.update(extra)
    return env


def invoke(capsys: Any, name: str) -> tuple[dict[str, Any] | None, Exception | None, str]:
    """One cold invocation of the refresher with events/<name>: (result, error, stdout)."""
    handler = load_handler("refresher")
    capsys.readouterr()
    try:
        result = handler.lambda_handler(lambda_event(name), LambdaContext())
        error = None
    except Exception as exc:
        result, error = None, exc
    return result, error, capsys.readouterr().out


def emf_documents(stdout: str, dimensions: Iterable[str] = ("service",)) -> list[dict[str, Any]]:
    """The EMF documents printed with exactly this dimension set (``["service"]``: the run's
    aggregate; ``["Token", "service"]``: one token's)."""
    wanted = [sorted(dimensions)]
    found = []
    for doc in _json_lines(stdout):
        meta = doc.get("_aws")
        if not meta:
            continue
        directive = meta["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "SchwabTokens"
        if [sorted(d) for d in directive["Dimensions"]] == wanted:
            found.append(doc)
    return found


def emf_metrics(stdout: str, dimensions: Iterable[str] = ("service",)) -> dict[str, list[float]]:
    """Every metric value in the EMF documents printed, by name, for one dimension set."""
    found: dict[str, list[float]] = {}
    for doc in emf_documents(stdout, dimensions):
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = doc[metric["Name"]]
            found.setdefault(metric["Name"], []).extend(
                value if isinstance(value, list) else [value]
            )
    return found


def log_records(stdout: str) -> list[dict[str, Any]]:
    """The JSON log lines the handler printed (not its EMF documents)."""
    return [r for r in _json_lines(stdout) if "_aws" not in r]


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]  # every line printed is JSON


# -- the JSON Schemas (schemas/): every writer's documents hold to them -------------------------
def valid(kind: str, raw: bytes | str) -> dict[str, Any]:
    """``raw`` parsed and checked against ``schemas/<kind>.schema.json`` (token, access-view)."""
    import jsonschema

    document: dict[str, Any] = json.loads(raw)
    schema = json.loads((REPO / "schemas" / f"{kind}.schema.json").read_text())
    jsonschema.validate(document, schema)
    return document


def view_of(url: str) -> dict[str, Any]:
    """The stored view, checked against its schema and against the stored token (itself checked
    against the token's schema): the same token, and nothing of what only the refresher needs."""
    store = store_from_url(url, Settings())
    view = valid("access-view", store.view.read_raw().raw)
    token = valid("token", store.read_raw().raw)
    assert view["access_token"] == token["token"]["access_token"]
    assert view["expires_at"] == token["token"]["expires_at"]
    assert view["creation_timestamp"] == token["creation_timestamp"]
    for secret in (token["token"]["refresh_token"], token["token"].get("id_token")):
        assert secret not in json.dumps(view)
    return view
