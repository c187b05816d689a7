"""`make invoke FUNCTION=refresher EVENT=events/scheduled.json`: run one Lambda handler here,
without Docker (`sam local invoke` needs a container engine).

    .venv/bin/python scripts/invoke.py FUNCTION [EVENT] [--parameter NAME=VALUE ...]

FUNCTION is a folder of functions/ (refresher, login, example_consumer) or its logical id in
template.yaml; EVENT an event file (default: events/scheduled.json for the refresher,
events/login_start.json for the login, events/consumer.json for the consumer).

Where the environment names no endpoint and no store (none of AWS_ENDPOINT_URL[_*],
SCHWAB_API_BASE, TOKEN_STORE_URL[S], TOKEN_ACCESS_URL, TOKEN_MANIFEST), it stands up what the
handler talks to, on 127.0.0.1: moto's server (AWS_ENDPOINT_URL, fake credentials, nothing of
the user's AWS configuration read) and the Schwab emulator (SCHWAB_API_BASE); it creates what
the function's environment in template.yaml refers to (the token bucket, the alarm topic, a KMS
key...), stores the emulator's app key and secret where SCHWAB_CREDENTIALS_SECRET says
(ssm:/local/credentials: stack name "local"), logs a token in to the stack's store, and sets the
function's environment as the stack would (template parameters at their defaults, HostedLogin
Enabled; --parameter changes one).

Where the environment does name them (AWS_PROFILE and TOKEN_STORE_URL for a real stack, say), it
uses them as they are and creates nothing; only the function's settings that name no resource
(POWERTOOLS_*, REFRESH_MARGIN_SECONDS...) are filled in where unset.

Then it loads functions/<folder>/app.py fresh, as a cold start does, and calls
lambda_handler(event, context) with a Lambda-like context. The handler's log lines go to
standard error, its JSON result to standard output (so `| jq` works). Exit 0 if the handler
returned, 1 if it raised (the error is printed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit import REPO
from devkit.template import conditions, load_template, parameter_values

DEFAULT_EVENTS = {
    "refresher": "events/scheduled.json",
    "login": "events/login_start.json",
    "example_consumer": "events/consumer.json",
}
#: Any of these set: the environment names its endpoints and stores, and is used as it is.
NAMING = (
    "AWS_ENDPOINT_URL",
    "SCHWAB_API_BASE",
    "TOKEN_STORE_URL",
    "TOKEN_STORE_URLS",
    "TOKEN_ACCESS_URL",
    "TOKEN_MANIFEST",
)
STACK = "local"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
#: Locally the hosted login exists, so that every function can be invoked.
LOCAL_PARAMETERS = {"HostedLogin": "Enabled"}
NO_VALUE = object()


class Usage(Exception):
    """A wrong function, event or parameter: exit 2."""


class Unresolvable(KeyError):
    """A template value that refers to something this run does not stand in for."""


def say(text: str) -> None:
    print(f"invoke: {text}", file=sys.stderr, flush=True)


# -- the function and its event -------------------------------------------------------------------
@dataclass(frozen=True)
class Function:
    logical_id: str
    folder: str
    properties: Mapping[str, Any]
    condition: str | None


def functions(template: Mapping[str, Any]) -> dict[str, Function]:
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        folder = Path(str(properties.get("CodeUri", ""))).name
        found[folder] = Function(logical_id, folder, properties, resource.get("Condition"))
    return found


def find_function(template: Mapping[str, Any], name: str) -> Function:
    known = functions(template)
    for function in known.values():
        if name in (function.folder, function.logical_id):
            return function
    raise Usage(f"no function {name!r} in template.yaml; one of: {', '.join(sorted(known))}")


def read_event(function: Function, given: str | None) -> tuple[str, dict[str, Any]]:
    name = given or DEFAULT_EVENTS.get(function.folder, "")
    if not name:
        raise Usage(f"{function.folder} has no default event: give one")
    candidates = [Path(name), REPO / name, REPO / "events" / name, REPO / "events" / f"{name}.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise Usage(f"no event file {name!r} (looked in ., the repository and events/)")
    try:
        event = json.loads(path.read_text())
    except ValueError as exc:
        raise Usage(f"{path} is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise Usage(f"{path} must hold a JSON object, as Lambda events are")
    return str(path), event


# -- the template's values ------------------------------------------------------------------------
class Refs(dict[str, Any]):
    """What ``Ref``, ``Fn::GetAtt`` and ``${...}`` name: parameters and pseudo parameters, and
    resources made on first use (``makers``). A name with neither raises ``Unresolvable``."""

    def __init__(self, values: Mapping[str, Any], makers: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.makers = dict(makers)

    def __missing__(self, key: str) -> Any:
        maker = self.makers.get(key)
        if maker is None:
            raise Unresolvable(key)
        self[key] = value = maker()
        return value


def resolve(value: Any, conds: Mapping[str, bool], refs: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Fn::If":
            name, when_true, when_false = argument
            return resolve(when_true if conds[name] else when_false, conds, refs)
        if function == "Ref":
            return NO_VALUE if argument == "AWS::NoValue" else refs[argument]
        if function == "Fn::GetAtt":
            names = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return refs[".".join(names)]
        if function == "Fn::Sub":
            text, own = (argument, {}) if isinstance(argument, str) else argument
            local = {k: resolve(v, conds, refs) for k, v in own.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match[1]
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                return str(local[name] if name in local else refs[name])

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        if function == "Fn::Join":
            separator, items = argument
            parts = [resolve(item, conds, refs) for item in resolve(items, conds, refs)]
            return separator.join(str(p) for p in parts if p is not NO_VALUE)
        raise Unresolvable(function)
    return value


def environment(
    function: Function,
    template: Mapping[str, Any],
    overrides: Mapping[str, str],
    refs: Refs,
    only: tuple[str, ...] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The function's environment as the stack sets it (``only`` these variables), and the
    variables left out because they name something ``refs`` cannot give."""
    conds = conditions(dict(template), parameter_values(dict(template), dict(overrides)))
    if function.condition and not conds[function.condition]:
        raise Usage(
            f"{function.logical_id} exists only where {function.condition} holds "
            f"(check the --parameter values)"
        )
    variables = (function.properties.get("Environment") or {}).get("Variables") or {}
    env, left_out = {}, []
    for name, value in variables.items():
        if only is not None and name not in only:
            continue
        try:
            resolved = resolve(value, conds, refs)
        except Unresolvable:
            left_out.append(name)
            continue
        if resolved is not NO_VALUE:
            env[name] = str(resolved)
    return env, left_out


