"""Shared test steps: logging in through the emulator, running the CLI and the Lambda handlers as
a user and AWS would, putting bytes in a store behind the package's back, and reading what the
handlers print.

Test modules import from here (and from ``tests.fakes``, ``tests.emulator``,
``tests.conftest_aws``, ``tests.reliability.support``), never from one another.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from schwab_tokens.errors import LoginRequired
from schwab_tokens.login_flow import complete_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.settings import Settings
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.token import Token
from tests.emulator.server import ACCOUNT_NUMBERS_PATH

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
_SCRIPT = Path(sys.executable).with_name("schwab-tokens")
#: The installed console script, as a user runs it (the module form if tests run elsewhere).
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "schwab_tokens"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- logging in -----------------------------------------------------------------------------------
def follow_authorize(authorize_url: str) -> str:
    """What the browser does after the user approves: the emulator's redirect target."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.status_code
    return answer.headers["Location"]


def oauth_for(emulator: Any, **options: Any) -> SchwabOAuth:
    """The emulated app's OAuth client (``timeout``, ``retries`` as ``SchwabOAuth`` takes them)."""
    return SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url, **options)


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


def login(store: TokenStore, emulator: Any) -> Token:
    """A completed login, done through the library (for tests about what comes after)."""
    oauth = oauth_for(emulator)
    callback = emulator.callback_url
    url, state = oauth.authorize_url(callback)
    return complete_login(oauth, store, follow_authorize(url), state, callback)


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


# -- the CLI ------------------------------------------------------------------------------------
@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(emulator: Any, **extra: str) -> dict[str, str]:
    """The environment of a user's shell pointed at the emulator (key and secret in the env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHWAB_", "TOKEN_STORE"))}
    env.update(
        SCHWAB_API_BASE=emulator.base_url,
        SCHWAB_APP_KEY=emulator.app_key,
        SCHWAB_APP_SECRET=emulator.app_secret,
        SCHWAB_HTTP_TIMEOUT="1",
        SCHWAB_HTTP_RETRIES="2",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run_cli(
    args: Iterable[str],
    env: Mapping[str, str],
    stdin: str = "",
    timeout: float = 60,
    cwd: str | Path | None = None,
) -> Run:
    done = subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
        cwd=cwd,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def paste_login(
    args: Iterable[str], env: Mapping[str, str], link_for: Callable[[str], str] = follow_authorize
) -> Run:
    """``schwab-tokens login --paste`` driven like a person: open the printed URL, paste the link.

    ``link_for`` turns the authorize URL into the pasted line (tests use it to tamper).
    """
    return login_by_listener([*CLI, "login", "--paste", *args], env, link_for)


def login_by_listener(
    argv: list[str], env: Mapping[str, str], link_for: Callable[[str], str] = follow_authorize
) -> Run:
    """Any login command line (``--paste`` or the HTTPS listener, which also takes a pasted
    link): open the authorize URL it prints, as the browser would, and paste where it landed."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    assert proc.stdout is not None and proc.stdin is not None
    out: list[str] = []
    for line in proc.stdout:
        out.append(line)
        if "/v1/oauth/authorize?" in line:
            proc.stdin.write(link_for(line.strip()) + "\n")
            proc.stdin.flush()
            break
    rest, err = proc.communicate(timeout=60)
    return Run(proc.returncode, "".join(out) + rest, err)


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


def load_handler(folder: str) -> Any:
    """Import functions/<folder>/app.py fresh, as a cold start does: the layer's Lambda modules
    (and so their powertools Logger, Tracer and Metrics) are imported again too."""
    import importlib.util
    import logging

    for name in [m for m in sys.modules if m.startswith("schwab_tokens.lambdas")]:
        sys.modules.pop(name)
    name = f"handler_{folder}"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, REPO / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # powertools reuses an existing logger's handler, which an earlier test bound to its own
    # (captured, now closed) stdout: the cold start writes to this test's stdout.
    for handler in logging.getLogger("schwab-tokens").handlers:
        handler.stream = sys.stdout  # type: ignore[attr-defined]
    return module


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
