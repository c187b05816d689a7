"""IAM on moto for the template tests: users that hold exactly the template's policies, the calls
they make, recorded with the action IAM checks, and enforcement switched on and off.

moto 5.2 checks the action of every request and, for S3, the object's ARN; it does not evaluate
the template's conditions, and compares other services' resources with ``*``: ``for_moto`` gives
those statements ``Resource: "*"`` (the actions stay exactly the template's). Their resource
scoping and conditions are checked on the template itself (test_template, test_deploy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from devkit.template import as_list
from schwab_tokens import aws

SERVICES = ("s3", "secretsmanager", "ssm", "sns")
#: How a denial comes back (moto's JSON services answer a bare 403).
DENIED = ("AccessDenied", "AccessDeniedException", "403")


@dataclass
class Call:
    identity: str
    action: str  # the IAM action
    resource: str  # the S3 object's ARN; "*" for other services (what moto checks)
    error: str | None
    #: What the call named: the S3 object's ARN, the parameter's name, the secret's id.
    target: str = ""


@dataclass
class Record:
    calls: list[Call] = field(default_factory=list)

    def of(self, identity: str) -> list[Call]:
        return [c for c in self.calls if c.identity == identity]

    def denied(self, identity: str) -> list[Call]:
        return [c for c in self.of(identity) if c.error in DENIED]


def iam_action(service: str, operation: str) -> str:
    return (
        "s3:GetObject" if (service, operation) == ("s3", "HeadObject") else f"{service}:{operation}"
    )


@contextmanager
def with_keys(keys: dict[str, str]) -> Iterator[None]:
    """The package's AWS calls made with ``keys`` (environment variables, boto3's own chain)."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=keys["id"], AWS_SECRET_ACCESS_KEY=keys["secret"])
    aws.reset_clients()
    try:
        yield
    finally:
        aws.reset_clients()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def acting_as(identity: str, keys: dict[str, str], record: Record) -> Iterator[None]:
    """``with_keys``, each call recorded with the action IAM checks."""

    def after_call(
        http_response: Any, parsed: Any, model: Any, params: Any = None, **_: Any
    ) -> None:
        service = model.service_model.endpoint_prefix
        resource = "*"
        if service == "s3":
            resource = f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
        error = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        named = params.get("Name") or params.get("SecretId") or params.get("TopicArn")
        action = iam_action(service, model.name)
        record.calls.append(Call(identity, action, resource, error, str(named or resource)))

    def remember_params(params: Any, context: Any, **_: Any) -> None:
        context["schwab_tokens_params"] = dict(params)

    def with_params(context: Any, **kwargs: Any) -> None:
        after_call(params=context.get("schwab_tokens_params"), **kwargs)

    with with_keys(keys):
        for service in SERVICES:
            events = aws.client(service).meta.events
            events.register("provide-client-params.*.*", remember_params)
            events.register("after-call.*.*", with_params)
        yield


def for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The template's document as moto can check it: S3 statements exactly as they are; others
    with ``Resource: "*"`` (moto compares their resource with "*", see the module docstring)."""
    statements = []
    for statement in document["Statement"]:
        names = as_list(statement["Action"])
        if not all(name.startswith("s3:") for name in names):
            statement = {**statement, "Resource": "*"}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def grants(documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(action, resource) pairs; resource "*" for services other than S3."""
    found = set()
    for document in documents:
        for statement in document["Statement"]:
            for name in as_list(statement["Action"]):
                for target in as_list(statement["Resource"]):
                    found.add((name, target if name.startswith("s3:") else "*"))
    return found


def lists_bucket(documents: list[dict[str, Any]]) -> Callable[[str], bool]:
    """S3's hidden check, as ``tests/s3_proxy.py`` takes a rule: whether a holder of
    ``documents`` (policies as deployed, resources resolved) may list a bucket, so that S3 answers
    a missing key 404 rather than 403.

    S3 documents the 404 only for a caller that "has s3:ListBucket"; whether a grant limited by a
    condition (``s3:prefix``) counts is not documented, so here only an Allow of s3:ListBucket (or
    a wildcard that covers it) on the bucket's ARN with no Condition counts, and any Deny of it
    wins."""

    def covers(patterns: Any, value: str) -> bool:
        return any(fnmatchcase(value.lower(), str(p).lower()) for p in as_list(patterns))

    def may_list(bucket: str) -> bool:
        arn = f"arn:aws:s3:::{bucket}"
        allowed = False
        for document in documents:
            for statement in as_list(document["Statement"]):
                if not (
                    covers(statement.get("Action", []), "s3:ListBucket")
                    and covers(statement.get("Resource", []), arn)
                ):
                    continue
                if statement["Effect"] == "Deny":
                    return False
                allowed = allowed or "Condition" not in statement
        return allowed

    return may_list


def make_user(iam: Any, name: str, documents: list[dict[str, Any]]) -> dict[str, str]:
    """An IAM user holding exactly ``documents`` (as moto can check them), and its keys."""
    iam.create_user(UserName=name)
    for number, document in enumerate(documents):
        iam.put_user_policy(
            UserName=name,
            PolicyName=f"template-{number}",
            PolicyDocument=json.dumps(for_moto(document)),
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