def base_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Parameters (defaults, then ``overrides``) and the partition's pseudo parameters."""
    values: dict[str, Any] = dict(parameter_values(dict(template), dict(overrides)))
    values.update({"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"})
    return values


# -- the local stand-ins --------------------------------------------------------------------------
def names_endpoints(env: Mapping[str, str]) -> list[str]:
    return sorted(name for name in env if name in NAMING or name.startswith("AWS_ENDPOINT_URL_"))


def login_url_of(event: Mapping[str, Any]) -> str:
    """The hosted login's function URL: the sample events' (or this event's) domain."""
    context = event.get("requestContext") or {}
    domain = context.get("domainName")
    if not domain:
        sample = json.loads((REPO / "events" / "login_start.json").read_text())
        domain = sample["requestContext"]["domainName"]
    return f"https://{domain}/"


@contextlib.contextmanager
def local_world(
    function: Function,
    template: Mapping[str, Any],
    overrides: dict[str, str],
    event: Mapping[str, Any],
) -> Iterator[None]:
    """moto's server and the emulator on 127.0.0.1, the stack's resources the function's
    environment names, the app credentials, a token logged in, and that environment set."""
    from moto.server import ThreadedMotoServer

    from devkit.emulator import Emulator
    from schwab_tokens import aws

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    emulator = Emulator().start()
    try:
        host, port = server.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        aws.reset_clients()
        stand_in_stack(function, template, overrides, login_url_of(event), emulator)
        yield
    finally:
        emulator.stop()
        server.stop()


def stand_in_stack(
    function: Function,
    template: Mapping[str, Any],
    overrides: dict[str, str],
    login_url: str,
    emulator: Any,
) -> None:
    """On moto's server: what the function's environment names, the stack's app credentials and
    a token logged in to the stack's store; then that environment set, pointed at the emulator.
    Raises Usage if the environment names something not stood in for."""
    from devkit.user import login
    from schwab_tokens.credentials import AppCredentials, store_credentials
    from schwab_tokens.stores import store_from_url

    emulator.register_callback(login_url + "callback")
    made: list[str] = []
    refs = Refs(
        {
            **base_values(template, overrides),
            "AWS::StackName": STACK,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "LoginFunctionUrl.FunctionUrl": login_url,
        },
        stack_resources(made),
    )
    env, left_out = environment(function, template, overrides, refs)
    if left_out:
        raise Usage(f"a local run cannot stand in for what {', '.join(left_out)} names")
    refresher = functions(template)["refresher"]
    stack = ("TOKEN_STORE_URL", "SCHWAB_CREDENTIALS_SECRET")  # the stack's store, its app
    stack_env, _ = environment(refresher, template, overrides, refs, only=stack)
    env.update(
        SCHWAB_API_BASE=emulator.base_url,
        AWS_LAMBDA_FUNCTION_NAME=f"{STACK}-{function.logical_id}",
    )
    os.environ.update(env)
    credentials = stack_env["SCHWAB_CREDENTIALS_SECRET"]
    store_credentials(
        credentials,
        AppCredentials(emulator.app_key, emulator.app_secret, emulator.callback_url),
    )
    store_url = stack_env["TOKEN_STORE_URL"]
    token = login(store_from_url(store_url), emulator)
    say(f"moto's server on {os.environ['AWS_ENDPOINT_URL']}: {', '.join(made) or 'empty'}")
    say(f"Schwab emulator on {emulator.base_url}")
    say(f"credentials in {credentials}; a token logged in to {store_url} ({token.fingerprint})")
    for name in sorted(env):
        say(f"  {name}={env[name]}")


def stack_resources(made: list[str]) -> dict[str, Callable[[], str]]:
    """Makers of the stack's resources a function's environment may name, by the name its
    references use; each maker notes in ``made`` what it made."""
    from schwab_tokens import aws

    def bucket() -> str:
        name = f"schwab-tokens-{STACK}"
        aws.client("s3").create_bucket(Bucket=name)
        made.append(f"bucket {name}")
        return name

    def topic() -> str:
        arn = str(aws.client("sns").create_topic(Name=f"{STACK}-alarms")["TopicArn"])
        made.append(f"topic {arn}")
        return arn

    def key() -> str:
        arn = str(aws.client("kms").create_key(Description=STACK)["KeyMetadata"]["Arn"])
        made.append(f"KMS key {arn}")
        return arn

    return {"TokenBucket": bucket, "AlarmTopic": topic, "TokenKey.Arn": key}


@contextlib.contextmanager
def as_it_is(
    function: Function, template: Mapping[str, Any], overrides: dict[str, str], named: list[str]
) -> Iterator[None]:
    """The environment as it is; only the function's settings that name no resource are
    filled in where unset."""
    refs = Refs(base_values(template, overrides), {})
    env, left_out = environment(function, template, overrides, refs)
    say(f"using the environment as it is ({', '.join(named)} set); nothing is created")
    for name, value in sorted(env.items()):
        if name not in os.environ:
            os.environ[name] = value
            say(f"  {name}={value} (the stack's setting)")
    unset = [name for name in left_out if name not in os.environ]
    if unset:
        say(f"  the stack would also set {', '.join(unset)}")
    yield


# -- the invocation -------------------------------------------------------------------------------
@dataclass
class Context:
    """What Lambda hands a handler."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local/[$LATEST]invoke"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_seconds - (time.monotonic() - self.started)
        return max(0, int(left * 1000))


def context_for(function: Function, template: Mapping[str, Any]) -> Context:
    defaults = (template.get("Globals") or {}).get("Function") or {}
    properties = {**defaults, **function.properties}
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or f"{STACK}-{function.logical_id}"
    region = os.environ.get("AWS_REGION") or REGION
    return Context(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}",
        memory_limit_in_mb=int(properties.get("MemorySize", 128)),
        timeout_seconds=float(properties.get("Timeout", 3)),
        log_group_name=f"/aws/lambda/{name}",
    )


def invoke(function: Function, event: dict[str, Any], context: Context) -> tuple[Any, bool]:
    """Load the handler fresh and call it; its output (logs, EMF) goes to standard error.
    Returns (result, True) or (the exception, False)."""
    from devkit.handlers import load_handler

    with contextlib.redirect_stdout(sys.stderr):
        try:
            module = load_handler(function.folder)
            return module.lambda_handler(event, context), True
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            return exc, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/invoke.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("function", help="refresher, login, example_consumer (or a logical id)")
    parser.add_argument(
        "event", nargs="?", default="", help="an event file (default: per function)"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter for the local stand-ins (default: the template's defaults)",
    )
    args = parser.parse_args(argv)
    template = load_template()
    try:
        function = find_function(template, args.function)
        event_path, event = read_event(function, args.event or None)
        overrides = dict(LOCAL_PARAMETERS)
        for item in args.parameter:
            name, equals, value = item.partition("=")
            if not equals or name not in template["Parameters"]:
                raise Usage(f"--parameter {item!r}: not NAME=VALUE of a template parameter")
            overrides[name] = value
        named = names_endpoints(os.environ)
        say(f"{function.logical_id} (functions/{function.folder}/app.py) with {event_path}")
        world = (
            as_it_is(function, template, overrides, named)
            if named
            else local_world(function, template, overrides, event)
        )
        with world:
            context = context_for(function, template)
            result, returned = invoke(function, event, context)
    except Usage as exc:
        print(f"invoke: {exc}", file=sys.stderr)
        return 2
    if not returned:
        say(f"{function.logical_id} raised {type(result).__name__}: {result}")
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
